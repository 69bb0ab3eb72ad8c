"""The table the kernel should hold, from configuration, health and admin state.

Pure: plain values in, a Table and a report out.  The daemon gathers the
inputs (health decides `up` and the health weight, which already includes a
script check's dynamic weight and the slow-start ramp); this module applies
the rules an operator reads in docs/design/monitor-config.md:

- admin ``disable``: the real server is not in the table at all;
- admin ``drain``: weight 0, entry kept (existing connections finish; note
  that persistence keeps sending a persistent client to a drained server
  until its persistence entry expires);
- a failed server with ``on_failure: remove`` is left out, with
  ``on_failure: inhibit`` it stays with weight 0 (persistence entries live on);
- quorum: the healthy weight (configured weights of servers that are up and
  enabled) must reach ``min_healthy_weight`` and ``min_healthy_fraction`` of
  the total configured weight of the servers not disabled.  Once below, the
  service leaves that state only at ``threshold + hysteresis``.  Without a
  quorum setting the service is below quorum when its healthy weight is 0;
- below quorum, when the service has sorry servers, they come in and every
  real server is treated as failed (the keepalived rule: the sorry server
  answers alone); without sorry servers the table is left as health says.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Optional

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    RealServer,
    Service,
    ServiceKey,
    Table,
    VirtualService,
)
from haecs_monitor.slots import SLOTS

ENABLED = "enabled"
DRAIN = "drain"
DISABLE = "disable"
ADMIN_STATES = (ENABLED, DRAIN, DISABLE)

REMOVE = "remove"
INHIBIT = "inhibit"
ON_FAILURE = (REMOVE, INHIBIT)

ServerKey = tuple[str, int]


@dataclass(frozen=True)
class ServerInput:
    """One configured real server of one service, with its current health."""

    server: RealServer  # as configured: its weight is the configured weight
    up: bool
    weight: int  # health weight while up: configured or dynamic, slow start applied
    admin: str = ENABLED


@dataclass(frozen=True)
class Quorum:
    """Quorum rule of a service (either bound may be omitted)."""

    min_healthy_weight: Optional[int] = None
    min_healthy_fraction: Optional[float] = None
    hysteresis: int = 0

    def threshold(self, total_weight: int) -> int:
        """Healthy weight needed: every bound given, and never less than 1."""
        needed = 1
        if self.min_healthy_weight is not None:
            needed = max(needed, self.min_healthy_weight)
        if self.min_healthy_fraction is not None:
            needed = max(needed, math.ceil(self.min_healthy_fraction * total_weight - 1e-9))
        return needed


NO_QUORUM = Quorum()


@dataclass(frozen=True)
class ServiceInput:
    service: Service
    servers: tuple[ServerInput, ...]
    on_failure: str = REMOVE
    quorum: Optional[Quorum] = None
    sorry_servers: tuple[RealServer, ...] = ()

    @property
    def key(self) -> ServiceKey:
        return self.service.key


@dataclass(frozen=True, **SLOTS)
class ServerOutcome:
    """What became of one real server, and why (for status and logs)."""

    in_table: bool
    weight: int  # the weight in the table (0 when not in the table)
    reason: str  # up | down | drained | disabled | below-quorum | sorry


@dataclass(frozen=True)
class ServiceOutcome:
    below_quorum: bool
    healthy_weight: int
    total_weight: int
    threshold: int
    sorry_active: bool
    servers: Mapping[ServerKey, ServerOutcome] = field(default_factory=dict)


@dataclass(frozen=True)
class Desired:
    table: Table
    services: Mapping[ServiceKey, ServiceOutcome]

    def below_quorum(self) -> frozenset[ServiceKey]:
        return frozenset(key for key, outcome in self.services.items() if outcome.below_quorum)


def compute(
    inputs: Iterable[ServiceInput], below_quorum: frozenset[ServiceKey] = frozenset()
) -> Desired:
    """The desired table of the managed services.

    `below_quorum` is the set of services that were below quorum after the
    previous computation (the hysteresis needs it); the result carries the
    new set in `Desired.below_quorum()`.
    """
    table: Table = {}
    outcomes: dict[ServiceKey, ServiceOutcome] = {}
    for service_input in inputs:
        entry, outcome = _service(service_input, service_input.key in below_quorum)
        table[service_input.key] = entry
        outcomes[service_input.key] = outcome
    return Desired(table, outcomes)


def merged(
    previous: Desired, part: Desired, order: Iterable[ServiceKey], recomputed: Container[ServiceKey]
) -> Desired:
    """`previous` with the services in `recomputed` replaced by `part`'s, in
    the order of `order` (the configured services).  A recomputed service
    that `part` lacks (held out of the kernel) is left out; one that neither
    has is left out too.  The entries are shared, not copied: neither
    Desired may be changed afterwards."""
    table: Table = {}
    outcomes: dict[ServiceKey, ServiceOutcome] = {}
    for key in order:
        source = part if key in recomputed else previous
        entry = source.table.get(key)
        outcome = source.services.get(key)
        if entry is not None and outcome is not None:
            table[key] = entry
            outcomes[key] = outcome
    return Desired(table, outcomes)


def _service(spec: ServiceInput, was_below: bool) -> tuple[VirtualService, ServiceOutcome]:
    counted = [s for s in spec.servers if s.admin != DISABLE]
    total = sum(s.server.weight for s in counted)
    healthy = sum(s.server.weight for s in counted if s.up and s.admin == ENABLED)
    quorum = spec.quorum or NO_QUORUM
    threshold = quorum.threshold(total)
    if was_below:
        below = healthy < threshold + quorum.hysteresis
    else:
        below = healthy < threshold
    sorry = below and bool(spec.sorry_servers)
    entry = VirtualService(spec.service)
    servers: dict[ServerKey, ServerOutcome] = {}
    all_up = not sorry
    for item in spec.servers:
        outcome = _server(item, spec.on_failure, sorry)
        key = item.server.key
        servers[key] = outcome
        all_up = all_up and outcome.reason == "up" and outcome.weight > 0
        if outcome.in_table:
            # The configured object itself where the weight is the same: the
            # desired table is rebuilt on every apply and kept until the next.
            same = item.server.weight == outcome.weight
            entry.real_servers[key] = (
                item.server if same else item.server.replace(weight=outcome.weight)
            )
    if sorry:
        for sorry_server in spec.sorry_servers:
            entry.real_servers[sorry_server.key] = sorry_server
            servers[sorry_server.key] = _outcome(True, sorry_server.weight, "sorry")
    outcomes: Mapping[ServerKey, ServerOutcome] = (
        _UpInTable(entry.real_servers) if all_up else servers
    )
    return entry, ServiceOutcome(below, healthy, total, threshold, sorry, outcomes)


class _UpInTable(Mapping[ServerKey, ServerOutcome]):
    """The outcomes of a service whose every server is up and in its table
    at a weight above 0 (no sorry server), read from the table's entry: the
    most common case, where a dict of them was 29 B per real server.

    Exact as long as the entry only gains servers at weight 0, as the
    leaving servers added to the desired table afterwards are."""

    __slots__ = ("_servers",)

    def __init__(self, servers: Mapping[ServerKey, RealServer]) -> None:
        self._servers = servers

    def __getitem__(self, key: ServerKey) -> ServerOutcome:
        server = self._servers[key]
        if server.weight <= 0:
            raise KeyError(key)
        return _outcome(True, server.weight, "up")

    def __iter__(self) -> Iterator[ServerKey]:
        return (key for key, server in self._servers.items() if server.weight > 0)

    def __len__(self) -> int:
        return sum(1 for _key in self)

    def __repr__(self) -> str:
        return "%s(%r)" % (type(self).__name__, dict(self))


def _server(item: ServerInput, on_failure: str, replaced_by_sorry: bool) -> ServerOutcome:
    if item.admin == DISABLE:
        return _outcome(False, 0, "disabled")
    if not item.up or replaced_by_sorry:
        reason = "down" if not item.up else "below-quorum"
        return _outcome(on_failure == INHIBIT, 0, reason)
    if item.admin == DRAIN:
        return _outcome(True, 0, "drained")
    return _outcome(True, max(0, item.weight), "up")


@functools.lru_cache(maxsize=4096)
def _outcome(in_table: bool, weight: int, reason: str) -> ServerOutcome:
    """One shared ServerOutcome per value: the outcomes of every server are
    kept from one apply to the next, and most servers have the same one."""
    return ServerOutcome(in_table, weight, reason)
