"""Prometheus text exposition format (version 0.0.4), without a client library."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Family:
    name: str
    kind: str  # gauge | counter | histogram | summary | untyped
    help: str
    # (metric name, rendered labels without braces, value)
    samples: list[tuple[str, str, float]] = field(default_factory=list)

    def add(self, value: float, suffix: str = "", **labels: str) -> None:
        self.samples.append((self.name + suffix, label_text(labels), value))

    def add_labels(self, value: float, labels: str, suffix: str = "") -> None:
        """Add a sample whose labels are rendered already (see `label_text`)."""
        self.samples.append((self.name + suffix, labels, value))


def label_text(labels: Mapping[str, str]) -> str:
    """'a="x",b="y"': render once, reuse for every family of one object."""
    return ",".join('%s="%s"' % (key, _escape_label(str(value))) for key, value in labels.items())


def _escape_label(value: str) -> str:
    if "\\" not in value and '"' not in value and "\n" not in value:
        return value
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def render(families: Iterable[Family]) -> str:
    lines: list[str] = []
    append = lines.append
    for family in families:
        append("# HELP %s %s" % (family.name, _escape_help(family.help)))
        append("# TYPE %s %s" % (family.name, family.kind))
        for name, labels, value in family.samples:
            if labels:
                append("%s{%s} %s" % (name, labels, _number(value)))
            else:
                append("%s %s" % (name, _number(value)))
    return "\n".join(lines) + "\n"


class Histogram:
    """A cumulative histogram of durations (seconds)."""

    __slots__ = ("buckets", "counts", "sum", "total")

    BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self, buckets: tuple[float, ...] = BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.total += 1
        self.sum += value
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[index] += 1

    def add_to(self, family: Family, **labels: str) -> None:
        base = label_text(labels)
        prefix = base + "," if base else ""
        for bound, count in zip(self.buckets, self.counts):
            family.add_labels(count, '%sle="%s"' % (prefix, _number(bound)), "_bucket")
        family.add_labels(self.total, '%sle="+Inf"' % prefix, "_bucket")
        family.add_labels(self.sum, base, "_sum")
        family.add_labels(self.total, base, "_count")
