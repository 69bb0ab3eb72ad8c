"""Check types: one module each (options, defaults, description, probe:
`base.CheckType`), registered in `registry`, one interface (`base.CheckFunction`).

    result = await CHECKS[spec.type](spec, spec.address, spec.port)

Every check keeps to spec.timing.timeout, never raises (but CancelledError), and
says in `CheckResult.detail` why it judged up or down.
"""

from __future__ import annotations

from collections.abc import Mapping

from haecs_monitor.checks.base import CheckFunction, CheckResult
from haecs_monitor.checks.registry import CHECK_TYPES
from haecs_monitor.config.model import CheckSpec

CHECKS: Mapping[str, CheckFunction] = {name: kind.probe for name, kind in CHECK_TYPES.items()}


async def run_check(spec: CheckSpec) -> CheckResult:
    """Run `spec` against its own target."""
    return await CHECKS[spec.type](spec, spec.address, spec.port)


__all__ = ["CHECKS", "CheckFunction", "CheckResult", "run_check"]
