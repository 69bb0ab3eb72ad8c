"""Real servers leaving the configuration are drained, then removed.

When a reload drops a real server (its host left the pool) or a whole
service, what the monitor had put in the kernel is not deleted at once: it
gets weight 0 (no new connection) and stays until its established
connections have finished (ActiveConn 0) or `drain_timeout` has passed;
then it goes.  The same rule as `haecs.lvs.ipvs_table`'s `drain_timeout`,
with the counters from the shared engine (`ipvs.drain`).

Pure bookkeeping: the daemon reads the kernel and applies.  The leaving
servers are kept in the state file too (`saved`), with their deadline as
wall-clock time: a monitor restarted meanwhile goes on draining them
(`restore`) instead of deleting them at its first reconcile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.drain import active_connections
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    RealServer,
    Service,
    ServiceKey,
    Table,
    VirtualService,
)
from haecs_monitor.config.model import ServiceConfig
from haecs_monitor.core import ids
from haecs_monitor.core.health import ServerRef
from haecs_monitor.runtime.statefile import SavedLeaver

# Seconds between two reads of the counters while something is leaving.
POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Leaver:
    service: Service  # as in the kernel (a service that left is kept as it was)
    server: RealServer  # as the monitor left it in the kernel
    deadline: float


class Leaving:
    def __init__(self) -> None:
        self.servers: dict[ServerRef, Leaver] = {}

    def __bool__(self) -> bool:
        return bool(self.servers)

    def forget(self, service: ServiceKey) -> None:
        """Stop draining the service's servers: another owner has it now."""
        for ref in [ref for ref in self.servers if ref.service == service]:
            del self.servers[ref]

    def start(
        self,
        known: Optional[Table],
        old: Mapping[ServiceKey, ServiceConfig],
        new: Mapping[ServiceKey, ServiceConfig],
        timeout: float,
        now: float,
    ) -> list[ServerRef]:
        """After a reload: the configured servers the kernel holds (as we left
        it) that the new configuration drops start leaving; servers back in
        the configuration stop.  Returns the new leavers."""
        for ref in list(self.servers):
            service = new.get(ref.service)
            if service is not None and any(rs.key == ref.key for rs in service.real_servers):
                del self.servers[ref]
        if timeout <= 0 or known is None:
            return []
        started = []
        for key, before in old.items():
            entry = known.get(key)
            if entry is None or new.get(key) is before:  # unchanged: none of it leaves
                continue
            staying = {rs.key for rs in new[key].real_servers} if key in new else set()
            for real_server in before.real_servers:
                server = entry.real_servers.get(real_server.key)
                ref = ServerRef(key, *real_server.key)
                if server is None or real_server.key in staying or ref in self.servers:
                    continue
                self.servers[ref] = Leaver(entry.service, server, now + timeout)
                started.append(ref)
        return started

    def restore(
        self,
        saved: list[SavedLeaver],
        kernel: Table,
        configured: Mapping[ServiceKey, ServiceConfig],
        now: float,
        wall: float,
    ) -> list[ServerRef]:
        """At start: the leavers of the previous run that the kernel still
        holds and the configuration still drops go on leaving, with the
        deadline they had (none later than `now` if it has passed)."""
        restored = []
        for item in saved:
            key = ids.parse_service_id(item.service)
            endpoint = ids.parse_server_id(item.server)
            if key is None or endpoint is None:
                continue
            entry = kernel.get(key)
            if entry is None or endpoint not in entry.real_servers:
                continue
            service = configured.get(key)
            if service is not None and any(rs.key == endpoint for rs in service.real_servers):
                continue
            ref = ServerRef(key, *endpoint)
            deadline = now + max(0.0, item.until - wall)
            self.servers[ref] = Leaver(entry.service, entry.real_servers[endpoint], deadline)
            restored.append(ref)
        return restored

    def saved(self, now: float, wall: float) -> list[SavedLeaver]:
        """The leavers as the state file keeps them (deadlines in wall-clock time)."""
        return [
            SavedLeaver(
                ids.service_id(ref.service), ids.server_id(*ref.key), wall + leaver.deadline - now
            )
            for ref, leaver in self.servers.items()
        ]

    def services(self) -> set[ServiceKey]:
        """Services that still have a leaving server."""
        return {ref.service for ref in self.servers}

    def add_to(self, table: Table) -> None:
        """Put the leaving servers into the desired table, at weight 0."""
        for ref, leaver in self.servers.items():
            entry = table.get(ref.service)
            if entry is None:
                entry = table[ref.service] = VirtualService(leaver.service)
            entry.real_servers.setdefault(ref.key, leaver.server.replace(weight=0))

    def finished(self, kernel: Table, now: float) -> list[tuple[ServerRef, str]]:
        """The leavers to remove now, each with why: drained (weight 0 in the
        kernel and no established connection), timed out, or already gone."""
        members = [(ref.service, ref.key) for ref in self.servers]
        counts = active_connections(kernel, members)
        done = []
        for ref, leaver in list(self.servers.items()):
            entry = kernel.get(ref.service)
            found = entry.real_servers.get(ref.key) if entry is not None else None
            if found is None:
                reason = "no longer in the kernel"
            elif found.weight == 0 and counts[(ref.service, ref.key)] == 0:
                reason = "drained: no established connection left"
            elif now >= leaver.deadline:
                reason = (
                    "drain_timeout reached with %d established connection(s)"
                    % counts[(ref.service, ref.key)]
                )
            else:
                continue
            del self.servers[ref]
            done.append((ref, reason))
        return done
