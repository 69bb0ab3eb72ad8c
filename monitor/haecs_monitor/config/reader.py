"""Typed reading of untrusted mappings, collecting every problem with its path.

A `Reader` wraps one mapping of the configuration.  Each accessor returns the
checked value, or None when the option is absent or wrong; a wrong value is
recorded in the shared `Problems` (path and rule) instead of raising, so one
pass reports every mistake in the file.
"""

from __future__ import annotations

import ipaddress
import math
import re
import reprlib
from collections.abc import Iterable, Mapping
from typing import Optional

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.params import (
    field_path,
    integer_value,
)

# A host name as a check sends it (HELO, SNI): letters, digits, dots, hyphens.
HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})?")

_SHOW = reprlib.Repr()
_SHOW.maxstring = 60
_SHOW.maxother = 60
_SHOW.maxlist = 4
_SHOW.maxdict = 4
_SHOW.maxlevel = 3


def shown(value: object) -> str:
    """A short, safe repr of a user value for error messages."""
    try:
        return _SHOW.repr(value)
    except Exception:  # an exotic object must never break error reporting
        return "<%s>" % type(value).__name__


def item(prefix: str, index: int) -> str:
    return "%s[%d]" % (prefix, index)


class Problems:
    """Every problem found, in order, each once."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self._seen: set[str] = set()
        self.found = 0  # every problem found, a repeated message too

    def add(self, path: str, rule: str) -> None:
        self.found += 1
        message = "%s: %s" % (path, rule) if path else rule
        if message not in self._seen:
            self._seen.add(message)
            self.messages.append(message)

    def __bool__(self) -> bool:
        return bool(self.messages)


def as_mapping(
    value: object, path: str, problems: Problems, what: str = "a mapping"
) -> Optional[dict[str, object]]:
    """`value` as a dict with string keys; non-string keys are reported and dropped."""
    if not isinstance(value, dict):
        problems.add(path, "must be %s, got %s" % (what, shown(value)))
        return None
    result: dict[str, object] = {}
    for key, entry in value.items():
        if isinstance(key, str):
            result[key] = entry
        else:
            problems.add(path, "option names must be strings, got %s" % shown(key))
    return result


def as_list(value: object, path: str, problems: Problems) -> Optional[list[object]]:
    if not isinstance(value, list):
        problems.add(path, "must be a list, got %s" % shown(value))
        return None
    return value


def parse_address(
    value: object, path: str, problems: Problems, *, allow_unspecified: bool = False
) -> Optional[str]:
    if not isinstance(value, str):
        problems.add(path, "must be an IPv4 or IPv6 address, got %s" % shown(value))
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        problems.add(path, "must be an IPv4 or IPv6 address, got %s" % shown(value))
        return None
    if address.is_multicast or (address.is_unspecified and not allow_unspecified):
        problems.add(path, "must be a unicast address, got %s" % address)
        return None
    return address.compressed


class Reader:
    """The options of one mapping at `path`."""

    def __init__(self, data: Mapping[str, object], path: str, problems: Problems) -> None:
        self.data = data
        self.path = path
        self.problems = problems

    def at(self, name: str) -> str:
        return field_path(self.path, name)

    def fail(self, name: str, rule: str) -> None:
        self.problems.add(self.at(name), rule)

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def reject_unknown(self, allowed: Iterable[str], what: str = "") -> None:
        allowed = tuple(allowed)
        for name in self.data:
            if name not in allowed:
                where = " for %s" % what if what else ""
                self.fail(
                    name, "unknown option%s; allowed: %s" % (where, ", ".join(sorted(allowed)))
                )

    def require(self, name: str) -> bool:
        if self.data.get(name) is None:
            self.fail(name, "is required")
            return False
        return True

    def number(
        self, name: str, low: float, high: float, *, above_low: bool = False
    ) -> Optional[float]:
        """A finite int or float in [low, high] (or (low, high] with above_low)."""
        value = self.data.get(name)
        if value is None:
            return None
        bounds = "%s %g and at most %g" % ("greater than" if above_low else "at least", low, high)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(name, "must be a number %s, got %s" % (bounds, shown(value)))
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(name, "must be a finite number, got %s" % value)
            return None
        if value < low or value > high or (above_low and value == low):
            self.fail(name, "must be %s, got %s" % (bounds, shown(value)))
            return None
        return float(value)

    def integer(self, name: str, low: int, high: int) -> Optional[int]:
        raw = self.data.get(name)
        if raw is None:
            return None
        value = integer_value(raw)  # the engine's rule: the same value, the same answer
        if value is None or not low <= value <= high:
            self.fail(name, "must be an integer from %d to %d, got %s" % (low, high, shown(raw)))
            return None
        return value

    def flag(self, name: str) -> Optional[bool]:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.fail(name, "must be true or false, got %s" % shown(value))
            return None
        return value

    def text(
        self, name: str, pattern: Optional[re.Pattern[str]] = None, rule: str = ""
    ) -> Optional[str]:
        """A non-empty string; with `pattern`, one that matches it entirely."""
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.fail(name, "must be a non-empty string, got %s" % shown(value))
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(name, "%s, got %s" % (rule or "has an invalid format", shown(value)))
            return None
        return value

    def choice(self, name: str, choices: tuple[str, ...]) -> Optional[str]:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or value not in choices:
            self.fail(name, "must be one of %s, got %s" % (", ".join(choices), shown(value)))
            return None
        return value

    def path_option(self, name: str) -> Optional[str]:
        """An absolute file system path."""
        value = self.text(name)
        if value is None:
            return None
        if not value.startswith("/") or "\0" in value:
            self.fail(name, "must be an absolute path, got %s" % shown(value))
            return None
        return value

    def command(self, name: str) -> Optional[tuple[str, ...]]:
        """An argument list whose first item is an absolute path (never a shell string)."""
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, str):
            self.fail(
                name, "must be a list of arguments (never a shell string), got %s" % shown(value)
            )
            return None
        if not isinstance(value, list) or not value:
            self.fail(name, "must be a non-empty list of arguments, got %s" % shown(value))
            return None
        arguments: list[str] = []
        for index, argument in enumerate(value):
            if not isinstance(argument, str) or "\0" in argument:
                self.problems.add(
                    item(self.at(name), index), "must be a string, got %s" % shown(argument)
                )
                return None
            arguments.append(argument)
        if not arguments[0].startswith("/"):
            self.problems.add(
                item(self.at(name), 0),
                "must be an absolute path to the program, got %s" % shown(arguments[0]),
            )
            return None
        return tuple(arguments)

    def address(self, name: str, *, allow_unspecified: bool = False) -> Optional[str]:
        value = self.data.get(name)
        if value is None:
            return None
        return parse_address(
            value, self.at(name), self.problems, allow_unspecified=allow_unspecified
        )

    def mapping(self, name: str) -> Optional[dict[str, object]]:
        value = self.data.get(name)
        if value is None:
            return None
        return as_mapping(value, self.at(name), self.problems)

    def items(self, name: str) -> list[object]:
        """A list option; absent or wrong gives an empty list."""
        value = self.data.get(name)
        if value is None:
            return []
        return as_list(value, self.at(name), self.problems) or []
