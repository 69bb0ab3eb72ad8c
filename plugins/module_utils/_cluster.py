# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster's inventory model -> what each host needs.

`haecs_services` (group vars) lists the virtual services; each names the
inventory group of its real servers.  A real-server host may override, per
service name, the options its entry takes from the service
(`haecs_real_server_overrides`).  From that and the inventory this module
derives the director's static IPVS table (the `services` of
`haecs.lvs.ipvs_table`), the director's VIPs, and the VIPs a direct-routing
or tunnel real server holds.  Every value is checked by the engine's own
validators, and an error names the inventory variable it came from.

Runs on the controller (the role's filters); plain Python, no Ansible import.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ._ipvs_table_params import key_params, parse_table
from .ipvs.errors import HaecsError
from .ipvs.model import ServiceKey, parse_address, service_order
from .ipvs.params import (
    REAL_SERVER_FIELDS,
    SERVICE_FIELDS,
    ValidationError,
    check_real_server,
    check_service,
)
from .nft.params import parse_desired

SERVICES_VAR = "haecs_services"
ADDRESS_VAR = "haecs_real_server_address"
OVERRIDES_VAR = "haecs_real_server_overrides"

# What a service entry may hold besides the ipvs_table service options.
MODEL_FIELDS = ("name", "real_servers_group", "vip_interface", "marks")
# An fwmark service's marks: the packets (VIP, protocol, ports) the director
# marks with its fwmark (haecs.lvs.fwmark's rules).
MARK_FIELDS = ("address", "protocol", "ports")
# A service with checks belongs to the monitor (one owner per service): these
# go to the monitor's configuration, as its service keys.
MONITOR_FIELDS = ("checks", "check_defaults", "on_failure", "slow_start", "quorum", "sorry_servers")
# Real-server options a service gives all its servers (a host may override them).
SERVER_DEFAULTS = (
    *(name for name in REAL_SERVER_FIELDS if name not in ("address", "port")),
    "real_server_port",
)
OVERRIDE_FIELDS = tuple(name for name in REAL_SERVER_FIELDS if name != "address")


class ModelError(HaecsError):
    """The inventory model is wrong; the message starts with the variable's path.
    (A bad value is the engine's ValidationError, with the same kind of path.)"""


def _fail(path: str, rule: str) -> ModelError:
    return ModelError("%s: %s" % (path, rule))


def _services(value: Any) -> List[Mapping[str, Any]]:
    if not isinstance(value, list):
        raise _fail(SERVICES_VAR, "must be a list of services, got %s" % type(value).__name__)
    for index, entry in enumerate(value):
        if not isinstance(entry, Mapping):
            raise _fail("%s[%d]" % (SERVICES_VAR, index), "must be a mapping")
    return value


def _check_entry(entry: Mapping[str, Any], path: str) -> None:
    known = MODEL_FIELDS + MONITOR_FIELDS + SERVICE_FIELDS + SERVER_DEFAULTS
    for option in entry:
        if option not in known:
            raise _fail(
                "%s.%s" % (path, option),
                "unknown option; a service takes %s" % ", ".join(sorted(known)),
            )
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise _fail("%s.name" % path, "required: a short name for messages and overrides")
    group = entry.get("real_servers_group")
    if not isinstance(group, str) or not group:
        raise _fail(
            "%s.real_servers_group" % path, "required: the inventory group of its real servers"
        )
    _marks(entry, path)


def _options(value: Any, path: str, allowed: Sequence[str], what: str) -> None:
    """VALUE is a mapping of ALLOWED options only (WHAT names it in messages)."""
    if not isinstance(value, Mapping):
        raise _fail(path, "must be a mapping; %s takes %s" % (what, ", ".join(allowed)))
    for option in value:
        if option not in allowed:
            raise _fail(
                "%s.%s" % (path, option),
                "unknown option; %s takes %s" % (what, ", ".join(allowed)),
            )


def _marks(entry: Mapping[str, Any], path: str) -> List[Dict[str, Any]]:
    """An fwmark service's `marks` as haecs.lvs.fwmark rules (each checked by
    the module's own parser), [] for a service without marks."""
    marks = entry.get("marks")
    if marks is None:
        return []
    where = "%s.marks" % path
    if entry.get("fwmark") is None:
        raise _fail(where, "only for a service keyed by fwmark (the mark its rules set)")
    if not isinstance(marks, list) or not marks:
        raise _fail(where, "must be a non-empty list of {address, protocol, ports}")
    family = entry.get("family") or "ipv4"
    rules: List[Dict[str, Any]] = []
    for index, mark in enumerate(marks):
        here = "%s[%d]" % (where, index)
        _options(mark, here, MARK_FIELDS, "a mark")
        try:
            host = ipaddress.ip_address(str(mark.get("address")))
        except ValueError:
            raise _fail(
                here + ".address",
                "required: the VIP, an IPv4 or IPv6 address, got %r" % (mark.get("address"),),
            ) from None
        if "ipv%d" % host.version != family:
            raise _fail(
                here + ".address",
                "%s is IPv%d but the service's family is %s" % (host, host.version, family),
            )
        rule = {"mark": entry["fwmark"], "destination": host.compressed, "ports": mark.get("ports")}
        if mark.get("protocol") is not None:
            rule["protocol"] = mark["protocol"]
        for number, other in enumerate(rules):
            if other["destination"] == rule["destination"] and other.get(
                "protocol", "tcp"
            ) == rule.get("protocol", "tcp"):
                raise _fail(
                    here,
                    "the same address and protocol as %s[%d]: list their ports in one mark"
                    % (where, number),
                )
        try:
            parse_desired([rule])
        except ValidationError as error:
            field = error.field.replace("rules[0].destination", here + ".address")
            raise ValidationError(field.replace("rules[0]", here), error.rule) from None
        rules.append(rule)
    return rules


def _vip_addresses(entry: Mapping[str, Any], path: str) -> List[str]:
    """The VIPs of a service: its address, or the addresses its marks match."""
    marks = _marks(entry, path)
    if entry.get("address") is not None:
        return [str(entry["address"])]
    return sorted({rule["destination"] for rule in marks})


def director_marks(services: Any) -> List[Dict[str, Any]]:
    """Every fwmark service's marks, as the `rules` of haecs.lvs.fwmark,
    checked together: two services may not mark the same packets."""
    rules: List[Dict[str, Any]] = []
    origins: List[str] = []
    for index, entry in enumerate(_services(services)):
        path = "%s[%d]" % (SERVICES_VAR, index)
        _check_entry(entry, path)
        for number, rule in enumerate(_marks(entry, path)):
            rules.append(rule)
            origins.append("%s.marks[%d]" % (path, number))
    try:
        parse_desired(rules)
    except ValidationError as error:
        message = error.rule
        for number in sorted(range(len(origins)), reverse=True):  # rules[10] before rules[1]
            message = message.replace("rules[%d]" % number, origins[number])
        head = error.field.split(".", 1)[0]
        where = (
            origins[int(head[len("rules[") : -1])] if head.startswith("rules[") else SERVICES_VAR
        )
        raise _fail(where, message) from None
    return rules


def _host_address(host: str, hostvars: Mapping[str, Any], family: str, service: str) -> str:
    """The real server's address of the service's family: from
    haecs_real_server_address (an address, or a list of one address per
    family for a host in IPv4 and IPv6 services), else ansible_host when it
    is an address of that family."""
    variables = hostvars.get(host, {})
    path = "hostvars[%s].%s" % (host, ADDRESS_VAR)
    value = variables.get(ADDRESS_VAR)
    if value is not None:
        addresses = value if isinstance(value, list) else [value]
        by_family: Dict[str, str] = {}
        for item in addresses:
            try:
                its_family = parse_address(str(item))[1]
            except ValueError:
                raise _fail(
                    path,
                    "must be an IPv4 or IPv6 address, or a list of one address per family, got %r"
                    % (value,),
                ) from None
            if its_family in by_family:
                raise _fail(
                    path,
                    "at most one address per family, got %s and %s" % (by_family[its_family], item),
                )
            by_family[its_family] = str(item)
        if family not in by_family:
            raise _fail(
                path,
                "has no %s address for %s (a service of that family), got %r"
                % (family.replace("ipv", "IPv"), service, value),
            )
        return by_family[family]
    fallback = variables.get("ansible_host")
    if fallback is not None:
        try:
            its_family = parse_address(str(fallback))[1]
        except ValueError:
            its_family = ""
        if its_family == family:
            return str(fallback)
    raise _fail(
        path,
        "required: the real server's %s address for %s (ansible_host is not one)"
        % (family.replace("ipv", "IPv"), service),
    )


def _overrides(host: str, name: str, hostvars: Mapping[str, Any]) -> Tuple[Dict[str, Any], str]:
    path = "hostvars[%s].%s" % (host, OVERRIDES_VAR)
    value = hostvars.get(host, {}).get(OVERRIDES_VAR) or {}
    if not isinstance(value, Mapping):
        raise _fail(path, "must be a mapping of service name to options")
    mine = value.get(name) or {}
    path = "%s.%s" % (path, name)
    _options(mine, path, OVERRIDE_FIELDS, "an override")
    return dict(mine), path


def _members(group: str, groups: Mapping[str, Sequence[str]], path: str) -> List[str]:
    if group not in groups:
        raise _fail(path, "no inventory group %r" % group)
    return sorted(groups[group])


def monitored(entry: Mapping[str, Any]) -> bool:
    """A service with checks: the monitor programs it, never ipvs_table."""
    return entry.get("checks") is not None


def cluster_table(
    services: Any, groups: Mapping[str, Sequence[str]], hostvars: Mapping[str, Any]
) -> List[Dict[str, Any]]:
    """The `services` of ipvs_table for the model's static (unmonitored)
    services, in the model's order.  Every service is checked."""
    every = _every_service(services, groups, hostvars)
    return [table for entry, table in zip(_services(services), every) if not monitored(entry)]


def monitored_keys(services: Any) -> List[Dict[str, Any]]:
    """The key options of the monitored services (what ipvs_table keeps)."""
    return _keys(services, want_monitored=True)


def static_keys(services: Any) -> List[Dict[str, Any]]:
    """The key options of the static services (what the monitor hands over
    when one of its services becomes static)."""
    return _keys(services, want_monitored=False)


def _keys(services: Any, want_monitored: bool) -> List[Dict[str, Any]]:
    keys = []
    for index, entry in enumerate(_services(services)):
        if monitored(entry) != want_monitored:
            continue
        path = "%s[%d]" % (SERVICES_VAR, index)
        _check_entry(entry, path)
        key = check_service(
            {name: entry[name] for name in SERVICE_FIELDS if entry.get(name) is not None}, path
        )
        keys.append(key_params(key))
    return keys


def monitor_services(
    services: Any, groups: Mapping[str, Sequence[str]], hostvars: Mapping[str, Any]
) -> Tuple[List[Dict[str, Any]], List[Tuple[int, List[str]]]]:
    """The monitor's `services` for the model's monitored services, and for
    each its index in haecs_services and its real servers' host names (to
    name the variable behind an error the monitor's validation finds)."""
    every = _every_service(services, groups, hostvars)
    result: List[Dict[str, Any]] = []
    sources: List[Tuple[int, List[str]]] = []
    for index, (entry, service) in enumerate(zip(_services(services), every)):
        if not monitored(entry):
            continue
        config = dict(service)
        config.update((name, entry[name]) for name in MONITOR_FIELDS if entry.get(name) is not None)
        result.append(config)
        sources.append((index, _members(entry["real_servers_group"], groups, "")))
    return result, sources


def _every_service(
    services: Any, groups: Mapping[str, Sequence[str]], hostvars: Mapping[str, Any]
) -> List[Dict[str, Any]]:
    table: List[Dict[str, Any]] = []
    names: Dict[str, int] = {}
    for index, entry in enumerate(_services(services)):
        path = "%s[%d]" % (SERVICES_VAR, index)
        _check_entry(entry, path)
        if entry["name"] in names:
            raise _fail(
                "%s.name" % path, "duplicates %s[%d].name" % (SERVICES_VAR, names[entry["name"]])
            )
        names[entry["name"]] = index
        service = {name: entry[name] for name in SERVICE_FIELDS if entry.get(name) is not None}
        key = check_service(service, path)
        servers = []
        for host in _members(entry["real_servers_group"], groups, "%s.real_servers_group" % path):
            address = _host_address(host, hostvars, key.family, path)
            server: Dict[str, Any] = {"address": address}
            port = entry.get("real_server_port")
            if port is not None:
                server["port"] = port
            elif not key.is_fwmark:
                server["port"] = key.port
            for option in SERVER_DEFAULTS:
                if option != "real_server_port" and entry.get(option) is not None:
                    server[option] = entry[option]
            overrides, override_path = _overrides(host, entry["name"], hostvars)
            server.update(overrides)
            try:
                check_real_server(server, key, "%s (real server %s)" % (path, host))
                _check_port_is_used(server, key, entry, "%s (real server %s)" % (path, host))
            except ValidationError as error:
                raise _blame(error, entry, path, overrides, override_path, host) from None
            servers.append(server)
        service["real_servers"] = servers
        table.append(service)
    parse_table(table, SERVICES_VAR)  # duplicates, cross-field rules
    return table


def _check_port_is_used(
    server: Mapping[str, Any], key: ServiceKey, entry: Mapping[str, Any], prefix: str
) -> None:
    """A persistent service without a port of its own (fwmark, or port 0)
    sends each connection to the port the client asked for: IPVS ignores a
    real server's port there, and the monitor would check a port that no
    traffic reaches."""
    if server.get("port") and (key.is_fwmark or not key.port) and entry.get("persistence_timeout"):
        raise ValidationError(
            "%s.port" % prefix,
            "is ignored by IPVS in a persistent %s: each connection goes to the port the client asked "
            "for; leave the real servers' port out (each check names its own port), or drop "
            "persistence_timeout" % ("fwmark service" if key.is_fwmark else "service of port 0"),
        )


def _blame(
    error: ValidationError,
    entry: Mapping[str, Any],
    path: str,
    overrides: Mapping[str, Any],
    override_path: str,
    host: str,
) -> ValidationError:
    """The error with the path of the variable the bad value came from."""
    option = error.field.rsplit(".", 1)[-1]
    if option in overrides:
        field = "%s.%s" % (override_path, option)
    elif option == "port" and "real_server_port" in entry:
        field = "%s.real_server_port" % path
    elif option == "address":
        field = "hostvars[%s].%s" % (host, ADDRESS_VAR)
    elif option in entry:
        field = "%s.%s" % (path, option)
    else:
        return error
    return ValidationError(field, error.rule)


def director_vips(services: Any, interface: Optional[str]) -> List[Dict[str, Any]]:
    """The VIPs the director holds: one entry per address, on the service's
    `vip_interface` or INTERFACE."""
    vips: Dict[str, Dict[str, Any]] = {}
    for index, entry in enumerate(_services(services)):
        for address in _vip_addresses(entry, "%s[%d]" % (SERVICES_VAR, index)):
            where = entry.get("vip_interface") or interface
            if not where:
                raise _fail(
                    "%s[%d].vip_interface" % (SERVICES_VAR, index),
                    "required when director_vip_interface is not set",
                )
            previous = vips.setdefault(address, {"address": address, "interface": where})
            if previous["interface"] != where:
                raise _fail(
                    "%s[%d].vip_interface" % (SERVICES_VAR, index),
                    "%s is on %s for an earlier service" % (address, previous["interface"]),
                )
    return [vips[address] for address in sorted(vips)]


def real_server_vips(
    services: Any, host: str, groups: Mapping[str, Sequence[str]], hostvars: Mapping[str, Any]
) -> List[Dict[str, Any]]:
    """The VIPs HOST holds as a direct-routing or tunnel real server (so it
    accepts the packets the director forwards unchanged), with the forwarding."""
    vips: Dict[str, str] = {}
    for index, entry in enumerate(_services(services)):
        path = "%s[%d]" % (SERVICES_VAR, index)
        _check_entry(entry, path)
        if host not in _members(
            entry["real_servers_group"], groups, "%s.real_servers_group" % path
        ):
            continue
        overrides, _path = _overrides(host, entry["name"], hostvars)
        forwarding = overrides.get("forwarding", entry.get("forwarding", "route"))
        if forwarding in ("route", "tunnel"):
            for address in _vip_addresses(entry, path):
                vips.setdefault(address, forwarding)
    return [{"address": address, "forwarding": vips[address]} for address in sorted(vips)]


def ipvsadm_rules(table: Sequence[Mapping[str, Any]]) -> str:
    """The table as an `ipvsadm-restore` rules file (what `ipvsadm -Sn`
    prints, with `-x`/`-y` thresholds), for the director's boot."""
    parsed, _listed = parse_table(table, SERVICES_VAR)
    lines = []
    for key in sorted(parsed, key=service_order):
        entry = parsed[key]
        lines.append(entry.service.ipvsadm_line())
        for server_key in sorted(entry.real_servers):
            lines.append(entry.real_servers[server_key].ipvsadm_line(key))
    return "".join(line + "\n" for line in lines)


HA_EXTRA_VAR = "ha_extra_vips"
MAX_INTERFACE = 15  # IFNAMSIZ - 1


def ha_instances(
    services: Any, interface: Optional[str], extra: Any, first_router_id: Any
) -> List[Dict[str, Any]]:
    """The VRRP instances of a director pair: one per interface and address
    family that hold VIPs (the services' VIPs as director_vips finds them,
    then `extra` addresses such as a NAT gateway), with consecutive
    virtual_router_ids from `first_router_id`: the IPv4 instances in
    interface order, then the IPv6 ones (so adding IPv6 VIPs keeps the IPv4
    instances' ids).  VRRP carries one family per instance (RFC 5798;
    keepalived ignores a VIP of the other family), so an IPv6 instance is
    VRRP version 3 of its own, in the same sync group."""
    by_interface: Dict[Tuple[int, str], List[str]] = {}
    for vip in director_vips(services, interface):
        host = ipaddress.ip_address(vip["address"])
        by_interface.setdefault((host.version, vip["interface"]), []).append(
            "%s/%d" % (host.compressed, host.max_prefixlen)
        )
    if not isinstance(extra, list):
        raise _fail(
            HA_EXTRA_VAR, "must be a list of {address, interface}, got %s" % type(extra).__name__
        )
    seen = {address.split("/")[0] for addresses in by_interface.values() for address in addresses}
    for index, entry in enumerate(extra):
        path = "%s[%d]" % (HA_EXTRA_VAR, index)
        if not isinstance(entry, Mapping) or set(entry) != {"address", "interface"}:
            raise _fail(path, "must be a mapping with address and interface, got %r" % (entry,))
        try:
            network = ipaddress.ip_interface(str(entry["address"]))
        except ValueError:
            raise _fail(
                path + ".address",
                "must be an address with a prefix length, got %r" % (entry["address"],),
            ) from None
        where = entry["interface"]
        if not isinstance(where, str) or not 0 < len(where) <= MAX_INTERFACE or "/" in where:
            raise _fail(path + ".interface", "must be an interface name, got %r" % (where,))
        if str(network.ip) in seen:
            raise _fail(path + ".address", "%s is already a VIP" % network.ip)
        seen.add(str(network.ip))
        by_interface.setdefault((network.version, where), []).append(network.with_prefixlen)
    if not by_interface:
        raise _fail(SERVICES_VAR, "declares no VIP for the pair to carry")
    if isinstance(first_router_id, str) and first_router_id.strip().isdigit():
        first_router_id = int(first_router_id)
    if isinstance(first_router_id, bool) or not isinstance(first_router_id, int):
        raise _fail("ha_router_id", "must be an integer, got %r" % (first_router_id,))
    last = first_router_id + len(by_interface) - 1
    if first_router_id < 1 or last > 255:
        raise _fail(
            "ha_router_id",
            "must be from 1 to %d (%d instances, one per interface and address family, take consecutive ids up to 255), got %d"
            % (256 - len(by_interface), len(by_interface), first_router_id),
        )
    return [
        {
            "name": "haecs_%s%s"
            % (name.replace("-", "_").replace(".", "_"), "_v6" if version == 6 else ""),
            "interface": name,
            "family": "inet6" if version == 6 else "inet",
            "router_id": first_router_id + index,
            "vips": by_interface[version, name],
        }
        for index, (version, name) in enumerate(sorted(by_interface))
    ]
