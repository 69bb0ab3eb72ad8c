"""TCP connect check: up when the three-way handshake completes in time.

Built on a bare non-blocking socket and `loop.sock_connect` rather than
asyncio streams: no transport or protocol objects per check, which costs a
quarter of the CPU (see the Health-check cost notes and bench/monitor_checks.py).

The socket is closed with SO_LINGER 0, so the close sends RST instead of FIN:
no TIME_WAIT entry is left behind per check (thousands of checks a second
would otherwise keep tens of thousands of them, and exhaust ephemeral ports
towards one target).  The price: a backend may log "connection reset by
peer" for health checks, as it does for HAProxy's checks.
"""

from __future__ import annotations

import asyncio
import socket
import struct

from haecs_monitor.checks.base import CheckResult, CheckType, down, os_error, timed_out, up, within
from haecs_monitor.config.model import CheckSpec, ParamValue
from haecs_monitor.config.reader import Reader

_LINGER_RST = struct.pack("ii", 1, 0)


async def check(spec: CheckSpec, address: str, port: int) -> CheckResult:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as error:
        return os_error("socket", error)
    started = loop.time()
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        await within(loop.sock_connect(sock, (address, port)), spec.timeout)
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


TCP = CheckType("tcp", (), _tcp, check)
