"""TCP check: up when a socket listens on the target port.

Two methods, one meaning (`syn.method` picks, per address family):

- "syn" (with CAP_NET_RAW, as the monitor's unit runs): one SYN from a raw
  socket, answered by SYN-ACK (up), RST (down) or nothing in time (timed
  out).  Two system calls a check instead of about nine; see `checks.syn`
  and docs/design/monitor-deploy.md ("The tcp check: SYN probing").
- "connect" (the fallback): a bare non-blocking socket and
  `loop.sock_connect`, up when the three-way handshake completes.  No
  asyncio transport or protocol objects per check, which costs a quarter
  of the CPU (see the Health-check cost notes and bench/monitor_checks.py).
  The socket is closed with SO_LINGER 0, so the close sends RST instead of
  FIN: no TIME_WAIT entry is left behind per check (thousands of checks a
  second would otherwise keep tens of thousands of them, and exhaust
  ephemeral ports towards one target).  The price: a backend may log
  "connection reset by peer" for health checks, as it does for HAProxy's.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import struct

from haecs_monitor.checks.base import (
    CheckFunction,
    CheckResult,
    CheckType,
    down,
    os_error,
    timed_out,
    unknown,
    up,
    within,
)
from haecs_monitor.checks.syn import method
from haecs_monitor.config.model import CheckSpec, ParamValue
from haecs_monitor.config.reader import Reader

_LINGER_RST = struct.pack("ii", 1, 0)


async def check(spec: CheckSpec, address: str, port: int) -> CheckResult:
    return await check_on(asyncio.get_running_loop(), spec, address, port)


def bind(loop: asyncio.AbstractEventLoop) -> CheckFunction:
    """`check` on LOOP (the scheduler's: no get_running_loop per check)."""
    return functools.partial(check_on, loop)


async def check_on(
    loop: asyncio.AbstractEventLoop, spec: CheckSpec, address: str, port: int
) -> CheckResult:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    if "%" not in address:  # a scoped IPv6 address: connect knows the scope
        choice = method.choose(loop, family)
        if choice.prober is not None:
            return await choice.prober.probe(spec, address, port)
        if choice.method == "unavailable":
            return unknown("tcp check by SYN: %s" % choice.reason)
    return await connect_check(spec, address, port, loop, family)


async def connect_check(
    spec: CheckSpec, address: str, port: int, loop: asyncio.AbstractEventLoop, family: int
) -> CheckResult:
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as error:
        return os_error("socket", error)
    started = loop.time()
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        await within(loop.sock_connect(sock, (address, port)), spec.timing.timeout)
    except asyncio.TimeoutError:
        return timed_out(spec, started)
    except OSError as error:
        return os_error("connect", error)
    except ValueError as error:  # an address the socket module refuses
        return down("connect: %s" % error)
    finally:
        sock.close()
    return up("connected")


# ---------------------------------------------------------------- options


def _tcp(reader: Reader, script_user: str) -> dict[str, ParamValue]:
    return {}


TCP = CheckType("tcp", (), _tcp, check, bind=bind, self_timed=True)
