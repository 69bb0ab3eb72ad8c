"""control/report: the status document and the metrics, from a view of a
monitor (report.MonitorView) that the test builds, not from the daemon."""

from __future__ import annotations

import io
from collections import Counter
from types import SimpleNamespace
from typing import Any

from haecs_monitor.checks.base import CheckResult, unknown
from haecs_monitor.config.load import parse_config
from haecs_monitor.control import metrics, report
from haecs_monitor.core.health import HealthBoard, ServerRef
from haecs_monitor.kernel.actuator import Actuator
from haecs_monitor.runtime.events import EventLog
from haecs_monitor.runtime.leaving import Leaving
from haecs_monitor.runtime.looplag import LoopLag
from monitor_fakes import FakeEngine
from test_daemon import KEY, config_dict


def view(tmp: str, **changes: Any) -> Any:
    log = EventLog(io.StringIO())
    config = parse_config(config_dict(tmp))
    actuator = Actuator(FakeEngine())
    actuator.operations_total["add_real_server"] = 3
    actuator.drift_total = 1
    fields: dict[str, Any] = dict(
        config=config,
        config_path="/etc/haecs/monitor-test.yml",
        started_at=1000.0,
        clock=lambda: 50.0,
        wall=lambda: 1012.5,
        board=None,
        admin={},
        last_desired=None,
        actuator=actuator,
        looplag=LoopLag(log),
        # A Notifier's counters (Python 3.9 cannot build its queue outside a loop).
        notifier=SimpleNamespace(sent_total=0, failed_total=0, dropped_total=0),
        api=SimpleNamespace(refused_connections={"unix": 2}),
        check_names=report.CheckNames(config),
        check_durations={},
        reloads=Counter({"accepted": 2, "rejected": 1}),
        last_error=None,
        last_reconcile=1010.0,
        last_apply=None,
        leaving=Leaving(),
    )
    fields.update(changes)
    return SimpleNamespace(**fields)


def test_status_of_a_monitor_still_starting(tmp_path: Any) -> None:
    document = report.status(view(str(tmp_path)))
    assert document["config"] == "/etc/haecs/monitor-test.yml"
    assert document["uptime_seconds"] == 12.5
    assert document["kernel"]["operations_total"] == 3
    assert document["kernel"]["drift_total"] == 1
    assert document["kernel"]["last_reconcile_age_seconds"] == 2.5
    assert document["kernel"]["last_change_age_seconds"] is None
    assert document["checks"] == {"configured": 2, "unique": 0}
    assert document["reloads"] == {"accepted": 2, "rejected": 1}
    assert document["services"] == []  # no board yet: nothing to say per server


def test_metrics_carry_the_counters(tmp_path: Any) -> None:
    board = HealthBoard(parse_config(config_dict(str(tmp_path))), 0.0)
    server = board.servers[ServerRef(KEY, "10.0.2.1", 80)]
    server.changes = 7  # down (not in the kernel at the start): down 4 times, up 3
    assert (server.went_down, server.went_up) == (4, 3)
    text = report.metrics_text(view(str(tmp_path), last_error="EPERM", board=board))
    lines = set(text.splitlines())
    assert 'haecs_kernel_operations_total{op="add_real_server"} 3' in lines
    assert 'haecs_api_connections_refused_total{listener="unix"} 2' in lines
    assert (
        'haecs_state_changes_total{service="tcp:10.0.0.1:80",server="10.0.2.1:80",state="down"} 4'
        in lines
    )
    assert (
        'haecs_state_changes_total{service="tcp:10.0.0.1:80",server="10.0.2.1:80",state="up"} 3'
        in lines
    )
    assert 'haecs_config_reloads_total{result="rejected"} 1' in lines
    assert "haecs_reconcile_drift_total 1" in lines


def test_check_names_number_the_checks_a_name_cannot_tell_apart(tmp_path: Any) -> None:
    data = config_dict(str(tmp_path))
    first = data["services"][0]
    for server in first["real_servers"]:
        server["port"] = 80
    # The same endpoints in a second service, checked at another interval.
    data["services"].append(dict(first, port=81, checks=[{"type": "tcp", "interval": 2}]))
    config = parse_config(data)
    names = report.CheckNames(config)
    made = sorted(names.of(spec) for spec in config.unique_checks().values())
    assert made == [
        "tcp 10.0.2.1:80",
        "tcp 10.0.2.1:80 #2",
        "tcp 10.0.2.2:80",
        "tcp 10.0.2.2:80 #2",
    ]
    plain = report.CheckNames(parse_config(config_dict(str(tmp_path))))
    assert sorted(plain.of(spec) for spec in config.unique_checks().values()) == [
        "tcp 10.0.2.1:80",
        "tcp 10.0.2.1:80",
        "tcp 10.0.2.2:80",
        "tcp 10.0.2.2:80",
    ]


def test_metrics_of_checks_per_check_counters_and_a_histogram_per_type(tmp_path: Any) -> None:
    config = parse_config(config_dict(str(tmp_path)))
    board = HealthBoard(config, 0.0)
    ran, _never_ran = sorted(board.checks, key=lambda key: board.checks[key].spec.address)
    board.record(ran, CheckResult(True, None, "connected"), 1.0, 0.002)
    board.record(ran, CheckResult(False, None, "refused"), 2.0, 0.0005)
    board.record(ran, CheckResult(False, None, "refused"), 3.0, 0.0004)
    board.record(ran, unknown("no descriptor"), 4.0, 0.001)
    durations = metrics.Histogram()
    for seconds in (0.002, 0.0005, 0.0004, 0.001):
        durations.observe(seconds)
    text = report.metrics_text(view(str(tmp_path), board=board, check_durations={"tcp": durations}))
    lines = set(text.splitlines())
    labels = 'check="tcp 10.0.2.1:80",type="tcp"'
    assert 'haecs_checks_total{%s,result="up"} 1' % labels in lines
    assert 'haecs_checks_total{%s,result="down"} 2' % labels in lines
    assert 'haecs_checks_total{%s,result="unknown"} 1' % labels in lines
    assert "haecs_check_last_duration_seconds{%s} 0.001" % labels in lines
    assert not [
        line
        for line in lines
        if line.startswith("haecs_check_last_duration_seconds{") and "10.0.2.2" in line
    ]  # never ran: no duration to show
    assert 'haecs_check_duration_seconds_count{type="tcp"} 4' in lines
    assert 'haecs_check_duration_seconds_bucket{type="tcp",le="0.001"} 3' in lines
    assert not [
        line for line in lines if line.startswith("haecs_check_duration") and "check=" in line
    ]
    document = report.status(view(str(tmp_path), board=board))
    (service,) = document["services"]
    checks = {server["id"]: server["checks"] for server in service["servers"]}
    assert checks["10.0.2.1:80"][0]["last_duration_seconds"] == 0.001
    assert checks["10.0.2.2:80"][0]["last_duration_seconds"] is None
