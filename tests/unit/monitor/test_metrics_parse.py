"""The /metrics text of a running monitor, read by Prometheus' own parser."""

from __future__ import annotations

from typing import Any

import pytest
from haecs_monitor.runtime import daemon
from monitor_fakes import FakeEngine
from prometheus_client.parser import text_string_to_metric_families
from test_daemon import Harness, config_dict, until


@pytest.fixture
def harness(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Harness:
    return Harness(str(tmp_path), FakeEngine(), monkeypatch)


def test_metrics_parse_with_the_official_parser(harness: Harness) -> None:
    harness.write(config_dict(harness.tmp))
    parsed: dict[str, Any] = {}

    async def scenario(monitor: daemon.Monitor) -> None:
        await until(lambda: harness.weights() == {"10.0.2.1": 1, "10.0.2.2": 2}, "both up")
        harness.down.add("10.0.2.2")
        await until(lambda: harness.weights() == {"10.0.2.1": 1}, "rs2 out")
        for family in text_string_to_metric_families(monitor.metrics_text()):
            parsed[family.name] = family

    assert harness.run(scenario) == 0
    for name, kind in (
        ("haecs_server_up", "gauge"),
        ("haecs_server_weight", "gauge"),
        ("haecs_checks", "counter"),  # the parser drops _total from counter names
        ("haecs_check_duration_seconds", "histogram"),
        ("haecs_api_connections_refused", "counter"),
        ("haecs_loop_lag_seconds", "gauge"),
        ("haecs_state_changes", "counter"),
    ):
        assert parsed[name].type == kind, name
    up = {s.labels["server"]: s.value for s in parsed["haecs_server_up"].samples}
    assert up == {"10.0.2.1:80": 1.0, "10.0.2.2:80": 0.0}
    results = {
        s.labels["result"] for s in parsed["haecs_checks"].samples if s.name == "haecs_checks_total"
    }
    assert results == {"up", "down", "unknown"}
    buckets = [
        s for s in parsed["haecs_check_duration_seconds"].samples if s.name.endswith("_bucket")
    ]
    assert buckets and buckets[-1].labels["le"] == "+Inf"
