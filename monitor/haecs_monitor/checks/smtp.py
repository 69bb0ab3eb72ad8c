"""SMTP check: up when the banner is 220 and EHLO is answered with 250.

The check then says QUIT, waits at most 0.1 s for the 221, and closes.
`helo` names the director in EHLO (default: this host's name).
"""

from __future__ import annotations

import asyncio
import socket

from haecs_monitor.checks.base import CheckResult, CheckType, down, os_error, timed_out, up, within
from haecs_monitor.config.model import CheckSpec, ParamValue
from haecs_monitor.config.reader import HOSTNAME, Reader
from haecs_monitor.errors import HaecsError

MAX_LINE_BYTES = 4096
MAX_REPLY_LINES = 100
QUIT_WAIT_SECONDS = 0.1  # at most, for the 221 after QUIT


class SMTPProblem(HaecsError):
    """The server's reply is not SMTP."""


async def check(spec: CheckSpec, address: str, port: int) -> CheckResult:
    started = asyncio.get_running_loop().time()
    try:
        return await within(
            _session(spec, address, port, started + spec.timing.timeout), spec.timing.timeout
        )
    except asyncio.TimeoutError:
        return timed_out(spec, started)
    except OSError as error:
        return os_error("connect", error)
    except (
        SMTPProblem,
        asyncio.IncompleteReadError,
        asyncio.LimitOverrunError,
        ValueError,
    ) as error:
        return down("bad reply: %s" % (str(error) or error.__class__.__name__))


async def _session(spec: CheckSpec, address: str, port: int, deadline: float) -> CheckResult:
    reader, writer = await asyncio.open_connection(address, port, limit=MAX_LINE_BYTES)
    try:
        code, text = await read_reply(reader)
        if code != 220:
            return down("banner %d %s" % (code, text))
        helo = spec.text("helo") or socket.gethostname() or "localhost"
        writer.write(b"EHLO %s\r\n" % helo.encode("ascii", "replace"))
        await writer.drain()
        code, text = await read_reply(reader)
        if code != 250:
            return down("EHLO answered %d %s" % (code, text))
        writer.write(b"QUIT\r\n")
        await writer.drain()
        # Give the server a moment to read QUIT and answer 221 before the
        # reset: without it the RST can overtake the QUIT on the server's side.
        # Never so long that the check itself would time out: it is up.
        wait = min(QUIT_WAIT_SECONDS, deadline - asyncio.get_running_loop().time() - 0.02)
        if wait > 0:
            try:
                await within(reader.readline(), wait)
            except (asyncio.TimeoutError, OSError, ValueError):
                pass
        return up("banner 220, EHLO 250")
    finally:
        writer.transport.abort()


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, str]:
    """One (possibly multi-line) SMTP reply: its code and first line's text."""
    first_text = ""
    for index in range(MAX_REPLY_LINES):
        line = (await reader.readuntil(b"\n")).decode("latin-1").rstrip("\r\n")
        if len(line) < 3 or not line[:3].isdigit() or (len(line) > 3 and line[3] not in " -"):
            raise SMTPProblem("not an SMTP reply: %r" % line[:80])
        if index == 0:
            first_text = line[4:]
        if len(line) == 3 or line[3] == " ":
            return int(line[:3]), first_text[:120]
    raise SMTPProblem("reply longer than %d lines" % MAX_REPLY_LINES)


# ---------------------------------------------------------------- options


def _smtp(reader: Reader, script_user: str) -> dict[str, ParamValue]:
    params: dict[str, ParamValue] = {}
    helo = reader.text("helo", HOSTNAME, "must be a host name")
    if helo is not None:
        params["helo"] = helo
    return params


SMTP = CheckType("smtp", ("helo",), _smtp, check)
