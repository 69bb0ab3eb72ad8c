"""Watch our own event loop: a frozen checker must never be silent.

A ticker sleeps `period` seconds and measures how late it woke up.  A lag
above `warn_after` is logged as a warning (loop_stalled) and counted; the
last and the worst lag are exposed in /status and /metrics.  A window
(`open_window`, `close_window`) gives the worst lag over one piece of work,
such as a reload.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Callable, Optional

from haecs_monitor.runtime.events import EventLog
from haecs_monitor.runtime.tasks import cancel_and_wait


class LoopLag:
    def __init__(
        self,
        log: EventLog,
        period: float = 0.25,
        warn_after: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_tick: Optional[Callable[[], object]] = None,
    ) -> None:
        self._log = log
        self._on_tick = on_tick  # called from each tick: proof the loop is alive (watchdog)
        self.period = period
        self.warn_after = warn_after
        self._clock = clock
        self.last = 0.0
        self.max = 0.0
        self.stalls_total = 0
        self._recent: deque[float] = deque(maxlen=240)  # about a minute at 0.25 s
        self._task: Optional[asyncio.Task[None]] = None
        self._expected: Optional[float] = None  # when the ticker should wake next
        self._window: Optional[float] = None  # worst lag since open_window()

    @property
    def recent_max(self) -> float:
        return max(self._recent, default=0.0)

    def record(self, lag: float) -> None:
        lag = max(0.0, lag)
        self.last = lag
        self.max = max(self.max, lag)
        self._recent.append(lag)
        if self._window is not None:
            self._window = max(self._window, lag)
        if lag >= self.warn_after:
            self.stalls_total += 1
            self._log.warning(
                "loop_stalled", lag_seconds=round(lag, 3), reason="event loop woke %.3fs late" % lag
            )

    def open_window(self) -> None:
        self._window = 0.0

    def close_window(self) -> float:
        """The worst lag since `open_window()`, counting a stall still under
        way (the ticker overdue now); 0.0 without an open window."""
        worst = self._window or 0.0
        if self._task is not None and self._expected is not None:
            worst = max(worst, self._clock() - self._expected)
        self._window = None
        return worst

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None

    async def _run(self) -> None:
        while True:
            expected = self._expected = self._clock() + self.period
            await asyncio.sleep(self.period)
            self.record(self._clock() - expected)
            if self._on_tick is not None:
                self._on_tick()
