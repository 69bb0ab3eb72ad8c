"""Names of services and real servers in the API, the CLI, logs and the state file.

A service is ``tcp:10.0.0.1:80``, ``udp:[2001:db8::1]:53``, ``fwmark:42`` or
``fwmark:42:ipv6``; a real server is ``10.0.2.1:80`` or ``[2001:db8::2]:80``.
Operators may also type a service as ``10.0.0.1:80`` (tcp is implied when
unambiguous) or as ipvsadm prints it (``tcp 10.0.0.1:80``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Optional

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    IPV6,
    ServiceKey,
    format_endpoint,
)
from haecs_monitor.errors import Ambiguous, NotFound


def service_id(key: ServiceKey) -> str:
    if key.is_fwmark:
        return "fwmark:%d" % key.fwmark + (":ipv6" if key.family == IPV6 else "")
    return "%s:%s" % (key.protocol, format_endpoint(key.address, key.port))


def server_id(address: str, port: int) -> str:
    return format_endpoint(address, port)


def _split_endpoint(text: str) -> Optional[tuple[str, int]]:
    text = text.strip()
    if text.startswith("["):
        address, sep, port = text[1:].partition("]:")
    else:
        address, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    try:
        return ipaddress.ip_address(address).compressed, int(port)
    except ValueError:
        return None


def parse_server_id(text: str) -> Optional[tuple[str, int]]:
    """The (address, port) a server id names (as `server_id` writes it), or None."""
    return _split_endpoint(text)


def normalize_server(text: str) -> Optional[str]:
    endpoint = _split_endpoint(text)
    return server_id(*endpoint) if endpoint else None


def match_service(text: str, known: Iterable[str]) -> list[str]:
    """Service ids among `known` that `text` names (one unless ambiguous)."""
    known = list(known)
    text = text.strip()
    if text in known:
        return [text]
    lowered = text.lower().replace(" ", ":", 1)
    if lowered in known:
        return [lowered]
    head, _unused, rest = lowered.partition(":")
    if head in ("tcp", "udp", "sctp"):
        endpoint = _split_endpoint(rest)
        wanted = "%s:%s" % (head, server_id(*endpoint)) if endpoint else ""
        return [wanted] if wanted in known else []
    if head == "fwmark":
        return [item for item in known if item == lowered or item == lowered + ":ipv4"]
    endpoint = _split_endpoint(text)
    if endpoint is None:
        return []
    wanted = server_id(*endpoint)
    return [
        item
        for item in known
        if item.split(":", 1)[1:] == [wanted] and not item.startswith("fwmark")
    ]


def parse_service_id(text: str) -> Optional[ServiceKey]:
    """The key a service id names (as `service_id` writes it), or None."""
    head, _unused, rest = text.partition(":")
    if head == "fwmark":
        mark, _unused, family = rest.partition(":")
        if not mark.isdigit() or family not in ("", "ipv4", "ipv6"):
            return None
        return ServiceKey.for_fwmark(int(mark), family or "ipv4")
    if head not in ("tcp", "udp", "sctp"):
        return None
    endpoint = _split_endpoint(rest)
    if endpoint is None:
        return None
    return ServiceKey.for_address(head, endpoint[0], endpoint[1])


def resolve(service: str, server: str, pools: Mapping[str, Iterable[str]]) -> tuple[list[str], str]:
    """The ids of the services meant by SERVICE ('*' or 'all': every one that
    has SERVER) and SERVER's id, given POOLS (service id -> its server ids);
    NotFound, or Ambiguous when SERVICE names several."""
    server_id = normalize_server(server)
    if server_id is None:
        raise NotFound("%r is not a real server (ADDRESS:PORT or [IPv6]:PORT)" % server)
    if service in ("*", "all"):
        targets = [sid for sid, servers in pools.items() if server_id in servers]
        if not targets:
            raise NotFound("no service has real server %s" % server_id)
        return targets, server_id
    targets = match_service(service, pools)
    if not targets:
        raise NotFound("no service %s" % service)
    if len(targets) > 1:
        raise Ambiguous("%s names several services: %s" % (service, ", ".join(targets)))
    if server_id not in pools[targets[0]]:
        raise NotFound("service %s has no real server %s" % (targets[0], server_id))
    return targets, server_id
