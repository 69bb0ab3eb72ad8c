# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A whole IPVS table as data: a list of services with their real servers.

`parse_table` checks every entry before anything is sent to the kernel and
names the failing one by its path (``services[2].real_servers[0].weight``);
`table_params` turns a table back into the same shape, so what
`ipvs_table state=gathered` returns can be fed to it again.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from .ipvs.model import (
    IPV4,
    RealServer,
    ServiceKey,
    Table,
    VirtualService,
    prefix_to_netmask,
    service_order,
)
from .ipvs.params import (
    REAL_SERVER_FIELDS,
    SERVICE_FIELDS,
    ValidationError,
    check_real_server,
    check_service,
    check_unknown,
    parse_real_server,
    parse_service,
    parse_service_key,
)

TABLE_SERVICE_FIELDS = (*SERVICE_FIELDS, "real_servers")


def _present(params: Mapping[str, Any]) -> Dict[str, Any]:
    """Options that were given (Ansible fills absent suboptions with None)."""
    return {name: value for name, value in params.items() if value is not None}


def _declared_services(
    services: Sequence[Mapping[str, Any]], prefix: str
) -> Iterator[Tuple[int, str, Dict[str, Any], Any]]:
    """Each declared service as (index, path, its options, its real_servers
    or None), after the shape and unknown-option checks."""
    for index, raw in enumerate(services):
        path = "%s[%d]" % (prefix, index)
        if not isinstance(raw, Mapping):
            raise ValidationError(path, "must be a dictionary describing a virtual service")
        params = _present(raw)
        check_unknown(params, TABLE_SERVICE_FIELDS, path)
        yield index, path, params, params.pop("real_servers", None)


def _declared_servers(servers: Any, path: str) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """Each declared real server of the service at `path` as (path, options),
    after the shape and unknown-option checks."""
    if servers is not None and not isinstance(servers, list):
        raise ValidationError(path + ".real_servers", "must be a list")
    for server_index, server_raw in enumerate(servers or []):
        server_path = "%s.real_servers[%d]" % (path, server_index)
        if not isinstance(server_raw, Mapping):
            raise ValidationError(server_path, "must be a dictionary describing a real server")
        server_params = _present(server_raw)
        check_unknown(server_params, REAL_SERVER_FIELDS, server_path)
        yield server_path, server_params


def check_table(
    services: Sequence[Mapping[str, Any]], prefix: str = "services"
) -> List[ServiceKey]:
    """The checks of `parse_table` that need no current table (run before it
    is read): shapes, unknown options, each value, duplicate services.
    Returns the service keys.
    """
    keys: List[ServiceKey] = []
    seen: Dict[ServiceKey, int] = {}
    for index, path, params, servers in _declared_services(services, prefix):
        key = check_service(params, path)
        if key in seen:
            raise ValidationError(path, "duplicates %s[%d] (%s)" % (prefix, seen[key], key))
        seen[key] = index
        keys.append(key)
        for server_path, server_params in _declared_servers(servers, path):
            check_real_server(server_params, key, server_path)
    return keys


def parse_table(
    services: Sequence[Mapping[str, Any]],
    prefix: str = "services",
    current: Optional[Mapping[ServiceKey, VirtualService]] = None,
) -> Tuple[Table, List[bool]]:
    """The declared table, and for each service whether it listed real servers.

    `current`: the table as it is now (state merged).  An omitted option of
    an entry that exists keeps its current value; defaults apply to new
    entries only.  Without `current` every entry is exactly as declared
    (defaults for everything omitted: states replaced and overridden).
    Raises ValidationError for the first bad entry, duplicates included.
    """
    table: Table = {}
    listed: List[bool] = []
    seen: Dict[ServiceKey, int] = {}
    for index, path, params, servers in _declared_services(services, prefix):
        have = None
        if current is not None:
            have = current.get(parse_service_key(params, path))
        service = parse_service(params, path, have.service if have is not None else None)
        if service.key in seen:
            raise ValidationError(
                path, "duplicates %s[%d] (%s)" % (prefix, seen[service.key], service.key)
            )
        seen[service.key] = index
        entry = VirtualService(service)
        listed.append(servers is not None)
        for server_path, server_params in _declared_servers(servers, path):
            server = parse_real_server(
                server_params,
                service.key,
                server_path,
                have.real_servers if have is not None else None,
            )
            if server.key in entry.real_servers:
                raise ValidationError(
                    server_path, "duplicates real server %s:%d of this service" % server.key
                )
            entry.real_servers[server.key] = server
        table[service.key] = entry
    return table, listed


def key_params(key: ServiceKey) -> Dict[str, Any]:
    """A service key as module options."""
    if key.is_fwmark:
        return {"fwmark": key.fwmark, "family": key.family}
    return {"protocol": key.protocol, "address": key.address, "port": key.port}


def service_params(entry: VirtualService) -> Dict[str, Any]:
    """One service as module options (only what differs from the defaults)."""
    service = entry.service
    key = service.key
    result: Dict[str, Any] = key_params(key)
    result["scheduler"] = service.scheduler
    if service.scheduler_flags:
        result["scheduler_flags"] = list(service.scheduler_flags)
    if service.one_packet:
        result["one_packet"] = True
    if service.persistent:
        result["persistence_timeout"] = service.persistence_timeout
        if service.persistence_prefix is not None:
            if key.family == IPV4:
                result["persistence_netmask"] = prefix_to_netmask(service.persistence_prefix)
            else:
                result["persistence_prefix_length"] = service.persistence_prefix
        if service.persistence_engine:
            result["persistence_engine"] = service.persistence_engine
    result["real_servers"] = [
        real_server_params(server) for _k, server in sorted(entry.real_servers.items())
    ]
    return result


def real_server_params(server: RealServer) -> Dict[str, Any]:
    result: Dict[str, Any] = {
        "address": server.address,
        "port": server.port,
        "forwarding": "route" if server.forwarding == "local" else server.forwarding,
        "weight": server.weight,
    }
    if server.upper_threshold:
        result["upper_threshold"] = server.upper_threshold
    if server.lower_threshold:
        result["lower_threshold"] = server.lower_threshold
    if server.forwarding == "tunnel":
        result["tunnel_type"] = server.tunnel_type
        if server.tunnel_type == "gue":
            result["tunnel_port"] = server.tunnel_port
        if server.tunnel_checksum != "none":
            result["tunnel_checksum"] = server.tunnel_checksum
    return result


def table_params(table: Table, keys: Optional[Sequence[ServiceKey]] = None) -> List[Dict[str, Any]]:
    """The table (or the named services) as a `services` list."""
    chosen = sorted(table if keys is None else [k for k in keys if k in table], key=service_order)
    return [service_params(table[key]) for key in chosen]
