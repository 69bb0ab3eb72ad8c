"""The `checks:` and `check_defaults:` parts of the configuration.

A check is read once where it is written (a service's `checks` or a real
server's) into a `CheckTemplate`: its type options validated and normalised,
its own timing keys kept aside.  Each real server then resolves the template
into a `CheckSpec`: timing from the cascade global -> service -> real server
-> the check itself, and the target (the real server unless the check names
another address/port).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.params import field_path
from haecs_monitor.checks.registry import CHECK_TYPES
from haecs_monitor.config.model import TIMING_KEYS, CheckSpec, CheckTiming, Params
from haecs_monitor.config.reader import (
    Problems,
    Reader,
    as_mapping,
)

COMMON_KEYS = ("type", *TIMING_KEYS, "address", "port")

MAX_SECONDS = 86400.0
MAX_COUNT = 1000

# Header values and the request path go on the wire verbatim: no spaces or
# control characters (no header injection through the config).


@dataclass(frozen=True)
class CheckTemplate:
    """A check as written, validated; not yet bound to a real server."""

    type: str
    path: str  # where it is written, for error messages
    timing: Mapping[str, float]  # the check's own timing keys
    address: Optional[str]  # target override
    port: Optional[int]
    params: Params


def parse_timing(reader: Reader) -> dict[str, float]:
    """The timing keys set in one mapping (check_defaults or a check)."""
    found: dict[str, float] = {}
    for name in ("interval", "timeout", "fast_interval", "down_interval"):
        value = reader.number(name, 0.0, MAX_SECONDS, above_low=True)
        if value is not None:
            found[name] = value
    for name in ("rise", "fall"):
        count = reader.integer(name, 1, MAX_COUNT)
        if count is not None:
            found[name] = count
    jitter = reader.number("jitter", 0.0, 0.9)
    if jitter is not None:
        found["jitter"] = jitter
    return found


def timing_rule(timing: CheckTiming) -> Optional[str]:
    """The relation between timing values that must hold, or None when it does."""
    if timing.timeout >= timing.interval:
        return "must be less than interval (%g), got %g" % (timing.interval, timing.timeout)
    return None


def apply_timing(parent: CheckTiming, overrides: Mapping[str, float]) -> CheckTiming:
    values = dict(overrides)
    for name in ("rise", "fall"):
        if name in values:
            values[name] = int(values[name])
    return parent._replace(**values)  # type: ignore[arg-type]


def parse_check_defaults(
    raw: object, path: str, parent: CheckTiming, parent_ok: bool, problems: Problems
) -> tuple[CheckTiming, bool]:
    """A `check_defaults` mapping on top of `parent`; the flag says whether the
    result is consistent (a conflict is reported where it first appears)."""
    if raw is None:
        return parent, parent_ok
    data = as_mapping(raw, path, problems)
    if data is None:
        return parent, parent_ok
    reader = Reader(data, path, problems)
    reader.reject_unknown(TIMING_KEYS, "check_defaults")
    timing = apply_timing(parent, parse_timing(reader))
    rule = timing_rule(timing)
    if rule is None:
        return timing, True
    if parent_ok:
        problems.add(field_path(path, "timeout"), rule)
    return timing, False


def parse_check(
    raw: object, path: str, script_user: str, problems: Problems
) -> Optional[CheckTemplate]:
    data = as_mapping(raw, path, problems)
    if data is None:
        return None
    reader = Reader(data, path, problems)
    if not reader.require("type"):
        reader.reject_unknown(COMMON_KEYS)
        return None
    check_type = reader.choice("type", tuple(CHECK_TYPES))
    if check_type is None:
        return None
    before = len(problems.messages)
    reader.reject_unknown(COMMON_KEYS + CHECK_TYPES[check_type].keys, "a %s check" % check_type)
    timing = parse_timing(reader)
    address = reader.address("address")
    port = reader.integer("port", 1, 65535)
    params = CHECK_TYPES[check_type].parse(reader, script_user)
    if len(problems.messages) > before:
        return None
    return CheckTemplate(check_type, path, timing, address, port, tuple(sorted(params.items())))


def resolve_check(
    template: CheckTemplate,
    defaults: CheckTiming,
    defaults_ok: bool,
    target: tuple[str, int],
    problems: Problems,
) -> Optional[CheckSpec]:
    """The template bound to one real server (`target` is its address and port)."""
    timing = apply_timing(defaults, template.timing)
    rule = timing_rule(timing)
    if rule is not None:
        if defaults_ok or template.timing.keys() & {"interval", "timeout"}:
            problems.add(field_path(template.path, "timeout"), rule)
        return None
    address = template.address or target[0]
    port = template.port if template.port is not None else target[1]
    if port == 0 and template.type != "script":
        problems.add(
            field_path(template.path, "port"),
            "is required: the real server's port is 0 (a fwmark or all-ports service)",
        )
        return None
    return CheckSpec(
        type=template.type, timing=timing, address=address, port=port, params=template.params
    )
