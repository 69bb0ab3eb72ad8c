"""Find the collection's IPVS engine next to the monitor (used by monitor/bin/*).

The monitor imports the engine as
``ansible_collections.haecs.lvs.plugins.module_utils`` (the very files the
Ansible modules use).  Where that package lives depends on the layout:

- deployed (docs/design/monitor-deploy.md): ``ROOT/ansible_collections/...``
  beside ``ROOT/haecs_monitor`` (ROOT is /usr/lib/haecs);
- repository: ROOT is ``repo/monitor``; the engine is reached through
  ``repo/build/collections`` (``make collection``) or, without it, by mapping
  the package name onto the repository itself.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types

ENGINE = os.path.join("ansible_collections", "haecs", "lvs", "plugins", "module_utils")


def setup(root: str) -> None:
    """Make ``ansible_collections.haecs.lvs`` importable for a monitor in `root`."""
    repo = os.path.dirname(root)
    for candidate in (root, os.path.join(repo, "build", "collections")):
        if os.path.isdir(os.path.join(candidate, ENGINE)):
            if candidate not in sys.path:
                sys.path.insert(1, candidate)
            return
    if os.path.isfile(os.path.join(repo, "plugins", "module_utils", "ipvs", "engine.py")):
        _map_namespace(repo)


def _map_namespace(repo: str) -> None:
    for name, path in (
        ("ansible_collections", []),
        ("ansible_collections.haecs", []),
        ("ansible_collections.haecs.lvs", [repo]),
    ):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = path
            sys.modules[name] = module


def reexec_in_repo_venv(root: str) -> None:
    """In a checkout, run under repo/.venv when this Python lacks the monitor's libraries."""
    if any(importlib.util.find_spec(name) is None for name in ("yaml", "dns")):
        venv = os.path.join(os.path.dirname(root), ".venv")
        venv_python = os.path.join(venv, "bin", "python")
        if os.path.isfile(venv_python) and os.path.realpath(sys.prefix) != os.path.realpath(venv):
            os.execv(venv_python, [venv_python, *sys.argv])
