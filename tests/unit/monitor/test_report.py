"""control/report: the status document and the metrics, from a view of a
monitor (report.MonitorView) that the test builds, not from the daemon."""

from __future__ import annotations

import io
from collections import Counter
from types import SimpleNamespace
from typing import Any

from haecs_monitor.config.load import parse_config
from haecs_monitor.control import report
from haecs_monitor.core.health import ServerRef
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
        check_names=report.check_names(config),
        checks_total=Counter(),
        check_durations={},
        last_duration={},
        state_changes=Counter({(ServerRef(KEY, "10.0.2.1", 80), "down"): 4}),
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
    text = report.metrics_text(view(str(tmp_path), last_error="EPERM"))
    lines = set(text.splitlines())
    assert 'haecs_kernel_operations_total{op="add_real_server"} 3' in lines
    assert 'haecs_api_connections_refused_total{listener="unix"} 2' in lines
    assert (
        'haecs_state_changes_total{service="tcp:10.0.0.1:80",server="10.0.2.1:80",state="down"} 4'
        in lines
    )
    assert 'haecs_config_reloads_total{result="rejected"} 1' in lines
    assert "haecs_reconcile_drift_total 1" in lines


def test_check_names_tell_identical_checks_apart(tmp_path: Any) -> None:
    names = report.check_names(parse_config(config_dict(str(tmp_path))))
    assert sorted(names.values()) == ["tcp 10.0.2.1:80", "tcp 10.0.2.2:80"]
