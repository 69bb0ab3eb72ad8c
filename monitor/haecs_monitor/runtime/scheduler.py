"""Check scheduling: when each unique check runs, and how one check runs.

Checks waiting for their next run are entries of one heap (due time, key)
under a single loop timer; a check gets an asyncio task only while it runs.
That run waits nothing but its check (with a hard cut-off), hands the result
to the daemon and puts the check back on the heap after the jittered delay
the health board asks for.  (A task per check that slept between runs held
a task, a coroutine frame, a future and a timer handle per check: about
1.5 KB each, the largest part of the monitor's memory per real server.)
The scheduler keeps the per-check counters the metrics show.  What a result
means for a server is the board's and the daemon's business, not this one's.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import Counter
from typing import Callable, Optional

from haecs_monitor.checks import CHECKS
from haecs_monitor.checks.base import CheckResult, timed_out, unknown, within
from haecs_monitor.config.model import CheckKey, CheckSpec
from haecs_monitor.control.metrics import Histogram
from haecs_monitor.core.health import HealthBoard
from haecs_monitor.runtime.events import EventLog

CHECK_GRACE_SECONDS = 2.0  # a check overrunning its own timeout by this much is cut off
# A check whose timeout the event loop noticed later than its deadline by at
# least this share of the timeout (and at least LATE_MIN_SECONDS) was stalled
# over the deadline: the answer may have arrived and not been read.  Unknown,
# not down.  (A stall that ends before the deadline does no harm: what
# arrived during it is read before the deadline fires.)
LATE_SHARE = 0.25
LATE_MIN_SECONDS = 0.1

Observer = Callable[[CheckKey, CheckSpec, CheckResult, float], None]


class CheckScheduler:
    def __init__(self, log: EventLog, clock: Callable[[], float], observe: Observer) -> None:
        self.log = log
        self.clock = clock
        self._observe = observe
        self._board: Optional[HealthBoard] = None
        # Checks waiting for their next run: heap entries (loop time due,
        # ticket, key); `_waiting` maps each waiting key to the ticket of its
        # one live entry, so entries of dropped or rescheduled checks are
        # skipped when they come up.
        self._heap: list[tuple[float, int, CheckKey]] = []
        self._waiting: dict[CheckKey, int] = {}
        self._tickets = itertools.count()
        self._timer: Optional[asyncio.TimerHandle] = None
        self._running: dict[CheckKey, asyncio.Task[None]] = {}  # checks running now
        self._stopping = False
        # metrics, by unique check
        self.checks_total: Counter[tuple[CheckKey, str]] = Counter()  # by result.outcome
        self.check_durations: dict[CheckKey, Histogram] = {}
        self.last_duration: dict[CheckKey, float] = {}

    def sync(self, board: HealthBoard) -> None:
        """Schedule every check of BOARD: start new ones, drop (and cancel) dropped ones."""
        self._board = board
        loop = asyncio.get_running_loop()
        for key in [key for key in (*self._waiting, *self._running) if key not in board.checks]:
            self._waiting.pop(key, None)
            running = self._running.pop(key, None)
            if running is not None:
                running.cancel()
            self.check_durations.pop(key, None)
            self.last_duration.pop(key, None)
        for key in board.checks:
            if key not in self._waiting and key not in self._running:
                self._schedule(key, loop.time() + board.first_delay(key))

    def scheduled(self) -> int:
        """How many checks are waiting for their next run or running now."""
        return len(self._waiting) + len(self._running)

    async def stop(self) -> None:
        """Stop scheduling; cancel every running check and wait until all have ended."""
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._heap.clear()
        self._waiting.clear()
        # asyncio.timeout can swallow a cancel() that lands as the check
        # finishes; the runs also end on their own once stopping, and we
        # cancel again until every one has ended.
        pending = set(self._running.values())
        while pending:
            for task in pending:
                task.cancel()
            _done, pending = await asyncio.wait(pending, timeout=0.5)
        self._running.clear()

    def record(self, key: CheckKey, result: CheckResult, duration: float) -> None:
        self.checks_total[(key, result.outcome)] += 1
        self.check_durations.setdefault(key, Histogram()).observe(duration)
        self.last_duration[key] = duration

    def _schedule(self, key: CheckKey, due: float) -> None:
        ticket = next(self._tickets)
        self._waiting[key] = ticket
        heapq.heappush(self._heap, (due, ticket, key))
        if self._timer is None or due < self._timer.when():
            self._arm(due)

    def _arm(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(due, self._start_due)

    def _start_due(self) -> None:
        """The timer fired: start every check that is due, re-arm for the next."""
        self._timer = None
        if self._stopping:
            return
        loop = asyncio.get_running_loop()
        heap = self._heap
        now = loop.time()
        while heap and heap[0][0] <= now:
            _due, ticket, key = heapq.heappop(heap)
            if self._waiting.get(key) != ticket:
                continue  # dropped or rescheduled since
            del self._waiting[key]
            self._running[key] = loop.create_task(self._run_once(key), name="check")
        if heap:
            self._arm(heap[0][0])

    async def _run_once(self, key: CheckKey) -> None:
        try:
            board = self._board
            health = None if board is None else board.checks.get(key)
            if board is None or health is None:
                return
            spec = health.spec
            started = self.clock()
            result = blame_late_loop(spec, await self.run(spec))
            self._observe(key, spec, result, self.clock() - started)
        finally:
            if self._running.get(key) is asyncio.current_task():
                del self._running[key]
        if not self._stopping and key in board.checks and key not in self._waiting:
            due = asyncio.get_running_loop().time() + max(0.0, board.next_delay(key))
            self._schedule(key, due)

    async def run(self, spec: CheckSpec) -> CheckResult:
        """Run one check once, cut off CHECK_GRACE_SECONDS past its timeout;
        a check that crashes is unknown (our fault), never down."""
        function = CHECKS.get(spec.type)
        if function is None:
            return CheckResult(False, None, "unknown check type %s" % spec.type)
        started = asyncio.get_running_loop().time()
        try:
            return await within(
                function(spec, spec.address, spec.port), spec.timeout + CHECK_GRACE_SECONDS
            )
        except asyncio.TimeoutError:
            return timed_out(spec, started + CHECK_GRACE_SECONDS, " (cut off)")
        except Exception as error:
            self.log.error(
                "check_crashed",
                check=spec.describe(),
                reason="%s: %s" % (type(error).__name__, error),
            )
            return unknown("check failed internally: %s" % type(error).__name__)


def blame_late_loop(spec: CheckSpec, result: CheckResult) -> CheckResult:
    """A timeout noticed far past its deadline: our loop was stalled over
    the deadline, and the answer may have been there unread.  Ours, not
    the server's fault."""
    if not result.timed_out or result.late < max(LATE_MIN_SECONDS, LATE_SHARE * spec.timeout):
        return result
    return unknown(
        "%s, but the monitor's event loop noticed it %.2fs late" % (result.detail, result.late)
    )
