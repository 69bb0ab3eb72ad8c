"""One float object for values that come close together.

The monitor keeps a time per check (its last result, its SYN target's
expiry): at 30,000 checks a float of its own is 24 B each, while most of
them are read within moments of each other.
"""

from __future__ import annotations


class SharedFloat:
    """`share(value)` is the last value kept when `value` is at most `grain`
    above it (so never later than `value`), else `value`, kept from now on."""

    __slots__ = ("_grain", "_kept")

    def __init__(self, grain: float) -> None:
        self._grain = grain
        self._kept = float("-inf")

    def share(self, value: float) -> float:
        kept = self._kept
        if 0.0 <= value - kept < self._grain:
            return kept
        self._kept = value
        return value
