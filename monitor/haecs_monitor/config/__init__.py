"""The monitor's configuration: YAML in, a checked, typed model out.

``yamlfile`` reads the file (errors say where), ``reader`` walks it naming
each field, ``checks`` turns check entries into templates, ``model`` holds
the result, ``load`` puts it together (``load_config``).
"""
