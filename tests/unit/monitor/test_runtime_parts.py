"""The daemon's parts on their own: the remembered state, the check
scheduler, and how an operator's SERVICE SERVER names resolve."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import re
from typing import Any

import pytest
from haecs_monitor.checks.base import CheckResult
from haecs_monitor.config.load import parse_config
from haecs_monitor.core import ids
from haecs_monitor.core.health import HealthBoard
from haecs_monitor.errors import Ambiguous, NotFound
from haecs_monitor.runtime import scheduler as scheduler_mod
from haecs_monitor.runtime.events import EventLog
from haecs_monitor.runtime.state import MonitorState
from test_health import config

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import ServiceKey

WEB = ServiceKey.for_address("tcp", "10.0.0.1", 80)
DNS = ServiceKey.for_address("udp", "10.0.0.1", 53)


def events(stream: io.StringIO) -> list[str]:
    return [json.loads(line)["event"] for line in stream.getvalue().splitlines()]


# ----------------------------------------------------------------- state


def test_state_remembers_admin_and_managed_services_across_restarts(tmp_path: Any) -> None:
    path = str(tmp_path / "monitor.state")
    first = MonitorState(path, EventLog(io.StringIO()))
    first.load()  # no file yet: empty
    assert first.set_admin("tcp:10.0.0.1:80", "10.0.2.1:80", "drain") == ("enabled", "drain")
    assert first.set_admin("tcp:10.0.0.1:80", "10.0.2.2:80", "disable") == ("enabled", "disable")
    assert first.set_admin("tcp:10.0.0.1:80", "10.0.2.2:80", "enable") == ("disable", "enabled")
    assert first.save([WEB, DNS]) is None

    stream = io.StringIO()
    second = MonitorState(path, EventLog(stream))
    second.load()
    assert second.admin == {("tcp:10.0.0.1:80", "10.0.2.1:80"): "drain"}
    assert second.admin_state("tcp:10.0.0.1:80", "10.0.2.1:80") == "drain"
    assert second.admin_state("tcp:10.0.0.1:80", "10.0.2.2:80") == "enabled"
    assert second.managed_gone([WEB]) == {DNS}  # dropped from the config while stopped
    assert second.managed_gone([WEB, DNS]) == set()
    assert "admin_states_loaded" in events(stream)


def test_state_file_errors_are_logged_not_raised(tmp_path: Any) -> None:
    bad = tmp_path / "monitor.state"
    bad.write_text("{not json")
    stream = io.StringIO()
    state = MonitorState(str(bad), EventLog(stream))
    state.load()
    assert state.admin == {} and "state_file_unreadable" in events(stream)
    (tmp_path / "a-file").write_text("")
    unwritable = MonitorState(str(tmp_path / "a-file" / "monitor.state"), EventLog(stream))
    error = unwritable.save([WEB])
    assert error is not None and "a-file" in error
    assert "state_file_write_failed" in events(stream)


# ----------------------------------------------------------------- names


POOLS = {
    "tcp:10.0.0.1:80": {"10.0.2.1:80", "10.0.2.2:80"},
    "udp:10.0.0.1:80": {"10.0.2.1:80"},
    "tcp:10.0.0.2:443": {"10.0.2.3:443"},
}


def test_resolve_names_services_and_servers() -> None:
    assert ids.resolve("tcp:10.0.0.1:80", "10.0.2.2:80", POOLS) == (
        ["tcp:10.0.0.1:80"],
        "10.0.2.2:80",
    )
    assert ids.resolve("*", "10.0.2.1:80", POOLS) == (
        ["tcp:10.0.0.1:80", "udp:10.0.0.1:80"],
        "10.0.2.1:80",
    )
    with pytest.raises(Ambiguous, match="names several services"):
        ids.resolve("10.0.0.1:80", "10.0.2.1:80", POOLS)
    with pytest.raises(NotFound, match=re.escape("no service tcp:10.9.9.9:80")):
        ids.resolve("tcp:10.9.9.9:80", "10.0.2.1:80", POOLS)
    with pytest.raises(NotFound, match=re.escape("has no real server 10.0.2.3:443")):
        ids.resolve("tcp:10.0.0.1:80", "10.0.2.3:443", POOLS)
    with pytest.raises(NotFound, match=re.escape("no service has real server 10.0.9.9:80")):
        ids.resolve("all", "10.0.9.9:80", POOLS)
    with pytest.raises(NotFound, match="is not a real server"):
        ids.resolve("*", "10.0.2.1", POOLS)


# ------------------------------------------------------------- scheduler


def test_scheduler_runs_one_task_per_check_and_stops_them(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, int]] = []

    async def probe(spec: Any, address: str, port: int) -> CheckResult:
        seen.append((address, port))
        return CheckResult(True, None, "connected")

    monkeypatch.setattr(scheduler_mod, "CHECKS", {"tcp": probe})
    observed: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        board = HealthBoard(config(), loop.time(), set(), lambda: 0.0)
        scheduler = scheduler_mod.CheckScheduler(
            EventLog(io.StringIO()),
            loop.time,
            lambda key, spec, result, duration, when: observed.append(result.outcome),
        )
        scheduler.sync(board)
        scheduler.sync(board)  # again: no second task for a check
        assert scheduler.scheduled() == len(board.checks)
        for _attempt in range(200):
            if len(observed) >= len(board.checks):
                break
            await asyncio.sleep(0.01)
        await scheduler.stop()
        assert scheduler.scheduled() == 0

    asyncio.run(main())
    assert observed and set(observed) == {"up"}
    assert seen


def test_a_check_holds_no_task_between_runs_and_runs_at_its_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs: list[tuple[str, float]] = []

    async def probe(spec: Any, address: str, port: int) -> CheckResult:
        runs.append((address, asyncio.get_running_loop().time()))
        return CheckResult(True, None, "connected")

    monkeypatch.setattr(scheduler_mod, "CHECKS", {"tcp": probe})

    async def main() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        # first delay 0.1 x interval, then exactly the interval (no jitter)
        board = HealthBoard(
            config(interval=0.3, fast_interval=0.3, down_interval=0.3, timeout=0.1),
            loop.time(),
            set(),
            lambda: 0.1,
        )
        scheduler = scheduler_mod.CheckScheduler(
            EventLog(io.StringIO()), loop.time, lambda *args: None
        )
        started = loop.time()
        scheduler.sync(board)
        await asyncio.sleep(0.15)  # every check ran once, none is due again yet
        tasks_between_runs = len(asyncio.all_tasks()) - 1  # this one
        await asyncio.sleep(0.3)
        await scheduler.stop()
        return tasks_between_runs, started

    tasks_between_runs, started = asyncio.run(main())
    assert tasks_between_runs == 0
    by_address: dict[str, list[float]] = {}
    for address, at in runs:
        by_address.setdefault(address, []).append(at - started)
    assert sorted(by_address) == ["10.0.2.1", "10.0.2.2"]
    for times in by_address.values():
        assert len(times) == 2
        assert times[0] >= 0.03  # a tenth of the interval
        # the interval after the first was due (not after it ran: a late
        # first run is not carried forward)
        assert times[1] >= 0.03 + 0.3


def test_checks_start_an_interval_apart_however_long_each_takes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    starts: list[float] = []

    async def slow_probe(spec: Any, address: str, port: int) -> CheckResult:
        if address == "10.0.2.1":
            starts.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.15)  # most of the interval
        return CheckResult(True, None, "connected")

    monkeypatch.setattr(scheduler_mod, "CHECKS", {"tcp": slow_probe})

    async def main() -> None:
        loop = asyncio.get_running_loop()
        board = HealthBoard(
            config(interval=0.25, fast_interval=0.25, down_interval=0.25, timeout=0.2),
            loop.time(),
            set(),
            lambda: 0.1,
        )
        scheduler = scheduler_mod.CheckScheduler(
            EventLog(io.StringIO()), loop.time, lambda *args: None
        )
        scheduler.sync(board)
        await asyncio.sleep(1.4)
        await scheduler.stop()

    asyncio.run(main())
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:])]
    assert len(gaps) >= 3
    # Start to start: 0.25 s on average (a late start is not carried
    # forward), where waiting the interval after each result makes it 0.4 s.
    assert 0.25 - 0.01 <= (starts[-1] - starts[0]) / len(gaps) < 0.32


def test_after_a_partial_reload_the_scheduler_touches_only_added_and_dropped_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def probe(spec: Any, address: str, port: int) -> CheckResult:
        return CheckResult(True, None, "connected")

    monkeypatch.setattr(scheduler_mod, "CHECKS", {"tcp": probe})

    def service(address: str, check_port: int) -> dict[str, Any]:
        return {
            "address": address,
            "port": 80,
            "checks": [{"type": "tcp", "port": check_port, "interval": 30, "timeout": 1}],
            "real_servers": [{"address": address.replace("10.0.0", "10.0.2"), "port": 80}],
        }

    base = parse_config({"services": [service("10.0.0.%d" % n, 80) for n in (1, 2, 3, 4)]})
    moved = parse_config({"services": [service("10.0.0.2", 81)]})
    reloaded = dataclasses.replace(
        base, services=(base.services[0], moved.services[0], *base.services[2:])
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        board = HealthBoard(base, loop.time(), set(), lambda: 0.5)
        scheduler = scheduler_mod.CheckScheduler(
            EventLog(io.StringIO()), loop.time, lambda *args: None
        )
        scheduler.sync(board)
        tickets = dict(scheduler._waiting)
        (gone,) = [key for key in board.checks if key[2] == 80 and key[1] == "10.0.2.2"]
        board.reload(reloaded, loop.time())

        def look_at_all(board: Any) -> None:
            raise AssertionError("a partial reload looked at every check")

        scheduler._sync_all = look_at_all  # type: ignore[method-assign]
        scheduler.sync(board)
        (new,) = set(board.checks) - set(tickets)
        assert gone not in scheduler._waiting and new in scheduler._waiting
        # the others keep their place on the heap: not looked at again
        assert {k: t for k, t in scheduler._waiting.items() if k != new} == {
            k: t for k, t in tickets.items() if k != gone
        }
        assert scheduler.scheduled() == 4
        await scheduler.stop()

    asyncio.run(main())


def test_a_crashing_check_is_unknown_not_down(monkeypatch: pytest.MonkeyPatch) -> None:
    async def crash(spec: Any, address: str, port: int) -> CheckResult:
        raise RuntimeError("bug")

    monkeypatch.setattr(scheduler_mod, "CHECKS", {"tcp": crash})
    stream = io.StringIO()

    async def main() -> CheckResult:
        board = HealthBoard(config(), 0.0, set(), lambda: 0.0)
        spec = next(iter(board.checks.values())).spec
        scheduler = scheduler_mod.CheckScheduler(EventLog(stream), lambda: 0.0, lambda *a: None)
        return await scheduler.run(spec)

    result = asyncio.run(main())
    assert result.unknown and not result.up
    assert "check_crashed" in events(stream)
