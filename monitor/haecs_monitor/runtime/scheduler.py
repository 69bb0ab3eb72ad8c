"""Check scheduling: when each unique check runs, and how one check runs.

A tcp check that can go by SYN runs in the SYN driver (runtime/syn_driver.py:
one raw socket, its own heaps and timer, no task at all).  Every other check
waiting for its next run is an entry of one heap (due time, key) under a
single loop timer; such a check gets an asyncio task only while it runs.
That run waits nothing but its check (with a hard cut-off), hands the result
to the daemon and puts the check back on the heap, due the jittered delay
the health board asks for after this run was due.  (A task per check that
slept between runs held a task, a coroutine frame, a future and a timer
handle per check: about 1.5 KB each, the largest part of the monitor's
memory per real server.)
The scheduler keeps the check durations the metrics show, one histogram per
check type (the per-check counters and last duration are the board's).
What a result means for a server is the board's and the daemon's business,
not this one's.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Iterable
from typing import Callable, Optional

from haecs_monitor.checks import CHECKS, tcp
from haecs_monitor.checks.base import CheckFunction, CheckResult, timed_out, unknown, within
from haecs_monitor.checks.registry import CHECK_TYPES
from haecs_monitor.config.model import CheckKey, CheckSpec
from haecs_monitor.control.metrics import Histogram
from haecs_monitor.core.health import HealthBoard
from haecs_monitor.runtime.events import EventLog
from haecs_monitor.runtime.syn_driver import Observer, SynDriver
from haecs_monitor.runtime.tasks import cancel_and_wait

CHECK_GRACE_SECONDS = 2.0  # a check overrunning its own timeout by this much is cut off
# A check whose timeout the event loop noticed later than its deadline by at
# least this share of the timeout (and at least LATE_MIN_SECONDS) was stalled
# over the deadline: the answer may have arrived and not been read.  Unknown,
# not down.  (A stall that ends before the deadline does no harm: what
# arrived during it is read before the deadline fires.)
LATE_SHARE = 0.25
LATE_MIN_SECONDS = 0.1


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
        self._driver: Optional[SynDriver] = None  # the tcp checks that go by SYN
        # By check type, not by check: a histogram per check was about 0.6 KB
        # a check once its counts pass 256 (each count its own int object),
        # and fourteen series a check for the metrics.
        self.durations: dict[str, Histogram] = {}
        # by check type: (CHECKS' function, the one to call, keeps its own timeout)
        self._functions: dict[
            tuple[str, asyncio.AbstractEventLoop], tuple[CheckFunction, CheckFunction, bool]
        ] = {}

    def sync(self, board: HealthBoard) -> None:
        """Run every check of BOARD: tcp checks that can go by SYN in the SYN
        driver, every other one from the heap of due checks; stop dropped ones.

        After a reload that rebuilt part of the board, only the checks it
        added and dropped are looked at (at 30,000 checks, looking at all of
        them held the event loop for about 0.05 s natively, several times
        that in a slow machine)."""
        changes = board.take_check_changes()
        if board is not self._board or changes is None:
            self._sync_all(board)
            return
        added, dropped = changes
        loop = asyncio.get_running_loop()
        self._stop_checks(dropped)
        by_syn = self._by_syn(board, added, loop)
        if self._driver is not None:
            self._driver.update(board, by_syn, dropped)
        elif by_syn:
            self._driver = SynDriver(loop, blame_late_loop, self._observe)
            self._driver.sync(board, by_syn)
        self._start_on_heap(board, added, by_syn, loop)

    def _sync_all(self, board: HealthBoard) -> None:
        self._board = board
        loop = asyncio.get_running_loop()
        by_syn = self._by_syn(board, board.checks, loop)
        self._stop_checks(
            [
                key
                for key in (*self._waiting, *self._running)
                if key not in board.checks or key in by_syn
            ]
        )
        if by_syn or self._driver is not None:
            if self._driver is None:
                self._driver = SynDriver(loop, blame_late_loop, self._observe)
            self._driver.sync(board, by_syn)
        self._start_on_heap(board, board.checks, by_syn, loop)

    def _start_on_heap(
        self,
        board: HealthBoard,
        keys: Iterable[CheckKey],
        by_syn: set[CheckKey],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """Put those of KEYS not run by SYN, nor waiting or running already, on
        the heap after their first delay."""
        for key in keys:
            if key not in by_syn and key not in self._waiting and key not in self._running:
                self._schedule(key, loop.time() + board.first_delay(key))

    @staticmethod
    def _by_syn(
        board: HealthBoard, keys: Iterable[CheckKey], loop: asyncio.AbstractEventLoop
    ) -> set[CheckKey]:
        """Those of KEYS that the SYN driver runs."""
        if CHECKS.get("tcp") is not tcp.check:  # (a test may put its own probe there)
            return set()
        return {
            key for key in keys if SynDriver.prober_for(loop, board.checks[key].spec) is not None
        }

    def _stop_checks(self, keys: Iterable[CheckKey]) -> None:
        """Take KEYS off the heap and cancel their runs."""
        for key in keys:
            self._waiting.pop(key, None)
            running = self._running.pop(key, None)
            if running is not None:
                running.cancel()

    def scheduled(self) -> int:
        """How many checks are waiting for their next run or running now."""
        in_driver = len(self._driver) if self._driver is not None else 0
        return len(self._waiting) + len(self._running) + in_driver

    async def stop(self) -> None:
        """Stop scheduling; cancel every running check and wait until all have ended."""
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._heap.clear()
        self._waiting.clear()
        if self._driver is not None:
            self._driver.stop()
            self._driver = None
        # The runs also end on their own once stopping.
        await cancel_and_wait(self._running.values())
        self._running.clear()

    def record(self, check_type: str, duration: float) -> None:
        """A check of `check_type` ran for `duration` seconds."""
        histogram = self.durations.get(check_type)
        if histogram is None:
            histogram = self.durations[check_type] = Histogram()
        histogram.observe(duration)

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
            due, ticket, key = heapq.heappop(heap)
            if self._waiting.get(key) != ticket:
                continue  # dropped or rescheduled since
            del self._waiting[key]
            self._running[key] = loop.create_task(self._run_once(key, due), name="check")
        if heap:
            self._arm(heap[0][0])

    async def _run_once(self, key: CheckKey, due: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            board = self._board
            health = None if board is None else board.checks.get(key)
            if board is None or health is None:
                return
            spec = health.spec
            started = self.clock()
            result = blame_late_loop(spec, await self.run(spec, loop))
            finished = self.clock()  # the result's time too: one clock read, not two
            self._observe(key, spec, result, finished - started, finished)
        finally:
            if self._running.get(key) is asyncio.current_task():
                del self._running[key]
        if not self._stopping and key in board.checks and key not in self._waiting:
            # A delay after this run's due time, not after its result: checks
            # start that far apart however long each took (or now, if past).
            self._schedule(key, max(loop.time(), due + max(0.0, board.next_delay(key))))

    def _function(
        self, check_type: str, loop: asyncio.AbstractEventLoop
    ) -> Optional[tuple[CheckFunction, CheckFunction, bool]]:
        """CHECKS' function of CHECK_TYPE, bound to LOOP when its type can be."""
        function = CHECKS.get(check_type)
        if function is None:
            return None
        cached = self._functions.get((check_type, loop))
        if cached is not None and cached[0] is function:
            return cached
        kind = CHECK_TYPES.get(check_type)
        if kind is not None and kind.probe is function and kind.bind is not None:
            cached = (function, kind.bind(loop), kind.self_timed)
        else:  # a function put in CHECKS by hand (tests): as it is
            cached = (function, function, False)
        self._functions[(check_type, loop)] = cached
        return cached

    async def run(
        self, spec: CheckSpec, loop: Optional[asyncio.AbstractEventLoop] = None
    ) -> CheckResult:
        """Run one check once, cut off CHECK_GRACE_SECONDS past its timeout
        (unless its type keeps to its timeout by construction); a check that
        crashes is unknown (our fault), never down."""
        if loop is None:
            loop = asyncio.get_running_loop()
        functions = self._function(spec.type, loop)
        if functions is None:
            return CheckResult(False, None, "unknown check type %s" % spec.type)
        _original, function, self_timed = functions
        if self_timed:
            try:
                return await function(spec, spec.address, spec.port)
            except Exception as error:
                return self._crashed(error, spec)
        started = loop.time()
        try:
            return await within(
                function(spec, spec.address, spec.port), spec.timing.timeout + CHECK_GRACE_SECONDS
            )
        except asyncio.TimeoutError:
            return timed_out(spec, started + CHECK_GRACE_SECONDS, " (cut off)")
        except Exception as error:
            return self._crashed(error, spec)

    def _crashed(self, error: Exception, spec: CheckSpec) -> CheckResult:
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
    if not result.timed_out or result.late < max(
        LATE_MIN_SECONDS, LATE_SHARE * spec.timing.timeout
    ):
        return result
    return unknown(
        "%s, but the monitor's event loop noticed it %.2fs late" % (result.detail, result.late)
    )
