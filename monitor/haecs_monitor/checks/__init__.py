"""Check types: one module each, one interface (`base.CheckFunction`).

    result = await CHECKS[spec.type](spec, spec.address, spec.port)

Every check keeps to spec.timeout, never raises (but CancelledError), and
says in `CheckResult.detail` why it judged up or down.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..config_model import CheckSpec
from . import dns, http, script, smtp, tcp
from .base import CheckFunction, CheckResult

CHECKS: Mapping[str, CheckFunction] = {
    "tcp": tcp.check,
    "http": http.check,
    "https": http.check,
    "smtp": smtp.check,
    "dns": dns.check,
    "script": script.check,
}


async def run_check(spec: CheckSpec) -> CheckResult:
    """Run `spec` against its own target."""
    return await CHECKS[spec.type](spec, spec.address, spec.port)


__all__ = ["CHECKS", "CheckFunction", "CheckResult", "run_check"]
