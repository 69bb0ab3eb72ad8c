"""The tcp check against real sockets on 127.0.0.1, by either method
("connect", and "syn" where this process may open a raw socket)."""

from __future__ import annotations

import socket
import time

import pytest
from checkhelp import free_port, probe, spec
from haecs_monitor.checks.syn import method

UP = {"connect": "connected", "syn": "SYN-ACK: listening"}
REFUSED = {"connect": "connect: Connection refused", "syn": "refused (RST)"}


def _raw_allowed() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP).close()
    except OSError:
        return False
    return True


@pytest.fixture(params=["connect", "syn"])
def tcp_method(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name = str(request.param)
    if name == "syn" and not _raw_allowed():
        pytest.skip("no raw socket here (CAP_NET_RAW)")
    monkeypatch.setenv(method.ENVIRONMENT, name)
    return name


def test_open_port_is_up(tcp_method: str) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        result = probe(spec("tcp", listener.getsockname()[1]))
    assert result.up and result.weight is None
    assert result.detail == UP[tcp_method]


def test_ipv6_loopback(tcp_method: str) -> None:
    try:
        listener = socket.socket(socket.AF_INET6)
        listener.bind(("::1", 0))
    except OSError:
        import pytest

        pytest.skip("no IPv6 loopback here")
    with listener:
        listener.listen(4)
        assert probe(spec("tcp", listener.getsockname()[1], address="::1")).up


def test_closed_port_is_down(tcp_method: str) -> None:
    result = probe(spec("tcp", free_port()))
    assert not result.up and not result.unknown
    assert result.detail == REFUSED[tcp_method]


def test_unanswered_syn_times_out(tcp_method: str) -> None:
    # A listener whose accept queue is full drops further SYNs: connect hangs.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _unused in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(filler)
        time.sleep(0.1)
        started = time.monotonic()
        result = probe(spec("tcp", port, timeout=0.3))
        elapsed = time.monotonic() - started
        for filler in fillers:
            filler.close()
    assert not result.up
    assert result.detail == "timed out after 0.3s"
    assert 0.25 < elapsed < 2


def _time_wait_towards(port: int) -> int:
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    suffix = ":%04X" % port
    return len([row for row in rows if row[3] == "06" and suffix in (row[1][-5:], row[2][-5:])])


def _states_towards(port: int, state: str) -> int:
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return len([row for row in rows if row[3] == state and row[1].endswith(":%04X" % port)])


def test_syn_probe_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    # Our kernel resets the SYN-ACK: no connection is completed (nothing to
    # accept), and the listener keeps no half-open (SYN_RECV, "03") one.
    if not _raw_allowed():
        pytest.skip("no raw socket here (CAP_NET_RAW)")
    monkeypatch.setenv(method.ENVIRONMENT, "syn")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        for _unused in range(5):
            assert probe(spec("tcp", port)).detail == UP["syn"]
        time.sleep(0.05)
        with pytest.raises(BlockingIOError):
            listener.accept()
        assert _states_towards(port, "03") == 0
        assert _states_towards(port, "06") == 0


def test_forced_syn_without_raw_socket_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setenv(method.ENVIRONMENT, "syn")
    monkeypatch.setattr(method.SynProber, "open", refuse)
    result = probe(spec("tcp", free_port()))
    assert result.unknown and "Operation not permitted" in result.detail


def test_no_raw_socket_falls_back_to_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.delenv(method.ENVIRONMENT, raising=False)
    monkeypatch.setattr(method.SynProber, "open", refuse)
    result = probe(spec("tcp", free_port()))
    assert result.detail == REFUSED["connect"]

    async def described() -> dict[str, str]:
        import asyncio

        return method.describe(asyncio.get_running_loop())

    from checkhelp import run

    assert run(described())["ipv4"] == "connect (raw socket: Operation not permitted)"


def test_close_leaves_no_time_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(method.ENVIRONMENT, "connect")
    # SO_LINGER 0: the check's side resets instead of entering TIME_WAIT.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        # control: an ordinary close (FIN) first, then the server's, leaves
        # the client in TIME_WAIT
        plain = socket.create_connection(("127.0.0.1", port))
        plain.close()
        accepted, _unused = listener.accept()
        accepted.close()
        time.sleep(0.05)
        assert _time_wait_towards(port) == 1
        for _unused in range(3):
            assert probe(spec("tcp", port)).up
            accepted, _unused = listener.accept()
            accepted.close()
        time.sleep(0.05)
        assert _time_wait_towards(port) == 1  # only the control's


def test_run_check_uses_the_spec_target(tcp_method: str) -> None:
    from checkhelp import run
    from haecs_monitor.checks import run_check

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        assert run(run_check(spec("tcp", listener.getsockname()[1]))).up


def test_bad_address_is_down_not_an_exception(tcp_method: str) -> None:
    assert not probe(spec("tcp", 80, address="not-an-ip")).up
