# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A director's table and health at a glance (playbooks/status.yml).

From what `haecs.lvs.ipvs_info` reads (the kernel's table), what
`haecsctl --json status` answers (the monitor's health) and the inventory
model (the service names and their owner), a few lines an operator reads at
once: each service with its owner, each real server with its weight, its
connections and, for monitored services, its health; servers the monitor
holds out of the table are listed too.

Runs on the controller (a filter); plain Python, no Ansible import.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .ipvs.errors import HaecsError
from .ipvs.model import format_endpoint, normalize_address
from .ipvs.params import parse_service_key

FORWARDING_SHORT = {"masq": "nat", "route": "dr", "tunnel": "tun", "local": "local"}


def _key(entry: Mapping[str, Any]) -> str:
    """The service's name as the monitor prints it: 'tcp 192.0.2.10:80'."""
    return str(parse_service_key(entry))


def _model_names(model: Sequence[Mapping[str, Any]]) -> Dict[str, Tuple[str, bool]]:
    names = {}
    for entry in model or ():
        try:
            names[_key(entry)] = (str(entry.get("name", "?")), entry.get("checks") is not None)
        except HaecsError:
            continue  # a bad model is the roles' to report, not the status's
    return names


def _monitor_servers(monitor: Optional[Mapping[str, Any]]) -> Dict[str, Mapping[str, Any]]:
    """Monitor status entries by service string."""
    if not monitor:
        return {}
    return {str(service.get("service")): service for service in monitor.get("services", [])}


def director_status(
    services: Sequence[Mapping[str, Any]],
    monitor: Optional[Mapping[str, Any]] = None,
    model: Sequence[Mapping[str, Any]] = (),
) -> List[str]:
    """The lines of one director's status."""
    names = _model_names(model)
    health = _monitor_servers(monitor)
    servers_total = sum(len(entry.get("real_servers", [])) for entry in services)
    head = "%d services, %d real servers" % (len(services), servers_total)
    if monitor:
        states = [rs.get("health") for s in health.values() for rs in s.get("servers", [])]
        head += "; monitor %s: %d up, %d down" % (
            monitor.get("name", "?"),
            states.count("up"),
            len(states) - states.count("up"),
        )
        if monitor.get("kernel", {}).get("last_error"):
            head += "; last kernel error: %s" % monitor["kernel"]["last_error"]
    elif any(monitored for _name, monitored in names.values()):
        head += "; no monitor answered"
    lines = [head]
    for entry in services:
        key = _key(entry)
        name, monitored = names.get(key, ("", False))
        owner = ("monitored" if monitored else "static") if name else "not in the model"
        label = "%s %s" % (name, owner) if name else owner
        checked = health.get(key)
        if checked is not None and checked.get("below_quorum"):
            label += ", BELOW QUORUM"
        lines.append("%s  %s  (%s)" % (key, entry.get("scheduler", "?"), label))
        seen = set()
        for server in entry.get("real_servers", []):
            endpoint = format_endpoint(
                normalize_address(str(server["address"])), int(server["port"])
            )
            seen.add(endpoint)
            text = "  -> %-22s %-5s weight %-3s active %-4s inactive %s" % (
                endpoint,
                FORWARDING_SHORT.get(server.get("forwarding", ""), server.get("forwarding", "?")),
                server.get("weight", "?"),
                server.get("active_connections", 0),
                server.get("inactive_connections", 0),
            )
            lines.append(text + _health(checked, endpoint))
        for server in (checked or {}).get("servers", []):
            if server.get("id") not in seen:
                endpoint = server.get("id")
                lines.append(
                    "  -- %-22s not in the table%s" % (endpoint, _health(checked, endpoint))
                )
    return lines


def _health(checked: Optional[Mapping[str, Any]], endpoint: Any) -> str:
    if checked is None:
        return ""
    for server in checked.get("servers", []):
        if server.get("id") == endpoint:
            text = "  %s" % server.get("health", "?")
            if server.get("health") != "up" and server.get("health_reason"):
                text += " (%s)" % server["health_reason"]
            if server.get("admin", "enabled") != "enabled":
                text += ", admin %s" % server["admin"]
            return text
    return "  (leaving: not in the monitor's configuration)"
