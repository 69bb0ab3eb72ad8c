# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drain before removal: a real server that a change deletes first gets weight 0,
then the change waits until its established connections have finished (or a
timeout passes) before the delete.

Only active connections (ipvsadm's ActiveConn: TCP ESTABLISHED) are waited
for.  Inactive entries are connections already closing (FIN_WAIT, TIME_WAIT:
minutes of kernel timeouts, no client waiting on them) and every UDP entry,
where there is no end of a connection to wait for.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .model import RealServer, Service, ServiceKey, Table, format_endpoint
from .plan import DELETE_REAL_SERVER, DELETE_SERVICE, SET_REAL_SERVER, Operation

Member = Tuple[ServiceKey, Tuple[str, int]]

# Seconds between two reads of the counters while waiting.
POLL_INTERVAL = 1.0


def leaving(operations: Sequence[Operation]) -> Iterator[Tuple[Service, RealServer]]:
    """Every real server the operations delete, its service's included."""
    for op in operations:
        if op.kind == DELETE_REAL_SERVER and op.real_server is not None:
            yield op.service, op.real_server
        elif op.kind == DELETE_SERVICE:
            for server in op.removed_real_servers:
                yield op.service, server


def quiesce(operations: Sequence[Operation], table: Table) -> List[Operation]:
    """Weight 0 for each leaving real server that still takes new connections
    (every one, whatever its counters said when read: a new connection can
    come at any moment until the weight is 0)."""
    result = []
    for service, server in leaving(operations):
        current = _find(table, (service.key, server.key)) or server
        if current.weight == 0:
            continue
        quiet = current.replace(weight=0)
        result.append(Operation(SET_REAL_SERVER, service, quiet, previous_real_server=current))
    return result


def active_connections(table: Table, members: Sequence[Member]) -> Dict[Member, int]:
    """Established connections of each member still in the table."""
    counts = {}
    for member in members:
        server = _find(table, member)
        if server is not None:
            counts[member] = server.active_connections
    return counts


@dataclass
class Drained:
    """What waiting found: per real server, the connections left when it ended."""

    left: Dict[Member, int]
    waited: float
    # The weight-0 edits made first, as ipvsadm command lines.
    quiesced: List[str] = dataclasses.field(default_factory=list)

    def report(self) -> List[Dict[str, object]]:
        return [
            {
                "service": str(service),
                "real_server": format_endpoint(*server),
                "connections_left": count,
            }
            for (service, server), count in sorted(self.left.items(), key=lambda item: str(item[0]))
        ]


def wait_drained(
    read: Callable[[], Table],
    members: Sequence[Member],
    timeout: float,
    clock: Optional[Callable[[], float]] = None,
    sleep: Optional[Callable[[float], None]] = None,
) -> Drained:
    """Read the counters until every member has no established connection,
    or `timeout` seconds have passed; then return what is left."""
    clock = clock or time.monotonic
    sleep = sleep or time.sleep
    started = clock()
    while True:
        left = active_connections(read(), members)
        busy = {member: count for member, count in left.items() if count > 0}
        elapsed = clock() - started
        if not busy or elapsed >= timeout:
            return Drained(left, round(elapsed, 1))
        sleep(min(POLL_INTERVAL, max(timeout - elapsed, 0.0)))


def _find(table: Table, member: Member) -> Optional[RealServer]:
    service, server = member
    entry = table.get(service)
    return entry.real_servers.get(server) if entry is not None else None
