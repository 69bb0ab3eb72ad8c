"""The SYN driver's calendar queue of due times (runtime/duequeue.py)."""

from __future__ import annotations

import heapq
import itertools
import random
import tracemalloc

import pytest
from haecs_monitor.runtime.duequeue import DueQueue

GRAIN = 0.005


def test_buckets_come_out_in_order_within_themselves_with_their_middle_as_due() -> None:
    queue: DueQueue[str] = DueQueue(GRAIN)
    queue.push(10.0121, "c")
    queue.push(10.0001, "a")
    queue.push(10.0049, "b")  # the same bucket as "a", after it
    queue.push(10.0100, "d")  # a bucket that starts before "c"'s
    assert len(queue) == 4
    first = queue.first()
    assert first is not None and 10.0 <= first < 10.005  # within the bucket
    assert list(queue.pop_until(first - 1e-9)) == []
    assert [(round(due, 4), item) for due, item in queue.pop_until(first)] == [
        (10.0025, "a"),
        (10.0025, "b"),
    ]
    assert len(queue) == 2
    second = queue.first()
    assert second is not None and 10.01 <= second < 10.015
    assert [(round(due, 4), item) for due, item in queue.pop_until(20.0)] == [
        (10.0125, "c"),  # in the order pushed within a bucket, whatever the
        (10.0125, "d"),  # exact times (c's is later)
    ]
    assert len(queue) == 0 and queue.first() is None


def test_buckets_are_handed_out_at_points_spread_over_them() -> None:
    """Not at a grid of whole milliseconds (which lines up with a kernel's
    timer ticks), but at points spread evenly within the buckets, later for
    later buckets."""
    queue: DueQueue[int] = DueQueue(GRAIN)
    start = 2_000_000  # a bucket index of a clock some hours after boot
    for index in range(start, start + 1000):
        queue.push(index * GRAIN + GRAIN / 2, index)
    points = []
    while len(queue):
        first = queue.first()
        assert first is not None
        ((_due, index),) = queue.pop_until(first)
        assert index * GRAIN <= first < (index + 1) * GRAIN
        points.append(first)
    assert points == sorted(points)
    phases = [point / GRAIN % 1.0 for point in points]
    tenths = [sum(1 for phase in phases if n / 10 <= phase < (n + 1) / 10) for n in range(10)]
    assert all(90 <= count <= 110 for count in tenths), tenths


def test_an_item_leaves_at_most_one_grain_early_or_late_and_its_due_is_unbiased() -> None:
    rand = random.Random(14)
    queue: DueQueue[float] = DueQueue(GRAIN)
    exact = [rand.uniform(0.0, 30.0) for _unused in range(20_000)]
    for when in exact:
        queue.push(when, when)
    errors = []
    now = 0.0
    while len(queue):
        first = queue.first()
        assert first is not None
        now = max(now, first)  # a timer armed for the earliest bucket
        for due, when in queue.pop_until(now):
            assert -GRAIN < when - now < GRAIN
            assert abs(due - when) <= GRAIN / 2 + 1e-12
            errors.append(due - when)
    assert len(errors) == len(exact)
    assert abs(sum(errors) / len(errors)) < GRAIN / 50  # no drift one way


def test_an_item_pushed_while_the_caller_goes_through_a_pass_waits_for_the_next() -> None:
    """Even when due (a check that failed at once, due again at once): the
    caller cannot be kept going round."""
    queue: DueQueue[str] = DueQueue(GRAIN)
    queue.push(1.0, "first")
    queue.push(1.003, "second")  # the same bucket
    out = []
    for _due, item in queue.pop_until(1.005):
        out.append(item)
        queue.push(1.001, "again")
    assert out == ["first", "second"] and len(queue) == 2
    assert [item for _due, item in queue.pop_until(1.005)] == ["again", "again"]


def test_an_item_alone_in_its_bucket_and_items_that_are_lists() -> None:
    """A bucket of one keeps the item bare; a list item is never taken for a
    bucket."""
    queue: DueQueue[object] = DueQueue(GRAIN)
    alone, listed, pair = ("alone",), ["a", "list"], [1, 2]
    queue.push(1.0, alone)
    queue.push(2.0, listed)
    queue.push(3.0, pair)
    queue.push(3.001, "after the pair")
    queue.push(3.002, [])
    assert len(queue) == 5
    assert [item for _due, item in queue.pop_until(10.0)] == [
        alone,
        listed,
        pair,
        "after the pair",
        [],
    ]
    assert len(queue) == 0


def test_remove_takes_items_out_wherever_they_are() -> None:
    queue: DueQueue[str] = DueQueue(GRAIN)
    for when, item in ((1.0, "a"), (1.001, "b"), (1.002, "c"), (2.0, "d"), (3.0, "e"), (3.0, "a")):
        queue.push(when, item)
    assert sorted(queue) == ["a", "a", "b", "c", "d", "e"]
    assert sorted(queue.remove({"a", "d", "x"})) == ["a", "a", "d"]
    assert len(queue) == 3 and sorted(queue) == ["b", "c", "e"]
    assert 1.0 <= (queue.first() or 0) < 1.005
    assert queue.remove({"b", "c"}) == ["b", "c"]
    assert 3.0 <= (queue.first() or 0) < 3.005  # the emptied bucket is gone
    assert queue.remove(set()) == [] and len(queue) == 1
    queue.push(3.001, "f")
    assert [item for _due, item in queue.pop_until(3.005)] == ["e", "f"]


def test_clear_and_a_grain_that_is_not_positive() -> None:
    queue: DueQueue[int] = DueQueue(GRAIN)
    for n in range(10):
        queue.push(n * 0.01, n)
    queue.clear()
    assert len(queue) == 0 and queue.first() is None and list(queue.pop_until(1e9)) == []
    for grain in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="grain must be > 0"):
            DueQueue(grain)


def test_thirty_thousand_due_times_take_well_under_half_the_heap_they_replace() -> None:
    """The reason it exists: 30,000 checks over a 30 s interval (the bench's
    largest size), against the heap of (due, counter, key) it replaced."""
    rand = random.Random(30)
    keys = [object() for _unused in range(30_000)]
    times = [1000.0 + rand.uniform(0.0, 30.0) for _unused in keys]

    def traced(build: object) -> int:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            kept = build()  # type: ignore[operator]
            size = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert kept
        return size

    def heap() -> list[tuple[float, int, object]]:
        order = itertools.count()
        entries: list[tuple[float, int, object]] = []
        for when, key in zip(times, keys):
            heapq.heappush(entries, (when + 0.0, next(order) + 1_000_000, key))
        return entries

    def queue() -> DueQueue[object]:
        due: DueQueue[object] = DueQueue(GRAIN)
        for when, key in zip(times, keys):
            due.push(when + 0.0, key)
        return due

    assert traced(queue) < 0.5 * traced(heap)
