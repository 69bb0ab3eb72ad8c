"""The tcp check against real sockets on 127.0.0.1."""

from __future__ import annotations

import socket
import time

from checkhelp import free_port, probe, spec


def test_open_port_is_up() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        result = probe(spec("tcp", listener.getsockname()[1]))
    assert result.up and result.weight is None
    assert result.detail == "connected"


def test_ipv6_loopback() -> None:
    try:
        listener = socket.socket(socket.AF_INET6)
        listener.bind(("::1", 0))
    except OSError:
        import pytest

        pytest.skip("no IPv6 loopback here")
    with listener:
        listener.listen(4)
        assert probe(spec("tcp", listener.getsockname()[1], address="::1")).up


def test_closed_port_is_down() -> None:
    result = probe(spec("tcp", free_port()))
    assert not result.up
    assert result.detail == "connect: Connection refused"


def test_unanswered_syn_times_out() -> None:
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


def test_close_leaves_no_time_wait() -> None:
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


def test_run_check_uses_the_spec_target() -> None:
    from checkhelp import run
    from haecs_monitor.checks import run_check

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        assert run(run_check(spec("tcp", listener.getsockname()[1]))).up


def test_bad_address_is_down_not_an_exception() -> None:
    assert not probe(spec("tcp", 80, address="not-an-ip")).up
