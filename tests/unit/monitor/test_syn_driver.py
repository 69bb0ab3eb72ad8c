"""The scheduler's SYN driver: tcp checks by SYN without a task each.

Real sockets on 127.0.0.1 and a stand-in for the health board (what the
scheduler asks of it: checks, first and next delay).  Needs a raw socket
(root); skipped otherwise.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import io
import socket
import time
from typing import Any

import pytest
from checkhelp import free_port, spec
from haecs_monitor.checks.base import CheckResult
from haecs_monitor.checks.syn import method
from haecs_monitor.config.load import parse_config
from haecs_monitor.config.model import CheckSpec
from haecs_monitor.core.health import HealthBoard
from haecs_monitor.runtime import scheduler as scheduler_mod
from haecs_monitor.runtime import syn_driver
from haecs_monitor.runtime.events import EventLog


def _raw_allowed() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP).close()
    except OSError:
        return False
    return True


needs_raw = pytest.mark.skipif(not _raw_allowed(), reason="no raw socket here (CAP_NET_RAW)")


class Health:
    def __init__(self, check: CheckSpec) -> None:
        self.spec = check


class Board:
    """Keyed as the health board is, by each check's dedup key."""

    def __init__(self, specs: dict[str, CheckSpec], interval: float = 0.3) -> None:
        self.checks = {check.dedup_key: Health(check) for check in specs.values()}
        self.interval = interval

    def first_delay(self, key: Any) -> float:
        return 0.0

    def take_check_changes(self) -> None:
        return None  # any check may have changed: the scheduler looks at all

    def next_delay(self, key: Any) -> float:
        return self.interval


FILLERS: list[socket.socket] = []  # kept open while the tests run


def full_listener() -> socket.socket:
    """A listener whose accept queue is full: it drops further SYNs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    for _unused in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        FILLERS.append(filler)
    time.sleep(0.1)
    return listener


@needs_raw
def test_up_refused_and_timed_out_without_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(method.ENVIRONMENT, "syn")
    seen: dict[str, list[CheckResult]] = {"open": [], "closed": [], "full": []}

    with socket.socket() as listener, full_listener() as full:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        specs = {
            "open": spec("tcp", listener.getsockname()[1], timeout=0.2),
            "closed": spec("tcp", free_port(), timeout=0.2),
            "full": spec("tcp", full.getsockname()[1], timeout=0.2),
        }

        async def main() -> None:
            loop = asyncio.get_running_loop()
            scheduler = scheduler_mod.CheckScheduler(
                EventLog(io.StringIO()),
                loop.time,
                lambda key, check, result, duration, when: seen[names[key]].append(result),
            )
            names = {check.dedup_key: name for name, check in specs.items()}
            board = Board(specs)
            scheduler.sync(board)  # type: ignore[arg-type]
            assert scheduler._waiting == {} and scheduler._running == {}  # none on the heap
            assert scheduler._driver is not None and len(scheduler._driver) == 3
            await asyncio.sleep(1.0)
            # a reload that drops "open": no result for it after that
            board.checks.pop(specs["open"].dedup_key)
            scheduler.sync(board)  # type: ignore[arg-type]
            count = len(seen["open"])
            await asyncio.sleep(0.5)
            assert len(seen["open"]) == count
            await scheduler.stop()
            assert scheduler._driver is None

        asyncio.run(main())
    assert len(seen["open"]) >= 3 and len(seen["closed"]) >= 3 and len(seen["full"]) >= 2
    assert {r.detail for r in seen["open"]} == {"SYN-ACK: listening"}
    assert all(r.up for r in seen["open"])
    assert {r.detail for r in seen["closed"]} == {"refused (RST)"}
    assert not any(r.up or r.unknown for r in seen["closed"])
    assert {r.detail for r in seen["full"]} == {"timed out after 0.2s"}
    assert all(r.timed_out and not r.unknown for r in seen["full"])


@needs_raw
def test_a_timeout_noticed_late_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(method.ENVIRONMENT, "syn")
    seen: list[CheckResult] = []
    with full_listener() as full:
        specs = {"full": spec("tcp", full.getsockname()[1], timeout=0.2)}

        async def main() -> None:
            loop = asyncio.get_running_loop()
            scheduler = scheduler_mod.CheckScheduler(
                EventLog(io.StringIO()), loop.time, lambda k, c, result, d, w: seen.append(result)
            )
            scheduler.sync(Board(specs, interval=5.0))  # type: ignore[arg-type]
            await asyncio.sleep(0.05)  # the probe is out
            time.sleep(0.5)  # the loop stalls over its deadline
            await asyncio.sleep(0.1)
            await scheduler.stop()

        asyncio.run(main())
    assert len(seen) == 1
    assert seen[0].unknown and "noticed it" in seen[0].detail


@needs_raw
def test_a_result_comes_with_the_loop_time_it_was_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """The observer gets the time each SYN result came: the loop time read
    once for the wake-up that read it, so recording it reads no clock (a
    clock read is a system call in a user-mode-Linux guest, as costly as
    the probe's sendto()); the scheduler's clock is not read either."""
    monkeypatch.setenv(method.ENVIRONMENT, "syn")
    seen: list[tuple[float, float, float]] = []
    reads: list[float] = []

    def clock() -> float:
        reads.append(0.0)
        return 0.0

    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))  # three addresses: three checks, one listener
        listener.listen(16)
        port = listener.getsockname()[1]
        specs = {str(n): spec("tcp", port, address="127.0.0.%d" % n) for n in (1, 2, 3)}

        async def main() -> None:
            loop = asyncio.get_running_loop()

            def observe(
                key: Any, check: Any, result: CheckResult, duration: float, when: float
            ) -> None:
                assert result.up
                seen.append((when, duration, loop.time()))

            scheduler = scheduler_mod.CheckScheduler(EventLog(io.StringIO()), clock, observe)
            scheduler.sync(Board(specs, interval=0.1))  # type: ignore[arg-type]
            await asyncio.sleep(0.5)
            await scheduler.stop()

        asyncio.run(main())
    assert len(seen) >= 6 and reads == []
    assert all(duration >= 0 and when <= after for when, duration, after in seen)
    assert len({id(when) for when, _duration, _after in seen}) < len(seen)  # one read, shared


@needs_raw
def test_probes_start_an_interval_apart_even_when_each_times_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(method.ENVIRONMENT, "syn")
    starts: list[float] = []
    with full_listener() as full:
        specs = {"full": spec("tcp", full.getsockname()[1], timeout=0.2)}

        async def main() -> None:
            loop = asyncio.get_running_loop()

            def observe(
                key: Any, check: Any, result: CheckResult, duration: float, when: float
            ) -> None:
                assert result.timed_out
                assert when <= loop.time()
                starts.append(when - duration)

            scheduler = scheduler_mod.CheckScheduler(EventLog(io.StringIO()), loop.time, observe)
            scheduler.sync(Board(specs, interval=0.3))  # type: ignore[arg-type]
            await asyncio.sleep(1.6)
            await scheduler.stop()

        asyncio.run(main())
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:])]
    assert len(gaps) >= 3
    # Start to start: 0.3 s on average (one sent late is followed by one on
    # time, not by a later grid); 0.5 s if the interval followed each timeout.
    assert 0.3 - 0.01 <= (starts[-1] - starts[0]) / len(gaps) < 0.4


def test_without_raw_socket_every_check_goes_by_the_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.delenv(method.ENVIRONMENT, raising=False)
    monkeypatch.setattr(method.SynProber, "open", refuse)
    seen: list[CheckResult] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        scheduler = scheduler_mod.CheckScheduler(
            EventLog(io.StringIO()), loop.time, lambda k, c, result, d, w: seen.append(result)
        )
        scheduler.sync(Board({"closed": spec("tcp", free_port())}))  # type: ignore[arg-type]
        assert len(scheduler._waiting) == 1 and scheduler._driver is None
        await asyncio.sleep(0.2)
        await scheduler.stop()

    asyncio.run(main())
    assert seen and seen[0].detail == "connect: Connection refused"


@needs_raw
def test_a_partial_reload_starts_and_stops_only_its_syn_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(method.ENVIRONMENT, "syn")
    seen: list[tuple[Any, str]] = []
    closed = free_port()

    def service(number: int, check_port: int) -> dict[str, Any]:
        return {
            "address": "10.0.0.%d" % number,
            "port": 80,
            "checks": [{"type": "tcp", "address": "127.0.0.1", "port": check_port}],
            "real_servers": [{"address": "10.0.2.%d" % number, "port": 80}],
        }

    with socket.socket() as first, socket.socket() as second:
        for listener in (first, second):
            listener.bind(("127.0.0.1", 0))
            listener.listen(16)
        timing = {"interval": 0.2, "timeout": 0.1, "fast_interval": 0.2, "down_interval": 0.2}
        data = {
            "global": {"check_defaults": timing},
            "services": [service(1, first.getsockname()[1]), service(2, closed)],
        }
        base = parse_config(data)
        data["services"][1] = service(2, second.getsockname()[1])  # its check moves
        moved = parse_config(data).services[1]
        reloaded = dataclasses.replace(base, services=(base.services[0], moved))

        async def main() -> None:
            loop = asyncio.get_running_loop()
            scheduler = scheduler_mod.CheckScheduler(
                EventLog(io.StringIO()),
                loop.time,
                lambda key, check, result, duration, when: seen.append((key, result.outcome)),
            )
            board = HealthBoard(base, loop.time(), set(), lambda: 0.0)
            scheduler.sync(board)
            assert scheduler._driver is not None and len(scheduler._driver) == 2
            await asyncio.sleep(0.5)
            old = {key for key in board.checks if key[2] == closed}
            assert {outcome for key, outcome in seen if key in old} == {"down"}
            board.reload(reloaded, loop.time())

            def look_at_all(board: Any) -> None:
                raise AssertionError("a partial reload looked at every check")

            scheduler._sync_all = look_at_all  # type: ignore[method-assign]
            scheduler.sync(board)
            seen.clear()
            await asyncio.sleep(0.6)
            await scheduler.stop()
            assert len(seen) >= 4 and not [key for key, _outcome in seen if key in old]
            assert {key for key, _outcome in seen} == set(board.checks)
            assert {outcome for _key, outcome in seen} == {"up"}

        asyncio.run(main())


class FakeProber:
    """Sends nothing: every probe fails at once (as with no route), so the
    driver schedules the next right away; counts the probes per port."""

    def __init__(self) -> None:
        self.sent: dict[int, int] = {}

    def accepts(self, address: str) -> bool:
        return True

    def send(self, address: str, port: int, now: float, resolve: Any) -> tuple[CheckResult, Any]:
        self.sent[port] = self.sent.get(port, 0) + 1
        if self.sent[port] > 1_000_000:
            raise RuntimeError("the driver went round without letting the loop run")
        return CheckResult(False, None, "no route"), (b"", 0, port)

    def cancel(self, *args: Any) -> None:
        pass


@pytest.fixture
def prober(monkeypatch: pytest.MonkeyPatch) -> FakeProber:
    """The stand-in prober, the one every SYN check of the driver gets."""
    stand_in = FakeProber()
    monkeypatch.setattr(syn_driver.SynDriver, "prober_for", staticmethod(lambda loop, s: stand_in))
    return stand_in


def test_a_check_dropped_and_added_again_runs_once_and_the_driver_keeps_no_set_of_keys(
    monkeypatch: pytest.MonkeyPatch, prober: FakeProber
) -> None:
    """Each check it runs is due or in flight, nowhere else: one dropped and
    added back in one update (a reload that dropped it and another that
    brought it back, seen together) is not run twice as often; one dropped
    is not run again."""
    monkeypatch.setattr(
        syn_driver.method, "choose", lambda loop, family: method.Choice("syn", prober=prober)
    )
    specs = {name: spec("tcp", port) for name, port in (("a", 1001), ("b", 1002), ("c", 1003))}
    board = Board(specs, interval=0.05)
    keys = {name: check.dedup_key for name, check in specs.items()}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        driver = syn_driver.SynDriver(loop, lambda s, result: result, lambda *a: None)
        driver.sync(board, set(board.checks))  # type: ignore[arg-type]
        assert len(driver) == 3 and driver.keys() == set(board.checks)
        queue = driver._due
        held = [*vars(driver).items(), *((n, getattr(queue, n)) for n in queue.__slots__)]
        grown = [
            name for name, value in held if isinstance(value, (set, dict, list)) and len(value) >= 3
        ]
        assert grown == []  # the three are in one bucket: a list in a dict of one
        await asyncio.sleep(0.02)
        driver.update(board, {keys["a"]}, {keys["a"], keys["c"]})  # type: ignore[arg-type]
        assert len(driver) == 2 and driver.keys() == {keys["a"], keys["b"]}
        prober.sent.clear()
        await asyncio.sleep(0.53)
        driver.stop()
        assert len(driver) == 0

    asyncio.run(main())
    assert prober.sent.get(1003) is None
    assert prober.sent[1002] >= 3  # about 10; fewer on a loaded machine
    assert abs(prober.sent[1001] - prober.sent[1002]) <= 1


def test_a_check_due_again_at_once_lets_the_loop_run(prober: FakeProber) -> None:
    """A probe that fails at once, with an interval shorter than the due
    times' grain, is sent again on the loop's next turn, not in a loop of
    the driver's own."""
    board = Board({"a": spec("tcp", 1001)}, interval=0.0001)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        driver = syn_driver.SynDriver(loop, lambda s, result: result, lambda *a: None)
        driver.sync(board, set(board.checks))  # type: ignore[arg-type]
        turns = 0
        until = loop.time() + 0.1
        while loop.time() < until:
            await asyncio.sleep(0)
            turns += 1
        driver.stop()
        return turns

    turns = asyncio.run(main())
    assert 10 < prober.sent[1001] <= turns + 2  # one probe a turn of the loop at most


def test_a_check_that_raises_costs_only_itself(prober: FakeProber) -> None:
    """An observer that raises once (or a send) loses at most the check it
    was for: the rest of the pass stays due and the timer is armed again.
    After stop(), nothing more is sent."""
    specs = {name: spec("tcp", port) for name, port in (("a", 1001), ("b", 1002), ("c", 1003))}
    board = Board(specs, interval=0.05)
    raised: list[Any] = []

    def observe(key: Any, *rest: Any) -> None:
        if not raised:
            raised.append(key)
            raise RuntimeError("an observer that fails once")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, context: None)  # the one raise, expected
        driver = syn_driver.SynDriver(loop, lambda s, result: result, observe)
        driver.sync(board, set(board.checks))  # type: ignore[arg-type]
        await asyncio.sleep(0.3)
        assert len(raised) == 1 and len(driver) == 2  # the one that raised is gone
        left = driver.keys()
        sent = dict(prober.sent)
        await asyncio.sleep(0.2)
        assert all(prober.sent[key[2]] > sent[key[2]] for key in left)  # still running
        driver.stop()
        stopped = dict(prober.sent)
        driver._start(next(iter(left)), loop.time(), loop.time())  # a pass stop() interrupted
        await asyncio.sleep(0.1)
        assert prober.sent == stopped

    asyncio.run(main())


def test_dropping_checks_that_are_not_tcp_takes_no_pass_over_the_queue(
    monkeypatch: pytest.MonkeyPatch, prober: FakeProber
) -> None:
    """A reload that drops only http checks (never the SYN driver's) does
    not go through every SYN check's due time."""
    board = Board({"a": spec("tcp", 1001)}, interval=5.0)
    passes: list[Any] = []
    plain_remove = syn_driver.DueQueue.remove

    def remove(queue: Any, items: Any) -> Any:
        passes.append(set(items))
        return plain_remove(queue, items)

    monkeypatch.setattr(syn_driver.DueQueue, "remove", remove)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        driver = syn_driver.SynDriver(loop, lambda s, result: result, lambda *a: None)
        driver.sync(board, set(board.checks))  # type: ignore[arg-type]
        http = spec("http", 80).dedup_key
        driver.update(board, set(), {http})  # type: ignore[arg-type]
        assert passes == [] and len(driver) == 1
        (tcp,) = board.checks
        driver.update(board, set(), {http, tcp})  # type: ignore[arg-type]
        assert passes == [{tcp}] and len(driver) == 0
        driver.stop()

    asyncio.run(main())


class SilentProber(FakeProber):
    """Sends every probe and never answers: each one times out."""

    def send(self, address: str, port: int, now: float, resolve: Any) -> tuple[None, Any]:
        self.sent[port] = self.sent.get(port, 0) + 1
        return None, (b"", 0, port)

    def read_now(self, now: float) -> None:
        pass


@pytest.mark.parametrize("answered", ["timed out", "failed to send", "dropped"])
def test_an_ended_probe_is_freed_by_reference_counting(
    monkeypatch: pytest.MonkeyPatch, answered: str
) -> None:
    """A probe's resolve refers to the probe: a cycle, which the daemon's
    freeze of long-lived objects would keep for good (a review found it);
    it is broken when the probe ends, however it ends."""
    stand_in = FakeProber() if answered == "failed to send" else SilentProber()
    monkeypatch.setattr(syn_driver.SynDriver, "prober_for", staticmethod(lambda loop, s: stand_in))
    check = spec("tcp", 1001, timeout=0.02)
    board = Board({"a": check}, interval=0.03)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        driver = syn_driver.SynDriver(loop, lambda s, result: result, lambda *a: None)
        driver.sync(board, set(board.checks))  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
        if answered == "dropped":
            driver.update(board, set(), set(board.checks))  # type: ignore[arg-type]
        driver.stop()

    gc.collect()
    gc.disable()
    try:
        asyncio.run(main())
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [type(obj).__name__ for obj in gc.garbage]
        gc.garbage.clear()
    finally:
        gc.set_debug(0)
        gc.enable()
    assert sum(stand_in.sent.values()) >= 3
    assert "_Probe" not in left
