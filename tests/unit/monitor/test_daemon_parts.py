"""Small daemon parts: event log, state file, ids, metrics, notify, loop lag, CLI formatting."""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
import sys
from typing import Any

import pytest
from haecs_monitor.control import cli, metrics
from haecs_monitor.core import ids
from haecs_monitor.runtime import statefile
from haecs_monitor.runtime.events import EventLog, iso_time
from haecs_monitor.runtime.looplag import LoopLag
from haecs_monitor.runtime.notify import Notification, Notifier

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import ServiceKey

# ---------------------------------------------------------------- events


def test_json_lines_with_the_agreed_fields() -> None:
    stream = io.StringIO()
    log = EventLog(stream, "json", clock=lambda: 0.5)
    log.info(
        "server_down",
        service="tcp:10.0.0.1:80",
        server="10.0.2.1:80",
        reason="connect refused",
        extra=None,
    )
    record = json.loads(stream.getvalue())
    assert record == {
        "ts": "1970-01-01T00:00:00.500Z",
        "level": "info",
        "event": "server_down",
        "service": "tcp:10.0.0.1:80",
        "server": "10.0.2.1:80",
        "reason": "connect refused",
    }


def test_text_format_and_levels() -> None:
    stream = io.StringIO()
    log = EventLog(stream, "text", level="warning", clock=lambda: 0.0)
    log.info("quiet", a=1)
    log.debug("quieter")
    log.warning("loop_stalled", lag_seconds=1.5, reason="woke late")
    assert (
        stream.getvalue()
        == '1970-01-01T00:00:00.000Z WARNING loop_stalled lag_seconds=1.5 reason="woke late"\n'
    )
    # Info events are kept in the history even when not printed; debug ones are not.
    assert [e["event"] for e in log.history()] == ["quiet", "loop_stalled"]


def test_history_ring_buffer_since_and_limit() -> None:
    log = EventLog(io.StringIO(), history=3)
    for n in range(5):
        log.info("e%d" % n)
    assert [e["event"] for e in log.history()] == ["e2", "e3", "e4"]
    assert [e["seq"] for e in log.history(since=4)] == [5]
    assert [e["event"] for e in log.history(limit=1)] == ["e4"]
    assert [e["event"] for e in log.history(limit=0)] == ["e2", "e3", "e4"]  # 0: all


def test_iso_time() -> None:
    assert iso_time(86400.25) == "1970-01-02T00:00:00.250Z"


# ------------------------------------------------------------- state file


def test_state_file_round_trip_is_atomic_and_private(tmp_path: Any) -> None:
    path = str(tmp_path / "sub" / "monitor.state")
    assert statefile.load(path) == statefile.SavedState()
    state = statefile.SavedState(
        {"tcp:10.0.0.1:80": {"10.0.2.1:80": "drain"}},
        ["tcp:10.0.0.1:80"],
        [statefile.SavedLeaver("tcp:10.0.0.1:80", "10.0.2.2:80", 1_800_000_000.5)],
    )
    statefile.save(path, state)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert statefile.load(path) == state
    assert os.listdir(tmp_path / "sub") == ["monitor.state"]  # no temporary left


def test_state_file_ignores_junk_entries_and_reports_corruption(tmp_path: Any) -> None:
    path = tmp_path / "s"
    path.write_text(
        json.dumps(
            {
                "admin": {"a": {"x": "drain", "y": "bogus"}, "b": 3},
                "managed": "no",
                "leaving": [
                    {"service": "a", "server": "x", "until": 5},
                    {"service": "a", "server": "y", "until": "soon"},
                    {"service": "a", "until": 5},
                    {"service": "a", "server": "z", "until": True},
                    "junk",
                ],
            }
        )
    )
    assert statefile.load(str(path)) == statefile.SavedState(
        {"a": {"x": "drain"}}, [], [statefile.SavedLeaver("a", "x", 5.0)]
    )
    path.write_text(json.dumps({"leaving": {"not": "a list"}}))
    assert statefile.load(str(path)) == statefile.SavedState()
    path.write_text("{not json")
    with pytest.raises(statefile.StateFileError, match="cannot read state file"):
        statefile.load(str(path))
    path.write_text("[]")
    with pytest.raises(statefile.StateFileError, match="not a JSON object"):
        statefile.load(str(path))


def test_state_file_write_error_is_clear(tmp_path: Any) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(statefile.StateFileError, match="cannot write"):
        statefile.save(str(blocker / "state"), statefile.SavedState())


# -------------------------------------------------------------------- ids


def test_service_and_server_ids() -> None:
    assert ids.service_id(ServiceKey.for_address("tcp", "10.0.0.1", 80)) == "tcp:10.0.0.1:80"
    assert (
        ids.service_id(ServiceKey.for_address("udp", "2001:db8::1", 53)) == "udp:[2001:db8::1]:53"
    )
    assert ids.service_id(ServiceKey.for_fwmark(42)) == "fwmark:42"
    assert ids.service_id(ServiceKey.for_fwmark(42, "ipv6")) == "fwmark:42:ipv6"
    assert ids.server_id("2001:db8::2", 80) == "[2001:db8::2]:80"
    assert ids.normalize_server("[2001:0db8::0002]:80") == "[2001:db8::2]:80"
    assert ids.normalize_server("10.0.2.1") is None
    assert ids.normalize_server("nonsense:80") is None


def test_match_service_accepts_operator_spellings() -> None:
    known = [
        "tcp:10.0.0.1:80",
        "udp:10.0.0.1:80",
        "tcp:10.0.0.2:443",
        "fwmark:42",
        "tcp:[2001:db8::1]:80",
    ]
    assert ids.match_service("tcp:10.0.0.1:80", known) == ["tcp:10.0.0.1:80"]
    assert ids.match_service("TCP 10.0.0.2:443", known) == ["tcp:10.0.0.2:443"]
    assert ids.match_service("10.0.0.2:443", known) == ["tcp:10.0.0.2:443"]
    assert ids.match_service("10.0.0.1:80", known) == [
        "tcp:10.0.0.1:80",
        "udp:10.0.0.1:80",
    ]  # ambiguous
    assert ids.match_service("fwmark:42", known) == ["fwmark:42"]
    assert ids.match_service("tcp:[2001:0db8::1]:80", known) == ["tcp:[2001:db8::1]:80"]
    assert ids.match_service("tcp:10.9.9.9:80", known) == []
    assert ids.match_service("junk", known) == []


# ---------------------------------------------------------------- metrics


def test_prometheus_text_format() -> None:
    up = metrics.Family("haecs_server_up", "gauge", "1 when the real server is healthy")
    up.add(1, service="tcp:10.0.0.1:80", server='we"ird\\')
    lag = metrics.Family("haecs_loop_lag_seconds", "gauge", "lag")
    lag.add(0.0125)
    hist = metrics.Family("haecs_check_duration_seconds", "histogram", "duration")
    histogram = metrics.Histogram((0.01, 0.1))
    histogram.observe(0.005)
    histogram.observe(0.05)
    histogram.add_to(hist, check="tcp 10.0.2.1:80")
    text = metrics.render([up, lag, hist])
    assert text.splitlines() == [
        "# HELP haecs_server_up 1 when the real server is healthy",
        "# TYPE haecs_server_up gauge",
        'haecs_server_up{service="tcp:10.0.0.1:80",server="we\\"ird\\\\"} 1',
        "# HELP haecs_loop_lag_seconds lag",
        "# TYPE haecs_loop_lag_seconds gauge",
        "haecs_loop_lag_seconds 0.0125",
        "# HELP haecs_check_duration_seconds duration",
        "# TYPE haecs_check_duration_seconds histogram",
        'haecs_check_duration_seconds_bucket{check="tcp 10.0.2.1:80",le="0.01"} 1',
        'haecs_check_duration_seconds_bucket{check="tcp 10.0.2.1:80",le="0.1"} 2',
        'haecs_check_duration_seconds_bucket{check="tcp 10.0.2.1:80",le="+Inf"} 2',
        'haecs_check_duration_seconds_sum{check="tcp 10.0.2.1:80"} 0.055',
        'haecs_check_duration_seconds_count{check="tcp 10.0.2.1:80"} 2',
    ]


# ----------------------------------------------------------------- notify


def test_notify_passes_haecs_environment_and_no_shell(tmp_path: Any) -> None:
    out = tmp_path / "out"
    script = (
        "import os, sys; open(sys.argv[1], 'a').write("
        "' '.join(os.environ[k] for k in ('HAECS_EVENT','HAECS_SERVICE','HAECS_SERVER','HAECS_STATE','HAECS_REASON'))"
        " + '|' + sys.argv[2] + chr(10))"
    )

    async def main() -> Notifier:
        notifier = Notifier(EventLog(io.StringIO()))
        notifier.configure([sys.executable, "-c", script, str(out), "$(touch /tmp/never); x"], 10)
        notifier.start()
        notifier.notify(
            Notification("server_down", "tcp:10.0.0.1:80", "10.0.2.1:80", "down", "refused")
        )
        notifier.notify(Notification("server_up", "tcp:10.0.0.1:80", "10.0.2.1:80", "up", "ok"))
        await notifier.stop(grace=20)
        return notifier

    notifier = asyncio.run(main())
    assert out.read_text().splitlines() == [
        "server_down tcp:10.0.0.1:80 10.0.2.1:80 down refused|$(touch /tmp/never); x",
        "server_up tcp:10.0.0.1:80 10.0.2.1:80 up ok|$(touch /tmp/never); x",
    ]
    assert notifier.sent_total == 2 and notifier.failed_total == 0


def test_notify_timeout_and_failure_are_logged() -> None:
    stream = io.StringIO()

    async def main() -> Notifier:
        notifier = Notifier(EventLog(stream))
        notifier.configure([sys.executable, "-c", "import time; time.sleep(30)"], 0.3)
        assert not await notifier.run(Notification("server_down"))
        notifier.configure([sys.executable, "-c", "raise SystemExit(3)"], 10)
        assert not await notifier.run(Notification("server_down"))
        notifier.configure(["/nonexistent/notify"], 10)
        assert not await notifier.run(Notification("server_down"))
        return notifier

    notifier = asyncio.run(main())
    reasons = [json.loads(line)["reason"] for line in stream.getvalue().splitlines()]
    assert reasons[0] == "timed out after 0.3s"
    assert reasons[1] == "exit status 3"
    assert "No such file" in reasons[2]
    assert notifier.failed_total == 3


# --------------------------------------------------------------- loop lag


def test_loop_lag_records_and_warns() -> None:
    stream = io.StringIO()
    lag = LoopLag(EventLog(stream), warn_after=1.0)
    lag.record(0.01)
    lag.record(1.5)
    lag.record(-0.1)
    assert (lag.last, lag.max, lag.stalls_total, lag.recent_max) == (0.0, 1.5, 1, 1.5)
    assert json.loads(stream.getvalue())["event"] == "loop_stalled"


def test_loop_lag_notices_a_blocked_loop() -> None:
    stream = io.StringIO()

    async def main() -> LoopLag:
        import time

        lag = LoopLag(EventLog(stream), period=0.05, warn_after=0.2)
        lag.start()
        await asyncio.sleep(0.1)
        time.sleep(0.4)  # a blocking call stalls the loop
        await asyncio.sleep(0.1)
        await lag.stop()
        return lag

    lag = asyncio.run(main())
    assert lag.max >= 0.2 and lag.stalls_total >= 1
    assert "loop_stalled" in stream.getvalue()


# ------------------------------------------------------------------- cli


STATUS = {
    "name": "default",
    "loop": {"lag_seconds": 0.0004, "max_lag_seconds": 0.002},
    "kernel": {"last_reconcile_age_seconds": 1.25, "last_error": None},
    "services": [
        {
            "id": "tcp:10.0.0.1:80",
            "below_quorum": False,
            "sorry_active": False,
            "healthy_weight": 3,
            "threshold": 1,
            "servers": [
                {
                    "id": "10.0.2.1:80",
                    "health": "up",
                    "reason": "up",
                    "admin": "enabled",
                    "in_table": True,
                    "weight": 3,
                    "configured_weight": 3,
                    "checks": [{"name": "tcp 10.0.2.1:80", "up": True, "detail": "connected"}],
                },
                {
                    "id": "10.0.2.2:80",
                    "health": "down",
                    "reason": "down",
                    "admin": "drain",
                    "in_table": False,
                    "weight": 0,
                    "configured_weight": 1,
                    "checks": [
                        {
                            "name": "tcp 10.0.2.2:80",
                            "up": False,
                            "detail": "connect: Connection refused",
                            "history": "++?---",
                            "state_since_seconds": 12.34,
                        }
                    ],
                },
            ],
        },
        {
            "id": "fwmark:42",
            "below_quorum": True,
            "sorry_active": True,
            "healthy_weight": 0,
            "threshold": 1,
            "servers": [],
        },
    ],
}


def test_status_is_an_aligned_table() -> None:
    assert cli.format_status(STATUS).splitlines() == [
        "monitor default: 2 services, 2 real servers (1 up), loop lag 0.4 ms (max 2.0 ms), last reconcile 1.2s ago",
        "SERVICE          SERVER       STATE  ADMIN    WEIGHT  CHECKS",
        "tcp:10.0.0.1:80  10.0.2.1:80  up     enabled  3/3     tcp 10.0.2.1:80 up (connected)",
        "                 10.0.2.2:80  down   drain    -/1     tcp 10.0.2.2:80 down (connect: Connection refused) [++?--- since 12.3s]",
        "fwmark:42        -            -      -        -       -",
        "! fwmark:42 is below quorum: healthy weight 0, needs 1; sorry server in",
    ]


def test_check_summary_line() -> None:
    from haecs_monitor.config.load import parse_config

    config = parse_config(
        {
            "services": [
                {
                    "address": "10.0.0.1",
                    "port": 80,
                    "checks": [{"type": "tcp"}],
                    "real_servers": [{"address": "10.0.2.1"}, {"address": "10.0.2.2"}],
                },
                {
                    "address": "10.0.0.1",
                    "port": 8080,
                    "protocol": "tcp",
                    "checks": [{"type": "tcp", "port": 80}],
                    "real_servers": [{"address": "10.0.2.1", "forwarding": "masq", "port": 8080}],
                },
            ]
        }
    )
    # The second service's check probes 10.0.2.1:80 exactly like the first one's: shared.
    assert cli.check_summary(config) == "config OK: 2 services, 3 real servers, 3 checks (2 unique)"


def test_monitor_check_prints_errors_one_per_line(tmp_path: Any, capsys: Any) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("services:\n  - address: 10.0.0.1\n    port: 99999\n    bogus: 1\n")
    assert cli.monitor_main(["--check", str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) >= 2 and all(line.startswith("services[0]") for line in out)
    good = tmp_path / "good.yml"
    good.write_text("services:\n  - address: 10.0.0.1\n    port: 80\n")
    assert cli.monitor_main(["--check", str(good)]) == 0
    assert capsys.readouterr().out == "config OK: 1 services, 0 real servers, 0 checks (0 unique)\n"
    assert cli.monitor_main(["--check", str(tmp_path / "missing.yml")]) == 1
    assert "cannot read" in capsys.readouterr().out


def test_haecsctl_without_monitor_is_one_line(tmp_path: Any, capsys: Any) -> None:
    assert cli.ctl_main(["--socket", str(tmp_path / "none.sock"), "status"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("haecsctl: no control socket")


def test_parse_service_id_round_trips() -> None:
    keys = [
        ServiceKey.for_address("tcp", "10.0.0.1", 80),
        ServiceKey.for_address("udp", "2001:db8::1", 53),
        ServiceKey.for_address("sctp", "10.0.0.1", 9),
        ServiceKey.for_fwmark(42),
        ServiceKey.for_fwmark(7, "ipv6"),
    ]
    for key in keys:
        assert ids.parse_service_id(ids.service_id(key)) == key
    for bad in ("icmp:1.2.3.4:1", "fwmark:x", "fwmark:1:ipv9", "tcp:nothing"):
        assert ids.parse_service_id(bad) is None


def test_paths_setup_maps_the_engine_without_the_link_farm(tmp_path: Any) -> None:
    import subprocess

    from haecs_monitor import paths

    root = os.path.dirname(os.path.dirname(paths.__file__))  # repo/monitor
    code = (
        "import sys; sys.path.insert(0, %r); from haecs_monitor import paths; paths._map_namespace(%r); "
        "from ansible_collections.haecs.lvs.plugins.module_utils.ipvs import engine; print(engine.IPVS.__name__)"
        % (root, os.path.dirname(root))
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=False
    )
    assert result.stdout.strip() == "IPVS", result.stderr


def test_loop_lag_window_holds_the_worst_lag_of_one_piece_of_work() -> None:
    async def main() -> tuple[float, float, float]:
        import time

        lag = LoopLag(EventLog(io.StringIO()), period=0.02)
        lag.start()
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # before the window: not counted
        await asyncio.sleep(0.05)
        lag.open_window()
        await asyncio.sleep(0.05)
        quiet = lag.close_window()
        lag.open_window()
        time.sleep(0.15)  # a stall still under way when the window closes
        stalled = lag.close_window()
        await lag.stop()
        return quiet, stalled, lag.max

    quiet, stalled, worst = asyncio.run(main())
    assert quiet < 0.1 <= stalled < 0.25 <= worst
