# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plan the change from one IPVS table to another.

`plan` is pure: tables in, ordered operations out.  Order is what keeps
traffic flowing while a table changes: every add comes first (a replaced
pool is never empty), then in-place edits (a changed weight or scheduler is
a SET, never a delete and re-add, so connections and counters survive),
then deletes.
"""

from __future__ import annotations

from .model import (
    RealServer,
    Service,
    ServiceKey,
    Table,
    Value,
    VirtualService,
    format_endpoint,
    service_order,
)

TYPE_CHECKING = False  # typing only for mypy: see the package's docstring
if TYPE_CHECKING:
    from typing import Any, Dict, Final, Iterable, List, Mapping, Optional, Tuple

    from .model import ServiceOrder

ADD_SERVICE = "add_service"
SET_SERVICE = "set_service"
DELETE_SERVICE = "delete_service"
ADD_REAL_SERVER = "add_real_server"
SET_REAL_SERVER = "set_real_server"
DELETE_REAL_SERVER = "delete_real_server"

_PHASE = {
    ADD_SERVICE: 0,
    ADD_REAL_SERVER: 1,
    SET_SERVICE: 2,
    SET_REAL_SERVER: 3,
    DELETE_REAL_SERVER: 4,
    DELETE_SERVICE: 5,
}
_IPVSADM_COMMAND = {
    ADD_SERVICE: "-A",
    SET_SERVICE: "-E",
    DELETE_SERVICE: "-D",
    ADD_REAL_SERVER: "-a",
    SET_REAL_SERVER: "-e",
    DELETE_REAL_SERVER: "-d",
}


class Operation(Value):
    """One netlink command, with what it replaces so it can be undone.

    A deleted service takes its real servers with it: `removed_real_servers`
    keeps them for the undo.
    """

    _fields = (
        "kind",
        "service",
        "real_server",
        "previous_service",
        "previous_real_server",
        "removed_real_servers",
    )
    __slots__ = _fields

    def __init__(
        self,
        kind: str,
        service: Service,
        real_server: Optional[RealServer] = None,
        previous_service: Optional[Service] = None,
        previous_real_server: Optional[RealServer] = None,
        removed_real_servers: Tuple[RealServer, ...] = (),
    ) -> None:
        self.kind: Final = kind
        self.service: Final = service
        self.real_server: Final = real_server
        self.previous_service: Final = previous_service
        self.previous_real_server: Final = previous_real_server
        self.removed_real_servers: Final = removed_real_servers

    def _compared(self) -> Tuple[Any, ...]:
        return (
            self.kind,
            self.service,
            self.real_server,
            self.previous_service,
            self.previous_real_server,
            self.removed_real_servers,
        )

    @property
    def phase(self) -> int:
        return _PHASE[self.kind]

    def ipvsadm_line(self) -> str:
        command = _IPVSADM_COMMAND[self.kind]
        if self.kind == DELETE_SERVICE:
            return "%s %s" % (command, self.service.key.ipvsadm_args())
        if self.real_server is None:
            return self.service.ipvsadm_line(command)
        if self.kind == DELETE_REAL_SERVER:
            endpoint = format_endpoint(self.real_server.address, self.real_server.port)
            return "%s %s -r %s" % (command, self.service.key.ipvsadm_args(), endpoint)
        return self.real_server.ipvsadm_line(self.service.key, command)

    def inverse(self) -> List[Operation]:
        """Operations that undo this one (after it succeeded)."""
        if self.kind == ADD_SERVICE:
            return [Operation(DELETE_SERVICE, self.service)]
        if self.kind == SET_SERVICE:
            if self.previous_service is None:
                raise ValueError("%s needs previous service" % self.kind)
            return [Operation(SET_SERVICE, self.previous_service, previous_service=self.service)]
        if self.kind == DELETE_SERVICE:
            restore = [Operation(ADD_SERVICE, self.service)]
            restore += [
                Operation(ADD_REAL_SERVER, self.service, server)
                for server in self.removed_real_servers
            ]
            return restore
        if self.real_server is None:
            raise ValueError("%s needs real server" % self.kind)
        if self.kind == ADD_REAL_SERVER:
            return [Operation(DELETE_REAL_SERVER, self.service, self.real_server)]
        if self.kind == SET_REAL_SERVER:
            if self.previous_real_server is None:
                raise ValueError("%s needs previous real server" % self.kind)
            return [
                Operation(
                    SET_REAL_SERVER,
                    self.service,
                    self.previous_real_server,
                    previous_real_server=self.real_server,
                )
            ]
        return [Operation(ADD_REAL_SERVER, self.service, self.real_server)]


def plan(
    current: Mapping[ServiceKey, VirtualService],
    desired: Mapping[ServiceKey, VirtualService],
    *,
    purge_services: bool = False,
    purge_real_servers: bool = False,
    manage_real_servers: bool = True,
) -> List[Operation]:
    """Operations that turn `current` into `desired`.

    purge_services: delete every current service that `desired` lacks.
    purge_real_servers: within each desired service, delete real servers it lacks.
    manage_real_servers: False leaves real servers alone (service attributes only).
    """
    operations: List[Operation] = []
    for key, wanted in desired.items():
        have = current.get(key)
        if have is None:
            operations.append(Operation(ADD_SERVICE, wanted.service))
        elif have.service != wanted.service:
            operations.append(Operation(SET_SERVICE, wanted.service, previous_service=have.service))
        if manage_real_servers:
            existing = have.real_servers if have is not None else {}
            operations.extend(
                _plan_real_servers(
                    wanted.service, existing, wanted.real_servers, purge_real_servers
                )
            )
    if purge_services:
        operations.extend(plan_removal(current, [key for key in current if key not in desired]))
    return order(operations)


def _plan_real_servers(
    service: Service,
    current: Mapping[Tuple[str, int], RealServer],
    desired: Mapping[Tuple[str, int], RealServer],
    purge: bool,
) -> List[Operation]:
    operations = []
    for server_key, wanted in desired.items():
        have = current.get(server_key)
        if have is None:
            operations.append(Operation(ADD_REAL_SERVER, service, wanted))
        elif not have.same_as(wanted):
            operations.append(
                Operation(SET_REAL_SERVER, service, wanted, previous_real_server=have)
            )
    if purge:
        for server_key, have in current.items():
            if server_key not in desired:
                operations.append(Operation(DELETE_REAL_SERVER, service, have))
    return operations


def plan_removal(
    current: Mapping[ServiceKey, VirtualService],
    services: Iterable[ServiceKey] = (),
    real_servers: Iterable[Tuple[ServiceKey, Tuple[str, int]]] = (),
) -> List[Operation]:
    """Delete the named services and real servers that exist (others are no-ops)."""
    operations = []
    doomed = set()
    for key in services:
        have = current.get(key)
        if have is not None and key not in doomed:
            doomed.add(key)
            removed = tuple(have.real_servers[k] for k in sorted(have.real_servers))
            operations.append(Operation(DELETE_SERVICE, have.service, removed_real_servers=removed))
    for key, server_key in real_servers:
        have = current.get(key)
        if have is None or key in doomed:
            continue
        server = have.real_servers.get(server_key)
        if server is not None:
            operations.append(Operation(DELETE_REAL_SERVER, have.service, server))
    return order(operations)


def order(operations: Iterable[Operation]) -> List[Operation]:
    """Adds, then edits, then deletes; stable within a phase."""
    ranks: Dict[ServiceKey, ServiceOrder] = {}

    def rank(op: Operation) -> Tuple[int, ServiceOrder]:
        key = op.service.key
        position = ranks.get(key)
        if position is None:
            position = ranks[key] = service_order(key)
        return (op.phase, position)

    return sorted(operations, key=rank)


def simulate(
    current: Mapping[ServiceKey, VirtualService], operations: Iterable[Operation]
) -> Table:
    """The table after `operations`, computed without a kernel (check mode, tests)."""
    table: Table = {
        key: VirtualService(entry.service, dict(entry.real_servers))
        for key, entry in current.items()
    }
    for op in operations:
        key = op.service.key
        if op.kind == ADD_SERVICE:
            if key in table:
                raise KeyError("service %s exists already" % key)
            table[key] = VirtualService(op.service)
        elif op.kind == SET_SERVICE:
            table[key].service = op.service
        elif op.kind == DELETE_SERVICE:
            del table[key]
        else:
            if op.real_server is None:
                raise ValueError("%s needs real server" % op.kind)
            servers = table[key].real_servers
            if op.kind == ADD_REAL_SERVER:
                if op.real_server.key in servers:
                    raise KeyError("real server %s exists already" % (op.real_server.key,))
                servers[op.real_server.key] = op.real_server
            elif op.kind == SET_REAL_SERVER:
                servers[op.real_server.key] = op.real_server
            else:
                del servers[op.real_server.key]
    return table
