"""haecs_monitor.core.health with a fake clock and fixed random numbers."""

from __future__ import annotations

import dataclasses
import gc
from typing import Any

import pytest
from haecs_monitor.checks import CheckResult
from haecs_monitor.config.load import MonitorConfig, parse_config
from haecs_monitor.core.health import (
    DOWN,
    UP,
    CheckHealth,
    CheckTransition,
    HealthBoard,
    ServerHealth,
    ServerRef,
    ServerTable,
    Transition,
    WeightChange,
    jittered,
    migrate_checks,
)

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import ServiceKey

OK = CheckResult(True, None, "connected")
FAIL = CheckResult(False, None, "connect: Connection refused")
SERVICE = ServiceKey.for_address("tcp", "10.0.0.1", 80)
RS1 = ServerRef(SERVICE, "10.0.2.1", 80)
RS2 = ServerRef(SERVICE, "10.0.2.2", 80)


def config(
    checks: Any = None, slow_start: float = 0, extra_services: Any = (), **timing: Any
) -> MonitorConfig:
    timing = {
        "interval": 2,
        "timeout": 1,
        "rise": 2,
        "fall": 3,
        "fast_interval": 0.5,
        "down_interval": 5,
        "jitter": 0,
        **timing,
    }
    service = {
        "address": "10.0.0.1",
        "port": 80,
        "slow_start": slow_start,
        "checks": [{"type": "tcp"}] if checks is None else checks,
        "real_servers": [
            {"address": "10.0.2.1", "port": 80, "forwarding": "masq", "weight": 10},
            {"address": "10.0.2.2", "port": 80, "forwarding": "masq", "weight": 4},
        ],
    }
    return parse_config(
        {"global": {"check_defaults": timing}, "services": [service, *extra_services]}
    )


def key_of(board: HealthBoard, ref: ServerRef, index: int = 0) -> Any:
    return board.servers[ref].checks[index].spec.dedup_key


def feed(
    board: HealthBoard, ref: ServerRef, results: list[CheckResult], start: float = 0.0
) -> list[Any]:
    events: list[Any] = []
    for offset, result in enumerate(results):
        events += board.record(key_of(board, ref), result, start + offset)
    return events


def test_present_server_starts_up_unconfirmed_and_falls_after_fall_failures() -> None:
    board = HealthBoard(config(), now=0, present={RS1})
    check = board.servers[RS1].checks[0]
    assert board.servers[RS1].up and check.up and not check.confirmed
    assert feed(board, RS1, [FAIL, FAIL]) == []
    assert board.servers[RS1].up
    events = feed(board, RS1, [FAIL], start=2)
    check_event, server_event = events
    assert isinstance(check_event, CheckTransition) and (check_event.old, check_event.new) == (
        UP,
        DOWN,
    )
    assert check_event.reason == "3 consecutive failure(s): connect: Connection refused"
    assert isinstance(server_event, Transition)
    assert (server_event.server, server_event.old, server_event.new, server_event.at) == (
        RS1,
        UP,
        DOWN,
        2,
    )
    assert server_event.reason == "tcp 10.0.2.1:80: connect: Connection refused"
    assert not board.servers[RS1].up


def test_missing_server_starts_down_and_needs_rise() -> None:
    board = HealthBoard(config(), now=0, present={RS1})
    assert not board.servers[RS2].up
    assert feed(board, RS2, [OK]) == []
    events = feed(board, RS2, [OK], start=1)
    assert [type(event) for event in events] == [CheckTransition, Transition]
    assert events[1].new == UP and events[1].reason == "all 1 check(s) up"
    assert board.servers[RS2].up


def test_flapping_holds_state() -> None:
    board = HealthBoard(config(), now=0, present={RS1})
    assert feed(board, RS1, [FAIL, OK, FAIL, FAIL, OK, FAIL, FAIL, OK] * 5) == []
    assert board.servers[RS1].up
    board2 = HealthBoard(config(), now=0)
    assert feed(board2, RS1, [OK, FAIL] * 10) == []
    assert not board2.servers[RS1].up


def test_rise_one_fall_one() -> None:
    board = HealthBoard(config(rise=1, fall=1), now=0)
    assert len(feed(board, RS1, [OK])) == 2
    assert len(feed(board, RS1, [FAIL])) == 2
    assert len(feed(board, RS1, [OK])) == 2


def test_intervals_stable_transition_and_down() -> None:
    board = HealthBoard(config(), now=0, present={RS1})
    key = key_of(board, RS1)
    assert board.next_delay(key) == 2.0  # up, stable
    board.record(key, FAIL, 1)
    assert board.next_delay(key) == 0.5  # going down
    board.record(key, FAIL, 2)
    board.record(key, FAIL, 3)
    assert board.next_delay(key) == 5.0  # down, stable
    board.record(key, OK, 4)
    assert board.next_delay(key) == 0.5  # coming up
    board.record(key, OK, 5)
    assert board.next_delay(key) == 2.0
    board.record(key, OK, 6)
    assert board.next_delay(key) == 2.0


def test_jitter_bounds_and_determinism() -> None:
    assert jittered(2.0, 0.1, lambda: 0.0) == pytest.approx(1.8)
    assert jittered(2.0, 0.1, lambda: 0.5) == pytest.approx(2.0)
    assert jittered(2.0, 0.1, lambda: 0.999999) == pytest.approx(2.2, abs=1e-5)
    import random

    source = random.Random(7)
    board = HealthBoard(config(jitter=0.2), now=0, present={RS1}, rand=source.random)
    key = key_of(board, RS1)
    delays = [board.next_delay(key) for _unused in range(1000)]
    assert all(1.6 <= delay <= 2.4 for delay in delays)
    assert max(delays) - min(delays) > 0.6  # really spread
    firsts = [board.first_delay(key) for _unused in range(1000)]
    assert all(0 <= delay < 2.0 for delay in firsts) and max(firsts) > 1.5
    again = HealthBoard(config(jitter=0.2), now=0, present={RS1}, rand=random.Random(7).random)
    assert [again.next_delay(key) for _unused in range(1000)] == delays


def test_server_up_only_when_all_checks_up() -> None:
    checks = [{"type": "tcp"}, {"type": "tcp", "port": 8080}]
    board = HealthBoard(config(checks=checks, rise=1, fall=1), now=0, present={RS1})
    first, second = (check.spec.dedup_key for check in board.servers[RS1].checks)
    events = board.record(second, FAIL, 1)
    assert [type(e) for e in events] == [CheckTransition, Transition]
    assert events[1].reason == "tcp 10.0.2.1:8080: connect: Connection refused"
    board.record(first, FAIL, 2)
    assert not board.servers[RS1].up
    assert board.servers[RS1].reason().count("Connection refused") == 2
    board.record(first, OK, 3)
    assert not board.servers[RS1].up
    events = board.record(second, OK, 4)
    assert isinstance(events[-1], Transition) and events[-1].new == UP


def test_a_check_of_one_server_and_a_check_shared_by_two() -> None:
    """One check of one server is kept without a tuple around it (in the
    server's health and among the check's users); a shared one feeds both."""
    shared = {"type": "tcp", "address": "10.0.9.9", "port": 9}
    board = HealthBoard(config(checks=[{"type": "tcp"}, shared], rise=1, fall=1), 0, {RS1, RS2})
    own, common = board.servers[RS1].checks
    assert board.checks[own.spec.dedup_key] is own
    assert board.users(own.spec.dedup_key) == (RS1,)
    assert board.users(common.spec.dedup_key) == (RS1, RS2)
    events = board.record(common.spec.dedup_key, FAIL, 1)
    assert [e.server for e in events if isinstance(e, Transition)] == [RS1, RS2]
    alone = HealthBoard(config(rise=1, fall=1), 0, {RS1, RS2})
    (check,) = alone.servers[RS2].checks
    assert alone.users(check.spec.dedup_key) == (RS2,)
    events = alone.record(check.spec.dedup_key, FAIL, 1)
    assert [e.server for e in events if isinstance(e, Transition)] == [RS2]
    assert alone.servers[RS1].up and not alone.servers[RS2].up


def test_the_board_grows_by_one_entry_per_check_and_one_per_server() -> None:
    """What grows with the configuration is `checks` and `servers`: a check
    keeps its users itself (a dict by check beside `checks` was 30-45 B more
    per check)."""
    shared = {"type": "tcp", "address": "10.0.9.9", "port": 9}
    board = HealthBoard(config(checks=[{"type": "tcp"}, shared]), 0, {RS1})
    assert len(board.checks) == 3 and len(board.servers) == 2
    sized = {
        name
        for name, value in vars(board).items()
        if isinstance(value, (dict, set, list, ServerTable)) and len(value) >= 2
    }
    assert sized == {"checks", "servers"}
    one, two = board.servers[RS1], board.servers[RS2]
    assert {key: check.users for key, check in board.checks.items()} == {
        key_of(board, RS1): one,  # each server's own check: one user, kept bare
        key_of(board, RS2): two,
        key_of(board, RS1, 1): (one, two),  # the shared one
    }
    # No ServerRef kept: the servers are kept by service, then by the
    # configured server's own key tuple.
    assert not any(isinstance(value, ServerRef) for value in gc.get_referents(one))
    assert one.key is one.config.server.key and one.ref == RS1
    # Without slow start: no slots for a ramp, one count of state changes.
    assert one.__class__ is ServerHealth and sorted(ServerHealth.__slots__) == [
        "_own",
        "_state",
        "config",
        "service",
    ]
    one.changes = 5
    assert (one.up, one.changes, one.went_up, one.went_down) == (True, 5, 3, 2)
    one.up = False
    assert (one.up, one.changes, one.went_up, one.went_down) == (False, 5, 2, 3)
    one.up, one.changes = True, 0
    assert list(board.servers) == [RS1, RS2] and RS1 in board.servers
    assert ServerRef(SERVICE, "10.0.2.9", 80) not in board.servers


def test_a_server_counts_its_transitions_across_reloads() -> None:
    """The metrics' state changes, counted by each server's health and kept
    by every kind of reload while the server stays configured."""
    base = config(rise=1, fall=1)
    board = HealthBoard(base, 0, {RS1, RS2})
    feed(board, RS1, [FAIL, OK, FAIL])
    feed(board, RS2, [FAIL])

    def counts() -> dict[ServerRef, tuple[int, int]]:
        return {
            ref: (board.servers[ref].went_up, board.servers[ref].went_down) for ref in (RS1, RS2)
        }

    assert counts() == {RS1: (1, 2), RS2: (0, 1)}
    other = {"address": "10.0.0.2", "port": 80, "real_servers": [{"address": "10.0.2.9"}]}
    added = config(rise=1, fall=1, extra_services=[other])
    both = dataclasses.replace(added, services=(base.services[0], added.services[1]))
    changed = config(rise=2, fall=1, extra_services=[other])
    reloads = (
        both,  # the service taken over as it was: its servers' health kept
        dataclasses.replace(changed, services=(changed.services[0], both.services[1])),
        config(rise=2, fall=1),  # most services new: the board built again
    )
    for new in reloads:
        assert board.reload(new, 10) == []
        assert counts() == {RS1: (1, 2), RS2: (0, 1)}
    feed(board, RS1, [OK, OK], start=20)  # rise 2
    assert counts()[RS1] == (2, 2)


def test_server_without_checks_is_always_up() -> None:
    board = HealthBoard(config(checks=[]), now=0)
    assert board.servers[RS1].up and board.servers[RS1].reason() == "no checks"
    assert board.checks == {}


def test_dynamic_weight_from_script_check() -> None:
    board = HealthBoard(
        config(checks=[{"type": "script", "command": ["/bin/true"]}], rise=1), now=0, present={RS1}
    )
    key = key_of(board, RS1)
    server = board.servers[RS1]
    assert server.weight_at(0) == 10
    events = board.record(key, CheckResult(True, 3, "exit 5: weight 3"), 1)
    change = [e for e in events if isinstance(e, WeightChange) and e.server == RS1]
    assert change and (change[0].old, change[0].new) == (10, 3)
    assert server.weight_at(1) == 3
    board.record(key, CheckResult(True, None, "exit 0"), 2)
    assert server.weight_at(2) == 10
    assert board.record(key, CheckResult(True, None, "exit 0"), 3) == []


def test_smallest_dynamic_weight_wins() -> None:
    checks = [
        {"type": "script", "command": ["/bin/a"]},
        {"type": "script", "command": ["/bin/b"]},
    ]
    board = HealthBoard(config(checks=checks, rise=1), now=0, present={RS1})
    first, second = (check.spec.dedup_key for check in board.servers[RS1].checks)
    board.record(first, CheckResult(True, 7, ""), 1)
    board.record(second, CheckResult(True, 5, ""), 1)
    assert board.servers[RS1].weight_at(1) == 5


def test_slow_start_ramp_after_recovery() -> None:
    board = HealthBoard(config(slow_start=10, rise=1, fall=1), now=0, present={RS1})
    server = board.servers[RS1]
    assert server.weight_at(0) == 10 and not server.ramping(0)  # up at start: no ramp
    feed(board, RS1, [FAIL], start=100)
    assert not server.up
    feed(board, RS1, [OK], start=200)
    assert server.up and server.ramp_start == 200
    weights = [server.weight_at(200 + t) for t in (0, 0.5, 1, 2.5, 5, 9.99, 10, 50)]
    assert weights == [1, 1, 1, 2, 5, 9, 10, 10]
    assert board.ramping(205) == [RS1]
    assert board.ramping(210) == []
    assert server.next_weight_change(200) == 202  # weight 1 until 2 at t+2
    assert server.next_weight_change(205, min_step=0.1) == pytest.approx(206)
    assert server.next_weight_change(209.5) == 210
    assert server.next_weight_change(211) is None
    assert server.weight_at(150) == 1  # a clock before the ramp start is clamped


def test_slow_start_skipped_for_weight_one_and_zero() -> None:
    data = config(slow_start=10, rise=1)
    board = HealthBoard(data, now=0)
    server = board.servers[RS2]
    feed(board, RS2, [OK], start=0)
    assert server.weight_at(1) == 1  # 4 * 1/10 -> floor 0 -> at least 1
    assert server.weight_at(5) == 2


def test_check_shared_across_services_runs_once() -> None:
    other = {
        "address": "10.0.0.1",
        "port": 8080,
        "checks": [{"type": "tcp"}],
        "real_servers": [{"address": "10.0.2.1", "port": 80, "forwarding": "masq"}],
    }
    board = HealthBoard(config(extra_services=[other], rise=1, fall=1), now=0, present={RS1})
    assert len(board.checks) == 2  # 10.0.2.1:80 shared, 10.0.2.2:80
    shared = key_of(board, RS1)
    other_ref = ServerRef(ServiceKey.for_address("tcp", "10.0.0.1", 8080), "10.0.2.1", 80)
    assert board.users(shared) == (RS1, other_ref)
    assert board.servers[other_ref].up  # shared check of a present server
    events = board.record(shared, FAIL, 1)
    assert {e.server for e in events if isinstance(e, Transition)} == {RS1, other_ref}


def test_unknown_key_is_ignored() -> None:
    board = HealthBoard(config(), now=0)
    assert board.record(("nothing",), OK, 1) == []


def test_reload_keeps_state_of_unchanged_checks() -> None:
    board = HealthBoard(config(), now=0, present={RS1, RS2})
    feed(board, RS2, [FAIL, FAIL, FAIL])
    assert not board.servers[RS2].up
    old_check = board.servers[RS1].checks[0]
    feed(board, RS1, [FAIL])
    events = board.reload(config(), now=10, present={RS1})
    assert events == []
    assert board.servers[RS1].checks[0] is old_check and old_check.failures == 1
    assert not board.servers[RS2].up  # stays down: not re-added by the reload


def test_reload_timing_change_keeps_state() -> None:
    board = HealthBoard(config(), now=0, present={RS1, RS2})
    feed(board, RS2, [FAIL, FAIL, FAIL])
    key = board.servers[RS2].checks[0].spec.dedup_key
    board.record(key, OK, 4, duration=0.25)
    events = board.reload(config(interval=3), now=10, present={RS1})
    assert events == []
    assert not board.servers[RS2].up
    moved = board.servers[RS2].checks[0]
    assert moved.spec.timing.interval == 3
    assert moved.confirmed
    # The metrics' counters and the last duration go with the state.
    assert (moved.ups, moved.downs, moved.last_duration) == (1, 3, 0.25)


def test_results_are_counted_by_outcome_with_the_last_duration() -> None:
    board = HealthBoard(config(), now=0, present={RS1})
    check = board.servers[RS1].checks[0]
    assert (check.ups, check.downs, check.unknowns, check.last_duration) == (0, 0, 0, None)
    board.record(check.spec.dedup_key, OK, 1, duration=0.5)
    board.record(check.spec.dedup_key, FAIL, 2, duration=0.125)
    board.record(check.spec.dedup_key, CheckResult(False, None, "no fd", unknown=True), 3)
    assert (check.ups, check.downs, check.unknowns, check.last_duration) == (1, 1, 1, 0.125)


def test_the_last_durations_are_shared_floats_to_three_digits() -> None:
    board = HealthBoard(config(), now=0, present={RS1, RS2})
    one, two = (board.servers[ref].checks[0] for ref in (RS1, RS2))
    board.record(one.spec.dedup_key, OK, 1, duration=0.00123449)
    board.record(two.spec.dedup_key, OK, 1, duration=0.0012341)
    assert one.last_duration == 0.00123 and one.last_duration is two.last_duration
    board.record(two.spec.dedup_key, OK, 2, duration=2.5)
    assert two.last_duration == 2.5


def test_a_streak_is_one_count_and_unknowns_are_kept_apart_from_the_first() -> None:
    """Consecutive successes and failures are one signed count; a check
    without unknown results or a dynamic weight has no record of them (most
    checks), one with them its own, carried (not shared) when its timing
    changes."""
    board = HealthBoard(config(), now=0, present={RS1, RS2})
    check = board.servers[RS1].checks[0]
    key = check.spec.dedup_key
    for at, result in enumerate([OK, OK, FAIL, FAIL], start=1):
        board.record(key, result, at)
    assert (check.successes, check.failures, check.in_transition) == (0, 2, True)
    other = board.servers[RS2].checks[0]
    assert check._seldom is other._seldom  # no record of their own yet
    unknown = CheckResult(False, None, "no fd", unknown=True)
    board.record(key, unknown, 5)
    board.record(key, unknown, 6)
    assert (check.unknowns, check.unknown_streak, check.last_unknown) == (2, 2, "no fd")
    assert other.unknowns == 0 and check._seldom is not other._seldom
    board.reload(config(interval=3), now=10, present={RS1, RS2})
    moved = board.servers[RS1].checks[0]
    assert moved is not check and (moved.failures, moved.unknowns) == (2, 2)
    check.observe(OK, 11)
    board.record(moved.spec.dedup_key, unknown, 12)
    assert (moved.unknowns, moved.unknown_streak) == (3, 3)
    assert (check.unknowns, check.unknown_streak) == (2, 0)  # not shared
    board.record(moved.spec.dedup_key, OK, 13)
    assert (moved.successes, moved.failures, moved.unknown_streak) == (1, 0, 0)
    assert not moved.in_transition  # up: a success is no transition
    weighed = board.servers[RS2].checks[0]
    board.record(weighed.spec.dedup_key, OK, 14)
    assert weighed is not other and weighed._seldom is other._seldom  # still none
    board.record(weighed.spec.dedup_key, CheckResult(True, 3, "exit 5"), 15)
    assert weighed.weight == 3 and weighed._seldom is not other._seldom
    board.record(weighed.spec.dedup_key, OK, 16)
    assert weighed.weight is None and check.weight is None


def test_reload_new_check_starts_from_kernel_presence() -> None:
    board = HealthBoard(config(), now=0, present={RS1, RS2})
    new = config(checks=[{"type": "tcp"}, {"type": "http"}])
    assert board.reload(new, now=5, present={RS1}) == [
        Transition(RS2, UP, DOWN, "http 10.0.2.2:80: not checked yet", 5)
    ]
    assert board.servers[RS1].up
    http_check = board.servers[RS1].checks[1]
    assert http_check.spec.type == "http" and http_check.up and not http_check.confirmed


def test_reload_keeps_slow_start_ramp() -> None:
    board = HealthBoard(config(slow_start=10, rise=1, fall=1), now=0, present={RS1})
    feed(board, RS1, [FAIL], start=1)
    feed(board, RS1, [OK], start=2)
    board.reload(config(slow_start=10, rise=1, fall=1), now=3, present={RS1})
    assert board.servers[RS1].ramp_start == 2
    board.reload(config(slow_start=0, rise=1, fall=1), now=4, present={RS1})
    assert board.servers[RS1].ramp_start is None and board.servers[RS1].weight_at(4) == 10


def test_migrate_checks_function() -> None:
    specs = [rs.checks[0] for rs in config().services[0].real_servers]
    old = {specs[0].dedup_key: CheckHealth(specs[0], False, 0)}
    migrated = migrate_checks(old, specs + specs, lambda spec: True, 5)
    assert migrated[specs[0].dedup_key] is old[specs[0].dedup_key]
    fresh = migrated[specs[1].dedup_key]
    assert fresh.up and not fresh.confirmed and fresh.changed_at == 5
    assert len(migrated) == 2


def test_status_dicts() -> None:
    board = HealthBoard(config(), now=0, present={RS1})
    feed(board, RS1, [FAIL])
    status = board.servers[RS1].as_dict(1)
    assert status["state"] == UP and status["weight"] == 10 and status["configured_weight"] == 10
    (check,) = status["checks"]  # type: ignore[misc]
    assert check["failures"] == 1 and check["detail"] == "connect: Connection refused"
    assert check["confirmed"] is True and check["check"] == "tcp 10.0.2.1:80"
    assert str(RS1) == "tcp 10.0.0.1:80 real server 10.0.2.1:80" and RS1.key == ("10.0.2.1", 80)


def full_reload(board: HealthBoard, new: MonitorConfig, now: float, present: Any) -> list[Any]:
    """A reload that builds the whole board again: what the board did before it
    rebuilt only the changed services."""
    old_servers = board.servers
    board._build(new, now, present, board.checks, old_servers, board.config)
    events = []
    for ref, server in board.servers.items():
        if ref in old_servers and server is not old_servers[ref]:
            transition = server.evaluate(now)
            if transition is not None:
                board._followed(server, transition)  # the count of servers up, as reload keeps it
                events.append(transition)
    return events


def board_snapshot(board: HealthBoard) -> dict[str, Any]:
    checks = {
        key: (h.spec, h.up, h.confirmed, h.successes, h.failures, h.detail)
        for key, h in board.checks.items()
    }
    servers = {
        ref: (h.config, h.up, h.ramp_start, h.slow_start, [c.spec.dedup_key for c in h.checks])
        for ref, h in board.servers.items()
    }
    for health in board.servers.values():  # a server's checks are the board's own
        assert all(board.checks[c.spec.dedup_key] is c for c in health.checks)
    users = {key: sorted(board.users(key)) for key in board.checks}
    assert board.up_count() == sum(1 for health in board.servers.values() if health.up)
    return {"checks": checks, "servers": servers, "users": users}


def test_a_reload_that_keeps_most_services_rebuilds_only_the_others() -> None:
    """Services taken over as they were (the same objects) keep their part of
    the board; the board ends as a rebuild of everything would leave it."""

    def service(port: int, servers: Any, checks: Any = None, address: str = "10.0.0.1") -> Any:
        return {
            "address": address,
            "port": port,
            "checks": checks or [{"type": "tcp"}],
            "real_servers": [
                {"address": "10.0.2.%d" % n, "port": 80, "forwarding": "masq", "weight": w}
                for n, w in servers
            ],
        }

    timing = {"check_defaults": {"interval": 2, "timeout": 1, "rise": 2, "fall": 2, "jitter": 0}}
    before = parse_config(
        {
            "global": timing,
            "services": [
                service(80, [(1, 1), (2, 1)]),
                service(8080, [(1, 1), (3, 1)]),  # 10.0.2.1's check shared with :80
                service(80, [(4, 1)], address="10.0.0.3"),
                service(80, [(5, 1), (6, 1)], address="10.0.0.4", checks=[{"type": "http"}]),
            ],
        }
    )
    edited = parse_config(
        {
            "global": timing,
            "services": [
                service(80, [(1, 1), (2, 1)]),
                # changed: a weight, and its checks' timing (their state carried over)
                service(8080, [(1, 7), (3, 1)], checks=[{"type": "tcp", "interval": 3}]),
                service(80, [(5, 1), (6, 1)], address="10.0.0.4", checks=[{"type": "http"}]),
                # new: one server shares a check with :80, one has a check not run yet
                service(80, [(2, 1), (7, 1)], address="10.0.0.5"),
            ],
        }
    )
    # The reload's configuration as the section loader makes it: unchanged
    # services are the running configuration's own objects.
    after = dataclasses.replace(
        edited,
        services=(before.services[0], edited.services[1], before.services[3], edited.services[3]),
    )
    present = {ServerRef(s.key, *rs.key) for s in before.services for rs in s.real_servers}
    boards = [HealthBoard(before, now=0, present=present) for _unused in range(2)]
    s1_rs2 = ServerRef(before.services[0].key, "10.0.2.2", 80)
    s2_rs3 = ServerRef(before.services[1].key, "10.0.2.3", 80)
    for board in boards:
        feed(board, s1_rs2, [FAIL, FAIL])
        feed(board, s2_rs3, [FAIL])
    incremental, rebuilt = boards
    incremental._build = None  # type: ignore[assignment,method-assign]  # must not be called
    now_present = present - {s1_rs2}
    kept = ServerRef(before.services[3].key, "10.0.2.5", 80)
    kept_health = incremental.servers[kept]
    assert incremental.take_check_changes() is None  # built anew: any
    assert incremental.take_check_changes() == (set(), set())
    checks_before = set(incremental.checks)
    events = incremental.reload(after, now=10, present=now_present)
    assert events == full_reload(rebuilt, after, 10, now_present)
    assert board_snapshot(incremental) == board_snapshot(rebuilt)
    # What the scheduler is told: exactly the checks added and dropped.
    added, dropped = incremental.take_check_changes() or (None, None)
    assert added == set(incremental.checks) - checks_before and added
    assert dropped == checks_before - set(incremental.checks) and dropped
    assert rebuilt.take_check_changes() is None  # the full rebuild: any
    # What the reload's summary counts: the checks started and stopped, the
    # same from the partial rebuild (in place) as from the full one.
    assert incremental.reload_counts == (len(added), len(dropped))
    assert rebuilt.reload_counts == (len(added), len(dropped))
    assert incremental.servers[kept] is kept_health
    assert ServerRef(before.services[2].key, "10.0.2.4", 80) not in incremental.servers
    new_server = ServerRef(edited.services[3].key, "10.0.2.2", 80)
    assert not incremental.servers[new_server].up  # shares s1_rs2's check, which is down


def test_a_partial_reload_reports_the_servers_its_new_checks_take_down() -> None:
    """A changed service whose server gets a check not run yet, and is not in
    the kernel, goes down at the reload; the partial rebuild (in place)
    reports it as the full rebuild does, and keeps the other service's
    servers as they were."""

    def service(port: int, check: str) -> Any:
        return {
            "address": "10.0.0.1",
            "port": port,
            "checks": [{"type": check}],
            "real_servers": [
                {"address": "10.0.2.%d" % n, "port": 80, "forwarding": "masq"} for n in (1, 2)
            ],
        }

    timing = {"check_defaults": {"interval": 2, "timeout": 1, "rise": 2, "fall": 2, "jitter": 0}}
    before = parse_config({"global": timing, "services": [service(80, "tcp"), service(81, "tcp")]})
    edited = parse_config({"global": timing, "services": [service(80, "tcp"), service(81, "http")]})
    after = dataclasses.replace(edited, services=(before.services[0], edited.services[1]))
    present = {ServerRef(s.key, *rs.key) for s in before.services for rs in s.real_servers}
    gone = ServerRef(before.services[1].key, "10.0.2.2", 80)  # left the kernel
    incremental, rebuilt = (HealthBoard(before, now=0, present=present) for _unused in range(2))
    kept = {
        ref: incremental.servers[ref]
        for ref in incremental.servers
        if ref.service == before.services[0].key
    }
    events = incremental.reload(after, now=10, present=present - {gone})
    assert events == full_reload(rebuilt, after, 10, present - {gone})
    assert [(event.server, event.new) for event in events if isinstance(event, Transition)] == [
        (gone, DOWN)
    ]
    assert board_snapshot(incremental) == board_snapshot(rebuilt)
    assert incremental.up_count() == 3
    assert all(incremental.servers[ref] is health for ref, health in kept.items())
    # The tcp checks of :81 (shared with :80, same address and port) stay;
    # two http checks start.
    assert incremental.reload_counts == rebuilt.reload_counts == (2, 0)


def test_every_result_leaves_the_servers_as_their_checks_say() -> None:
    """record() skips the servers when a result changes neither its check's
    state nor its weight; random results (shared checks, several checks
    per server, dynamic weights, unknowns) must still yield exactly the
    events that comparing every server before and after would."""
    import random

    checks = [
        {"type": "script", "command": ["/bin/a"]},
        {"type": "script", "command": ["/bin/b"]},
    ]
    other = {
        "address": "10.0.0.2",
        "port": 80,
        "checks": [{"type": "script", "command": ["/bin/a"]}],  # shared with 10.0.0.1
        "real_servers": [{"address": "10.0.2.1", "port": 80, "forwarding": "masq", "weight": 3}],
    }
    board = HealthBoard(
        config(checks=checks, extra_services=[other], rise=2, fall=2), now=0, present={RS1}
    )
    results = [
        OK,
        FAIL,
        CheckResult(True, 2, "exit 5"),
        CheckResult(True, 6, "exit 5"),
        CheckResult(False, None, "no descriptor", unknown=True),
    ]
    rng = random.Random(11)
    keys = list(board.checks)
    for step in range(2000):
        before = {ref: (s.up, s.base_weight()) for ref, s in board.servers.items()}
        events = board.record(rng.choice(keys), rng.choice(results), step)
        after = {ref: (s.up, s.base_weight()) for ref, s in board.servers.items()}
        for ref, server in board.servers.items():
            assert server.up == all(check.up for check in server.checks), (step, ref)
        assert board.up_count() == sum(1 for up, _weight in after.values() if up), step
        moved = {e.server for e in events if isinstance(e, Transition)}
        reweighed = {e.server for e in events if isinstance(e, WeightChange)}
        assert moved == {ref for ref in after if after[ref][0] != before[ref][0]}, step
        assert reweighed == {
            ref
            for ref in after
            if ref not in moved and after[ref][0] and after[ref][1] != before[ref][1]
        }, step


def test_check_changes_add_up_over_reloads_not_yet_taken() -> None:
    """Two reloads between syncs: dropping what was dropped, then adding what
    was added, leaves exactly the board's checks."""

    def service(address: str, check_port: int) -> dict[str, Any]:
        return {
            "address": address,
            "port": 80,
            "checks": [{"type": "tcp", "port": check_port}],
            "real_servers": [{"address": address.replace("10.0.0", "10.0.2"), "port": 80}],
        }

    def configured(*services: dict[str, Any]) -> MonitorConfig:
        return parse_config({"services": list(services)})

    base = configured(*(service("10.0.0.%d" % n, 80) for n in (1, 2, 3, 4)))
    moved = configured(service("10.0.0.2", 81))  # one check moved to another port
    first = dataclasses.replace(
        base, services=(base.services[0], moved.services[0], *base.services[2:])
    )
    board = HealthBoard(base, now=0)
    running = set(board.checks)
    board.take_check_changes()
    board.reload(first, now=1)
    board.reload(base, now=2)  # and back: the original service object again
    added, dropped = board.take_check_changes() or (set(), set())
    assert (running - dropped) | added == set(board.checks) == running
    assert dropped == {moved.services[0].real_servers[0].checks[0].dedup_key} | added


def test_what_a_reload_drops_is_freed_by_reference_counting() -> None:
    """A check and its servers refer to each other: every reload path (the
    whole board built again, the changed services only, a check carried to
    a new timing) must break that for what it drops, as the daemon freezes
    them out of the cyclic collector's reach."""

    def service(port: int, check: str, interval: float = 2) -> Any:
        return {
            "address": "10.0.0.1",
            "port": port,
            "checks": [{"type": check, "interval": interval}],
            "real_servers": [
                {"address": "10.0.%d.%d" % (port, n), "port": 80, "forwarding": "masq"}
                for n in (1, 2)
            ],
        }

    def configs() -> Any:
        first = parse_config({"services": [service(port, "tcp") for port in (80, 81, 82)]})
        yield first
        # the changed services only: one service's check type, one's timing
        edited = parse_config(
            {"services": [service(80, "tcp"), service(81, "http"), service(82, "tcp", 3)]}
        )
        yield dataclasses.replace(edited, services=(first.services[0], *edited.services[1:]))
        # the whole board: every service new
        yield parse_config({"services": [service(port, "http") for port in (83, 84, 85)]})

    board: Any = None
    gc.collect()
    gc.disable()
    try:
        for index, each in enumerate(configs()):
            if board is None:
                board = HealthBoard(each, now=0, present=set())
            else:
                board.reload(each, now=index)
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()  # what only cycles keep: unreachable from the board
        left = [type(obj).__name__ for obj in gc.garbage]
        gc.garbage.clear()
    finally:
        gc.set_debug(0)
        gc.enable()
    assert len(board.servers) == len(board.checks) == 6
    assert "CheckHealth" not in left and "ServerHealth" not in left, sorted(set(left))
