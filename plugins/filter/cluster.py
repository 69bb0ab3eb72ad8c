# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn the cluster's inventory model into what each host needs.

The roles use them; their documentation is in the .yml files beside this one.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Callable, Dict, Mapping, Sequence

from ansible.errors import AnsibleFilterError

from ansible_collections.haecs.lvs.plugins.module_utils import _cluster
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.errors import HaecsError
from ansible_collections.haecs.lvs.plugins.module_utils.nft.boot import boot_batch

# The monitor ships inside the collection (monitor/): its own validation
# checks the configuration on the controller, before any host is touched.
MONITOR_ROOT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "monitor"
)
_MONITOR_PATH = re.compile(r"^services\[(\d+)\](?:\.real_servers\[(\d+)\])?")


def _reported(function: Callable[..., Any]) -> Callable[..., Any]:
    def filtered(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except HaecsError as error:
            raise AnsibleFilterError(str(error)) from None

    filtered.__name__ = function.__name__
    filtered.__doc__ = function.__doc__
    return filtered


def _monitor_validation() -> Any:
    """The monitor's config loader (haecs_monitor.config.load), from the collection's monitor/."""
    if MONITOR_ROOT not in sys.path:
        sys.path.insert(0, MONITOR_ROOT)
    from haecs_monitor.config import load  # pylint: disable=import-outside-toplevel

    return load


def monitor_config(
    services: Any,
    groups: Mapping[str, Sequence[str]],
    hostvars: Mapping[str, Any],
    settings: Mapping[str, Any],
) -> Dict[str, Any]:
    """The monitor's configuration (global + services) for the model's
    monitored services, validated by the monitor itself; an error names the
    inventory variable (haecs_services[i]..., monitor_settings...)."""
    monitored, sources = _cluster.monitor_services(services, groups, hostvars)
    document = {
        "global": dict(settings),
        "services": monitored,
        "static_services": _cluster.static_keys(services),
    }
    try:
        load = _monitor_validation()
    except ImportError as error:
        raise AnsibleFilterError(
            "cannot load the monitor's validation from %s: %s" % (MONITOR_ROOT, error)
        ) from None
    try:
        load.parse_config(document)
    except load.ConfigError as error:
        raise AnsibleFilterError(
            "\n".join(_named(message, sources) for message in error.errors)
        ) from None
    return document


def _named(message: str, sources: Sequence[Any]) -> str:
    """services[1].real_servers[0].x -> haecs_services[3] (real server rs1).x;
    global.x -> monitor_settings.x."""
    if message.startswith("global."):
        return "monitor_settings." + message[len("global.") :]
    match = _MONITOR_PATH.match(message)
    if match is None or int(match.group(1)) >= len(sources):
        return message
    index, hosts = sources[int(match.group(1))]
    head = "haecs_services[%d]" % index
    if match.group(2) is not None and int(match.group(2)) < len(hosts):
        head += " (real server %s)" % hosts[int(match.group(2))]
    return head + message[match.end() :]


class FilterModule:
    def filters(self) -> Dict[str, Callable[..., Any]]:
        return {
            "cluster_table": _reported(_cluster.cluster_table),
            "director_vips": _reported(_cluster.director_vips),
            "director_marks": _reported(_cluster.director_marks),
            "fwmark_boot": _reported(boot_batch),
            "ha_instances": _reported(_cluster.ha_instances),
            "real_server_vips": _reported(_cluster.real_server_vips),
            "ipvsadm_rules": _reported(_cluster.ipvsadm_rules),
            "monitor_config": _reported(monitor_config),
            "monitored_keys": _reported(_cluster.monitored_keys),
        }
