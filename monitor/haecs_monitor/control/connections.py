"""One real server as the kernel holds it now: weight and connections.

``GET /servers/{service}/{server}`` answers from a read of the kernel's IPVS
table at request time, limited to the services named (``IPVS().read(only=
keys)``: one service dump and one destination dump per service), never from
what the monitor last applied.  ``haecsctl drain --wait`` polls it; so does
the module haecs.lvs.monitor_server (and drain.yml through it).

The counters are the kernel's own, per destination (one real server of one
service), in the same netlink answer as the weight:

- ``active_connections`` (ipvsadm's ActiveConn): TCP and SCTP connections in
  ESTABLISHED.  The kernel starts every connection inactive
  (``__ip_vs_update_dest`` sets ``IP_VS_CONN_F_INACTIVE`` in the
  destination's connection flags); only TCP/SCTP ESTABLISHED makes it active.
- ``inactive_connections`` (InActConn): every other TCP state (SYN_RECV,
  FIN_WAIT, TIME_WAIT, CLOSE...), which waits for its timer, and every UDP
  connection (UDP has no state that makes it active).
- ``persistence_templates`` (``IPVS_DEST_ATTR_PERSIST_CONNS``, ipvsadm's
  PersistConn): the persistence templates that pin clients to this server
  (``ip_vs_bind_dest`` counts an entry flagged ``IP_VS_CONN_F_TEMPLATE``
  there and in neither of the other two).  ``/proc/net/ip_vs_conn`` lists
  the same entries with client port 0 and the state ``NONE`` (no connection
  through it established yet) or ``ASSURED``; the netlink counter needs no
  walk of the whole connection table and cannot mistake another service's
  template for this one's.  While a template lives, its client's new
  connections still go to the server, weight 0 or not.

``drained``: the weight is 0 (or the server is not in the kernel's table)
and no connection is active: the rule of the engine's drain
(``ipvs.drain``, ``ipvs_table``'s ``drain_timeout``, servers leaving the
monitor's config).  ``idle``: drained and no inactive connection either
(kube-proxy's rule for graceful termination).  A server the kernel does not
hold (disabled, down and removed, or its service not created yet) takes no
new connection and its counters are gone with it: ``null``, drained and idle.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Callable, Optional

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    RealServer,
    ServiceKey,
    Table,
)
from haecs_monitor.config.model import MonitorConfig, ServiceConfig
from haecs_monitor.core import ids
from haecs_monitor.core.desired import ENABLED
from haecs_monitor.errors import HaecsError

KernelRead = Callable[[Collection[ServiceKey]], Table]
COUNTERS = ("active_connections", "inactive_connections", "persistence_templates")


class KernelUnreadable(HaecsError):
    """The kernel's IPVS table cannot be read (API: 503)."""


def read_kernel(keys: Collection[ServiceKey]) -> Table:
    """The kernel's table of `keys` now, through a netlink socket of its own
    (the daemon's engine belongs to its worker thread).  Blocking."""
    from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.engine import IPVS, IPVSError

    try:
        with IPVS(load_module=_never_load) as ipvs:
            return ipvs.read(only=keys)
    except (IPVSError, OSError) as error:
        raise KernelUnreadable("cannot read the IPVS table: %s" % error) from None


def _never_load(module: str) -> None:
    """A read loads no module: the running monitor has IPVS already."""
    from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.kmod import KernelModuleError

    raise KernelModuleError("%s is not loaded" % module)


def resolve(config: MonitorConfig, service: str, server: str) -> tuple[list[ServiceConfig], str]:
    """The configured services SERVICE names ('*': every one that has
    SERVER) and SERVER's id; NotFound or Ambiguous naming the argument."""
    by_id = {ids.service_id(s.key): s for s in config.services}
    pools = {
        service_id: {ids.server_id(*rs.key) for rs in s.real_servers}
        for service_id, s in by_id.items()
    }
    targets, server_id = ids.resolve(service, server, pools)
    return [by_id[service_id] for service_id in targets], server_id


def server_entry(
    service: ServiceConfig, server_id: str, admin: str, table: Table
) -> dict[str, Any]:
    """The server in one service: admin state, kernel weight and counters."""
    configured = next(rs for rs in service.real_servers if ids.server_id(*rs.key) == server_id)
    in_kernel = table.get(service.key)
    found = in_kernel.real_servers.get(configured.key) if in_kernel is not None else None
    persistent = (in_kernel.service if in_kernel is not None else service.service).persistent
    entry: dict[str, Any] = {
        "service": ids.service_id(service.key),
        "admin": admin,
        "in_kernel": found is not None,
        "weight": found.weight if found is not None else None,
        "configured_weight": configured.server.weight,
        "persistent": persistent,
        **_counters(found),
    }
    entry["drained"] = is_drained(found)
    entry["idle"] = is_idle(found)
    return entry


def _counters(found: Optional[RealServer]) -> dict[str, Optional[int]]:
    if found is None:
        return dict.fromkeys(COUNTERS)
    return {
        "active_connections": found.active_connections,
        "inactive_connections": found.inactive_connections,
        "persistence_templates": found.persistent_connections,
    }


def is_drained(found: Optional[RealServer]) -> bool:
    """No new connection (weight 0 or absent) and none established."""
    return found is None or (found.weight == 0 and found.active_connections == 0)


def is_idle(found: Optional[RealServer]) -> bool:
    """Drained, and not one connection entry left, not even a closing one."""
    return is_drained(found) and (found is None or found.inactive_connections == 0)


def server_report(
    config: MonitorConfig,
    admin: Mapping[tuple[str, str], str],
    service: str,
    server: str,
    read: KernelRead,
) -> dict[str, Any]:
    """The answer of GET /servers/{service}/{server}: per service the server
    belongs to, and summed (what `haecsctl drain --wait` shows)."""
    services, server_id = resolve(config, service, server)
    table = read([s.key for s in services])
    entries = [
        server_entry(s, server_id, admin.get((ids.service_id(s.key), server_id), ENABLED), table)
        for s in services
    ]
    return {"server": server_id, **summary(entries), "services": entries}


def summary(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counters summed over the entries the kernel holds; drained and idle
    when every entry is."""
    totals: dict[str, Any] = {
        name: sum(entry[name] for entry in entries if entry[name] is not None) for name in COUNTERS
    }
    totals["drained"] = all(entry["drained"] for entry in entries)
    totals["idle"] = all(entry["idle"] for entry in entries)
    return totals
