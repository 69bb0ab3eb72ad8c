"""What every check returns, and the signature every check has."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

from ..config_model import CheckSpec


@dataclass(frozen=True)
class CheckResult:
    up: bool
    weight: Optional[int] = None  # a dynamic weight (script checks), else None
    detail: str = ""  # one line for logs and status: why up or down


# async def check(spec, address, port) -> CheckResult; it never raises
# (except CancelledError) and keeps to spec.timeout.
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


def timed_out(spec: CheckSpec) -> CheckResult:
    return down("timed out after %gs" % spec.timeout)


def os_error(action: str, error: OSError) -> CheckResult:
    """'connect: Connection refused' (asyncio words some errors its own way)."""
    if error.errno:
        reason = os.strerror(error.errno)
    else:
        reason = error.strerror or str(error) or error.__class__.__name__
    return down("%s: %s" % (action, reason))
