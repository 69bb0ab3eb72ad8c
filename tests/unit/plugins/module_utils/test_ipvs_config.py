"""Timeouts and sync daemons: the wire format, planning, undo and validation."""

from __future__ import annotations

import errno
import struct
from typing import Dict, List, Optional, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs import codec as nl
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs import config as cfg
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs import genl
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.params import ValidationError


def inner(encoded: bytes, attr_type: int) -> Dict[int, bytes]:
    return genl.parse_attrs(genl.parse_attrs(encoded)[attr_type])


class FakeSocket:
    """Records requests; answers from `replies`; fails the commands in `fail`."""

    def __init__(self, replies: Optional[Dict[int, List[Dict[int, bytes]]]] = None) -> None:
        self.replies = replies or {}
        self.sent: List[Tuple[int, bytes, bool]] = []
        self.fail: Dict[int, List[int]] = {}  # cmd -> errno per call (0 = success)

    def request(self, cmd: int, payload: bytes = b"", dump: bool = False) -> List[Dict[int, bytes]]:
        self.sent.append((cmd, payload, dump))
        codes = self.fail.get(cmd)
        if codes:
            code = codes.pop(0)
            if code:
                raise genl.NetlinkError(code)
        return self.replies.get(cmd, [])


# ------------------------------------------------------------------ timeouts


def test_timeouts_golden_bytes_only_set_values() -> None:
    encoded = cfg.encode_timeouts(cfg.Timeouts(tcp=900, udp=60))
    assert encoded == struct.pack("=HHI", 8, 4, 900) + struct.pack("=HHI", 8, 6, 60)


@given(
    st.integers(0, cfg.MAX_TIMEOUT),
    st.integers(0, cfg.MAX_TIMEOUT),
    st.integers(0, cfg.MAX_TIMEOUT),
)
def test_timeouts_round_trip(tcp: int, fin: int, udp: int) -> None:
    timeouts = cfg.Timeouts(tcp, fin, udp)
    assert cfg.decode_timeouts(genl.parse_attrs(cfg.encode_timeouts(timeouts))) == timeouts


def test_plan_timeouts_fills_unset_from_current() -> None:
    current = cfg.Timeouts(900, 120, 300)
    assert cfg.plan_timeouts(current, cfg.Timeouts(tcp=900)) is None
    assert cfg.plan_timeouts(current, cfg.Timeouts()) is None
    assert cfg.plan_timeouts(current, cfg.Timeouts(udp=60)) == cfg.Timeouts(900, 120, 60)
    assert cfg.Timeouts(900, 120, 60).ipvsadm_line() == "--set 900 120 60"


def test_read_and_set_timeouts() -> None:
    sock = FakeSocket(
        {nl.CMD_GET_CONFIG: [genl.parse_attrs(cfg.encode_timeouts(cfg.Timeouts(900, 120, 300)))]}
    )
    assert cfg.read_timeouts(sock) == cfg.Timeouts(900, 120, 300)  # type: ignore[arg-type]
    cfg.set_timeouts(sock, cfg.Timeouts())  # type: ignore[arg-type]
    assert [cmd for cmd, _p, _d in sock.sent] == [nl.CMD_GET_CONFIG]
    sock.fail[nl.CMD_SET_CONFIG] = [errno.EINVAL]
    with pytest.raises(cfg.KernelConfigError, match=r"`ipvsadm --set 5 0 0`: .*out of range"):
        cfg.set_timeouts(sock, cfg.Timeouts(tcp=5))  # type: ignore[arg-type]


def test_read_timeouts_empty_answer() -> None:
    assert cfg.read_timeouts(FakeSocket()) == cfg.Timeouts()  # type: ignore[arg-type]


# -------------------------------------------------------------- sync daemons


def test_daemon_golden_bytes() -> None:
    """The layout of ip_vs_ctl.c / libipvs: port in host order, group as in_addr."""
    daemon = cfg.SyncDaemon("master", "eth1", 10, 0, "239.1.2.3", 9000, 2)
    body = (
        struct.pack("=HHI", 8, 1, 1)
        + struct.pack("=HH", 9, 2) + b"eth1\0" + b"\0\0\0"
        + struct.pack("=HHI", 8, 3, 10)
        + struct.pack("=HH", 8, 5) + bytes([239, 1, 2, 3])
        + struct.pack("=HHH", 6, 7, 9000) + b"\0\0"
        + struct.pack("=HHB", 5, 8, 2) + b"\0\0\0"
    )  # fmt: skip
    assert (
        cfg.encode_daemon(daemon) == struct.pack("=HH", 4 + len(body), 3 | genl.NLA_F_NESTED) + body
    )


def test_daemon_state_only_for_stop() -> None:
    attrs = inner(cfg.encode_daemon_state("backup"), nl.ATTR_DAEMON)
    assert attrs == {cfg.DAEMON_STATE: struct.pack("=I", 2)}


group4 = st.ip_addresses(v=4, network="224.0.0.0/4").map(str)
group6 = st.ip_addresses(v=6, network="ff00::/8").map(lambda a: a.compressed)


@given(
    st.sampled_from(cfg.DAEMON_STATES),
    st.text("abcdefghij0123456789.-_", min_size=1, max_size=15),
    st.integers(0, 255),
    st.integers(0, 65487),
    st.one_of(group4, group6),
    st.integers(1, 65535),
    st.integers(1, 255),
)
def test_daemon_round_trip(
    state: str, ifname: str, sync_id: int, maxlen: int, group: str, port: int, ttl: int
) -> None:
    daemon = cfg.SyncDaemon(state, ifname, sync_id, maxlen, group, port, ttl)
    assert cfg.decode_daemon(inner(cfg.encode_daemon(daemon), nl.ATTR_DAEMON)) == daemon


def test_decode_daemon_old_kernel_defaults() -> None:
    attrs = {
        cfg.DAEMON_STATE: struct.pack("=I", 2),
        cfg.DAEMON_MCAST_IFN: b"eth0\0",
        cfg.DAEMON_SYNC_ID: struct.pack("=I", 3),
    }
    assert cfg.decode_daemon(attrs) == cfg.SyncDaemon("backup", "eth0", 3, 0, "224.0.0.81", 8848, 1)


def test_read_daemons_master_first() -> None:
    backup = cfg.SyncDaemon("backup", "eth0", 1, 1472)
    master = cfg.SyncDaemon("master", "eth1", 2, 1472)
    answers = [genl.parse_attrs(cfg.encode_daemon(d)) for d in (backup, master)]
    sock = FakeSocket({nl.CMD_GET_DAEMON: answers})
    assert cfg.read_daemons(sock) == [master, backup]  # type: ignore[arg-type]
    assert sock.sent[0][2] is True  # a dump


def test_ipvsadm_lines() -> None:
    daemon = cfg.SyncDaemon("backup", "eth1", 7, 2000, "239.1.1.1", 9000, 2)
    assert daemon.ipvsadm_line() == (
        "--start-daemon backup --mcast-interface eth1 --syncid 7 --sync-maxlen 2000 "
        "--mcast-group 239.1.1.1 --mcast-port 9000 --mcast-ttl 2"
    )
    assert "--sync-maxlen" not in cfg.SyncDaemon("master", "eth1").ipvsadm_line()
    assert cfg.DaemonOperation(cfg.STOP, daemon).ipvsadm_line() == "--stop-daemon backup"


# ------------------------------------------------------------------ planning

M = cfg.SyncDaemon("master", "eth1", 10, 1472)
B = cfg.SyncDaemon("backup", "eth1", 10, 1472)


def kinds(ops: List[cfg.DaemonOperation]) -> List[Tuple[str, str]]:
    return [(op.kind, op.daemon.state) for op in ops]


def test_plan_start_missing() -> None:
    assert kinds(cfg.plan_daemons([], [M, B])) == [("start", "master"), ("start", "backup")]


def test_plan_same_is_empty_and_max_length_zero_accepts_any() -> None:
    assert cfg.plan_daemons([M, B], [M, B]) == []
    assert cfg.plan_daemons([M], [cfg.SyncDaemon("master", "eth1", 10)]) == []
    assert cfg.plan_daemons([M], [cfg.SyncDaemon("master", "eth1", 10, 1400)]) != []


def test_plan_change_is_stop_then_start_stops_first() -> None:
    changed_master = cfg.SyncDaemon("master", "eth1", 11)
    changed_backup = cfg.SyncDaemon("backup", "eth2", 10)
    ops = cfg.plan_daemons([M, B], [changed_master, changed_backup])
    assert kinds(ops) == [
        ("stop", "master"),
        ("stop", "backup"),
        ("start", "master"),
        ("start", "backup"),
    ]
    assert ops[0].daemon == M and ops[2].daemon == changed_master


def test_plan_purge() -> None:
    assert cfg.plan_daemons([M, B], [M]) == []
    assert kinds(cfg.plan_daemons([M, B], [M], purge=True)) == [("stop", "backup")]
    assert kinds(cfg.plan_daemons([M, B], [], purge=True)) == [
        ("stop", "master"),
        ("stop", "backup"),
    ]


def test_ipv6_group_compares_by_value() -> None:
    running = cfg.SyncDaemon("master", "eth1", 1, 1452, "ff02::1:81")
    assert cfg.SyncDaemon("master", "eth1", 1, 0, "FF02:0:0::1:81").satisfied_by(running)


def test_apply_undoes_on_failure() -> None:
    sock = FakeSocket()
    new_master = cfg.SyncDaemon("master", "eth1", 11)
    ops = cfg.plan_daemons([M], [new_master])
    sock.fail[nl.CMD_NEW_DAEMON] = [errno.ENODEV, 0]  # the start fails, the restore works
    with pytest.raises(
        cfg.KernelConfigError,
        match=r"No such device \(the interface does not exist\); the 1 change",
    ):
        cfg.apply_daemons(sock, ops)  # type: ignore[arg-type]
    assert [cmd for cmd, _p, _d in sock.sent] == [
        nl.CMD_DEL_DAEMON,
        nl.CMD_NEW_DAEMON,
        nl.CMD_NEW_DAEMON,
    ]
    assert sock.sent[-1][1] == cfg.encode_daemon(M)  # the old master came back


def test_apply_reports_failed_undo() -> None:
    sock = FakeSocket()
    sock.fail[nl.CMD_NEW_DAEMON] = [errno.EINVAL, errno.EEXIST]
    with pytest.raises(cfg.KernelConfigError, match="restoring the earlier state also failed"):
        cfg.apply_daemons(sock, cfg.plan_daemons([M], [cfg.SyncDaemon("master", "eth1", 11)]))  # type: ignore[arg-type]


def test_apply_stop_failure_without_earlier_changes() -> None:
    sock = FakeSocket()
    sock.fail[nl.CMD_DEL_DAEMON] = [errno.ESRCH]
    with pytest.raises(
        cfg.KernelConfigError, match=r"--stop-daemon backup`: No such process"
    ) as raised:
        cfg.apply_daemons(sock, cfg.plan_daemons([B], [], purge=True))  # type: ignore[arg-type]
    assert "undone" not in str(raised.value)


def test_with_running_max_length() -> None:
    wanted = [cfg.SyncDaemon("master", "eth1", 10), cfg.SyncDaemon("backup", "eth1", 9)]
    filled = cfg.with_running_max_length(wanted, [M, B])
    assert filled[0].max_length == 1472 and filled[1].max_length == 0


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"tcp": 0}, "timeouts.tcp"),
        ({"udp": cfg.MAX_TIMEOUT + 1}, "timeouts.udp"),
        ({"tcp_fin": True}, "timeouts.tcp_fin"),
        ({"tcp_fin": "x"}, "timeouts.tcp_fin"),
        ({"tcpp": 1}, "timeouts.tcpp"),
    ],
)
def test_bad_timeouts(params: dict, field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        cfg.parse_timeouts(params)
    assert raised.value.field == field


def test_good_timeouts() -> None:
    assert cfg.parse_timeouts(None) == cfg.Timeouts()
    assert cfg.parse_timeouts({"tcp": "600", "tcp_fin": None}) == cfg.Timeouts(tcp=600)
    with pytest.raises(ValidationError, match="must be a mapping"):
        cfg.parse_timeouts([1])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("params", "field", "text"),
    [
        ({"state": "primary", "interface": "eth0"}, "d.state", "must be one of master, backup"),
        ({"state": "master"}, "d.interface", "is required"),
        ({"state": "master", "interface": "a" * 16}, "d.interface", "not a valid interface name"),
        ({"state": "master", "interface": "eth0", "sync_id": 256}, "d.sync_id", "from 0 to 255"),
        (
            {"state": "master", "interface": "eth0", "group": "10.0.0.1"},
            "d.group",
            "must be a multicast address",
        ),
        (
            {"state": "master", "interface": "eth0", "group": "2001:db8::1"},
            "d.group",
            "must be a multicast address",
        ),
        (
            {"state": "master", "interface": "eth0", "group": "nope"},
            "d.group",
            "multicast address, got 'nope'",
        ),
        (
            {"state": "backup", "interface": "eth0", "max_length": 1023},
            "d.max_length",
            "from 1024 to 65507",
        ),
        (
            {"state": "master", "interface": "eth0", "max_length": 65500, "group": "ff02::1"},
            "d.max_length",
            "from 1 to 65487",
        ),
        ({"state": "master", "interface": "eth0", "port": 0}, "d.port", "from 1 to 65535"),
        ({"state": "master", "interface": "eth0", "ttl": 256}, "d.ttl", "from 1 to 255"),
        ({"state": "master", "interface": "eth0", "colour": 1}, "d.colour", "unknown option"),
    ],
)
def test_bad_daemon(params: dict, field: str, text: str) -> None:
    with pytest.raises(ValidationError, match=text) as raised:
        cfg.parse_sync_daemon(params, "d")
    assert raised.value.field == field


def test_daemon_defaults_and_list_rules() -> None:
    daemon = cfg.parse_sync_daemon(
        {"state": "master", "interface": "eth0", "group": "FF02::0:1:81"}
    )
    assert daemon == cfg.SyncDaemon("master", "eth0", 0, 0, "ff02::1:81", 8848, 1)
    with pytest.raises(ValidationError, match=r"master is already sync_daemons\[0\]") as raised:
        cfg.parse_sync_daemons(
            [{"state": "master", "interface": "a"}, {"state": "master", "interface": "b"}]
        )
    assert raised.value.field == "sync_daemons[1].state"
    with pytest.raises(ValidationError, match="must be a list"):
        cfg.parse_sync_daemons("master")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="must be a mapping"):
        cfg.parse_sync_daemons(["master"])
    assert cfg.parse_sync_daemons(None) == []


def test_missing_interfaces() -> None:
    daemons = [cfg.SyncDaemon("master", "lo"), cfg.SyncDaemon("backup", "nosuch-haecs0")]
    error = cfg.missing_interfaces(daemons)
    assert error is not None and error.field == "sync_daemons[1].interface"
    assert cfg.missing_interfaces(daemons[:1]) is None
