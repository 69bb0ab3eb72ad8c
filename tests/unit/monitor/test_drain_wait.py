"""`haecsctl drain --wait` without a monitor: a scripted API, a fake clock."""

from __future__ import annotations

import functools
import io
import json
from dataclasses import dataclass, field
from typing import Any, Optional

import pytest
from haecs_monitor.control import cli, client, drain_wait

SERVICE = "tcp:10.0.0.1:80"
SERVER = "10.0.2.1:80"


def answer(
    active: int = 0,
    inactive: int = 0,
    templates: int = 0,
    weight: Optional[int] = 0,
    persistent: bool = False,
    service: str = SERVICE,
) -> dict[str, Any]:
    """GET /servers/... for one service, with the verdicts the monitor computes."""
    in_kernel = weight is not None
    drained = not in_kernel or (weight == 0 and active == 0)
    entry = {
        "service": service,
        "admin": "drain",
        "in_kernel": in_kernel,
        "weight": weight,
        "configured_weight": 1,
        "persistent": persistent,
        "active_connections": active if in_kernel else None,
        "inactive_connections": inactive if in_kernel else None,
        "persistence_templates": templates if in_kernel else None,
        "drained": drained,
        "idle": drained and (not in_kernel or inactive == 0),
    }
    return {
        "server": SERVER,
        "active_connections": active if in_kernel else 0,
        "inactive_connections": inactive if in_kernel else 0,
        "persistence_templates": templates if in_kernel else 0,
        "drained": entry["drained"],
        "idle": entry["idle"],
        "services": [entry],
    }


@dataclass
class Reply:
    status: int
    data: Any

    def json(self) -> Any:
        return self.data


@dataclass
class ScriptedMonitor:
    """Answers the drain POST, then each GET with the next scripted answer
    (the last one repeats); a ClientError or KeyboardInterrupt in the script
    is raised instead."""

    polls: list[Any]
    drain: Reply = field(
        default_factory=lambda: Reply(
            200, {"ok": True, "changed": [{"service": SERVICE, "server": SERVER, "admin": "drain"}]}
        )
    )
    requests: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, method: str, path: str) -> Reply:
        self.requests.append((method, path))
        if method == "POST":
            return self.drain
        item = self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]
        if isinstance(item, BaseException):
            raise item
        return item if isinstance(item, Reply) else Reply(200, item)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A fake clock for the whole command too (haecsctl calls drain_and_wait)."""
    fake = FakeClock()
    real = drain_wait.drain_and_wait
    monkeypatch.setattr(
        drain_wait, "drain_and_wait", functools.partial(real, clock=fake, sleep=fake.sleep)
    )
    return fake


def ctl(monkeypatch: pytest.MonkeyPatch, monitor: ScriptedMonitor, *argv: str) -> int:
    monkeypatch.setattr(cli, "_sender", lambda args, module: monitor)
    return cli.ctl_main(list(argv))


# ------------------------------------------------------------------ arguments


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--wait", "--timeout", "-1"], "drain --timeout must be 0 or more seconds, got -1"),
        (["--wait", "--timeout", "nan"], "drain --timeout must be 0 or more seconds, got nan"),
        (["--wait", "--timeout", "inf"], "drain --timeout must be 0 or more seconds, got inf"),
        (["--wait", "--interval", "0"], "drain --interval must be above 0 seconds, got 0"),
        (["--wait", "--interval", "-2"], "drain --interval must be above 0 seconds, got -2"),
        (["--timeout", "5"], "drain --timeout only goes with --wait"),
        (["--interval", "2", "--until", "all"], "drain --interval and --until only go with --wait"),
    ],
)
def test_bad_wait_options_are_refused_before_anything_is_sent(
    monkeypatch: pytest.MonkeyPatch, capsys: Any, argv: list[str], says: str
) -> None:
    monitor = ScriptedMonitor([answer()])
    assert ctl(monkeypatch, monitor, "drain", SERVICE, SERVER, *argv) == 2
    assert capsys.readouterr().err == "haecsctl: %s\n" % says
    assert monitor.requests == []  # nothing drained


def test_bad_until_and_non_number_are_usage_errors(capsys: Any) -> None:
    for argv in (["--until", "some"], ["--timeout", "soon"]):
        with pytest.raises(SystemExit) as stopped:
            cli.ctl_main(["drain", SERVER, "--wait", *argv])
        assert stopped.value.code == 2
        assert argv[0] in capsys.readouterr().err


def test_defaults_and_the_global_timeout_stay_apart() -> None:
    args = cli.ctl_parser().parse_args(["--timeout", "7", "drain", SERVER, "--wait"])
    assert drain_wait.options_problem(args) is None
    assert (args.timeout, args.wait_timeout, args.wait_interval, args.until) == (
        7.0,
        drain_wait.DEFAULT_TIMEOUT,
        drain_wait.DEFAULT_INTERVAL,
        "active",
    )
    args = cli.ctl_parser().parse_args(["drain", SERVER, "--wait", "--timeout", "0"])
    assert drain_wait.options_problem(args) is None and args.wait_timeout == 0
    assert args.timeout == 30.0


def test_only_drain_has_wait() -> None:
    with pytest.raises(SystemExit):
        cli.ctl_parser().parse_args(["disable", SERVER, "--wait"])


def test_paths_are_quoted() -> None:
    assert drain_wait.server_path("*", "[2001:db8::2]:80") == "/servers/*/%5B2001:db8::2%5D:80"
    assert drain_wait.server_path(SERVICE, SERVER, "drain") == "/servers/%s/%s/drain" % (
        SERVICE,
        SERVER,
    )


# ----------------------------------------------------------------- formatting


def test_progress_names_what_is_left() -> None:
    assert (
        drain_wait.format_progress(answer(active=2, inactive=5), 12.7)
        == "10.0.2.1:80: 2 active, 5 inactive connections left; waited 12.7s"
    )
    persistent = answer(active=1, templates=3, persistent=True)
    assert drain_wait.format_state(persistent) == (
        "10.0.2.1:80: 1 active, 0 inactive connections, 3 persistence templates left"
    )
    one = answer(templates=1, persistent=True)
    assert drain_wait.format_left(one).endswith(", 1 persistence template left")
    assert drain_wait.format_state(answer(weight=None)) == (
        "10.0.2.1:80: not in the kernel's table: no new connection, its connections are not counted"
    )
    assert drain_wait.format_state(answer(active=1, weight=3)).endswith(
        "; weight 3 in tcp:10.0.0.1:80: still takes new connections"
    )


def test_done_and_timeout_messages() -> None:
    assert (
        drain_wait.format_done(answer(inactive=4), "active", 3.2)
        == "10.0.2.1:80 is drained (no established connection): "
        "0 active, 4 inactive connections left; waited 3.2s"
    )
    pinned = drain_wait.format_done(answer(templates=2, persistent=True), "all", 0)
    assert pinned.startswith("10.0.2.1:80 is drained (no connection): ")
    assert pinned.endswith(
        "; its persistence templates still send their clients' new connections to it"
    )
    assert (
        drain_wait.format_timeout(answer(active=1, inactive=2), "active", 30.0)
        == "timed out after 30s waiting for 10.0.2.1:80 to drain: "
        "1 active, 2 inactive connections left (in tcp:10.0.0.1:80)"
    )
    assert "(in tcp:10.0.0.1:80)" in drain_wait.format_timeout(answer(inactive=2), "all", 5)
    assert "(in " not in drain_wait.format_timeout(answer(inactive=2), "active", 5)


# ------------------------------------------------------------------- progress


def test_a_terminal_gets_one_line_rewritten() -> None:
    stream = io.StringIO()
    with drain_wait.ProgressLine(stream, terminal=True) as progress:
        progress.show(answer(active=2), 0.0)
        progress.show(answer(active=1), 1.0)
    assert stream.getvalue() == (
        "\r10.0.2.1:80: 2 active, 0 inactive connections left; waited 0s\x1b[K"
        "\r10.0.2.1:80: 1 active, 0 inactive connections left; waited 1s\x1b[K\n"
    )


def test_a_pipe_gets_a_line_per_change_and_every_few_seconds() -> None:
    stream = io.StringIO()
    progress = drain_wait.ProgressLine(stream, terminal=False)
    for second in range(0, 25):
        progress.show(answer(active=2 if second < 3 else 1), float(second))
    progress.close()
    lines = stream.getvalue().splitlines()
    assert [line.split("; waited ")[1] for line in lines] == ["0s", "3s", "13s", "23s"]
    assert "\r" not in stream.getvalue()


def test_quiet_progress_writes_nothing() -> None:
    stream = io.StringIO()
    with drain_wait.ProgressLine(stream, terminal=True, quiet=True) as progress:
        progress.show(answer(active=1), 0)
    assert stream.getvalue() == ""


# ----------------------------------------------------------------------- wait


def _wait(
    polls: list[Any], clock: FakeClock, until: str = "active", timeout: float = 10.0
) -> drain_wait.Waited:
    monitor = ScriptedMonitor(polls)
    quiet = drain_wait.ProgressLine(io.StringIO(), quiet=True)
    return drain_wait.wait_for_drain(
        drain_wait.poller(monitor, SERVICE, SERVER),
        until,
        timeout,
        1.0,
        quiet,
        clock,
        clock.sleep,
    )


def test_waits_until_no_active_connection(clock: FakeClock) -> None:
    waited = _wait([answer(active=2), answer(active=1), answer(active=0, inactive=3)], clock)
    assert waited.drained and waited.seconds == 2.0
    assert clock.sleeps == [1.0, 1.0]
    assert waited.answer["inactive_connections"] == 3


def test_until_all_waits_for_the_inactive_entries_too(clock: FakeClock) -> None:
    polls = [answer(active=1, inactive=1), answer(inactive=2), answer(inactive=1), answer()]
    assert _wait(polls, clock, until="all").seconds == 3.0


def test_the_timeout_ends_the_wait_at_the_last_poll(clock: FakeClock) -> None:
    waited = _wait([answer(active=1)], clock, timeout=2.5)
    assert not waited.drained and waited.seconds == 2.5
    assert clock.sleeps == [1.0, 1.0, 0.5]  # never sleeps past the timeout


def test_timeout_zero_looks_once(clock: FakeClock) -> None:
    assert not _wait([answer(active=1)], clock, timeout=0).drained
    assert clock.sleeps == []
    assert _wait([answer()], clock, timeout=0).drained


def test_an_error_answer_stops_the_wait(clock: FakeClock) -> None:
    error = Reply(503, {"error": "cannot read the IPVS table: boom", "status": 503})
    with pytest.raises(drain_wait.WaitError, match="cannot read the IPVS table: boom"):
        _wait([answer(active=1), error], clock)
    with pytest.raises(drain_wait.WaitError, match="not a JSON object"):
        _wait([Reply(200, [1, 2])], clock)
    with pytest.raises(drain_wait.WaitError, match="HTTP 500"):
        _wait([Reply(500, "x")], clock)
    old_monitor = Reply(404, {"error": "no such endpoint: /servers/*/10.0.2.1:80", "status": 404})
    with pytest.raises(drain_wait.WaitError, match="a monitor older than drain --wait"):
        _wait([old_monitor], clock)


def test_odd_answers_format_without_a_traceback() -> None:
    odd: dict[str, Any] = {
        "services": [{"in_kernel": True, "weight": 2}],
        "active_connections": None,
    }
    assert drain_wait.format_state(odd) == (
        "?: 0 active, 0 inactive connections left; weight 2 in ?: still takes new connections"
    )
    assert drain_wait.format_timeout(odd, "active", 1).endswith(
        "left (in ?); weight 2 in ?: still takes new connections"
    )


# ------------------------------------------------------------ the whole command


def test_drained_exits_0(monkeypatch: pytest.MonkeyPatch, capsys: Any, clock: FakeClock) -> None:
    monitor = ScriptedMonitor([answer(active=1), answer(active=0)])
    assert ctl(monkeypatch, monitor, "drain", SERVICE, SERVER, "--wait") == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "tcp:10.0.0.1:80 10.0.2.1:80: drain",
        "10.0.2.1:80: 1 active, 0 inactive connections left; waited 0s",
        "10.0.2.1:80: 0 active, 0 inactive connections left; waited 1s",
        "10.0.2.1:80 is drained (no established connection): "
        "0 active, 0 inactive connections left; waited 1s",
    ]
    assert err == ""
    assert monitor.requests == [
        ("POST", "/servers/tcp:10.0.0.1:80/10.0.2.1:80/drain"),
        ("GET", "/servers/tcp:10.0.0.1:80/10.0.2.1:80"),
        ("GET", "/servers/tcp:10.0.0.1:80/10.0.2.1:80"),
    ]


def test_server_alone_waits_in_every_service(
    monkeypatch: pytest.MonkeyPatch, capsys: Any, clock: FakeClock
) -> None:
    monitor = ScriptedMonitor([answer()])
    assert ctl(monkeypatch, monitor, "drain", SERVER, "--wait") == 0
    assert [path for _method, path in monitor.requests] == [
        "/servers/*/10.0.2.1:80/drain",
        "/servers/*/10.0.2.1:80",
    ]


def test_timeout_exits_4_and_says_what_was_left(
    monkeypatch: pytest.MonkeyPatch, capsys: Any, clock: FakeClock
) -> None:
    monitor = ScriptedMonitor([answer(active=1, inactive=2, templates=3, persistent=True)])
    code = ctl(monkeypatch, monitor, "drain", SERVICE, SERVER, "--wait", "--timeout", "5")
    assert code == drain_wait.EXIT_TIMEOUT == 4
    out, err = capsys.readouterr()
    assert err == (
        "haecsctl: timed out after 5s waiting for 10.0.2.1:80 to drain: 1 active, "
        "2 inactive connections, 3 persistence templates left (in tcp:10.0.0.1:80)\n"
    )
    assert len(monitor.requests) == 1 + 6  # the POST, then a poll at 0, 1, ... 5 s
    # The same numbers for 5 s: one progress line (a pipe gets one per change).
    assert len([line for line in out.splitlines() if "waited" in line]) == 1


def test_unknown_service_or_server_fails_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: Any, clock: FakeClock
) -> None:
    for message in (
        "no service tcp:10.0.0.9:80",
        "service %s has no real server 10.9.9.9:80" % SERVICE,
    ):
        monitor = ScriptedMonitor([answer()], drain=Reply(404, {"error": message, "status": 404}))
        assert ctl(monkeypatch, monitor, "drain", SERVICE, SERVER, "--wait") == 1
        assert capsys.readouterr().err == "haecsctl: %s\n" % message
        assert [method for method, _path in monitor.requests] == ["POST"]


def test_an_api_error_while_waiting_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: Any, clock: FakeClock
) -> None:
    error = Reply(503, {"error": "cannot read the IPVS table: gone", "status": 503})
    monitor = ScriptedMonitor([answer(active=1), error])
    assert ctl(monkeypatch, monitor, "drain", SERVICE, SERVER, "--wait") == 1
    assert capsys.readouterr().err == "haecsctl: cannot read the IPVS table: gone\n"


def test_a_monitor_gone_while_waiting_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: Any, clock: FakeClock
) -> None:
    gone = client.ClientError("no control socket at /x.sock: is the monitor running?")
    monitor = ScriptedMonitor([answer(active=1), gone])
    assert ctl(monkeypatch, monitor, "drain", SERVICE, SERVER, "--wait") == 2
    err = capsys.readouterr().err
    assert err == "haecsctl: no control socket at /x.sock: is the monitor running?\n"


def test_ctrl_c_ends_the_terminal_line_and_exits_130(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    stream = io.StringIO()
    stream.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr(drain_wait.sys, "stdout", stream)
    monitor = ScriptedMonitor([answer(active=1), KeyboardInterrupt()])
    assert ctl(monkeypatch, monitor, "drain", SERVICE, SERVER, "--wait") == 130
    assert stream.getvalue().endswith("waited 0s\x1b[K\n")


def test_a_kernel_error_of_the_drain_is_shown_and_the_wait_goes_on(
    monkeypatch: pytest.MonkeyPatch, capsys: Any, clock: FakeClock
) -> None:
    late = Reply(200, {"ok": False, "changed": [], "kernel_error": "not updated within 30s"})
    monitor = ScriptedMonitor([answer(active=1, weight=1), answer()], drain=late)
    assert ctl(monkeypatch, monitor, "drain", SERVICE, SERVER, "--wait") == 0
    out, err = capsys.readouterr()
    assert err == "haecsctl: warning: not updated within 30s\n"
    assert "weight 1 in tcp:10.0.0.1:80: still takes new connections" in out


def test_json_prints_the_last_state(
    monkeypatch: pytest.MonkeyPatch, capsys: Any, clock: FakeClock
) -> None:
    monitor = ScriptedMonitor([answer(active=1), answer(inactive=1)])
    assert ctl(monkeypatch, monitor, "--json", "drain", SERVICE, SERVER, "--wait") == 0
    assert json.loads(capsys.readouterr().out) == answer(inactive=1)
    monitor = ScriptedMonitor([answer(active=1)])
    argv = ["--query", "active_connections", "drain", SERVER, "--wait", "--timeout", "1"]
    assert ctl(monkeypatch, monitor, *argv) == 4
    out, err = capsys.readouterr()
    assert json.loads(out) == 1 and err == ""


def test_drain_without_wait_is_unchanged(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monitor = ScriptedMonitor([answer()])
    assert ctl(monkeypatch, monitor, "drain", SERVICE, SERVER) == 0
    assert capsys.readouterr().out == "tcp:10.0.0.1:80 10.0.2.1:80: drain\n"
    assert [method for method, _path in monitor.requests] == ["POST"]
