"""What every check returns, and the signature every check has."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

from haecs_monitor.config.model import CheckSpec, ParamValue
from haecs_monitor.config.reader import Reader


@dataclass(frozen=True)
class CheckResult:
    up: bool
    weight: Optional[int] = None  # a dynamic weight (script checks), else None
    detail: str = ""  # one line for logs and status: why up or down
    # The monitor could not do the check (a local fault: descriptors, memory,
    # buffers, a check it could not start, its own loop too late): the result
    # says nothing about the server and must not count towards rise or fall.
    unknown: bool = False
    # Down because the check's own deadline passed (no answer in time), and
    # how much later than that deadline the event loop got round to noticing:
    # far late means the loop was stalled and the answer may have been there.
    timed_out: bool = False
    late: float = 0.0

    @property
    def outcome(self) -> str:
        """ "up", "down" or "unknown": the label of metrics and logs."""
        if self.unknown:
            return "unknown"
        return "up" if self.up else "down"


# Errors that say the monitor itself is short of something, not that the
# server failed: out of descriptors (EMFILE, ENFILE), of memory or buffers
# (ENOMEM, ENOBUFS), of local ports (EADDRNOTAVAIL), of processes (EAGAIN).
LOCAL_FAULTS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS, errno.EADDRNOTAVAIL, errno.EAGAIN}
)


# async def check(spec, address, port) -> CheckResult; it never raises
# (except CancelledError) and keeps to spec.timing.timeout.
CheckFunction = Callable[[CheckSpec, str, int], Awaitable[CheckResult]]


T = TypeVar("T")
_TIMEOUT: Any = getattr(asyncio, "timeout", None)  # Python 3.11+


async def within(awaitable: Awaitable[T], seconds: float) -> T:
    """Await with a deadline; asyncio.TimeoutError when it passes.

    asyncio.timeout (3.11+) runs the awaitable in the current task, where
    wait_for wraps it in a task of its own: one task and timer fewer per
    check, which at thousands of checks a second is a measurable share of
    the monitor's CPU.  Older Pythons get wait_for.
    """
    if _TIMEOUT is None:
        return await asyncio.wait_for(awaitable, seconds)
    async with _TIMEOUT(seconds):
        return await awaitable


def up(detail: str, weight: Optional[int] = None) -> CheckResult:
    return CheckResult(True, weight, detail)


def down(detail: str) -> CheckResult:
    return CheckResult(False, None, detail)


def unknown(detail: str) -> CheckResult:
    return CheckResult(False, None, detail, unknown=True)


def timed_out(spec: CheckSpec, started: float, how: str = "") -> CheckResult:
    """Down for a timeout; `started` is the loop time the check's timer started."""
    late = asyncio.get_running_loop().time() - started - spec.timing.timeout
    return CheckResult(
        False,
        None,
        "timed out after %gs%s" % (spec.timing.timeout, how),
        timed_out=True,
        late=max(0.0, late),
    )


def os_reason(error: OSError) -> str:
    """'Connection refused' (asyncio words some errors its own way)."""
    if error.errno:
        return os.strerror(error.errno)
    return error.strerror or str(error) or error.__class__.__name__


def os_error(action: str, error: OSError) -> CheckResult:
    """'connect: Connection refused'; a local fault (LOCAL_FAULTS) is an
    unknown result, never a down one."""
    reason = os_reason(error)
    if error.errno in LOCAL_FAULTS:
        return unknown(
            "%s: %s (a fault of the monitor's host, not of the server)" % (action, reason)
        )
    return down("%s: %s" % (action, reason))


def _no_detail(spec: CheckSpec) -> str:
    return ""


@dataclass(frozen=True)
class CheckType:
    """A check type in one place: its own option names, how they are read
    (validated, normalised, defaults filled in), what it adds to a check's
    name, and its probe.  `checks.registry` lists every type."""

    name: str
    keys: tuple[str, ...]
    parse: Callable[[Reader, str], dict[str, ParamValue]]  # (reader, script_user)
    probe: CheckFunction
    detail: Callable[[CheckSpec], str] = _no_detail
    # The probe bound to one event loop, for a caller that knows it (the
    # scheduler): saves asyncio.get_running_loop() per check, a getpid()
    # system call on Python 3.11, which in a user-mode-Linux guest or under
    # seccomp is far dearer than natively.  None: `probe` is all there is.
    bind: Optional[Callable[[asyncio.AbstractEventLoop], CheckFunction]] = None
    # True when the probe keeps to spec.timing.timeout by construction (its own
    # timer), so the scheduler's cut-off past the timeout is not needed.
    self_timed: bool = False
