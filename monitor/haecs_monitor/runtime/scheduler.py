"""Check scheduling: one asyncio task per unique check, and how one check runs.

Each task waits the jittered delay the health board asks for, runs its
check with a hard cut-off, and hands the result to the daemon.  The
scheduler keeps the per-check counters the metrics show.  What a result
means for a server is the board's and the daemon's business, not this one's.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Callable, Optional

from haecs_monitor.checks import CHECKS, tcp
from haecs_monitor.checks.base import CheckFunction, CheckResult, timed_out, unknown, within
from haecs_monitor.checks.registry import CHECK_TYPES
from haecs_monitor.config.model import CheckKey, CheckSpec
from haecs_monitor.control.metrics import Histogram
from haecs_monitor.core.health import HealthBoard
from haecs_monitor.runtime.events import EventLog
from haecs_monitor.runtime.syn_driver import SynDriver

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
        self._tasks: dict[CheckKey, asyncio.Task[None]] = {}
        self._stopping = False
        self._driver: Optional[SynDriver] = None  # the tcp checks that go by SYN
        # metrics, by unique check
        self.checks_total: Counter[tuple[CheckKey, str]] = Counter()  # by result.outcome
        self.check_durations: dict[CheckKey, Histogram] = {}
        self.last_duration: dict[CheckKey, float] = {}
        # by check type: (CHECKS' function, the one to call, keeps its own timeout)
        self._functions: dict[
            tuple[str, asyncio.AbstractEventLoop], tuple[CheckFunction, CheckFunction, bool]
        ] = {}

    def sync(self, board: HealthBoard) -> None:
        """Run every check of BOARD: tcp checks that can go by SYN in the
        SYN driver, every other one in a task of its own; stop dropped ones."""
        self._board = board
        loop = asyncio.get_running_loop()
        by_syn: set[CheckKey] = set()
        if CHECKS.get("tcp") is tcp.check:  # (a test may put its own probe there)
            by_syn = {
                key
                for key, health in board.checks.items()
                if SynDriver.prober_for(loop, health.spec) is not None
            }
        for key in list(self._tasks):
            if key not in board.checks or key in by_syn:
                self._tasks.pop(key).cancel()
        for key in list(self.check_durations):
            if key not in board.checks:
                self.check_durations.pop(key, None)
                self.last_duration.pop(key, None)
        if by_syn or self._driver is not None:
            if self._driver is None:
                self._driver = SynDriver(loop, blame_late_loop, self._observe)
            self._driver.sync(board, by_syn)
        for key in board.checks:
            if key not in self._tasks and key not in by_syn:
                self._tasks[key] = loop.create_task(self._loop(board, key), name="check")

    async def stop(self) -> None:
        """Cancel every check task and wait until all have ended."""
        self._stopping = True
        if self._driver is not None:
            self._driver.stop()
            self._driver = None
        # asyncio.wait_for (Python < 3.12) can swallow a cancel() that lands
        # as the check finishes; the loops also end on their own once
        # stopping, and we cancel again until every task has ended.
        pending = set(self._tasks.values())
        while pending:
            for task in pending:
                task.cancel()
            _done, pending = await asyncio.wait(pending, timeout=0.5)
        self._tasks.clear()

    def record(self, key: CheckKey, result: CheckResult, duration: float) -> None:
        self.checks_total[(key, result.outcome)] += 1
        self.check_durations.setdefault(key, Histogram()).observe(duration)
        self.last_duration[key] = duration

    async def _loop(self, board: HealthBoard, key: CheckKey) -> None:
        loop = asyncio.get_running_loop()
        await _sleep(loop, board.first_delay(key))
        while not self._stopping:
            health = board.checks.get(key)
            if health is None:
                return
            spec = health.spec
            started = self.clock()
            result = blame_late_loop(spec, await self.run(spec, loop))
            self._observe(key, spec, result, self.clock() - started)
            await _sleep(loop, max(0.0, board.next_delay(key)))

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
                function(spec, spec.address, spec.port), spec.timeout + CHECK_GRACE_SECONDS
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


async def _sleep(loop: asyncio.AbstractEventLoop, delay: float) -> None:
    """asyncio.sleep(DELAY) on a known LOOP (asyncio.sleep asks for the
    running loop each time: a getpid() system call on Python 3.11)."""
    future = loop.create_future()
    handle = loop.call_later(delay, _wake, future)
    try:
        await future
    finally:
        handle.cancel()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def blame_late_loop(spec: CheckSpec, result: CheckResult) -> CheckResult:
    """A timeout noticed far past its deadline: our loop was stalled over
    the deadline, and the answer may have been there unread.  Ours, not
    the server's fault."""
    if not result.timed_out or result.late < max(LATE_MIN_SECONDS, LATE_SHARE * spec.timeout):
        return result
    return unknown(
        "%s, but the monitor's event loop noticed it %.2fs late" % (result.detail, result.late)
    )
