"""Health decisions: from check results to up/down servers and their weights.

Pure: no I/O and no clock of its own; every call that depends on time takes
`now` (any monotonic seconds), and jitter draws from an injected random
source, so tests drive it with a fake clock and fixed random numbers.

Semantics (HAProxy's):

* **rise / fall** -- a check that is down needs `rise` consecutive successes
  to go up; one that is up needs `fall` consecutive failures to go down.  A
  result against the trend resets the count, so a flapping endpoint holds
  its state instead of bouncing (flap damping is implied by rise/fall).
* **initial state: adopt what the kernel does** -- there is no "unknown"
  state.  On start (and for a check new after a reload) a check whose
  servers are in the kernel's table now starts *up, unconfirmed*: it goes
  down only after `fall` failures, so starting or restarting the monitor
  never disturbs traffic.  A check none of whose servers is in the table
  starts *down* and needs `rise` successes.  A check shared by a present and
  a missing server starts up (the endpoint is serving).  `confirmed` turns
  true with the first result.
* **a server is up when all its checks are up**; a server without checks is
  always up (a static member, as in keepalived).
* **timing** -- the first check of each check comes after a random part of
  its interval (spreads a thousand checks over the interval); afterwards the
  delay is `interval` while stable up, `fast_interval` while changing state
  (some but not all of rise/fall counted) and `down_interval` while stable
  down, each multiplied by a random factor in [1 - jitter, 1 + jitter].  The
  delay runs from the time the last check was due to start, not from its
  result: checks start that far apart however long each takes.
* **weight** -- the configured weight, or the smallest dynamic weight a
  script check reported (exit code - 2) while up; a server that comes back
  up with `slow_start` > 0 ramps linearly from 1 to that weight over
  `slow_start` seconds (`weight_at(now)`).  Servers up at start do not ramp.
* **reload** keeps the state of every check whose dedup_key is unchanged; a
  check whose only change is its timing keeps its state too (same probe_key).
"""

from __future__ import annotations

import functools
import math
import random
import sys
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Optional, Union

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    ServiceKey,
    format_endpoint,
)
from haecs_monitor.checks.base import CheckResult
from haecs_monitor.config.model import (
    CheckKey,
    CheckSpec,
    MonitorConfig,
    RealServerConfig,
    ServiceConfig,
)
from haecs_monitor.slots import SLOTS

UP = "up"
DOWN = "down"

RandomSource = Callable[[], float]  # uniform in [0, 1), like random.random


@dataclass(frozen=True, order=True, **SLOTS)
class ServerRef:
    """One real server of one service (a server in two services is two refs)."""

    service: ServiceKey
    address: str
    port: int

    @property
    def key(self) -> tuple[str, int]:
        return (self.address, self.port)

    def __str__(self) -> str:
        return "%s real server %s" % (self.service, format_endpoint(self.address, self.port))


@dataclass(frozen=True)
class CheckTransition:
    """A check changed state (logged; server transitions follow from it)."""

    check: CheckSpec
    old: str
    new: str
    reason: str
    at: float


@dataclass(frozen=True)
class Transition:
    """A server changed state: the desired table changes."""

    server: ServerRef
    old: str
    new: str
    reason: str
    at: float


@dataclass(frozen=True)
class WeightChange:
    """An up server's health weight changed (a script check's dynamic weight)."""

    server: ServerRef
    old: int
    new: int
    reason: str
    at: float


Event = Union[CheckTransition, Transition, WeightChange]


HISTORY = 10  # check results kept per check for status and events

# The servers of one check: most checks have one, kept as itself (a tuple of
# one was 48 B more per check).
Users = Union["ServerHealth", tuple["ServerHealth", ...]]

RealServerKey = tuple[str, int]  # a real server's key within its service


def jittered(delay: float, jitter: float, rand: RandomSource) -> float:
    """`delay` times a random factor in [1 - jitter, 1 + jitter]."""
    return delay * (1.0 + jitter * (2.0 * rand() - 1.0))


class _Seldom:
    """What few checks have: results the monitor could not get (local
    faults) and a dynamic weight (script checks).  Kept apart, made when a
    check first has one: most checks never do."""

    __slots__ = ("last_unknown", "unknown_streak", "unknowns", "weight")

    def __init__(self) -> None:
        self.unknowns = 0  # since the check began
        self.unknown_streak = 0  # in a row, up to now
        self.last_unknown = ""  # the last one's detail
        self.weight: Optional[int] = None  # the dynamic weight of the last success

    def copy(self) -> _Seldom:
        copied = _Seldom()
        copied.unknowns, copied.unknown_streak = self.unknowns, self.unknown_streak
        copied.last_unknown, copied.weight = self.last_unknown, self.weight
        return copied


_NOTHING_SELDOM = _Seldom()  # the read-only stand-in of checks without any


@functools.lru_cache(maxsize=4096)
def _one_float(value: float) -> float:
    return value


def _shared_duration(seconds: float) -> float:
    """SECONDS to 3 significant digits, one float per value (the last run's
    duration of each check: a float of its own was 24 B per check)."""
    return _one_float(float("%.3g" % seconds))


class CheckHealth:
    """The rise/fall state of one check, shared by every server that uses it."""

    # 12 slots: with the collector's header 128 B, one of pymalloc's sizes
    # (a 13th slot was 144 B).
    __slots__ = (
        "_seldom",
        "_streak",
        "changed_at",
        "detail",
        "downs",
        "history",
        "last_checked",
        "last_duration",
        "spec",
        "up",
        "ups",
        "users",
    )

    def __init__(self, spec: CheckSpec, up: bool, now: float) -> None:
        self.spec = spec
        self.up = up
        # The servers it feeds (kept by the board): a slot here, where a dict
        # by check beside the board's checks was 30-45 B more per check.
        self.users: Users = ()
        # Consecutive results of one kind up to now: successes above 0,
        # failures below (one slot where two counts, one of them always 0,
        # were 8 B more per check).
        self._streak = 0
        self.detail = "not checked yet"
        self.last_checked: Optional[float] = None  # of the last result not unknown
        self.changed_at = now
        # The last HISTORY results, oldest first: "+" up, "-" down, "?" unknown
        # (one short string: cheap at tens of thousands of checks).
        self.history = ""
        # Results by outcome since the check began (the metrics' counters,
        # kept here: one slot each instead of a counter entry per outcome).
        self.ups = 0
        self.downs = 0
        self._seldom = _NOTHING_SELDOM
        # Seconds the last run took, to 3 significant digits (shared floats).
        self.last_duration: Optional[float] = None

    @property
    def state(self) -> str:
        return UP if self.up else DOWN

    @property
    def successes(self) -> int:
        """Consecutive successes up to now."""
        return self._streak if self._streak > 0 else 0

    @property
    def failures(self) -> int:
        """Consecutive failures up to now."""
        return -self._streak if self._streak < 0 else 0

    @property
    def unknowns(self) -> int:
        """Results the monitor could not get (local faults) since the check began."""
        return self._seldom.unknowns

    @property
    def unknown_streak(self) -> int:
        """Of them in a row, up to now."""
        return self._seldom.unknown_streak

    @property
    def last_unknown(self) -> str:
        """The last one's detail ("" when none)."""
        return self._seldom.last_unknown

    @property
    def weight(self) -> Optional[int]:
        """The dynamic weight of the last success (script checks), or None."""
        return self._seldom.weight

    def _own_seldom(self) -> _Seldom:
        seldom = self._seldom
        if seldom is _NOTHING_SELDOM:
            seldom = self._seldom = _Seldom()
        return seldom

    @property
    def confirmed(self) -> bool:
        """Whether a result (not an unknown one) came since the check began."""
        return self.last_checked is not None

    @property
    def in_transition(self) -> bool:
        """Some, but not yet all, of the results needed to change state."""
        return self._streak < 0 if self.up else self._streak > 0

    def observe(
        self, result: CheckResult, now: float, duration: Optional[float] = None
    ) -> Optional[CheckTransition]:
        if duration is not None:
            self.last_duration = _shared_duration(duration)
        mark = "?" if result.unknown else "+" if result.up else "-"
        # Interned: the checks of a steady director share a few histories
        # ("++++++++++") instead of holding a copy each.
        self.history = sys.intern((self.history + mark)[-HISTORY:])
        seldom = self._seldom
        if result.unknown:
            # Says nothing about the server: the counts and the state stay.
            seldom = self._own_seldom()
            seldom.unknowns += 1
            seldom.unknown_streak += 1
            seldom.last_unknown = result.detail
            return None
        if seldom.unknown_streak:
            seldom.unknown_streak = 0
        self.last_checked = now
        self.detail = result.detail
        streak = self._streak
        if result.up:
            self.ups += 1
            streak = self._streak = streak + 1 if streak > 0 else 1
            if result.weight != seldom.weight:
                self._own_seldom().weight = result.weight
        else:
            self.downs += 1
            streak = self._streak = streak - 1 if streak < 0 else -1
        if self.up and -streak >= self.spec.timing.fall:
            reason = "%d consecutive failure(s): %s" % (-streak, result.detail)
        elif not self.up and streak >= self.spec.timing.rise:
            reason = "%d consecutive success(es): %s" % (streak, result.detail)
        else:
            return None
        old = self.state
        self.up = not self.up
        self._streak = 0
        self.changed_at = now
        return CheckTransition(self.spec, old, self.state, reason, now)

    def base_delay(self) -> float:
        if self.in_transition:
            return self.spec.timing.fast_interval
        return self.spec.timing.interval if self.up else self.spec.timing.down_interval

    def next_delay(self, rand: RandomSource) -> float:
        """Seconds from the time the last check was due to the next one."""
        return jittered(self.base_delay(), self.spec.timing.jitter, rand)

    def first_delay(self, rand: RandomSource) -> float:
        """Seconds from start to the first check: spread over one interval."""
        return rand() * self.spec.timing.interval

    def carried_to(self, spec: CheckSpec) -> CheckHealth:
        """This state under a new spec (same probe, other timing)."""
        moved = CheckHealth(spec, self.up, self.changed_at)
        moved._streak = self._streak
        moved.detail = self.detail
        moved.last_checked = self.last_checked
        moved.ups = self.ups
        moved.downs = self.downs
        if self._seldom is not _NOTHING_SELDOM:
            moved._seldom = self._seldom.copy()
        moved.last_duration = self.last_duration
        moved.history = self.history
        return moved

    def as_dict(self) -> dict[str, object]:
        return {
            "check": self.spec.describe(),
            "type": self.spec.type,
            "state": self.state,
            "confirmed": self.confirmed,
            "successes": self.successes,
            "failures": self.failures,
            "rise": self.spec.timing.rise,
            "fall": self.spec.timing.fall,
            "weight": self.weight,
            "detail": self.detail,
            "history": self.history,
            "unknowns": self.unknowns,
            "last_unknown": self.last_unknown,
            "last_checked": self.last_checked,
            "changed_at": self.changed_at,
        }


class ServerHealth:
    """One real server of one service: up when all its checks are up.

    It keeps its service's key and its configuration, not a ServerRef: `ref`
    makes one when asked (events, status), where one kept per server, the
    key of the board's table of them, was 56 B each.  A server of a service
    with slow start is a SlowStartHealth, which keeps when it came back up;
    the others keep no slot for it (16 B each)."""

    __slots__ = ("_own", "_state", "config", "service")

    slow_start = 0.0  # seconds to ramp its weight after it came back up
    ramp_start: Optional[float] = None  # when it came back up, while it ramps

    def __init__(
        self,
        service: ServiceKey,
        config: RealServerConfig,
        checks: tuple[CheckHealth, ...],
    ) -> None:
        self.service = service
        self.config = config
        # Most servers have one check, kept as itself: a tuple of one was
        # 48 B more per server.
        self._own: Union[CheckHealth, tuple[CheckHealth, ...]] = (
            checks[0] if len(checks) == 1 else checks
        )
        # Whether it is up, and its state changes (the metrics' counters: a
        # counter entry per server and state was about 100 B each), in one
        # int: changes * 2, plus 1 while up.  Four slots and the collector's
        # header are 64 B, one of pymalloc's sizes; a fifth slot was 80 B.
        self._state = 1 if self._all_up() else 0

    @property
    def up(self) -> bool:
        return self._state & 1 == 1

    @up.setter
    def up(self, value: bool) -> None:
        self._state = self._state & ~1 | (1 if value else 0)

    @property
    def changes(self) -> int:
        """How many times it went up or down.  They alternate and the last
        one ended in its state, so one count gives both kinds."""
        return self._state >> 1

    @changes.setter
    def changes(self, value: int) -> None:
        self._state = value << 1 | self._state & 1

    @property
    def went_up(self) -> int:
        """How many times it went up."""
        return (self.changes + 1) // 2 if self.up else self.changes // 2

    @property
    def went_down(self) -> int:
        """How many times it went down."""
        return self.changes // 2 if self.up else (self.changes + 1) // 2

    @property
    def state(self) -> str:
        return UP if self.up else DOWN

    @property
    def ref(self) -> ServerRef:
        server = self.config.server
        return ServerRef(self.service, server.address, server.port)

    @property
    def key(self) -> RealServerKey:
        """Its key within its service (the configured server's)."""
        return self.config.key

    @property
    def checks(self) -> tuple[CheckHealth, ...]:
        own = self._own
        return (own,) if own.__class__ is CheckHealth else own  # type: ignore[return-value]

    def _all_up(self) -> bool:
        own = self._own
        if own.__class__ is CheckHealth:
            return own.up
        return all(check.up for check in own)  # type: ignore[union-attr]

    def evaluate(self, now: float) -> Optional[Transition]:
        """Follow the checks; a Transition when the server's state changed."""
        up = self._all_up()
        if up == self.up:
            return None
        old = self.state
        self.up = up
        self.changes += 1
        self._changed(now)
        return Transition(self.ref, old, self.state, self.reason(), now)

    def _changed(self, now: float) -> None:
        """It went up or down at NOW (a slow start begins or ends)."""

    def reason(self) -> str:
        if not self.checks:
            return "no checks"
        failing = [check for check in self.checks if not check.up]
        if not failing:
            return "all %d check(s) up" % len(self.checks)
        return "; ".join("%s: %s" % (check.spec.describe(), check.detail) for check in failing)

    def base_weight(self) -> int:
        """The configured weight, or the smallest dynamic weight reported."""
        dynamic = [check.weight for check in self.checks if check.weight is not None]
        return min(dynamic) if dynamic else self.config.server.weight

    def ramping(self, now: float) -> bool:
        return (
            self.ramp_start is not None
            and self.slow_start > 0
            and now < self.ramp_start + self.slow_start
            and self.base_weight() > 1
        )

    def weight_at(self, now: float) -> int:
        """The health weight at `now`: base weight, slow-start ramp applied."""
        weight = self.base_weight()
        if self.ramp_start is None or not self.ramping(now):
            return weight
        elapsed = max(0.0, now - self.ramp_start)
        return max(1, min(weight, math.floor(weight * elapsed / self.slow_start)))

    def next_weight_change(self, now: float, min_step: float = 1.0) -> Optional[float]:
        """When the ramped weight next changes (at least `min_step` from now),
        or None when it is not ramping."""
        if self.ramp_start is None or not self.ramping(now):
            return None
        end = self.ramp_start + self.slow_start
        step_at = self.ramp_start + (self.weight_at(now) + 1) * self.slow_start / self.base_weight()
        return min(end, max(step_at, now + min_step))

    def as_dict(self, now: float) -> dict[str, object]:
        server = self.config.server
        return {
            "service": str(self.service),
            "address": server.address,
            "port": server.port,
            "state": self.state,
            "reason": self.reason(),
            "weight": self.weight_at(now),
            "configured_weight": self.config.server.weight,
            "ramping": self.ramping(now),
            "checks": [check.as_dict() for check in self.checks],
        }


class SlowStartHealth(ServerHealth):
    """A server of a service with slow start: when it comes back up, its
    weight ramps from 1 over `slow_start` seconds (`weight_at`)."""

    __slots__ = ("ramp_start", "slow_start")

    def __init__(
        self,
        service: ServiceKey,
        config: RealServerConfig,
        checks: tuple[CheckHealth, ...],
        slow_start: float,
    ) -> None:
        super().__init__(service, config, checks)
        self.slow_start = slow_start
        self.ramp_start = None

    def _changed(self, now: float) -> None:
        self.ramp_start = now if self.up else None


def migrate_checks(
    old: Mapping[CheckKey, CheckHealth],
    specs: Iterable[CheckSpec],
    initially_up: Callable[[CheckSpec], bool],
    now: float,
) -> dict[CheckKey, CheckHealth]:
    """Check states for a new check set (reload).

    A check with an unchanged dedup_key keeps its state object; one that only
    changed timing (same probe_key) carries its state over; any other starts
    afresh, up when `initially_up(spec)` says its servers are in the kernel.
    """
    return _migrate(old, [(spec.dedup_key, spec) for spec in specs], initially_up, now)


def _migrate(
    old: Mapping[CheckKey, CheckHealth],
    keyed: Iterable[tuple[CheckKey, CheckSpec]],
    initially_up: Callable[[CheckSpec], bool],
    now: float,
) -> dict[CheckKey, CheckHealth]:
    """`migrate_checks` with each spec's dedup_key taken once by the caller."""
    by_probe: Optional[dict[CheckKey, CheckHealth]] = None  # only when a key is new
    result: dict[CheckKey, CheckHealth] = {}
    for key, spec in keyed:
        if key in result:
            continue
        kept = old.get(key)
        if kept is not None:
            result[key] = kept
            continue
        if by_probe is None:
            by_probe = {}
            for health in old.values():
                by_probe.setdefault(health.spec.probe_key, health)
        if spec.probe_key in by_probe:
            result[key] = by_probe[spec.probe_key].carried_to(spec)
        else:
            result[key] = CheckHealth(spec, initially_up(spec), now)
    return result


def _index(
    services: Iterable[ServiceConfig],
    present: Collection[ServerRef],
    old_checks: Mapping[CheckKey, CheckHealth],
    now: float,
) -> tuple[list[tuple[ServiceConfig, RealServerConfig]], dict[CheckKey, CheckHealth]]:
    """The servers of `services`, and the health of their checks: kept from
    `old_checks`, carried over, or new (up when a server of `services` that
    uses it is `present` in the kernel).  The caller builds the servers and
    adds them to their checks' users (`_add_users`)."""
    entries: list[tuple[ServiceConfig, RealServerConfig]] = []
    keyed: list[tuple[CheckKey, CheckSpec]] = []
    present_set = present if isinstance(present, (set, frozenset)) else set(present)
    used_where_present: set[CheckKey] = set()
    for service in services:
        service_key = service.key
        for real_server in service.real_servers:
            entries.append((service, real_server))
            here = bool(present_set) and ServerRef(service_key, *real_server.key) in present_set
            for spec in real_server.checks:
                key = spec.dedup_key
                keyed.append((key, spec))
                if here:
                    used_where_present.add(key)

    def initially_up(spec: CheckSpec) -> bool:
        return spec.dedup_key in used_where_present

    return entries, _migrate(old_checks, keyed, initially_up, now)


def _add_users(servers: Iterable[ServerHealth]) -> None:
    """Each of SERVERS among the users of its checks, after those they have."""
    added: dict[CheckHealth, list[ServerHealth]] = {}
    for server in servers:
        for check in server.checks:
            users = added.get(check)
            if users is None:
                added[check] = [server]
            else:
                users.append(server)
    for check, users in added.items():
        check.users = _users_value((*_as_servers(check.users), *users))


def _users_value(servers: Sequence[ServerHealth]) -> Users:
    return servers[0] if len(servers) == 1 else tuple(servers)


def _as_servers(users: Users) -> tuple[ServerHealth, ...]:
    return users if users.__class__ is tuple else (users,)  # type: ignore[return-value]


def _server_health(
    service: ServiceKey,
    real_server: RealServerConfig,
    slow_start: float,
    checks: Mapping[CheckKey, CheckHealth],
    previous: Optional[ServerHealth],
) -> ServerHealth:
    """A server's health over its checks, in the state it had before a reload."""
    own = tuple(checks[spec.dedup_key] for spec in dict.fromkeys(real_server.checks))
    server: ServerHealth
    if slow_start > 0:
        server = SlowStartHealth(service, real_server, own, slow_start)
        if previous is not None:
            server.ramp_start = previous.ramp_start
    else:
        server = ServerHealth(service, real_server, own)
    if previous is not None:  # evaluate() then reports changes against it
        server.up = previous.up
        server.changes = previous.changes
    return server


_NO_SERVERS: Mapping[RealServerKey, ServerHealth] = MappingProxyType({})


class ServerTable:
    """The board's servers by ServerRef, kept by service and real server key.

    No ServerRef is kept per server (56 B each as the key of one dict of
    them): a lookup takes the ref's fields, iterating makes the refs, and
    `of_service` gives a service's servers by key without making any."""

    __slots__ = ("_by_service", "_count")

    def __init__(self) -> None:
        self._by_service: dict[ServiceKey, dict[RealServerKey, ServerHealth]] = {}
        self._count = 0

    def add(self, server: ServerHealth) -> None:
        """Put SERVER in (in place of one with the same service and key)."""
        servers = self._by_service.get(server.service)
        if servers is None:
            servers = self._by_service[server.service] = {}
        key = server.key
        if key not in servers:
            self._count += 1
        servers[key] = server

    def pop_service(self, service: ServiceKey) -> dict[RealServerKey, ServerHealth]:
        """Take out every server of SERVICE; them, by key."""
        servers = self._by_service.pop(service, {})
        self._count -= len(servers)
        return servers

    def find(self, service: ServiceKey, key: RealServerKey) -> Optional[ServerHealth]:
        return self._by_service.get(service, _NO_SERVERS).get(key)

    def of_service(self, service: ServiceKey) -> Mapping[RealServerKey, ServerHealth]:
        """The servers of SERVICE by key (the table's own: read only)."""
        return self._by_service.get(service, _NO_SERVERS)

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, ref: ServerRef) -> ServerHealth:
        server = self.find(ref.service, (ref.address, ref.port))
        if server is None:
            raise KeyError(ref)
        return server

    def get(self, ref: ServerRef) -> Optional[ServerHealth]:
        return self.find(ref.service, (ref.address, ref.port))

    def __contains__(self, ref: object) -> bool:
        return isinstance(ref, ServerRef) and self.get(ref) is not None

    def __iter__(self) -> Iterator[ServerRef]:
        for service, servers in self._by_service.items():
            for address, port in servers:
                yield ServerRef(service, address, port)

    def items(self) -> Iterator[tuple[ServerRef, ServerHealth]]:
        for service, servers in self._by_service.items():
            for (address, port), server in servers.items():
                yield ServerRef(service, address, port), server

    def values(self) -> Iterator[ServerHealth]:
        for servers in self._by_service.values():
            yield from servers.values()


class HealthBoard:
    """Every check and server of one configuration, and the events between them.

    The daemon runs each check in `checks`, feeds results to `record()`, waits
    `next_delay()` before running it again, and builds the desired table from
    `servers` (`up`, `weight_at(now)`).  `present` is the set of servers the
    kernel's table holds (and serves) now.

    A check and its servers refer to each other (`users`, `checks`).  Every
    check the board drops has its users emptied, so that what a build or a
    reload drops is freed by reference counting alone: the long-lived
    objects are frozen out of the cyclic collector's reach
    (runtime/gcfreeze.py), and a cycle among them would stay for good.
    """

    def __init__(
        self,
        config: MonitorConfig,
        now: float,
        present: Collection[ServerRef] = (),
        rand: RandomSource = random.random,
    ) -> None:
        self._rand = rand
        self.config = config
        self.checks: dict[CheckKey, CheckHealth] = {}
        self.servers = ServerTable()
        # The checks added and dropped since `take_check_changes`; None after
        # a build, when any may have.
        self._check_changes: Optional[tuple[set[CheckKey], set[CheckKey]]] = None
        # The servers down, kept with every change: few, counted at once.
        self._down: set[ServerHealth] = set()
        # The checks the last build or reload started and stopped.
        self.reload_counts = (0, 0)
        self._build(config, now, present, {}, ServerTable())

    def _build(
        self,
        config: MonitorConfig,
        now: float,
        present: Collection[ServerRef],
        old_checks: Mapping[CheckKey, CheckHealth],
        old_servers: ServerTable,
        old_config: Optional[MonitorConfig] = None,
    ) -> None:
        # A service the reload took over unchanged (the same object, see
        # config/sections.py) keeps its servers' health objects as they are.
        unchanged = (
            {id(service) for service in old_config.services} if old_config is not None else set()
        )
        entries, checks = _index(config.services, present, old_checks, now)
        servers = ServerTable()
        for service, real_server in entries:
            previous = old_servers.find(service.key, real_server.key)
            if previous is not None and id(service) in unchanged and previous.config is real_server:
                servers.add(previous)
            else:
                servers.add(
                    _server_health(service.key, real_server, service.slow_start, checks, previous)
                )
        for key, check in old_checks.items():
            if checks.get(key) is not check:
                check.users = ()  # dropped: see HealthBoard on the cycle
        for check in checks.values():
            check.users = ()
        _add_users(servers.values())
        self.config = config
        self.reload_counts = (
            sum(1 for key in checks if key not in old_checks),
            sum(1 for key in old_checks if key not in checks),
        )
        self.checks = checks
        self.servers = servers
        self._check_changes = None
        self._down = {server for server in servers.values() if not server.up}

    def up_count(self) -> int:
        """How many servers are up."""
        return len(self.servers) - len(self._down)

    def _followed(self, server: ServerHealth, transition: Transition) -> None:
        if transition.new == UP:
            self._down.discard(server)
        else:
            self._down.add(server)

    def take_check_changes(self) -> Optional[tuple[set[CheckKey], set[CheckKey]]]:
        """The checks added and dropped since the last call, or None when they
        may be any (the board was built anew): who runs the checks need not
        look at the others."""
        changes, self._check_changes = self._check_changes, (set(), set())
        return changes

    def users(self, key: CheckKey) -> tuple[ServerRef, ...]:
        """The servers a check feeds."""
        check = self.checks.get(key)
        return tuple(server.ref for server in _as_servers(check.users)) if check else ()

    def record(
        self, key: CheckKey, result: CheckResult, now: float, duration: Optional[float] = None
    ) -> list[Event]:
        """Feed one result (of a run that took `duration` seconds); the
        check's and its servers' changes, in that order.

        A result for a check no longer configured (a reload raced it) is ignored.
        """
        check = self.checks.get(key)
        if check is None:
            return []
        servers = _as_servers(check.users)
        reweighs = not result.unknown and result.up and result.weight != check.weight
        weights = {server: server.base_weight() for server in servers} if reweighs else {}
        events: list[Event] = []
        change = check.observe(result, now, duration)
        if change is not None:
            events.append(change)
        elif not reweighs:
            # The check kept its state and weight, and a server is up exactly
            # when all its checks are (kept so by every build and reload):
            # none of its servers can change.  Most results end here.
            return events
        for server in servers:
            transition = server.evaluate(now)
            if transition is not None:
                self._followed(server, transition)
                events.append(transition)
                continue
            if reweighs:
                weight = server.base_weight()
                if server.up and weight != weights[server]:
                    events.append(
                        WeightChange(server.ref, weights[server], weight, result.detail, now)
                    )
        return events

    def next_delay(self, key: CheckKey) -> float:
        return self.checks[key].next_delay(self._rand)

    def first_delay(self, key: CheckKey) -> float:
        return self.checks[key].first_delay(self._rand)

    def reload(
        self, config: MonitorConfig, now: float, present: Collection[ServerRef] = ()
    ) -> list[Event]:
        """Switch to a new configuration, keeping what can be kept.

        Returns the transitions of servers present in both configurations
        whose state changes with the new check set (rare: a check replaced by
        one that starts down).
        """
        kept = {id(service) for service in self.config.services} & {
            id(service) for service in config.services
        }
        if len(kept) * 2 < len(config.services):
            old_servers = self.servers
            self._build(config, now, present, self.checks, old_servers, self.config)
            rebuilt: Iterable[tuple[ServerHealth, Optional[ServerHealth]]] = (
                (server, old_servers.find(server.service, server.key))
                for server in self.servers.values()
            )
        else:
            rebuilt = self._rebuild_changed(config, now, present, kept)
        events: list[Event] = []
        for server, before in rebuilt:
            if before is not None and server is not before:
                transition = server.evaluate(now)
                if transition is not None:
                    self._followed(server, transition)
                    events.append(transition)
        return events

    def _rebuild_changed(
        self, config: MonitorConfig, now: float, present: Collection[ServerRef], kept: set[int]
    ) -> list[tuple[ServerHealth, Optional[ServerHealth]]]:
        """`_build` for a reload that took most services over as they were
        (the same objects, config/sections.py): only the servers of services
        that are new or changed are built again, the rest of the board is
        kept as it is.  At 30,000 real servers, one changed service costs
        milliseconds where the whole board took about 0.2 s of the loop.
        The board's tables are changed in place: copies of them were most of
        such a reload, in the test kernel mostly the page faults of their
        fresh memory.  Returns each server built, with the one it replaced."""
        servers = self.servers
        checks = self.checks
        previous: dict[tuple[ServiceKey, RealServerKey], ServerHealth] = {}
        gone: set[ServerHealth] = set()
        leaving: set[CheckHealth] = set()
        for service in self.config.services:
            if id(service) in kept:
                continue
            for server_key, old in servers.pop_service(service.key).items():
                previous[(service.key, server_key)] = old
                gone.add(old)
                self._down.discard(old)
                leaving.update(old.checks)
        for check in leaving:
            remaining = tuple(server for server in _as_servers(check.users) if server not in gone)
            check.users = _users_value(remaining) if remaining else ()
        changed = [service for service in config.services if id(service) not in kept]
        entries, fresh = _index(changed, present, checks, now)
        built: list[tuple[ServerHealth, Optional[ServerHealth]]] = []
        for service, real_server in entries:
            before = previous.get((service.key, real_server.key))
            server = _server_health(service.key, real_server, service.slow_start, fresh, before)
            servers.add(server)
            built.append((server, before))
            if not server.up:
                self._down.add(server)
        _add_users(server for server, _before in built)
        # Every check has a server, so the checks to drop are those of the
        # removed servers left without one (and not taken up again).
        dropped = {
            key
            for key in (check.spec.dedup_key for check in leaving)
            if key not in fresh and (key not in checks or not checks[key].users)
        }
        added = {key for key in fresh if key not in checks}
        for key in dropped:
            checks.pop(key, None)
        checks.update(fresh)
        if self._check_changes is not None:
            self._check_changes[0].difference_update(dropped)
            self._check_changes[0].update(added)
            self._check_changes[1].update(dropped)
        self.reload_counts = (len(added), len(dropped))
        self.config = config
        return built

    def ramping(self, since: float) -> list[ServerRef]:
        """Servers whose slow-start weight was still growing at `since`: the
        weight of each has moved on since then, or will."""
        return [
            server.ref for server in self.servers.values() if server.up and server.ramping(since)
        ]
