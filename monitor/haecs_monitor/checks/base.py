"""What every check returns, and the signature every check has."""

from __future__ import annotations

import os
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Callable, Optional

from ..config_model import CheckSpec


@dataclass(frozen=True)
class CheckResult:
    up: bool
    weight: Optional[int] = None  # a dynamic weight (script checks), else None
    detail: str = ""  # one line for logs and status: why up or down


# async def check(spec, address, port) -> CheckResult; it never raises
# (except CancelledError) and keeps to spec.timeout.
CheckFunction = Callable[[CheckSpec, str, int], Awaitable[CheckResult]]


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
