"""haecs.lvs.monitor_server and module_utils/monitor_admin: admin states set
through the monitor's API, and the wait for the kernel.

A fake monitor (tests/contract/monitor_api_fake.py) stands in for the API's
answers (the monitor's own API is tested in tests/unit/monitor; the module
against a running monitor in the lab, through playbooks/drain.yml).  The
module's sender is tested against a real HTTP server on a unix socket.
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, Iterator, List

import pytest
from monitor_api_fake import FakeMonitor, serving

from ansible_collections.haecs.lvs.plugins.module_utils import monitor_admin
from ansible_collections.haecs.lvs.plugins.module_utils.monitor_admin import MonitorError, Reply
from ansible_collections.haecs.lvs.plugins.modules import monitor_server

WEB = "tcp:192.0.2.10:80"
WEB6 = "tcp:[2001:db8::10]:80"
RS1 = "10.10.0.11:8080"
RS2 = "10.10.0.12:8080"


def posts(monitor: FakeMonitor) -> List[str]:
    return [path for method, path in monitor.requests if method == "POST"]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


# ------------------------------------------------------------------ set_admin


def test_drain_sets_every_server_and_reports_what_changed() -> None:
    monitor = FakeMonitor({RS1: [WEB, WEB6], RS2: [WEB]})
    outcome = monitor_admin.set_admin(monitor.send, "*", [RS1, RS2], "drained", check_mode=False)
    assert posts(monitor) == ["/servers/*/%s/drain" % RS1, "/servers/*/%s/drain" % RS2]
    assert [(c["service"], c["server"], c["was"], c["admin"]) for c in outcome.admin_changes] == [
        (WEB, RS1, "enabled", "drain"),
        (WEB6, RS1, "enabled", "drain"),
        (WEB, RS2, "enabled", "drain"),
    ]
    assert len(outcome.operations) == 3
    assert monitor.admin[WEB, RS2] == "drain"


def test_a_second_drain_changes_nothing() -> None:
    monitor = FakeMonitor({RS1: [WEB]})
    monitor_admin.set_admin(monitor.send, "*", [RS1], "drained", check_mode=False)
    again = monitor_admin.set_admin(monitor.send, "*", [RS1], "drained", check_mode=False)
    assert again.admin_changes == [] and again.operations == []


def test_check_mode_reads_and_sets_nothing() -> None:
    monitor = FakeMonitor({RS1: [WEB]})
    outcome = monitor_admin.set_admin(monitor.send, "*", [RS1], "drained", check_mode=True)
    assert posts(monitor) == []
    assert outcome.admin_changes == [
        {"service": WEB, "server": RS1, "admin": "drain", "was": "enabled"}
    ]
    assert monitor.admin[WEB, RS1] == "enabled"


def test_an_unknown_server_fails_before_any_change() -> None:
    monitor = FakeMonitor({RS1: [WEB]})
    with pytest.raises(
        MonitorError, match=re.escape("10.10.0.99:8080: no real server 10.10.0.99:8080")
    ):
        monitor_admin.set_admin(
            monitor.send, "*", [RS1, "10.10.0.99:8080"], "drained", check_mode=False
        )
    assert posts(monitor) == []
    assert monitor.admin[WEB, RS1] == "enabled"


def test_a_kernel_refusal_is_an_error() -> None:
    def send(method: str, path: str) -> Reply:
        if method == "GET":
            return Reply(200, {"server": RS1, "services": []})
        return Reply(200, {"ok": False, "changed": [], "kernel_error": "No such file or directory"})

    with pytest.raises(
        MonitorError, match="set its admin state drain but the kernel refused: No such file"
    ):
        monitor_admin.set_admin(send, "*", [RS1], "drained", check_mode=False)


def test_ipv6_servers_are_quoted_as_haecsctl_quotes_them() -> None:
    assert (
        monitor_admin.server_path("*", "[fd00:10::11]:8080", "drain")
        == "/servers/*/%5Bfd00:10::11%5D:8080/drain"
    )
    assert monitor_admin.server_path("web", RS1) == "/servers/web/10.10.0.11:8080"


# ----------------------------------------------------------------------- wait


def test_wait_until_drained_polls_until_the_connections_are_gone() -> None:
    monitor = FakeMonitor({RS1: [WEB], RS2: [WEB]})
    monitor_admin.set_admin(monitor.send, "*", [RS1, RS2], "drained", check_mode=False)
    monitor.active_for_reads[RS1] = 3
    monitor.requests.clear()
    clock = Clock()
    done, answers, waited = monitor_admin.wait(
        monitor.send, "*", [RS1, RS2], "drained", "active", 10, 1, clock, clock.sleep
    )
    assert done and waited == 3
    assert [answer["server"] for answer in answers] == [RS1, RS2]
    gets = [path for method, path in monitor.requests if method == "GET" and path.endswith(RS2)]
    assert len(gets) == 1, "a server already drained is not read again"


def test_wait_stops_at_the_timeout_and_words_what_is_left() -> None:
    monitor = FakeMonitor({RS1: [WEB, WEB6]})
    monitor_admin.set_admin(monitor.send, "*", [RS1], "drained", check_mode=False)
    monitor.active_for_reads[RS1] = 100
    clock = Clock()
    done, answers, waited = monitor_admin.wait(
        monitor.send, "*", [RS1], "drained", "active", 2.5, 1, clock, clock.sleep
    )
    assert not done and waited == 2.5
    assert monitor_admin.format_not_done(answers[0], "drained", "active") == (
        "10.10.0.11:8080: 2 active, 0 inactive connections left (in %s, %s)" % (WEB, WEB6)
    )


def test_until_all_waits_for_the_inactive_connections_too() -> None:
    monitor = FakeMonitor({RS1: [WEB]})
    monitor_admin.set_admin(monitor.send, "*", [RS1], "drained", check_mode=False)
    monitor.kernel[WEB, RS1]["inactive"] = 4
    clock = Clock()
    assert monitor_admin.wait(
        monitor.send, "*", [RS1], "drained", "active", 0, 1, clock, clock.sleep
    )[0]
    assert not monitor_admin.wait(
        monitor.send, "*", [RS1], "drained", "all", 0, 1, clock, clock.sleep
    )[0]


def test_enabled_waits_for_the_weight_in_every_service() -> None:
    monitor = FakeMonitor({RS1: [WEB, WEB6]})
    monitor_admin.set_admin(monitor.send, "*", [RS1], "drained", check_mode=False)
    answer = monitor_admin.read(monitor.send, "*", RS1)
    assert not monitor_admin.is_done(answer, "enabled", "active")
    assert monitor_admin.format_not_done(answer, "enabled", "active") == (
        "%s in %s: weight 0 (admin drain); %s in %s: weight 0 (admin drain)" % (RS1, WEB, RS1, WEB6)
    )
    monitor_admin.set_admin(monitor.send, "*", [RS1], "enabled", check_mode=False)
    answer = monitor_admin.read(monitor.send, "*", RS1)
    assert monitor_admin.is_done(answer, "enabled", "active")
    assert monitor_admin.format_done([answer], "enabled", "active") == "10.10.0.11:8080 weight 1/1"


def test_a_configured_weight_of_0_counts_as_back() -> None:
    entry = {"in_kernel": True, "weight": 0, "configured_weight": 0}
    assert monitor_admin.is_done({"services": [entry]}, "enabled", "active")
    assert not monitor_admin.is_done(
        {"services": [dict(entry, in_kernel=False)]}, "enabled", "active"
    )


def test_disabled_is_done_when_no_table_holds_it() -> None:
    monitor = FakeMonitor({RS1: [WEB]})
    monitor_admin.set_admin(monitor.send, "*", [RS1], "disabled", check_mode=False)
    answer = monitor_admin.read(monitor.send, "*", RS1)
    assert monitor_admin.is_done(answer, "disabled", "active")
    assert monitor_admin.format_left(answer) == "not in the kernel's table"


def test_persistence_templates_are_named() -> None:
    answer = {
        "server": RS1,
        "active_connections": 0,
        "inactive_connections": 1,
        "persistence_templates": 2,
        "services": [{"service": WEB, "in_kernel": True, "persistent": True}],
    }
    assert monitor_admin.format_left(answer) == (
        "0 active, 1 inactive connections, 2 persistence templates "
        "(still sending their clients' new connections to it) left"
    )


# ------------------------------------------------------------- module options


def params(**given: Any) -> Dict[str, Any]:
    values = dict(
        servers=[RS1],
        service="*",
        state="drained",
        wait=False,
        wait_until="active",
        wait_timeout=300.0,
        poll_interval=1.0,
        monitor_name=None,
        socket=None,
        request_timeout=30.0,
    )
    values.update(given)
    return values


def test_good_options_have_no_problem() -> None:
    assert monitor_server.problems(params()) == []


@pytest.mark.parametrize(
    "given, message",
    [
        ({"servers": []}, "servers: give at least one real server (ADDRESS:PORT)"),
        (
            {"servers": [RS1, " "]},
            "servers[1]: must be ADDRESS:PORT as the monitor names it, got ' '",
        ),
        ({"servers": ["a/b"]}, "servers[0]: must be ADDRESS:PORT"),
        ({"service": ""}, "service: must be a service as the monitor names it, or *, got ''"),
        ({"wait_timeout": -1.0}, "wait_timeout: must be 0 or more seconds, got -1"),
        ({"poll_interval": 0.0}, "poll_interval: must be above 0 seconds, got 0"),
        ({"request_timeout": float("nan")}, "request_timeout: must be above 0 seconds, got nan"),
        (
            {"monitor_name": "../x"},
            "monitor_name: must be a monitor instance name (no /), got '../x'",
        ),
        (
            {"wait": True, "wait_until": "all", "state": "enabled"},
            "wait_until: only applies to state drained, got state enabled",
        ),
    ],
)
def test_each_bad_option_is_named(given: Dict[str, Any], message: str) -> None:
    assert any(problem.startswith(message) for problem in monitor_server.problems(params(**given)))


# -------------------------------------------------------------------- sender


def _echo(method: str, path: str) -> Reply:
    if "missing" in path:
        return Reply(404, {"error": "no such server"})
    return Reply(200, {"path": path})


@pytest.fixture
def unix_api(tmp_path: Any) -> Iterator[str]:
    with serving(str(tmp_path / "monitor.sock"), _echo) as path:
        yield path


def test_the_sender_speaks_http_over_the_unix_socket(unix_api: str) -> None:
    send = monitor_server.sender(unix_api, 5)
    reply = send("GET", "/servers/*/10.10.0.11:8080")
    assert reply == Reply(200, {"path": "/servers/*/10.10.0.11:8080"})
    missing = send("GET", "/servers/*/missing")
    assert missing == Reply(404, {"error": "no such server"})


def test_an_absent_monitor_is_named_with_its_socket(tmp_path: Any) -> None:
    path = str(tmp_path / "none.sock")
    send = monitor_server.sender(path, 5)
    with pytest.raises(
        MonitorError,
        match="cannot reach the monitor at %s: .*is haecs-monitor running there" % path,
    ):
        send("GET", "/status")
    assert not os.path.exists(path)


def test_a_monitor_error_names_the_server() -> None:
    def send(method: str, path: str) -> Reply:
        return Reply(409, {"error": "10.10.0.11:8080 is in two services: name one"})

    with pytest.raises(
        MonitorError, match="^" + re.escape("10.10.0.11:8080: 10.10.0.11:8080 is in two services")
    ):
        monitor_admin.read(send, "*", RS1)
    with pytest.raises(MonitorError, match="the monitor answered HTTP 502") as raised:
        monitor_admin.read(lambda method, path: Reply(502, None), "*", RS1)
    assert raised.value.result() == {
        "msg": "10.10.0.11:8080: the monitor answered HTTP 502",
        "status": 502,
    }
