# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""IPVS settings outside the table: connection timeouts and sync daemons.

pyroute2 has neither, so this speaks IPVS_CMD_GET/SET_CONFIG and
IPVS_CMD_NEW/DEL/GET_DAEMON through `genl.GenlSocket`.  Encodings
follow net/netfilter/ipvs/ip_vs_ctl.c and ipvsadm's libipvs:

- timeouts are u32 seconds; a missing (or zero) attribute leaves that
  timeout unchanged (ip_vs_genl_set_config / ip_vs_set_timeout);
- a daemon is the nested IPVS_CMD_ATTR_DAEMON: STATE u32 (1 master,
  2 backup), MCAST_IFN NUL-terminated string (at most 15 characters),
  SYNC_ID u32, SYNC_MAXLEN u16, MCAST_GROUP 4 bytes in network order or
  MCAST_GROUP6 16 bytes, MCAST_PORT u16 in *host* order, MCAST_TTL u8.

The kernel runs at most one master and one backup daemon per network
namespace and cannot change a running one: a change is a stop followed by
a start, which briefly interrupts connection synchronisation.

No Ansible import: the monitor and the ha role's tooling use this file too.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .codec import (
    ATTR_DAEMON,
    ATTR_TIMEOUT_TCP,
    ATTR_TIMEOUT_TCP_FIN,
    ATTR_TIMEOUT_UDP,
    CMD_DEL_DAEMON,
    CMD_GET_CONFIG,
    CMD_GET_DAEMON,
    CMD_NEW_DAEMON,
    CMD_SET_CONFIG,
)
from .errors import HaecsError
from .genl import (
    GenlSocket,
    NetlinkError,
    nla,
    nla_nested,
    parse_attrs,
)
from .params import ValidationError, check_unknown, field_path

DAEMON_STATE = 1
DAEMON_MCAST_IFN = 2
DAEMON_SYNC_ID = 3
DAEMON_SYNC_MAXLEN = 4
DAEMON_MCAST_GROUP = 5
DAEMON_MCAST_GROUP6 = 6
DAEMON_MCAST_PORT = 7
DAEMON_MCAST_TTL = 8

MASTER = "master"
BACKUP = "backup"
DAEMON_STATES = (MASTER, BACKUP)
STATE_BITS = {MASTER: 1, BACKUP: 2}
STATE_NAMES = {bit: name for name, bit in STATE_BITS.items()}

# Kernel defaults (include/net/ip_vs.h, ip_vs_sync.c start_sync_thread).
DEFAULT_GROUP = "224.0.0.81"
DEFAULT_PORT = 8848
DEFAULT_TTL = 1
# The kernel keeps timeouts in jiffies in an int: seconds * HZ <= INT_MAX.
# 2147483 s (about 24.8 days) fits every HZ up to 1000.
MAX_TIMEOUT = 2147483
MAX_SYNC_ID = 255  # the sync message carries the id in one byte
IFNAME_MAX = 15  # IP_VS_IFNAME_MAXLEN (16) with its NUL
# UDP/IP header bytes the kernel subtracts from 65535 for sync_maxlen.
_HEADER_BYTES = {4: 20 + 8, 6: 40 + 8}
# The backup's receive buffer must hold at least this much (start_sync_thread).
MIN_BACKUP_MAXLEN = 1024

TIMEOUT_FIELDS = ("tcp", "tcp_fin", "udp")
DAEMON_FIELDS = ("state", "interface", "sync_id", "max_length", "group", "port", "ttl")

_U8 = struct.Struct("=B")
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")

_COMMON_HINTS = {
    errno.EPERM: "permission denied: changing IPVS settings needs root (CAP_NET_ADMIN)",
    errno.EAFNOSUPPORT: "this kernel has no IPv6 support in IPVS",
}
_TIMEOUT_HINTS = dict(_COMMON_HINTS)
_TIMEOUT_HINTS[errno.EINVAL] = "a timeout is out of range for this kernel"
_DAEMON_HINTS = dict(_COMMON_HINTS)
_DAEMON_HINTS.update(
    {
        errno.EEXIST: "a sync daemon in that state is already running",
        errno.ESRCH: "no sync daemon in that state is running",
        errno.ENODEV: "the interface does not exist",
        errno.EINVAL: "the kernel rejected the daemon settings; it also refuses to start one while "
        "a service has real servers of another address family",
    }
)


class KernelConfigError(HaecsError, RuntimeError):
    """The kernel refused a timeout or sync daemon change."""


# ------------------------------------------------------------------ timeouts


@dataclass(frozen=True)
class Timeouts:
    """Connection timeouts in seconds; 0 means "not set" (leave as is)."""

    tcp: int = 0
    tcp_fin: int = 0
    udp: int = 0

    def as_dict(self) -> Dict[str, int]:
        return {"tcp": self.tcp, "tcp_fin": self.tcp_fin, "udp": self.udp}

    def over(self, current: Timeouts) -> Timeouts:
        """These timeouts with every unset one taken from `current`."""
        return Timeouts(
            self.tcp or current.tcp, self.tcp_fin or current.tcp_fin, self.udp or current.udp
        )

    def ipvsadm_line(self) -> str:
        """`ipvsadm --set TCP TCPFIN UDP` (0 = unchanged, as ipvsadm reads it)."""
        return "--set %d %d %d" % (self.tcp, self.tcp_fin, self.udp)


def encode_timeouts(timeouts: Timeouts) -> bytes:
    """SET_CONFIG attributes: only the timeouts that are set."""
    parts = []
    for attr, value in (
        (ATTR_TIMEOUT_TCP, timeouts.tcp),
        (ATTR_TIMEOUT_TCP_FIN, timeouts.tcp_fin),
        (ATTR_TIMEOUT_UDP, timeouts.udp),
    ):
        if value:
            parts.append(nla(attr, _U32.pack(value)))
    return b"".join(parts)


def decode_timeouts(attrs: Mapping[int, bytes]) -> Timeouts:
    def seconds(attr: int) -> int:
        payload = attrs.get(attr)
        return int(_U32.unpack(payload[:4])[0]) if payload is not None and len(payload) >= 4 else 0

    return Timeouts(
        seconds(ATTR_TIMEOUT_TCP), seconds(ATTR_TIMEOUT_TCP_FIN), seconds(ATTR_TIMEOUT_UDP)
    )


def read_timeouts(sock: GenlSocket) -> Timeouts:
    answers = sock.request(CMD_GET_CONFIG)
    return decode_timeouts(answers[0] if answers else {})


def set_timeouts(sock: GenlSocket, timeouts: Timeouts) -> None:
    """Set the timeouts that are not 0; the others stay as they are."""
    payload = encode_timeouts(timeouts)
    if not payload:
        return
    try:
        sock.request(CMD_SET_CONFIG, payload)
    except NetlinkError as error:
        message = "kernel refused `ipvsadm %s`: %s" % (
            timeouts.ipvsadm_line(),
            explain(error, _TIMEOUT_HINTS),
        )
        raise KernelConfigError(message) from None


def plan_timeouts(current: Timeouts, desired: Timeouts) -> Optional[Timeouts]:
    """The complete timeouts to set, or None when `current` already satisfies `desired`."""
    target = desired.over(current)
    return None if target == current else target


# -------------------------------------------------------------- sync daemons


@dataclass(frozen=True)
class SyncDaemon:
    """One connection synchronisation daemon.

    `max_length` 0 lets the kernel choose (from the interface MTU); a daemon
    read from the kernel always has every field filled in.
    """

    state: str
    interface: str
    sync_id: int = 0
    max_length: int = 0
    group: str = DEFAULT_GROUP
    port: int = DEFAULT_PORT
    ttl: int = DEFAULT_TTL

    @property
    def group_version(self) -> int:
        return ipaddress.ip_address(self.group).version

    def satisfied_by(self, running: SyncDaemon) -> bool:
        """Whether `running` is this daemon (max_length 0 accepts any length)."""
        return (
            running.state == self.state
            and running.interface == self.interface
            and running.sync_id == self.sync_id
            and (self.max_length == 0 or running.max_length == self.max_length)
            and ipaddress.ip_address(running.group) == ipaddress.ip_address(self.group)
            and running.port == self.port
            and running.ttl == self.ttl
        )

    def ipvsadm_line(self) -> str:
        """The `ipvsadm --start-daemon` arguments that start this daemon."""
        parts = [
            "--start-daemon",
            self.state,
            "--mcast-interface",
            self.interface,
            "--syncid",
            str(self.sync_id),
        ]
        if self.max_length:
            parts += ["--sync-maxlen", str(self.max_length)]
        parts += [
            "--mcast-group",
            self.group,
            "--mcast-port",
            str(self.port),
            "--mcast-ttl",
            str(self.ttl),
        ]
        return " ".join(parts)

    def as_dict(self) -> Dict[str, Any]:
        return {
            "state": self.state,
            "interface": self.interface,
            "sync_id": self.sync_id,
            "max_length": self.max_length,
            "group": self.group,
            "port": self.port,
            "ttl": self.ttl,
        }


def encode_daemon(daemon: SyncDaemon) -> bytes:
    """The IPVS_CMD_ATTR_DAEMON attribute for NEW_DAEMON."""
    group = ipaddress.ip_address(daemon.group)
    parts = [
        nla(DAEMON_STATE, _U32.pack(STATE_BITS[daemon.state])),
        nla(DAEMON_MCAST_IFN, daemon.interface.encode() + b"\0"),
        nla(DAEMON_SYNC_ID, _U32.pack(daemon.sync_id)),
    ]
    if daemon.max_length:
        parts.append(nla(DAEMON_SYNC_MAXLEN, _U16.pack(daemon.max_length)))
    parts.append(
        nla(DAEMON_MCAST_GROUP if group.version == 4 else DAEMON_MCAST_GROUP6, group.packed)
    )
    parts.append(nla(DAEMON_MCAST_PORT, _U16.pack(daemon.port)))
    parts.append(nla(DAEMON_MCAST_TTL, _U8.pack(daemon.ttl)))
    return nla_nested(ATTR_DAEMON, *parts)


def encode_daemon_state(state: str) -> bytes:
    """The IPVS_CMD_ATTR_DAEMON attribute for DEL_DAEMON: the state only."""
    return nla_nested(ATTR_DAEMON, nla(DAEMON_STATE, _U32.pack(STATE_BITS[state])))


def decode_daemon(attrs: Mapping[int, bytes]) -> SyncDaemon:
    """A daemon from the attributes nested in IPVS_CMD_ATTR_DAEMON."""

    def number(attr: int, form: struct.Struct, default: int) -> int:
        payload = attrs.get(attr)
        if payload is None or len(payload) < form.size:
            return default
        return int(form.unpack(payload[: form.size])[0])

    state = number(DAEMON_STATE, _U32, 0)
    if DAEMON_MCAST_GROUP6 in attrs:
        group = ipaddress.IPv6Address(attrs[DAEMON_MCAST_GROUP6][:16]).compressed
    elif DAEMON_MCAST_GROUP in attrs:
        group = ipaddress.IPv4Address(attrs[DAEMON_MCAST_GROUP][:4]).compressed
    else:  # kernels before 4.3 report only state, interface and sync id
        group = DEFAULT_GROUP
    return SyncDaemon(
        state=STATE_NAMES.get(state, "state-%d" % state),
        interface=attrs.get(DAEMON_MCAST_IFN, b"").split(b"\0", 1)[0].decode(errors="replace"),
        sync_id=number(DAEMON_SYNC_ID, _U32, 0),
        max_length=number(DAEMON_SYNC_MAXLEN, _U16, 0),
        group=group,
        port=number(DAEMON_MCAST_PORT, _U16, DEFAULT_PORT),
        ttl=number(DAEMON_MCAST_TTL, _U8, DEFAULT_TTL),
    )


def read_daemons(sock: GenlSocket) -> List[SyncDaemon]:
    """The running daemons, master first."""
    daemons = [
        decode_daemon(parse_attrs(answer[ATTR_DAEMON]))
        for answer in sock.request(CMD_GET_DAEMON, dump=True)
        if ATTR_DAEMON in answer
    ]
    return sorted(daemons, key=_state_order)


def start_daemon(sock: GenlSocket, daemon: SyncDaemon) -> None:
    try:
        sock.request(CMD_NEW_DAEMON, encode_daemon(daemon))
    except NetlinkError as error:
        raise KernelConfigError(
            "kernel refused `ipvsadm %s`: %s"
            % (daemon.ipvsadm_line(), explain(error, _DAEMON_HINTS))
        ) from None


def stop_daemon(sock: GenlSocket, state: str) -> None:
    try:
        sock.request(CMD_DEL_DAEMON, encode_daemon_state(state))
    except NetlinkError as error:
        raise KernelConfigError(
            "kernel refused `ipvsadm --stop-daemon %s`: %s" % (state, explain(error, _DAEMON_HINTS))
        ) from None


START = "start"
STOP = "stop"


@dataclass(frozen=True)
class DaemonOperation:
    """Start or stop one daemon; a stop carries the daemon it stops."""

    kind: str
    daemon: SyncDaemon

    def ipvsadm_line(self) -> str:
        if self.kind == STOP:
            return "--stop-daemon %s" % self.daemon.state
        return self.daemon.ipvsadm_line()

    def inverse(self) -> DaemonOperation:
        return DaemonOperation(START if self.kind == STOP else STOP, self.daemon)


def plan_daemons(
    current: Sequence[SyncDaemon], desired: Sequence[SyncDaemon], purge: bool = False
) -> List[DaemonOperation]:
    """Operations that turn `current` into `desired`: stops first, then starts.

    A daemon that differs is restarted (the kernel cannot change a running
    one).  With `purge`, daemons in a state not in `desired` are stopped.
    """
    running = {daemon.state: daemon for daemon in current}
    wanted = {daemon.state: daemon for daemon in desired}
    stops: List[DaemonOperation] = []
    starts: List[DaemonOperation] = []
    for state in DAEMON_STATES:
        have, want = running.get(state), wanted.get(state)
        if want is None:
            if have is not None and purge:
                stops.append(DaemonOperation(STOP, have))
            continue
        if have is not None and want.satisfied_by(have):
            continue
        if have is not None:
            stops.append(DaemonOperation(STOP, have))
        starts.append(DaemonOperation(START, want))
    return stops + starts


def apply_daemons(sock: GenlSocket, operations: Sequence[DaemonOperation]) -> None:
    """Apply in order; if one fails, undo the earlier ones and raise KernelConfigError."""
    done: List[DaemonOperation] = []
    for operation in operations:
        try:
            _apply_one(sock, operation)
        except KernelConfigError as error:
            message = str(error)
            undo_failures = _undo(sock, done)
            if undo_failures:
                message += "; restoring the earlier state also failed: %s" % "; ".join(
                    undo_failures
                )
            elif done:
                message += "; the %d change(s) already made were undone" % len(done)
            raise KernelConfigError(message) from None
        done.append(operation)


def _apply_one(sock: GenlSocket, operation: DaemonOperation) -> None:
    if operation.kind == STOP:
        stop_daemon(sock, operation.daemon.state)
    else:
        start_daemon(sock, operation.daemon)


def _undo(sock: GenlSocket, done: Sequence[DaemonOperation]) -> List[str]:
    failures = []
    for operation in reversed(done):
        try:
            _apply_one(sock, operation.inverse())
        except KernelConfigError as error:
            failures.append(str(error))
    return failures


def daemon_lines(daemons: Sequence[SyncDaemon]) -> List[str]:
    return [daemon.ipvsadm_line() for daemon in sorted(daemons, key=_state_order)]


def _state_order(daemon: SyncDaemon) -> int:
    return (
        DAEMON_STATES.index(daemon.state) if daemon.state in DAEMON_STATES else len(DAEMON_STATES)
    )


def explain(error: NetlinkError, hints: Mapping[int, str]) -> str:
    hint = hints.get(error.code)
    return "%s (%s)" % (error.strerror, hint) if hint else str(error.strerror)


# ---------------------------------------------------------------- validation


def _int_field(
    params: Mapping[str, Any], name: str, prefix: str, low: int, high: int, hint: str = ""
) -> Optional[int]:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        rule = "must be an integer from %d to %d%s, got %r" % (low, high, hint, value)
        raise ValidationError(field_path(prefix, name), rule)
    return value


def parse_timeouts(params: Optional[Mapping[str, Any]], prefix: str = "timeouts") -> Timeouts:
    """Timeouts from {tcp, tcp_fin, udp}; a missing one stays as it is."""
    if params is None:
        return Timeouts()
    if not isinstance(params, Mapping):
        raise ValidationError(prefix, "must be a mapping with keys %s" % ", ".join(TIMEOUT_FIELDS))
    check_unknown(params, TIMEOUT_FIELDS, prefix)
    hint = " seconds (omit it to leave the timeout as it is)"
    values = [
        _int_field(params, name, prefix, 1, MAX_TIMEOUT, hint) or 0 for name in TIMEOUT_FIELDS
    ]
    return Timeouts(*values)


def parse_sync_daemon(params: Mapping[str, Any], prefix: str = "") -> SyncDaemon:
    """One daemon, checked as the kernel would (interface existence aside)."""
    if not isinstance(params, Mapping):
        raise ValidationError(prefix or "sync_daemon", "must be a mapping")
    check_unknown(params, DAEMON_FIELDS, prefix)
    state = params.get("state")
    if state not in DAEMON_STATES:
        raise ValidationError(
            field_path(prefix, "state"),
            "must be one of %s, got %r" % (", ".join(DAEMON_STATES), state),
        )
    interface = params.get("interface")
    if not isinstance(interface, str) or not interface:
        raise ValidationError(
            field_path(prefix, "interface"), "is required (the interface the sync messages use)"
        )
    if len(interface) > IFNAME_MAX or "/" in interface or any(char.isspace() for char in interface):
        raise ValidationError(
            field_path(prefix, "interface"), "is not a valid interface name: %r" % interface
        )
    sync_id = _int_field(params, "sync_id", prefix, 0, MAX_SYNC_ID) or 0
    group = _multicast_group(params.get("group"), field_path(prefix, "group"))
    version = ipaddress.ip_address(group).version
    low = MIN_BACKUP_MAXLEN if state == BACKUP else 1
    high = 65535 - _HEADER_BYTES[version]
    hint = " for a %s on an IPv%d group" % (state, version)
    max_length = _int_field(params, "max_length", prefix, low, high, hint) or 0
    port = _int_field(params, "port", prefix, 1, 65535)
    ttl = _int_field(params, "ttl", prefix, 1, 255)
    return SyncDaemon(
        state=state,
        interface=interface,
        sync_id=sync_id,
        max_length=max_length,
        group=group,
        port=DEFAULT_PORT if port is None else port,
        ttl=DEFAULT_TTL if ttl is None else ttl,
    )


def _multicast_group(value: Any, field: str) -> str:
    if value is None:
        return DEFAULT_GROUP
    try:
        group = ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise ValidationError(
            field, "must be an IPv4 or IPv6 multicast address, got %r" % (value,)
        ) from None
    if not group.is_multicast:
        raise ValidationError(
            field, "must be a multicast address (224.0.0.0/4 or ff00::/8), got %s" % group
        )
    return group.compressed


def parse_sync_daemons(
    items: Optional[Sequence[Any]], prefix: str = "sync_daemons"
) -> List[SyncDaemon]:
    """The daemon list: at most one master and one backup."""
    if items is None:
        return []
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise ValidationError(prefix, "must be a list")
    daemons: List[SyncDaemon] = []
    seen: Dict[str, int] = {}
    for index, item in enumerate(items):
        path = "%s[%d]" % (prefix, index)
        daemon = parse_sync_daemon(item, path)
        if daemon.state in seen:
            raise ValidationError(
                field_path(path, "state"),
                "%s is already sync_daemons[%d]: the kernel runs at most one master and one backup"
                % (daemon.state, seen[daemon.state]),
            )
        seen[daemon.state] = index
        daemons.append(daemon)
    return daemons


def missing_interfaces(
    daemons: Sequence[SyncDaemon], prefix: str = "sync_daemons"
) -> Optional[ValidationError]:
    """A ValidationError for the first daemon whose interface does not exist here.

    Checked in the caller's network namespace (if_nametoindex), which is
    where the kernel looks it up; /sys/class/net shows the namespace sysfs
    was mounted in, which differs under nsenter.
    """
    for index, daemon in enumerate(daemons):
        if not interface_exists(daemon.interface):
            return ValidationError(
                "%s[%d].interface" % (prefix, index),
                "no interface %r on this host" % daemon.interface,
            )
    return None


def interface_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def with_running_max_length(
    desired: Sequence[SyncDaemon], current: Sequence[SyncDaemon]
) -> List[SyncDaemon]:
    """Desired daemons as they will read back: a kernel-chosen max_length
    is taken from the running daemon they match (for results and diffs)."""
    running = {daemon.state: daemon for daemon in current}
    result = []
    for daemon in desired:
        have = running.get(daemon.state)
        if daemon.max_length == 0 and have is not None and daemon.satisfied_by(have):
            daemon = replace(daemon, max_length=have.max_length)
        result.append(daemon)
    return result


def daemon_summary(daemons: Sequence[SyncDaemon]) -> List[Dict[str, Any]]:
    return [daemon.as_dict() for daemon in sorted(daemons, key=_state_order)]
