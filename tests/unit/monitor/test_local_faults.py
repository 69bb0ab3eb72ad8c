"""A local fault is never a real server's failure.

Descriptor exhaustion, memory or buffer shortage, a check that could not be
started, a timeout while the monitor's own loop was stalled: each gives an
"unknown" result, which changes no count and no state.  The API caps its
connections, so a flood of idle clients cannot take the checks' descriptors.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
from checkhelp import free_port, spec
from haecs_monitor.checks import CheckResult
from haecs_monitor.checks.base import os_error
from haecs_monitor.control.httpd import Response, Server
from haecs_monitor.core.health import HealthBoard
from haecs_monitor.runtime import fdlimit
from haecs_monitor.runtime.scheduler import blame_late_loop
from test_health import FAIL, OK, RS1, config, feed

UNKNOWN = CheckResult(False, None, "socket: Too many open files", unknown=True)


@pytest.mark.parametrize(
    "code", [errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS, errno.EADDRNOTAVAIL]
)
def test_local_errors_are_unknown(code: int) -> None:
    result = os_error("socket", OSError(code, "x"))
    assert result.unknown and result.outcome == "unknown"
    assert "not of the server" in result.detail


def test_server_errors_stay_down() -> None:
    for code in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNRESET):
        result = os_error("connect", OSError(code, "x"))
        assert not result.up and not result.unknown and result.outcome == "down"


def test_unknown_results_never_change_a_server() -> None:
    board = HealthBoard(config(), now=0, present={RS1})
    # Up and confirmed; then a long run of unknowns between failures: the
    # failures still need `fall` in a row that are real.
    assert feed(board, RS1, [OK, FAIL, FAIL]) == []
    assert feed(board, RS1, [UNKNOWN] * 50, start=3) == []
    assert board.servers[RS1].up
    check = board.servers[RS1].checks[0]
    assert (check.failures, check.unknowns, check.unknown_streak) == (2, 50, 50)
    assert check.last_unknown == UNKNOWN.detail and check.detail == FAIL.detail
    assert len(feed(board, RS1, [FAIL], start=60)) == 2  # the third real failure
    assert not board.servers[RS1].up and check.unknown_streak == 0
    assert check.history == "?" * 9 + "-"  # the last ten results, oldest first


def test_descriptor_exhaustion_is_unknown_for_a_real_check() -> None:
    """A real tcp check in a process out of descriptors: unknown, not down."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        script = (
            "import resource, socket, sys\n"
            "sys.path[:0] = %r\n"
            "from checkhelp import probe, spec\n"
            "held = []\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit("
            "resource.RLIMIT_NOFILE)[1]))\n"
            "import asyncio\n"
            "loop = asyncio.new_event_loop()\n"
            "try:\n"
            "    while True: held.append(socket.socket())\n"
            "except OSError: pass\n"
            "result = loop.run_until_complete(__import__('haecs_monitor.checks', fromlist=['x'])"
            ".CHECKS['tcp'](spec('tcp', %d), '127.0.0.1', %d))\n"
            "print(result.outcome, result.detail)\n" % (sys.path, port, port)
        )
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
        )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("unknown socket: Too many open files"), out.stdout


def test_a_timeout_noticed_late_is_unknown() -> None:
    timeout = spec("tcp", free_port(), timeout=1.0)
    on_time = CheckResult(False, None, "timed out after 1s", timed_out=True, late=0.2)
    assert blame_late_loop(timeout, on_time) is on_time  # below a quarter
    late = CheckResult(False, None, "timed out after 1s", timed_out=True, late=0.6)
    blamed = blame_late_loop(timeout, late)
    assert blamed.unknown and "noticed it 0.60s late" in blamed.detail
    refused = CheckResult(False, None, "connect: Connection refused")
    assert blame_late_loop(timeout, refused) is refused  # only timeouts


def _blackhole() -> tuple[socket.socket, list[socket.socket]]:
    """A listener whose full accept queue drops SYNs: connects hang."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _unused in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(listener.getsockname())
        except BlockingIOError:
            pass
        fillers.append(filler)
    time.sleep(0.1)
    return listener, fillers


@pytest.mark.parametrize(
    ("stall_at", "stall", "is_unknown"), [(0.1, 0.8, True), (0.05, 0.1, False)]
)
def test_a_real_check_over_a_stalled_deadline(
    stall_at: float, stall: float, is_unknown: bool
) -> None:
    """A stall over the deadline makes the timeout unknown; one that ends
    before the deadline leaves an honest timeout."""
    from haecs_monitor.checks import CHECKS

    listener, fillers = _blackhole()
    check = spec("tcp", listener.getsockname()[1], timeout=0.3)

    async def main() -> CheckResult:
        asyncio.get_running_loop().call_later(stall_at, time.sleep, stall)
        return await CHECKS["tcp"](check, "127.0.0.1", check.port)

    try:
        result = asyncio.run(main())
    finally:
        for sock in [listener, *fillers]:
            sock.close()
    assert result.timed_out and not result.up
    judged = blame_late_loop(check, result)
    assert judged.unknown is is_unknown, (result, judged)


def test_fd_limit_is_raised_to_what_the_checks_need() -> None:
    script = (
        "import resource, sys\n"
        "sys.path[:0] = %r\n"
        "from haecs_monitor.runtime import fdlimit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "want = fdlimit.needed(1000, 128)\n"
        "limit = fdlimit.ensure(want)\n"
        "print(want, limit.soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0], limit.enough)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 300))\n"
        "limit = fdlimit.ensure(want)\n"
        "print(limit.soft, limit.hard, limit.enough)\n" % (sys.path,)
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    want = fdlimit.needed(1000, 128)
    assert first == "%d %d %d True" % (want, want, want)
    assert second == "300 300 False"  # never above the hard limit, and says so


def test_api_refusal_reaches_a_tcp_client_whose_request_is_unread() -> None:
    """Over TCP a close with the client's request unread sends a reset, and a
    client still writing its request then fails on its write without reading
    the 503: the refusal reads to the client's end first (at most 1 s), so
    every refused client reads why."""

    async def handler(request: Any) -> Response:
        return Response.json({"ok": True})

    async def main() -> list[bytes]:
        server = Server(handler, max_connections=2, head_timeout=30)
        await server.serve_tcp("127.0.0.1", 0)
        address = server.sockets()[0].getsockname()[:2]
        loop = asyncio.get_running_loop()
        idle = []
        for _unused in range(2):
            sock = socket.socket()
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
            idle.append(sock)
        await asyncio.sleep(0.2)
        answers = [
            await loop.run_in_executor(None, _raw_tcp, address, b"GET / HTTP/1.1\r\n\r\n")
            for _unused in range(10)
        ]
        for sock in idle:
            sock.close()
        await server.close()
        return answers

    answers = asyncio.run(main())
    assert all(answer.startswith(b"HTTP/1.1 503 ") for answer in answers), answers


def _raw_tcp(address: Any, data: bytes) -> bytes:
    """Send `data` in two parts, as a client writing its head and then its
    body does, and read the answer; b"RESET" if the connection was reset."""
    with socket.create_connection(address, timeout=5) as sock:
        try:
            sock.sendall(data[:5])
            time.sleep(0.1)  # the server has answered by now, our first part unread
            sock.sendall(data[5:])
        except (BrokenPipeError, ConnectionResetError):
            return b"RESET"
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return b"".join(chunks) + b"RESET"
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def _raw(path: str, data: bytes, wait: float = 5.0) -> bytes:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(wait)
        sock.connect(path)
        try:
            sock.sendall(data)
        except BrokenPipeError:
            pass  # refused at once: its answer is still there to read
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:  # refused before our request was read
                return b"".join(chunks) or b"RESET"
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def test_api_caps_connections_and_answers_again_after_a_flood(tmp_path: Any) -> None:
    path = str(tmp_path / "api.sock")

    async def handler(request: Any) -> Response:
        return Response.json({"ok": True})

    async def main() -> dict[str, Any]:
        server = Server(handler, max_connections=4, head_timeout=30)
        await server.serve_unix(path)
        loop = asyncio.get_running_loop()
        flood = []
        for _unused in range(40):
            sock = socket.socket(socket.AF_UNIX)
            sock.setblocking(False)
            await loop.sock_connect(sock, path)
            flood.append(sock)
        await asyncio.sleep(0.3)
        seen: dict[str, Any] = {"lingering": dict(server.lingering)}
        refused = []
        for sock in flood[4:]:  # beyond the cap: answered 503
            refused.append(await asyncio.wait_for(loop.sock_recv(sock, 4096), 5))
        seen["refused"] = refused
        # A client that sends its request at once, while 4 idle clients hold
        # the listener: its request is unread when the 503 goes out, and it
        # must still read the 503, not a reset.
        seen["during"] = [
            await loop.run_in_executor(None, _raw, path, b"GET / HTTP/1.1\r\n\r\n")
            for _unused in range(20)
        ]
        for sock in flood:
            sock.close()
        await asyncio.sleep(0.3)
        seen["after"] = await loop.run_in_executor(None, _raw, path, b"GET / HTTP/1.1\r\n\r\n")
        seen["active"] = server.active.get("unix", 0)
        await asyncio.sleep(1.2)  # the lingering ones end within 1 s
        seen["lingering_after"] = server.lingering.get("unix", 0)
        await server.close()
        return seen

    seen = asyncio.run(main())
    refused = seen["refused"]
    assert len(refused) == 36
    assert all(answer.startswith(b"HTTP/1.1 503 ") for answer in refused), refused[:2]
    # 4 refused ones at most wait for their client's end; the other 32 were closed at once.
    assert seen["lingering"] == {"unix": 4}, seen["lingering"]
    assert all(answer.startswith(b"HTTP/1.1 503 ") for answer in seen["during"]), seen["during"]
    assert seen["after"].startswith(b"HTTP/1.1 200 ")
    assert seen["active"] == 0
    assert seen["lingering_after"] == 0
