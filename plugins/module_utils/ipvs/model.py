# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The IPVS table as plain data: virtual services, real servers, their keys.

No Ansible and no netlink here: the modules, the planner, the netlink codec
and the monitor all speak these types.  Equality ignores counters, so two
tables compare equal when the kernel would behave the same.

The types are small classes with `__slots__`, not dataclasses: a
whole-process read of a large table builds one object per entry, and in the
test kernel the `dataclasses` import (it pulls in `inspect`) and a frozen
dataclass's `__init__` cost more than decoding the netlink dump.  Their
attributes are `Final`: immutable as far as mypy sees, so hashing them is
safe; `replace` gives a changed copy.
"""

from __future__ import annotations

import operator
from _socket import AF_INET, AF_INET6, inet_ntop, inet_pton

TYPE_CHECKING = False  # typing only for mypy: see the package's docstring
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Final, Mapping, Optional, Tuple, TypeVar

    R = TypeVar("R", bound="Value")

IPV4 = "ipv4"
IPV6 = "ipv6"
FAMILIES = (IPV4, IPV6)

PROTOCOLS = ("tcp", "udp", "sctp")

# Every scheduler in the mainline kernel (net/netfilter/ipvs/ip_vs_*.c).
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh")
DEFAULT_SCHEDULER = "wlc"

# IP_VS_SVC_F_SCHED1/2/3 mean different things per scheduler.
SCHED_FLAG_BITS = {"fallback": 0x08, "port": 0x10}
SCHEDULER_FLAGS = ("sh-fallback", "sh-port", "mh-fallback", "mh-port")

FORWARDING_METHODS = ("masq", "route", "tunnel")
# The kernel reports "local" for a route/tunnel destination that is a local address.
FORWARDING_LOCAL = "local"

TUNNEL_TYPES = ("ipip", "gue", "gre")
TUNNEL_CHECKSUMS = ("none", "csum", "remcsum")

PERSISTENCE_ENGINES = ("sip",)

MAX_WEIGHT = 65535
MAX_THRESHOLD = 2**32 - 1
MAX_PERSISTENCE_TIMEOUT = 2678400  # 31 days, as keepalived allows
MAX_FWMARK = 2**32 - 1


_PARSED_ADDRESSES: Dict[str, Tuple[str, str, bool]] = {}
_PARSED_ADDRESSES_KEPT = 65536


def parse_address(text: str) -> Tuple[str, str, bool]:
    """(canonical text, family, is unicast) of an IP address; ValueError if none.

    Cached: a large table names the same real servers in many services.  A
    dict rather than functools.lru_cache, and ipaddress imported only for
    what is not a plain IPv4 address: a process that reads or converges the
    table does not pay for those imports (see the package's docstring).
    """
    parsed = _PARSED_ADDRESSES.get(text)
    if parsed is None:
        parsed = _parse_canonical_ipv4(text) or _parse_any_address(text)
        if len(_PARSED_ADDRESSES) < _PARSED_ADDRESSES_KEPT:
            _PARSED_ADDRESSES[text] = parsed
    return parsed


def _parse_canonical_ipv4(text: str) -> Optional[Tuple[str, str, bool]]:
    # Only a dotted quad that inet_ntop writes back unchanged: exactly the
    # texts ipaddress gives as their own compressed form.
    try:
        packed = inet_pton(AF_INET, text)
    except (OSError, TypeError, ValueError):
        return None
    if inet_ntop(AF_INET, packed) != text:
        return None
    multicast = 224 <= packed[0] <= 239
    return text, IPV4, not (multicast or packed == b"\0\0\0\0")


def _parse_any_address(text: str) -> Tuple[str, str, bool]:
    import ipaddress

    address = ipaddress.ip_address(text)
    family = IPV6 if address.version == 6 else IPV4
    return address.compressed, family, not (address.is_multicast or address.is_unspecified)


def family_of(address: str) -> str:
    """Return 'ipv4' or 'ipv6' for an IP address string."""
    return parse_address(address)[1]


def normalize_address(address: str) -> str:
    """Canonical text form of an IP address (compressed IPv6, no zone)."""
    return parse_address(address)[0]


def format_endpoint(address: str, port: int) -> str:
    """ipvsadm's notation: 10.0.0.1:80 or [2001:db8::1]:80."""
    if ":" in address:
        return "[%s]:%d" % (address, port)
    return "%s:%d" % (address, port)


class Value:
    """Equality and hash over `_compared()` (the fields that say what the
    kernel would do, not its counters), a repr of all `_fields`, and
    `replace`, a changed copy made through `__init__`, so that a subclass's
    normalising applies to it too."""

    __slots__: Tuple[str, ...] = ()
    _fields: Tuple[str, ...] = ()  # in the order of __init__'s arguments
    _arguments: Callable[[Any], Tuple[Any, ...]]  # the _fields' values, read in C

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls._arguments = operator.attrgetter(*cls._fields)

    def _compared(self) -> Tuple[Any, ...]:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._compared() == other._compared()

    def __ne__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._compared() != other._compared()

    def __hash__(self) -> int:
        return hash(self._compared())

    def __repr__(self) -> str:
        fields = ", ".join("%s=%r" % (name, getattr(self, name)) for name in self._fields)
        return "%s(%s)" % (self.__class__.__name__, fields)

    def replace(self: R, **changes: Any) -> R:
        values = self.as_dict()
        unknown = set(changes) - set(values)
        if unknown:
            raise TypeError("%s has no field %s" % (self.__class__.__name__, sorted(unknown)))
        values.update(changes)
        return self.__class__(**values)

    def as_dict(self) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in self._fields}

    def __reduce__(self) -> Tuple[Any, ...]:
        # The constructor's arguments: smaller and several times quicker to
        # pickle than the slots' state (the monitor's forked configuration
        # load pickles every real server), and a cached hash is made anew.
        return (self.__class__, self._arguments(self))


class ServiceKey(Value):
    """What the kernel identifies a virtual service by.

    Either (protocol, address, port) or (family, fwmark); the other fields
    are then empty/zero so keys stay comparable and hashable.  Keys sort by
    their fields in this order.
    """

    _fields = ("family", "protocol", "address", "port", "fwmark")
    __slots__ = (*_fields, "_hash")

    def __init__(
        self, family: str, protocol: str = "", address: str = "", port: int = 0, fwmark: int = 0
    ) -> None:
        self.family: Final = family
        self.protocol: Final = protocol
        self.address: Final = address
        self.port: Final = port
        self.fwmark: Final = fwmark
        # Keys are looked up in dicts all the time; hash them once.
        self._hash: Final = hash((family, protocol, address, port, fwmark))

    def _compared(self) -> Tuple[str, str, str, int, int]:
        return (self.family, self.protocol, self.address, self.port, self.fwmark)

    def __hash__(self) -> int:
        return self._hash

    def __lt__(self, other: ServiceKey) -> bool:
        return self._compared() < other._compared()

    def __le__(self, other: ServiceKey) -> bool:
        return self._compared() <= other._compared()

    def __gt__(self, other: ServiceKey) -> bool:
        return self._compared() > other._compared()

    def __ge__(self, other: ServiceKey) -> bool:
        return self._compared() >= other._compared()

    @classmethod
    def for_address(cls, protocol: str, address: str, port: int) -> ServiceKey:
        address = normalize_address(address)
        return cls(family_of(address), protocol, address, port, 0)

    @classmethod
    def for_fwmark(cls, fwmark: int, family: str = IPV4) -> ServiceKey:
        return cls(family, "", "", 0, fwmark)

    @property
    def is_fwmark(self) -> bool:
        return self.fwmark != 0

    def ipvsadm_args(self) -> str:
        """The service part of an ipvsadm command line: '-t 10.0.0.1:80'."""
        if self.is_fwmark:
            suffix = " -6" if self.family == IPV6 else ""
            return "-f %d%s" % (self.fwmark, suffix)
        option = {"tcp": "-t", "udp": "-u", "sctp": "--sctp-service"}[self.protocol]
        return "%s %s" % (option, format_endpoint(self.address, self.port))

    def __str__(self) -> str:
        if self.is_fwmark:
            return "fwmark %d (%s)" % (self.fwmark, self.family)
        return "%s %s" % (self.protocol, format_endpoint(self.address, self.port))


class Stats(Value):
    """Counters and rates of a service or real server (IPVS_STATS64)."""

    _fields = (
        "connections",
        "packets_in",
        "packets_out",
        "bytes_in",
        "bytes_out",
        "connections_per_second",
        "packets_in_per_second",
        "packets_out_per_second",
        "bytes_in_per_second",
        "bytes_out_per_second",
    )
    __slots__ = _fields

    def __init__(
        self,
        connections: int = 0,
        packets_in: int = 0,
        packets_out: int = 0,
        bytes_in: int = 0,
        bytes_out: int = 0,
        connections_per_second: int = 0,
        packets_in_per_second: int = 0,
        packets_out_per_second: int = 0,
        bytes_in_per_second: int = 0,
        bytes_out_per_second: int = 0,
    ) -> None:
        self.connections: Final = connections
        self.packets_in: Final = packets_in
        self.packets_out: Final = packets_out
        self.bytes_in: Final = bytes_in
        self.bytes_out: Final = bytes_out
        self.connections_per_second: Final = connections_per_second
        self.packets_in_per_second: Final = packets_in_per_second
        self.packets_out_per_second: Final = packets_out_per_second
        self.bytes_in_per_second: Final = bytes_in_per_second
        self.bytes_out_per_second: Final = bytes_out_per_second

    def _compared(self) -> Tuple[int, ...]:
        return tuple(getattr(self, name) for name in self._fields)


_FORWARDING_FLAG = {"masq": "-m", "route": "-g", "tunnel": "-i", FORWARDING_LOCAL: "-g"}


def _full_prefix(family: str) -> int:
    return 128 if family == IPV6 else 32


class Service(Value):
    """A virtual service's own attributes (its real servers live beside it).

    `persistence_prefix` is the prefix length of the persistence granularity
    (an IPv4 netmask as a prefix); `stats` is not compared.
    """

    _fields = (
        "key",
        "scheduler",
        "scheduler_flags",
        "one_packet",
        "persistence_timeout",
        "persistence_prefix",
        "persistence_engine",
        "stats",
    )
    __slots__ = _fields

    def __init__(
        self,
        key: ServiceKey,
        scheduler: str = DEFAULT_SCHEDULER,
        scheduler_flags: Tuple[str, ...] = (),
        one_packet: bool = False,
        persistence_timeout: Optional[int] = None,
        persistence_prefix: Optional[int] = None,
        persistence_engine: Optional[str] = None,
        stats: Optional[Stats] = None,
    ) -> None:
        # One form per kernel state: the kernel reports a full-length mask
        # (/32, /128) and the mask of a non-persistent service as no mask.
        if persistence_prefix is not None and (
            persistence_timeout is None or persistence_prefix == _full_prefix(key.family)
        ):
            persistence_prefix = None
        self.key: Final = key
        self.scheduler: Final = scheduler
        self.scheduler_flags: Final = scheduler_flags
        self.one_packet: Final = one_packet
        self.persistence_timeout: Final = persistence_timeout
        self.persistence_prefix: Final = persistence_prefix
        self.persistence_engine: Final = persistence_engine
        self.stats: Final = stats

    def _compared(self) -> Tuple[Any, ...]:
        return (
            self.key,
            self.scheduler,
            self.scheduler_flags,
            self.one_packet,
            self.persistence_timeout,
            self.persistence_prefix,
            self.persistence_engine,
        )

    @property
    def persistent(self) -> bool:
        return self.persistence_timeout is not None

    @property
    def effective_prefix(self) -> int:
        if self.persistence_prefix is not None:
            return self.persistence_prefix
        return _full_prefix(self.key.family)

    def ipvsadm_line(self, command: str = "-A") -> str:
        # Same option order as `ipvsadm -Sn`, so lines compare as text.
        parts = [command, self.key.ipvsadm_args(), "-s", self.scheduler]
        if self.persistent:
            parts += ["-p", str(self.persistence_timeout)]
            prefix = self.effective_prefix
            if self.key.family == IPV4 and prefix != 32:
                parts += ["-M", prefix_to_netmask(prefix)]
            elif self.key.family == IPV6 and prefix != 128:
                parts += ["-M", str(prefix)]
        if self.persistence_engine:
            parts += ["--pe", self.persistence_engine]
        if self.one_packet:
            parts.append("-o")
        if self.scheduler_flags:
            parts += ["-b", ",".join(self.scheduler_flags)]
        return " ".join(parts)


# What the kernel acts on, in the order of RealServer's arguments.
REAL_SERVER_SETTINGS = (
    "address",
    "port",
    "forwarding",
    "weight",
    "upper_threshold",
    "lower_threshold",
    "tunnel_type",
    "tunnel_port",
    "tunnel_checksum",
)

_real_server_settings = operator.attrgetter(*REAL_SERVER_SETTINGS)


class RealServer(Value):
    """A real server (IPVS destination) of one virtual service.

    The counters (connections, `stats`) are not compared.
    """

    _fields = (
        *REAL_SERVER_SETTINGS,
        "active_connections",
        "inactive_connections",
        "persistent_connections",
        "stats",
    )
    # _key: the key tuple, made on first use and kept (the monitor keys
    # several tables of tens of thousands of servers by it; one tuple each).
    __slots__ = (*_fields, "_key")
    _key: Tuple[str, int]

    def __init__(
        self,
        address: str,
        port: int,
        forwarding: str = "route",
        weight: int = 1,
        upper_threshold: int = 0,
        lower_threshold: int = 0,
        tunnel_type: str = "ipip",
        tunnel_port: int = 0,
        tunnel_checksum: str = "none",
        active_connections: int = 0,
        inactive_connections: int = 0,
        persistent_connections: int = 0,
        stats: Optional[Stats] = None,
    ) -> None:
        self.address: Final = address
        self.port: Final = port
        self.forwarding: Final = forwarding
        self.weight: Final = weight
        self.upper_threshold: Final = upper_threshold
        self.lower_threshold: Final = lower_threshold
        self.tunnel_type: Final = tunnel_type
        self.tunnel_port: Final = tunnel_port
        self.tunnel_checksum: Final = tunnel_checksum
        self.active_connections: Final = active_connections
        self.inactive_connections: Final = inactive_connections
        self.persistent_connections: Final = persistent_connections
        self.stats: Final = stats

    def _compared(self) -> Tuple[Any, ...]:
        return (
            self.address,
            self.port,
            self.forwarding,
            self.weight,
            self.upper_threshold,
            self.lower_threshold,
            self.tunnel_type,
            self.tunnel_port,
            self.tunnel_checksum,
        )

    @property
    def key(self) -> Tuple[str, int]:
        try:
            return self._key
        except AttributeError:
            key = self._key = (self.address, self.port)
            return key

    @property
    def family(self) -> str:
        return family_of(self.address)

    def canonical(self) -> RealServer:
        """Tunnel settings only mean something for tunnel forwarding."""
        if self.forwarding == "tunnel":
            return self
        if (self.tunnel_type, self.tunnel_port, self.tunnel_checksum) == ("ipip", 0, "none"):
            return self
        return RealServer(
            self.address,
            self.port,
            self.forwarding,
            self.weight,
            self.upper_threshold,
            self.lower_threshold,
            active_connections=self.active_connections,
            inactive_connections=self.inactive_connections,
            persistent_connections=self.persistent_connections,
            stats=self.stats,
        )

    def same_as(self, other: RealServer) -> bool:
        """True when the kernel would treat both alike.

        A route or tunnel destination that is a local address is reported
        back by the kernel as 'local'; that is not a difference.
        """
        if _real_server_settings(self) == _real_server_settings(other):
            return True  # what a converge with nothing to do sees, read in C
        mine, theirs = self.canonical(), other.canonical()
        if FORWARDING_LOCAL in (mine.forwarding, theirs.forwarding):
            forwardings = {mine.forwarding, theirs.forwarding}
            if forwardings <= {FORWARDING_LOCAL, "route", "tunnel"}:
                theirs = _with_forwarding(theirs, mine.forwarding)
        return mine == theirs

    def ipvsadm_line(
        self, service: ServiceKey, command: str = "-a", thresholds: bool = True
    ) -> str:
        """An ipvsadm command line for this server.

        thresholds=False gives exactly what `ipvsadm -Sn` prints, which never
        shows -x/-y (see `thresholds_line` for those).
        """
        parts = [
            command,
            service.ipvsadm_args(),
            "-r",
            format_endpoint(self.address, self.port),
            _FORWARDING_FLAG[self.forwarding],
            "-w",
            str(self.weight),
        ]
        if thresholds:
            if self.upper_threshold:
                parts += ["-x", str(self.upper_threshold)]
            if self.lower_threshold:
                parts += ["-y", str(self.lower_threshold)]
        if self.forwarding == "tunnel":
            parts += ["--tun-type", self.tunnel_type]
            if self.tunnel_port:
                parts += ["--tun-port", str(self.tunnel_port)]
            if self.tunnel_type != "ipip":
                # ipvsadm names the checksum mode of every gue and gre tunnel.
                parts.append(
                    "--tun-%s"
                    % ("nocsum" if self.tunnel_checksum == "none" else self.tunnel_checksum)
                )
        return " ".join(parts)

    def thresholds_line(self, service: ServiceKey) -> Optional[str]:
        """'-t VIP:80 -r RIP:80 -x 100 -y 10', or None when both are 0.

        `ipvsadm -Sn` does not print thresholds; this is their separate form.
        """
        if not (self.upper_threshold or self.lower_threshold):
            return None
        return "%s -r %s -x %d -y %d" % (
            service.ipvsadm_args(),
            format_endpoint(self.address, self.port),
            self.upper_threshold,
            self.lower_threshold,
        )

    def summary(self) -> Dict[str, object]:
        """Settings and live counters as a plain dict (for module results)."""
        result: Dict[str, object] = {
            "address": self.address,
            "port": self.port,
            "forwarding": self.forwarding,
            "weight": self.weight,
            "upper_threshold": self.upper_threshold,
            "lower_threshold": self.lower_threshold,
            "active_connections": self.active_connections,
            "inactive_connections": self.inactive_connections,
            "persistent_connections": self.persistent_connections,
        }
        if self.forwarding == "tunnel":
            result.update(
                tunnel_type=self.tunnel_type,
                tunnel_port=self.tunnel_port,
                tunnel_checksum=self.tunnel_checksum,
            )
        if self.stats is not None:
            result["stats"] = self.stats.as_dict()
        return result


def _with_forwarding(server: RealServer, forwarding: str) -> RealServer:
    return RealServer(
        server.address,
        server.port,
        forwarding,
        server.weight,
        server.upper_threshold,
        server.lower_threshold,
        server.tunnel_type,
        server.tunnel_port,
        server.tunnel_checksum,
    )


class VirtualService:
    """A service with its real servers, keyed by (address, port)."""

    __slots__ = ("real_servers", "service")

    def __init__(
        self,
        service: Service,
        real_servers: Optional[Dict[Tuple[str, int], RealServer]] = None,
    ) -> None:
        self.service = service
        self.real_servers: Dict[Tuple[str, int], RealServer] = (
            {} if real_servers is None else real_servers
        )

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not VirtualService:
            return NotImplemented
        return self.service == other.service and self.real_servers == other.real_servers

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return "VirtualService(service=%r, real_servers=%r)" % (self.service, self.real_servers)

    @property
    def key(self) -> ServiceKey:
        return self.service.key

    def ipvsadm_lines(self) -> list[str]:
        """This service as `ipvsadm -Sn` prints it, byte for byte (no thresholds)."""
        lines = [self.service.ipvsadm_line()]
        for server_key in sorted(self.real_servers, key=_real_server_order):
            lines.append(self.real_servers[server_key].ipvsadm_line(self.key, thresholds=False))
        return lines

    def thresholds_lines(self) -> list[str]:
        """`RealServer.thresholds_line` of each server that has thresholds."""
        lines = []
        for server_key in sorted(self.real_servers, key=_real_server_order):
            line = self.real_servers[server_key].thresholds_line(self.key)
            if line is not None:
                lines.append(line)
        return lines

    def summary(self) -> Dict[str, object]:
        service = self.service
        result: Dict[str, object] = {"family": service.key.family}
        if service.key.is_fwmark:
            result["fwmark"] = service.key.fwmark
        else:
            result.update(
                protocol=service.key.protocol,
                address=service.key.address,
                port=service.key.port,
            )
        result.update(
            scheduler=service.scheduler,
            scheduler_flags=list(service.scheduler_flags),
            one_packet=service.one_packet,
            persistence_timeout=service.persistence_timeout,
            persistence_engine=service.persistence_engine,
        )
        if service.persistent:
            if service.key.family == IPV4:
                result["persistence_netmask"] = prefix_to_netmask(service.effective_prefix)
            else:
                result["persistence_prefix_length"] = service.effective_prefix
        if service.stats is not None:
            result["stats"] = service.stats.as_dict()
        result["real_servers"] = [
            self.real_servers[k].summary()
            for k in sorted(self.real_servers, key=_real_server_order)
        ]
        return result


if TYPE_CHECKING:
    Table = Dict[ServiceKey, VirtualService]
else:
    Table = dict  # only annotations name it, and they are not evaluated


def _address_order(address: str) -> Tuple[int, bytes]:
    # Packed (big-endian) addresses sort as their numbers do, and inet_pton
    # costs a fraction of parsing with ipaddress, once per entry of a table.
    if ":" in address:
        return (6, inet_pton(AF_INET6, address))
    return (4, inet_pton(AF_INET, address))


def _real_server_order(key: Tuple[str, int]) -> Tuple[int, bytes, int]:
    version, packed = _address_order(key[0])
    return (version, packed, key[1])


if TYPE_CHECKING:
    ServiceOrder = Tuple[int, int, int, bytes, int]


def service_order(key: ServiceKey) -> ServiceOrder:
    """Sort services like ipvsadm: by family, fwmark, protocol, address, port."""
    address = _address_order(key.address)[1] if key.address else b""
    family = 6 if key.family == IPV6 else 4
    protocol = PROTOCOLS.index(key.protocol) if key.protocol else -1
    return (family, key.fwmark, protocol, address, key.port)


def table_lines(table: Mapping[ServiceKey, VirtualService]) -> list[str]:
    """The table as `ipvsadm -Sn`-style lines, in a stable order."""
    lines: list[str] = []
    for key in sorted(table, key=service_order):
        lines.extend(table[key].ipvsadm_lines())
    return lines


def table_thresholds(table: Mapping[ServiceKey, VirtualService]) -> list[str]:
    """Thresholds of the table (which `ipvsadm -Sn` leaves out), one line per server."""
    lines: list[str] = []
    for key in sorted(table, key=service_order):
        lines.extend(table[key].thresholds_lines())
    return lines


THRESHOLDS_LABEL = "# thresholds (not shown by ipvsadm -Sn): "


def diff_text(table: Mapping[ServiceKey, VirtualService]) -> str:
    """Diff text: the `ipvsadm -Sn` lines, then labelled threshold comment lines."""
    lines = table_lines(table)
    lines += [THRESHOLDS_LABEL + line for line in table_thresholds(table)]
    return "".join(line + "\n" for line in lines)


def prefix_to_netmask(prefix: int) -> str:
    import ipaddress

    return str(ipaddress.IPv4Network("0.0.0.0/%d" % prefix).netmask)


def netmask_to_prefix(netmask: str) -> int:
    """Prefix length of a dotted IPv4 netmask; ValueError if not contiguous."""
    import ipaddress

    return ipaddress.IPv4Network("0.0.0.0/%s" % netmask).prefixlen
