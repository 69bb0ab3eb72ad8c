"""HAECS monitor: health checks that keep an IPVS table in step with its real servers.

The core is pure and has no daemon in it: `config` reads and validates the
monitor's YAML file, `checks` probes one endpoint, `health` turns probe
results into up/down decisions and weights.  The daemon side schedules the
checks and applies the resulting table with the collection's IPVS engine.
"""
