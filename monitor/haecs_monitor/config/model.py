"""The monitor's configuration as frozen values (what `config.parse_config` returns).

Services and real servers are the engine's own model objects
(`ipvs.model.Service`, `ipvs.model.RealServer`); around them sit the
monitor's settings and the fully resolved checks of every real server.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable
from dataclasses import dataclass
from sys import intern
from typing import Any, NamedTuple, Optional, Union, cast

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    RealServer,
    Service,
    ServiceKey,
    format_endpoint,
)
from haecs_monitor.errors import HaecsError
from haecs_monitor.slots import SLOTS

# A check option after validation: hashable, so a CheckSpec is hashable too.
ParamValue = Union[str, int, float, bool, None, tuple["ParamValue", ...]]
Params = tuple[tuple[str, ParamValue], ...]
# Identity of a check: identical checks run once and feed every consumer.
CheckKey = tuple[Hashable, ...]

TIMING_KEYS = ("interval", "timeout", "rise", "fall", "fast_interval", "down_interval", "jitter")


class ConfigError(HaecsError):
    """The configuration is invalid; `errors` lists every problem with its path."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class CheckTiming(NamedTuple):
    """When a check runs and how many results change its state.

    A tuple: part of every check's key (`CheckSpec.dedup_key`), hashed on
    each lookup in the tables of checks, and a tuple's hash is computed in C
    (a dataclass's was a Python call: 0.13 s of a reload at 30,000 checks)."""

    interval: float = 2.0  # seconds between checks while stable
    timeout: float = 1.0  # seconds a check may take (< interval)
    rise: int = 2  # consecutive successes that bring a down check up
    fall: int = 3  # consecutive failures that bring an up check down
    fast_interval: float = 0.5  # while a state is changing
    down_interval: float = 5.0  # while down
    jitter: float = 0.1  # fraction of the delay, spreads checks over time


DEFAULT_TIMING = CheckTiming()


@functools.lru_cache(maxsize=1024)
def shared_timing(timing: CheckTiming) -> CheckTiming:
    """One CheckTiming object for every check with these values (most checks
    share their timing; a pickle then holds it, and its floats, once)."""
    return timing


class _CheckFields(NamedTuple):
    type: str
    address: str
    port: int
    params: Params
    timing: CheckTiming


class CheckSpec(_CheckFields):
    """One check of one endpoint, fully resolved (defaults applied, target known).

    `address`/`port` are the endpoint probed: the real server's own unless the
    check names another.  `params` holds the type's options as sorted
    (name, value) pairs with every default filled in.

    A tuple of its fields, and so its own dedup key: every table of checks
    (health, scheduler, metrics, names) is indexed by the spec itself.  A
    separate key tuple beside a spec object was 80 B more per check.
    Constructed as (type, timing, address, port, params), as before.
    """

    __slots__ = ()

    def __new__(
        cls, type: str, timing: CheckTiming, address: str, port: int, params: Params = ()
    ) -> CheckSpec:
        return super().__new__(cls, type, address, port, params, shared_timing(timing))

    def __getnewargs__(self) -> tuple[Any, ...]:  # pickled as constructed
        return (self.type, self.timing, self.address, self.port, self.params)

    @property
    def dedup_key(self) -> CheckKey:
        """Identical checks (type, target, options and timing) share one key."""
        return self

    @staticmethod
    def type_of(key: CheckKey) -> str:
        """The check type of the check with dedup key KEY."""
        return cast(str, key[0])

    @property
    def probe_key(self) -> CheckKey:
        """What is probed and how, without the timing: checks with equal probe
        keys always get the same result."""
        return self[:4]

    def param(self, name: str, default: ParamValue = None) -> ParamValue:
        for key, value in self.params:
            if key == name:
                return value
        return default

    def text(self, name: str) -> Optional[str]:
        """A string option, or None when not set."""
        value = self.param(name)
        return value if isinstance(value, str) else None

    def texts(self, name: str) -> tuple[str, ...]:
        """A list-of-strings option (empty when not set)."""
        value = self.param(name)
        if not isinstance(value, tuple):
            return ()
        return tuple(item for item in value if isinstance(item, str))

    def pairs(self, name: str) -> tuple[tuple[str, str], ...]:
        """A mapping option stored as (name, value) pairs, such as `env`."""
        value = self.param(name)
        if not isinstance(value, tuple):
            return ()
        return tuple(
            (pair[0], pair[1])
            for pair in value
            if isinstance(pair, tuple)
            and len(pair) == 2
            and isinstance(pair[0], str)
            and isinstance(pair[1], str)
        )

    def integer(self, name: str, default: int) -> int:
        value = self.param(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return default

    def flag(self, name: str, default: bool) -> bool:
        value = self.param(name)
        return value if isinstance(value, bool) else default

    def describe(self) -> str:
        """Short name for logs: 'http 10.0.2.1:80'."""
        return "%s %s" % (self.type, format_endpoint(self.address, self.port))


class RealServerConfig:
    """A configured real server (`weight` is the configured weight) and its
    checks (none: the server counts as up).  Immutable."""

    # Most servers have one check, kept as itself: a tuple of one was 48 B
    # more per real server.  `checks` gives the tuple either way.
    __slots__ = ("_checks", "server")
    server: RealServer
    _checks: Union[CheckSpec, tuple[CheckSpec, ...]]

    def __init__(self, server: RealServer, checks: tuple[CheckSpec, ...] = ()) -> None:
        object.__setattr__(self, "server", server)
        bare = len(checks) == 1 and checks[0].__class__ is CheckSpec
        object.__setattr__(self, "_checks", checks[0] if bare else tuple(checks))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a RealServerConfig cannot be changed (%s)" % name)

    def __delattr__(self, name: str) -> None:
        raise AttributeError("a RealServerConfig cannot be changed (%s)" % name)

    @property
    def checks(self) -> tuple[CheckSpec, ...]:
        checks = self._checks
        return (checks,) if checks.__class__ is CheckSpec else checks  # type: ignore[return-value]

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not RealServerConfig:
            return NotImplemented
        mine, theirs = self._checks, other._checks
        return mine.__class__ is theirs.__class__ and mine == theirs and self.server == other.server

    def __hash__(self) -> int:
        return hash((self.server, self._checks))

    def __repr__(self) -> str:
        return "RealServerConfig(server=%r, checks=%r)" % (self.server, self.checks)

    @property
    def key(self) -> tuple[str, int]:
        return self.server.key

    def __reduce__(self) -> tuple[Any, ...]:
        # A check of the server's own endpoint is pickled without it and
        # unpickled with the server's own address and port objects: a pickle
        # shares equal strings but makes every int anew (a port above 256 is
        # an object of its own: two more per real server).  The server goes
        # as its settings (a configured server has no counters), so that its
        # repeated strings are interned on the way back (see ServiceConfig).
        server = self.server
        return (
            _real_server_config,
            (
                server._compared(),
                tuple(
                    (
                        spec.type,
                        spec.timing,
                        None if spec.address == server.address else spec.address,
                        None if spec.port == server.port else spec.port,
                        spec.params,
                    )
                    for spec in self.checks
                ),
            ),
        )


def _real_server_config(
    settings: tuple[Any, ...],
    checks: tuple[tuple[str, CheckTiming, Optional[str], Optional[int], Params], ...],
) -> RealServerConfig:
    """A RealServerConfig unpickled (see its __reduce__)."""
    address, port, forwarding, weight, upper, lower, tunnel_type, tunnel_port, checksum = settings
    server = RealServer(
        address,
        port,
        intern(forwarding),
        weight,
        upper,
        lower,
        intern(tunnel_type),
        tunnel_port,
        intern(checksum),
    )
    return RealServerConfig(
        server,
        tuple(
            CheckSpec(
                intern(check_type),
                timing,
                server.address if address is None else address,
                server.port if port is None else port,
                params,
            )
            for check_type, timing, address, port, params in checks
        ),
    )


@dataclass(frozen=True)
class QuorumConfig:
    """Same fields as desired.Quorum."""

    min_healthy_weight: Optional[int] = None
    min_healthy_fraction: Optional[float] = None
    hysteresis: int = 0


@dataclass(frozen=True, **SLOTS)
class ServiceConfig:
    service: Service
    real_servers: tuple[RealServerConfig, ...] = ()
    on_failure: str = "remove"  # remove | inhibit
    slow_start: float = 0.0  # seconds to ramp a recovered server's weight
    quorum: Optional[QuorumConfig] = None
    sorry_servers: tuple[RealServer, ...] = ()

    def __reduce__(self) -> tuple[Any, ...]:
        # Each service is a pickle of its own (config/forked.py), so every
        # string all services repeat (family, protocol, scheduler,
        # on_failure; its servers' forwarding and tunnel settings and its
        # checks' type, see RealServerConfig) was a copy per service after
        # the unpickle: they are interned there (about 40 B per real server
        # at 10 per service).  A configured service has no counters.
        service, key = self.service, self.service.key
        return (
            _service_config,
            (
                (key.family, key.protocol, key.address, key.port, key.fwmark),
                (
                    service.scheduler,
                    service.scheduler_flags,
                    service.one_packet,
                    service.persistence_timeout,
                    service.persistence_prefix,
                    service.persistence_engine,
                ),
                self.real_servers,
                self.on_failure,
                self.slow_start,
                self.quorum,
                self.sorry_servers,
            ),
        )

    @property
    def key(self) -> ServiceKey:
        return self.service.key

    @property
    def checks(self) -> tuple[CheckSpec, ...]:
        """Every distinct check of this service's real servers."""
        return tuple(
            {check.dedup_key: check for rs in self.real_servers for check in rs.checks}.values()
        )


def _service_config(
    key: tuple[Any, ...],
    settings: tuple[Any, ...],
    real_servers: tuple[RealServerConfig, ...],
    on_failure: str,
    slow_start: float,
    quorum: Optional[QuorumConfig],
    sorry_servers: tuple[RealServer, ...],
) -> ServiceConfig:
    """A ServiceConfig unpickled (see its __reduce__)."""
    family, protocol, address, port, fwmark = key
    scheduler, *rest = settings
    service = Service(
        ServiceKey(intern(family), intern(protocol), address, port, fwmark),
        intern(scheduler),
        *rest,
    )
    return ServiceConfig(
        service, real_servers, intern(on_failure), slow_start, quorum, sorry_servers
    )


@dataclass(frozen=True)
class ListenConfig:
    address: str
    port: int
    token_file: str
    tls_cert: Optional[str] = None  # PEM certificate chain; with tls_key, the listener speaks TLS
    tls_key: Optional[str] = None


@dataclass(frozen=True)
class NotifyConfig:
    command: tuple[str, ...]
    timeout: float = 10.0


@dataclass(frozen=True)
class GlobalSettings:
    name: str = "default"
    control_socket: str = "/run/haecs/monitor-default.sock"
    listen: Optional[ListenConfig] = None
    state_file: str = "/var/lib/haecs/monitor-default.state"
    reconcile_interval: float = 5.0
    drain_timeout: float = 60.0
    log_format: str = "json"
    notify: Optional[NotifyConfig] = None
    script_user: str = "nobody"
    on_exit: str = "keep"  # keep | remove
    check_defaults: CheckTiming = DEFAULT_TIMING


@dataclass(frozen=True)
class MonitorConfig:
    settings: GlobalSettings
    services: tuple[ServiceConfig, ...] = ()
    # Services another owner programs: never drained or deleted on a reload.
    static_services: frozenset[ServiceKey] = frozenset()

    def unique_checks(self) -> dict[CheckKey, CheckSpec]:
        """Every check to run, once per dedup_key, in configuration order."""
        found: dict[CheckKey, CheckSpec] = {}
        for service in self.services:
            for real_server in service.real_servers:
                for check in real_server.checks:
                    found.setdefault(check.dedup_key, check)
        return found
