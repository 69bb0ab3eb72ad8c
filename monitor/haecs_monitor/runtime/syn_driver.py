"""The tcp checks that go by SYN, run without a task each.

The scheduler gives every other check an asyncio task that sleeps, checks
and sleeps again.  For a SYN probe that machinery is most of the cost: per
check a task step or two, a future, two timers and several clock reads and
event-loop turns, each a system call (epoll_wait, clock_gettime) that in a
user-mode-Linux guest, or under a seccomp filter, costs far more than the
probe's own sendto().  So this driver keeps SYN checks' due times in a
calendar queue of SLACK-second buckets (runtime/duequeue.py) and the probes
in flight in a heap of deadlines, with ONE timer armed for the earliest:
each wake-up sends every probe of the buckets handed out by then and times
out every probe past its deadline; answers come through the prober's reader, all
read in one wake-up sharing one clock read.  Per check that leaves one
sendto(), one recv() and a share of a wake-up.

Same meaning as the task path: the board's (jittered) delays, a result per
probe through the same observer, the same late-loop rule for timeouts
(`blame_late_loop`).  A probe is never timed out before its deadline; it
may be sent up to SLACK seconds before or after its due time, and the next
is due a delay after the middle of its bucket (the due time to within
SLACK / 2).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import dataclass, field
from typing import Callable, Optional

from haecs_monitor.checks.base import CheckResult
from haecs_monitor.checks.syn import method
from haecs_monitor.checks.syn.pending import Key
from haecs_monitor.checks.syn.prober import REFUSED, UP, SynProber
from haecs_monitor.config.model import CheckKey, CheckSpec
from haecs_monitor.core.health import HealthBoard
from haecs_monitor.runtime.duequeue import DueQueue

SLACK = 0.005  # the due times' grain: a bucket is sent at a point within it

# What a check's result goes to, for the SYN driver and the scheduler's task
# path alike: (key, spec, result, duration, when).  WHEN is the clock's
# reading as the result came (the SYN driver's, read once for a wake-up; the
# loop's time is the monitor's clock), so that recording it reads no clock:
# a clock read is a system call in a user-mode-Linux guest or under seccomp.
Observer = Callable[[CheckKey, CheckSpec, CheckResult, float, float], None]
Finish = Callable[[CheckSpec, CheckResult], CheckResult]  # the scheduler's blame_late_loop


@dataclass(eq=False)
class _Probe:
    key: CheckKey
    spec: CheckSpec
    prober: SynProber
    started: float
    deadline: float
    due: float  # when it was due: the next is due a delay after this
    wire_key: Key = (b"", 0, 0)
    done: bool = False
    resolve: Callable[[bool, float], None] = field(init=False)


def _ended(answer: bool, when: float) -> None:
    """The resolve of a probe that has ended.  Its own closure refers to the
    probe, which refers to it: a cycle, kept for good when the probe was in
    flight as the daemon froze the long-lived objects (after a start or a
    reload), unless it is broken when the probe ends."""


class SynDriver:
    def __init__(self, loop: asyncio.AbstractEventLoop, finish: Finish, observe: Observer) -> None:
        self.loop = loop
        self._finish = finish
        self._observe = observe
        self._board: Optional[HealthBoard] = None
        # Each check it runs is in exactly one of these two: due, or its probe
        # in flight.  (No set of them beside: 35-52 B a check at 5,000-30,000.)
        self._due: DueQueue[CheckKey] = DueQueue(SLACK)
        self._deadlines: list[tuple[float, int, _Probe]] = []
        self._inflight: dict[CheckKey, _Probe] = {}
        self._probers: set[SynProber] = set()
        self._order = itertools.count()
        self._timer: Optional[asyncio.TimerHandle] = None
        self._timer_when = 0.0
        self._stopped = False

    @staticmethod
    def prober_for(loop: asyncio.AbstractEventLoop, spec: CheckSpec) -> Optional[SynProber]:
        """The prober that can run SPEC, or None (not tcp, no raw socket, a
        scoped or unparsable address: the task path handles those)."""
        if spec.type != "tcp" or "%" in spec.address:
            return None
        family = method.FAMILIES["ipv6" if ":" in spec.address else "ipv4"]
        prober = method.choose(loop, family).prober
        if prober is None or not prober.accepts(spec.address):
            return None
        return prober

    def __len__(self) -> int:
        return len(self._due) + len(self._inflight)

    def keys(self) -> set[CheckKey]:
        """The checks it runs (a pass over all of them)."""
        return {*self._due, *self._inflight}

    def sync(self, board: HealthBoard, keys: set[CheckKey]) -> None:
        """Run exactly KEYS of BOARD: new ones start after their first delay."""
        running = self.keys()
        self.update(board, keys - running, running - keys)

    def update(self, board: HealthBoard, added: set[CheckKey], dropped: set[CheckKey]) -> None:
        """Stop DROPPED (those it runs: a pass over all when there are tcp
        checks among them), then start ADDED after their first delay.  The
        caller never adds a check it runs already (it would run twice as
        often): the scheduler adds only checks new to the board."""
        self._board = board
        now = self.loop.time()
        tcp = {key for key in dropped if CheckSpec.type_of(key) == "tcp"}
        if tcp:
            for key in tcp:
                probe = self._inflight.pop(key, None)
                if probe is not None:
                    self._drop(probe)
            self._due.remove(tcp)
        for key in added:
            self._due.push(now + board.first_delay(key), key)
        self._arm()

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for probe in list(self._inflight.values()):
            self._drop(probe)
        self._inflight.clear()
        self._due.clear()
        self._deadlines.clear()

    # ------------------------------------------------------------ internals

    def _drop(self, probe: _Probe) -> None:
        probe.done = True
        probe.prober.cancel(probe.wire_key, probe.resolve, False, probe.spec.address)
        probe.resolve = _ended

    def _arm(self) -> None:
        """One timer, at the earliest due time or live deadline."""
        if self._stopped:
            return
        deadlines = self._deadlines
        while deadlines and deadlines[0][2].done:
            heapq.heappop(deadlines)
        when = self._due.first()
        if deadlines and (when is None or deadlines[0][0] < when):
            when = deadlines[0][0]
        if when is None:
            return
        if self._timer is not None:
            if self._timer_when <= when:
                return  # an earlier (or the same) wake-up comes first anyway
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._tick)
        self._timer_when = when

    def _tick(self) -> None:
        self._timer = None
        now = self.loop.time()
        deadlines = self._deadlines
        due: list[tuple[float, CheckKey]] = []
        started = 0
        try:
            if deadlines and deadlines[0][0] <= now:
                for prober in self._probers:
                    prober.read_now(now)  # an answer already queued is not a timeout
                while deadlines and deadlines[0][0] <= now:
                    _deadline, _order, probe = heapq.heappop(deadlines)
                    if not probe.done:
                        probe.prober.cancel(probe.wire_key, probe.resolve, True, probe.spec.address)
                        self._end(probe, None, now)
            due = self._due.pop_until(now)
            for when, key in due:
                started += 1
                self._start(key, now, when)
        finally:
            # Whatever raised (an observer, a send) costs its own check at
            # most: the rest of the pass is due again, and the timer armed.
            for when, key in due[started:]:
                self._due.push(when, key)
            self._arm()

    def _start(self, key: CheckKey, now: float, due: float) -> None:
        board = self._board
        if self._stopped or board is None or key in self._inflight:
            return
        health = board.checks.get(key)
        if health is None:
            return
        spec = health.spec
        prober = self.prober_for(self.loop, spec)
        if prober is None:  # cannot happen for a key the scheduler gave us; keep it alive
            self._schedule(key, now, due)
            return
        probe = _Probe(key, spec, prober, now, now + spec.timing.timeout, due)
        probe.resolve = lambda answer, when: self._answered(probe, answer, when)
        failed, probe.wire_key = prober.send(spec.address, spec.port, now, probe.resolve)
        if failed is not None:
            probe.done = True
            self._deliver(probe, failed, now)
            return
        self._inflight[key] = probe
        self._probers.add(prober)
        heapq.heappush(self._deadlines, (probe.deadline, next(self._order), probe))

    def _answered(self, probe: _Probe, answer: bool, when: float) -> None:
        if probe.done:
            return
        self._end(probe, answer, when)
        self._arm()

    def _end(self, probe: _Probe, answer: Optional[bool], now: float) -> None:
        probe.done = True
        if self._inflight.get(probe.key) is probe:
            del self._inflight[probe.key]
        if answer is None:
            late = max(0.0, now - probe.deadline)
            result = CheckResult(
                False,
                None,
                "timed out after %gs" % probe.spec.timing.timeout,
                timed_out=True,
                late=late,
            )
        else:
            result = UP if answer else REFUSED
        self._deliver(probe, result, now)

    def _deliver(self, probe: _Probe, result: CheckResult, now: float) -> None:
        probe.resolve = _ended  # the prober no longer holds it (answered, cancelled, not sent)
        result = self._finish(probe.spec, result)
        self._observe(probe.key, probe.spec, result, now - probe.started, now)
        board = self._board
        if not self._stopped and board is not None and probe.key in board.checks:
            self._schedule(probe.key, now, probe.due)

    def _schedule(self, key: CheckKey, now: float, due: float) -> None:
        """The next run of KEY: the board's delay after the run due at DUE
        (checks start that far apart however late this one's answer came),
        or now when that has passed."""
        board = self._board
        if board is None:
            return
        delay = max(0.0, board.next_delay(key))
        self._due.push(max(now, due + delay), key)
