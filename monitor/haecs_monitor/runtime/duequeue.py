"""Due times kept at a grain: a calendar queue for tens of thousands of checks.

The SYN driver keeps one due time per check.  In a heap, each was an entry
of its own (a tuple, a float and a tie-break counter: 116 B per check).
Here the checks due within the same `grain` share one bucket (its index,
one entry in a heap of indexes and a list, or the item itself when it is
alone): a check costs a list slot and its share of the bucket, about 40 B
at a thousand checks a second, about 77 B at a hundred and fifty.

The price is the due time's precision: a check's due time is known only to
within its bucket, and a bucket is handed out at one point within it, so a
check leaves at most one grain early or late (the driver's SLACK).  Each
check gets the middle of its bucket as its due time, which the next one is
counted from: within half a grain of the exact time, as often early as
late.  Without jitter, a check whose interval is not a whole number of
grains then runs at the nearest whole number of them (2.0025 s at 2.005 s
with 5 ms grains).

The point within each bucket is spread by the golden ratio, not its start:
wake-ups on a fixed grid of whole milliseconds line up with the kernel's
timer ticks, and a kernel that charges CPU time by the tick then charges a
process that wakes at a tick and sleeps before the next almost nothing
(the test kernel charged the monitor 0.04 s per 10,000 SYN checks, against
about 1 s with wake-ups at the checks' own times).  Spread, the ticks
sample its work fairly again, as they do keepalived's.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Container, Iterator
from typing import Any, Generic, Optional, TypeVar

Item = TypeVar("Item")
_NONE = object()
_GOLDEN = 0.6180339887498949  # (sqrt(5) - 1) / 2: n * it mod 1 spreads evenly


class DueQueue(Generic[Item]):
    """Items by due time, in buckets of `grain` seconds."""

    __slots__ = ("_buckets", "_count", "_starts", "grain")

    def __init__(self, grain: float) -> None:
        if not grain > 0:
            raise ValueError("grain must be > 0, not %r" % (grain,))
        self.grain = grain
        # A bucket of one item is the item itself (a list of one was 88 B
        # more), unless the item is a list.
        self._buckets: dict[int, Any] = {}
        self._starts: list[int] = []  # a heap of the buckets' indexes
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def push(self, when: float, item: Item) -> None:
        """ITEM is due at WHEN (seconds, any clock)."""
        index = math.floor(when / self.grain)
        buckets = self._buckets
        bucket = buckets.get(index, _NONE)
        if bucket is _NONE:
            buckets[index] = [item] if item.__class__ is list else item
            heapq.heappush(self._starts, index)
        elif bucket.__class__ is list:
            bucket.append(item)
        else:
            buckets[index] = [bucket, item]
        self._count += 1

    def first(self) -> Optional[float]:
        """When the earliest bucket is handed out, or None when empty."""
        return self._hand_out(self._starts[0]) if self._starts else None

    def _hand_out(self, index: int) -> float:
        """When bucket INDEX is handed out: a point within it, later for a
        later bucket."""
        return (index + (index * _GOLDEN) % 1.0) * self.grain

    def pop_until(self, time: float) -> list[tuple[float, Item]]:
        """Each item of every bucket handed out at or before TIME, in bucket
        order, with its due time (its bucket's middle); removed.  An item
        pushed while the caller goes through them waits for the next call,
        even when it is due: a check that fails at once and is due again at
        once cannot keep the caller going round."""
        starts, buckets, grain = self._starts, self._buckets, self.grain
        found: list[tuple[float, Item]] = []
        while starts and self._hand_out(starts[0]) <= time:
            index = heapq.heappop(starts)
            bucket = buckets.pop(index)
            due = (index + 0.5) * grain
            if bucket.__class__ is list:
                found.extend([(due, item) for item in bucket])
            else:
                found.append((due, bucket))
        self._count -= len(found)
        return found

    def __iter__(self) -> Iterator[Item]:
        """Every item, in no particular order."""
        for bucket in self._buckets.values():
            if bucket.__class__ is list:
                yield from bucket
            else:
                yield bucket

    def remove(self, items: Container[Item]) -> list[Item]:
        """Take every one of ITEMS out (a pass over all); those found."""
        found: list[Item] = []
        buckets = self._buckets
        for index, bucket in list(buckets.items()):
            if bucket.__class__ is not list:
                if bucket in items:
                    found.append(bucket)
                    del buckets[index]
            elif any(item in items for item in bucket):
                kept: list[Item] = []
                for item in bucket:
                    (found if item in items else kept).append(item)
                if not kept:
                    del buckets[index]
                elif len(kept) == 1 and kept[0].__class__ is not list:
                    buckets[index] = kept[0]
                else:
                    buckets[index] = kept
        if found:
            self._count -= len(found)
            self._starts[:] = buckets
            heapq.heapify(self._starts)
        return found

    def clear(self) -> None:
        self._buckets.clear()
        self._starts.clear()
        self._count = 0
