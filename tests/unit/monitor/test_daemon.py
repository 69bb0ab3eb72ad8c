"""The daemon loop without a kernel: a fake engine and scripted check results."""

from __future__ import annotations

import asyncio
import copy
import gc
import io
import json
import os
import time
import types
import weakref
from collections.abc import Awaitable
from typing import Any, Callable

import pytest
import yaml
from haecs_monitor.checks.base import CheckResult
from haecs_monitor.config.load import load_config
from haecs_monitor.control import cli
from haecs_monitor.core.health import ServerRef
from haecs_monitor.errors import NotFound
from haecs_monitor.runtime import daemon, scheduler
from haecs_monitor.runtime.events import EventLog
from haecs_monitor.sharedfloat import SharedFloat
from monitor_fakes import FakeEngine

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    RealServer,
    Service,
    ServiceKey,
    Table,
    VirtualService,
)

KEY = ServiceKey.for_address("tcp", "10.0.0.1", 80)
FOREIGN = ServiceKey.for_address("udp", "10.9.9.9", 53)
TIMING = {
    "interval": 0.05,
    "timeout": 0.04,
    "rise": 2,
    "fall": 2,
    "fast_interval": 0.03,
    "down_interval": 0.05,
}


def config_dict(
    tmp: str, servers: tuple[int, ...] = (1, 2), port: int = 80, **extra: Any
) -> dict[str, Any]:
    service: dict[str, Any] = {
        "address": "10.0.0.1",
        "port": port,
        "scheduler": "wrr",
        "checks": [{"type": "tcp"}],
        "real_servers": [
            {"address": "10.0.2.%d" % n, "forwarding": "masq", "weight": n} for n in servers
        ],
    }
    service.update(extra)
    return {
        "global": {
            "control_socket": os.path.join(tmp, "monitor.sock"),
            "state_file": os.path.join(tmp, "monitor.state"),
            "reconcile_interval": 0.2,
            "check_defaults": TIMING,
        },
        "services": [service],
    }


class Harness:
    def __init__(self, tmp: str, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp
        self.path = os.path.join(tmp, "monitor.yml")
        self.engine = engine
        self.down: set[str] = set()
        self.stream = io.StringIO()

        async def fake_check(spec: Any, address: str, port: int) -> CheckResult:
            await asyncio.sleep(0)
            if address in self.down:
                return CheckResult(False, None, "refused")
            return CheckResult(True, None, "connected")

        monkeypatch.setattr(scheduler, "CHECKS", {"tcp": fake_check})

    def write(self, config: dict[str, Any]) -> None:
        with open(self.path, "w") as handle:
            yaml.safe_dump(config, handle)

    def weights(self) -> dict[str, int]:
        entry = self.engine.table.get(KEY)
        return (
            {} if entry is None else {k[0]: v.weight for k, v in sorted(entry.real_servers.items())}
        )

    def events(self, name: str) -> list[dict[str, Any]]:
        records = [json.loads(line) for line in self.stream.getvalue().splitlines()]
        return [record for record in records if record["event"] == name]

    def run(
        self, scenario: Callable[[daemon.Monitor], Awaitable[None]], on_exit: str = "keep"
    ) -> int:
        async def main() -> int:
            config = load_config(self.path)
            monitor = daemon.Monitor(self.path, config, self.engine, EventLog(self.stream))
            task = asyncio.get_running_loop().create_task(monitor.run())
            try:
                await until(
                    lambda: monitor.board is not None and monitor._applier is not None, "start"
                )
                await scenario(monitor)
            finally:
                monitor.stop()
            return await asyncio.wait_for(task, 10)

        return asyncio.run(main())


async def until(predicate: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        await asyncio.sleep(0.01)


@pytest.fixture
def harness(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Harness:
    return Harness(str(tmp_path), FakeEngine(), monkeypatch)


def test_health_admin_drift_and_reload(harness: Harness) -> None:
    foreign = VirtualService(Service(FOREIGN, scheduler="rr"), {})
    harness.engine.table[FOREIGN] = foreign
    harness.write(config_dict(harness.tmp))

    async def scenario(monitor: daemon.Monitor) -> None:
        await until(lambda: harness.weights() == {"10.0.2.1": 1, "10.0.2.2": 2}, "both up")
        harness.down.add("10.0.2.2")
        await until(lambda: harness.weights() == {"10.0.2.1": 1}, "rs2 removed")
        # Admin: drain is applied before the call returns and saved.
        answer = await monitor.set_admin("10.0.0.1:80", "10.0.2.1:80", "drain")
        assert answer["ok"] and harness.weights() == {"10.0.2.1": 0}
        with open(monitor.config.settings.state_file) as handle:
            saved = json.load(handle)
        assert saved["admin"] == {"tcp:10.0.0.1:80": {"10.0.2.1:80": "drain"}}
        with pytest.raises(NotFound):
            await monitor.set_admin("tcp:10.0.0.1:80", "10.0.2.9:80", "drain")
        with pytest.raises(NotFound):
            await monitor.set_admin("tcp:10.0.0.7:80", "10.0.2.1:80", "drain")
        await monitor.set_admin("*", "10.0.2.1:80", "enable")
        assert harness.weights() == {"10.0.2.1": 1}
        # Drift: an entry changed by hand comes back at the next reconcile.
        harness.engine.table[KEY].real_servers[("10.0.2.1", 80)] = RealServer(
            "10.0.2.1", 80, "masq", 7
        )
        await until(lambda: harness.weights() == {"10.0.2.1": 1}, "drift repaired")
        assert harness.events("drift")[0]["kind"] == "changed"
        # Reload of the same file: zero operations; the down server stays down.
        before = sum(monitor.actuator.operations_total.values())
        result = await monitor.reload()
        assert result["ok"] and result["operations"] == 0
        assert sum(monitor.actuator.operations_total.values()) == before
        assert harness.weights() == {"10.0.2.1": 1}
        # A bad config is rejected, the old one keeps running.
        with open(harness.path, "w") as handle:
            handle.write("services: [{address: 10.0.0.1, port: 99999}]\n")
        result = await monitor.reload()
        assert not result["ok"] and result["errors"]
        assert harness.events("config_rejected")
        # A new port: the old service goes, the new one comes; foreign untouched.
        harness.write(config_dict(harness.tmp, servers=(1,), port=8080))
        result = await monitor.reload()
        assert result["ok"], result
        await until(lambda: KEY not in harness.engine.table, "old service deleted")
        assert FOREIGN in harness.engine.table
        # The new service is created once its real server is up (held before).
        new_key = ServiceKey.for_address("tcp", "10.0.0.1", 8080)
        await until(lambda: new_key in harness.engine.table, "new service created")
        assert harness.engine.table[new_key].real_servers, "created with its real server"

    assert harness.run(scenario) == 0
    assert harness.events("table_kept")
    assert ServiceKey.for_address("tcp", "10.0.0.1", 8080) in harness.engine.table


def test_adopts_present_servers_without_changes(harness: Harness) -> None:
    entry = VirtualService(
        Service(KEY, scheduler="wrr"),
        {("10.0.2.%d" % n, 80): RealServer("10.0.2.%d" % n, 80, "masq", n) for n in (1, 2)},
    )
    harness.engine.table[KEY] = entry
    harness.write(config_dict(harness.tmp))

    async def scenario(monitor: daemon.Monitor) -> None:
        # Present servers start up: nothing to do at all, even after checks ran.
        await asyncio.sleep(0.3)
        assert sum(monitor.actuator.operations_total.values()) == 0

    assert harness.run(scenario) == 0
    adopted = harness.events("table_adopted")[0]
    assert adopted["operations"] == 0 and adopted["kept"] == 3


def test_on_exit_remove_and_status_and_metrics(harness: Harness) -> None:
    config = config_dict(harness.tmp, sorry_servers=[{"address": "10.0.3.1", "forwarding": "masq"}])
    config["global"]["on_exit"] = "remove"
    harness.write(config)

    async def scenario(monitor: daemon.Monitor) -> None:
        await until(lambda: harness.weights() == {"10.0.2.1": 1, "10.0.2.2": 2}, "both up")
        harness.down.update({"10.0.2.1", "10.0.2.2"})
        await until(lambda: harness.weights() == {"10.0.3.1": 1}, "sorry server alone")
        status = monitor.status()
        service = status["services"][0]
        assert service["below_quorum"] and service["sorry_active"]
        assert [s["health"] for s in service["servers"]] == ["down", "down"]
        assert service["sorry_servers"] == [{"id": "10.0.3.1:80", "in_table": True, "weight": 1}]
        assert status["checks"] == {"configured": 2, "unique": 2}
        text = monitor.metrics_text()
        assert 'haecs_service_below_quorum{service="tcp:10.0.0.1:80"} 1' in text
        assert (
            'haecs_state_changes_total{service="tcp:10.0.0.1:80",server="10.0.2.1:80",state="down"} 1'
            in text
        )
        assert harness.events("quorum_lost")

    assert harness.run(scenario) == 0
    assert KEY not in harness.engine.table


def test_stop_ends_the_applier_when_its_wake_and_the_cancel_coincide(harness: Harness) -> None:
    # Python 3.11's wait_for returns the wake and drops a cancel() of the same
    # loop step (CI hung here for 10 s): the applier must end all the same.
    harness.write(config_dict(harness.tmp))

    async def scenario(monitor: daemon.Monitor) -> None:
        await until(lambda: harness.weights() == {"10.0.2.1": 1, "10.0.2.2": 2}, "both up")
        real_stop = monitor.scheduler.stop

        async def stop_then_wake_the_applier() -> None:
            await real_stop()
            monitor._wake.set()

        monitor.scheduler.stop = stop_then_wake_the_applier  # type: ignore[method-assign]

    assert harness.run(scenario) == 0
    assert harness.events("table_kept")


def test_unreadable_kernel_is_fatal_in_one_line(harness: Harness) -> None:
    from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.engine import IPVSError

    class Broken(FakeEngine):
        def read(self, with_stats: bool = False, services_only: bool = False) -> Any:
            raise IPVSError("IPVS is not available in this kernel")

        def read_each(self, with_stats: bool = False, only: Any = None) -> Any:
            raise IPVSError("IPVS is not available in this kernel")

    harness.write(config_dict(harness.tmp))
    config = load_config(harness.path)

    async def main() -> int:  # built in the running loop, as run_daemon does
        monitor = daemon.Monitor(harness.path, config, Broken(), EventLog(harness.stream))
        return await monitor.run()

    assert asyncio.run(main()) == 1
    assert "not available" in harness.events("fatal")[0]["reason"]
    assert not os.path.exists(config.settings.control_socket)


def test_tells_systemd_ready_reloading_status_and_stopping(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import socket

    path = str(tmp_path / "notify")
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(path)
    sink.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    harness.write(config_dict(harness.tmp))
    seen: list[str] = []

    def drain() -> list[str]:
        while True:
            try:
                seen.append(sink.recv(4096).decode())
            except BlockingIOError:
                return seen

    async def scenario(monitor: daemon.Monitor) -> None:
        await until(lambda: harness.weights() == {"10.0.2.1": 1, "10.0.2.2": 2}, "both up")
        await until(lambda: any(m.startswith("READY=1") for m in drain()), "READY=1")
        ready = [m for m in seen if m.startswith("READY=1")]
        assert len(ready) == 1  # once the table is adopted, before any reload
        await until(lambda: "STATUS=1 services, 2/2 real servers up" in drain(), "status")
        seen.clear()
        assert (await monitor.reload())["ok"]
        assert drain()[0].startswith("RELOADING=1\nMONOTONIC_USEC=")
        assert seen[-1] == "READY=1\nSTATUS=1 services, 2/2 real servers up"
        harness.down.add("10.0.2.2")
        await until(lambda: "STATUS=1 services, 1/2 real servers up" in drain(), "status down")

    try:
        assert harness.run(scenario) == 0
        assert drain()[-1] == "STOPPING=1"
    finally:
        sink.close()


def test_a_failed_server_is_not_kept_waiting_by_a_burst(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changes that come close together are gathered into one apply, but a
    server that failed ends the gathering: it leaves the table at once.  A
    server coming back is gathered with the burst as before."""
    harness.write(config_dict(harness.tmp))

    async def scenario(monitor: daemon.Monitor) -> None:
        await until(lambda: harness.weights() == {"10.0.2.1": 1, "10.0.2.2": 2}, "both up")
        monkeypatch.setattr(daemon, "BURST_SECONDS", 1e9)  # every change from now: a burst
        monkeypatch.setattr(daemon, "COALESCE_SECONDS", 3.0)
        gathering = monitor._request_apply()  # a change just before the failure: gathered
        harness.down.add("10.0.2.2")
        # at once: in half the gathering's time, though its checks take some of it
        await until(lambda: "10.0.2.2" not in harness.weights(), "the removal", timeout=1.5)
        await gathering  # the gathering under way ended with the failure
        ups = len(harness.events("server_up"))
        harness.down.discard("10.0.2.2")
        await until(lambda: len(harness.events("server_up")) > ups, "the server up again")
        await asyncio.sleep(0.3)
        assert "10.0.2.2" not in harness.weights()  # gathered: 3 s here
        await until(lambda: "10.0.2.2" in harness.weights(), "the burst applied")

    assert harness.run(scenario) == 0


def test_a_new_service_waits_for_something_to_serve(harness: Harness) -> None:
    """No window where the VIP exists with no real server unless all are down."""
    harness.write(config_dict(harness.tmp))
    harness.down.add("10.0.2.2")
    seen_empty: list[bool] = []
    original_apply = harness.engine.apply

    def watching_apply(operations: Any) -> Any:
        answer = original_apply(operations)
        entry = harness.engine.table.get(KEY)
        seen_empty.append(entry is not None and not entry.real_servers)
        return answer

    harness.engine.apply = watching_apply  # type: ignore[method-assign]

    async def scenario(monitor: daemon.Monitor) -> None:
        await until(lambda: harness.weights() == {"10.0.2.1": 1}, "created with rs1")
        # All down from the start: created once every server was checked.
        harness.down.update({"10.0.2.3", "10.0.2.4"})
        harness.write(config_dict(harness.tmp, servers=(3, 4), port=8080))
        assert (await monitor.reload())["ok"]
        other = ServiceKey.for_address("tcp", "10.0.0.1", 8080)
        await until(lambda: other in harness.engine.table, "all-down service created")
        assert not harness.engine.table[other].real_servers

    assert harness.run(scenario) == 0
    assert seen_empty and not any(seen_empty), "the VIP existed with no real server"
    held = harness.events("service_held")
    released = harness.events("service_released")
    assert [e["service"] for e in held] == ["tcp:10.0.0.1:80", "tcp:10.0.0.1:8080"]
    assert released[0]["reason"] == "real server 10.0.2.1:80 is up"
    assert released[1]["reason"] == "every real server checked, none up"


def held_connections(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str, int], None]:
    """hold(address, count): the kernel reports that many established
    connections on that real server of KEY, whatever is applied to it."""
    counts: dict[str, int] = {}
    read = harness.engine.read

    def counted(*args: Any, **kwargs: Any) -> Any:
        table = read(*args, **kwargs)
        entry = table.get(KEY)
        for key, server in list(entry.real_servers.items()) if entry is not None else ():
            if server.address in counts:
                entry.real_servers[key] = server.replace(active_connections=counts[server.address])
        return table

    monkeypatch.setattr(harness.engine, "read", counted)
    return counts.__setitem__


def test_a_server_dropped_by_a_reload_is_drained_first(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Weight 0 at once; deleted when its established connections are gone
    (or at drain_timeout); back in the configuration, it stops leaving."""
    monkeypatch.setattr(daemon, "LEAVING_POLL_SECONDS", 0.05)
    harness.write(config_dict(harness.tmp, servers=(1, 2, 3)))

    hold = held_connections(harness, monkeypatch)

    async def scenario(monitor: daemon.Monitor) -> None:
        await until(lambda: len(harness.weights()) == 3, "all up")
        hold("10.0.2.2", 2)
        # rs2 and rs3 leave; rs3 has no connection, rs2 has two.
        config = config_dict(harness.tmp, servers=(1,))
        config["global"]["drain_timeout"] = 30
        harness.write(config)
        assert (await monitor.reload())["ok"]
        await until(lambda: "10.0.2.3" not in harness.weights(), "rs3 gone")
        assert harness.weights() == {"10.0.2.1": 1, "10.0.2.2": 0}
        await asyncio.sleep(0.3)
        assert harness.weights() == {"10.0.2.1": 1, "10.0.2.2": 0}, "held by its connections"
        # The status lists it (the API's and haecsctl's), with the time left.
        (leaver,) = monitor.status()["leaving"]
        assert (leaver["server"], 0 < leaver["seconds_left"] <= 30) == ("10.0.2.2:80", True)
        assert "10.0.2.2:80  leaving" in cli.format_status(monitor.status())
        hold("10.0.2.2", 0)
        await until(lambda: harness.weights() == {"10.0.2.1": 1}, "rs2 drained and gone")
        assert monitor.status()["leaving"] == []
        left = {event["server"]: event["reason"] for event in harness.events("server_left")}
        assert left["10.0.2.2:80"].startswith("drained") and left["10.0.2.3:80"].startswith(
            "drained"
        )
        # Timeout: connections that never end do not hold a server for ever.
        harness.write(config_dict(harness.tmp, servers=(1, 2)))
        assert (await monitor.reload())["ok"]
        await until(lambda: harness.weights() == {"10.0.2.1": 1, "10.0.2.2": 2}, "rs2 back")
        hold("10.0.2.2", 5)
        config = config_dict(harness.tmp, servers=(1,))
        config["global"]["drain_timeout"] = 0.3
        harness.write(config)
        assert (await monitor.reload())["ok"]
        await until(lambda: harness.weights() == {"10.0.2.1": 1}, "rs2 gone at the timeout")
        assert harness.events("server_left")[-1]["reason"] == (
            "drain_timeout reached with 5 established connection(s)"
        )

    assert harness.run(scenario) == 0


def test_a_restart_goes_on_draining_the_leaving_servers(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state file keeps the leaving servers with their deadline: a
    restarted monitor keeps them at weight 0 until their connections end
    (not deleted at its first reconcile), forgets one the configuration
    holds again, and removes one whose deadline passed while it was down."""
    monkeypatch.setattr(daemon, "LEAVING_POLL_SECONDS", 0.05)
    harness.write(config_dict(harness.tmp, servers=(1, 2, 3)))
    hold = held_connections(harness, monkeypatch)
    state_file = os.path.join(harness.tmp, "monitor.state")

    async def start_leaving(monitor: daemon.Monitor) -> None:
        await until(lambda: len(harness.weights()) == 3, "all up")
        hold("10.0.2.2", 2)
        hold("10.0.2.3", 1)
        config = config_dict(harness.tmp, servers=(1,))
        config["global"]["drain_timeout"] = 30
        harness.write(config)
        assert (await monitor.reload())["ok"]
        await until(
            lambda: harness.weights() == {"10.0.2.1": 1, "10.0.2.2": 0, "10.0.2.3": 0},
            "both draining",
        )

    assert harness.run(start_leaving) == 0
    with open(state_file) as handle:
        saved = json.load(handle)["leaving"]
    assert [(item["server"], 0 < item["until"] - time.time() <= 30) for item in saved] == [
        ("10.0.2.2:80", True),
        ("10.0.2.3:80", True),
    ]
    # Stopped meanwhile: rs3's drain_timeout passes, rs2's does not.
    with open(state_file) as handle:
        document = json.load(handle)
    document["leaving"][1]["until"] = time.time() - 1
    with open(state_file, "w") as handle:
        json.dump(document, handle)

    async def after_restart(monitor: daemon.Monitor) -> None:
        await until(lambda: "10.0.2.3" not in harness.weights(), "rs3 gone: out of time")
        await asyncio.sleep(0.3)
        assert harness.weights() == {"10.0.2.1": 1, "10.0.2.2": 0}, "rs2 still held"
        (leaver,) = monitor.status()["leaving"]
        assert (leaver["server"], 20 < leaver["seconds_left"] <= 30) == ("10.0.2.2:80", True)
        hold("10.0.2.2", 0)
        await until(lambda: harness.weights() == {"10.0.2.1": 1}, "rs2 drained and gone")
        with open(state_file) as handle:
            assert json.load(handle)["leaving"] == []

    assert harness.run(after_restart) == 0
    restarted = [e for e in harness.events("server_leaving") if "restart" in e["reason"]]
    assert [e["server"] for e in restarted] == ["10.0.2.2:80", "10.0.2.3:80"]
    left = {event["server"]: event["reason"] for event in harness.events("server_left")}
    assert left["10.0.2.3:80"] == "drain_timeout reached with 1 established connection(s)"
    assert left["10.0.2.2:80"].startswith("drained")


def test_a_restart_forgets_a_leaving_server_the_configuration_holds_again(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon, "LEAVING_POLL_SECONDS", 0.05)
    harness.write(config_dict(harness.tmp))
    hold = held_connections(harness, monkeypatch)

    async def start_leaving(monitor: daemon.Monitor) -> None:
        await until(lambda: len(harness.weights()) == 2, "both up")
        hold("10.0.2.2", 1)
        harness.write(config_dict(harness.tmp, servers=(1,)))
        assert (await monitor.reload())["ok"]
        await until(lambda: harness.weights().get("10.0.2.2") == 0, "rs2 draining")

    assert harness.run(start_leaving) == 0
    harness.write(config_dict(harness.tmp))  # rs2 back while the monitor was down

    async def after_restart(monitor: daemon.Monitor) -> None:
        await until(lambda: harness.weights() == {"10.0.2.1": 1, "10.0.2.2": 2}, "rs2 serving")
        assert not monitor.leaving

    assert harness.run(after_restart) == 0
    assert not [e for e in harness.events("server_leaving") if "restart" in e["reason"]]


def test_back_in_the_configuration_a_leaving_server_stays(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon, "LEAVING_POLL_SECONDS", 0.05)
    harness.write(config_dict(harness.tmp))

    async def scenario(monitor: daemon.Monitor) -> None:
        await until(lambda: len(harness.weights()) == 2, "both up")
        held_connections(harness, monkeypatch)("10.0.2.2", 1)
        harness.write(config_dict(harness.tmp, servers=(1,)))
        assert (await monitor.reload())["ok"]
        await until(lambda: harness.weights().get("10.0.2.2") == 0, "rs2 draining")
        harness.write(config_dict(harness.tmp))
        assert (await monitor.reload())["ok"]
        await until(lambda: harness.weights() == {"10.0.2.1": 1, "10.0.2.2": 2}, "rs2 serving")
        assert not monitor.leaving and not harness.events("server_left")

    assert harness.run(scenario) == 0


def test_a_service_that_becomes_static_is_handed_over_as_it_is(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dropped from services and listed in static_services: left in the
    kernel untouched (not drained, not deleted, no longer repaired), and not
    deleted after a restart either; dropped without it, it is removed."""
    monkeypatch.setattr(daemon, "LEAVING_POLL_SECONDS", 0.05)
    harness.write(config_dict(harness.tmp))
    static = {"protocol": "tcp", "address": "10.0.0.1", "port": 80}

    async def handover(monitor: daemon.Monitor) -> None:
        await until(lambda: len(harness.weights()) == 2, "both up")
        config = config_dict(harness.tmp)
        config["services"] = []
        config["static_services"] = [static]
        config["global"]["drain_timeout"] = 30
        harness.write(config)
        answer = await monitor.reload()
        assert answer["ok"] and answer["operations"] == 0, answer
        handed = harness.events("service_handed_over")
        assert [event["service"] for event in handed] == ["tcp:10.0.0.1:80"], handed
        # Its new owner edits it: the monitor no longer repairs it.
        entry = harness.engine.table[KEY]
        server = entry.real_servers[("10.0.2.1", 80)]
        entry.real_servers[server.key] = server.replace(weight=7)
        await monitor._wait(monitor._request_apply(reconcile=True))
        assert harness.weights() == {"10.0.2.1": 7, "10.0.2.2": 2}
        assert not monitor.leaving and not harness.events("server_leaving")
        # Monitored again: adopted as it is, the declared weights set.
        before = len(harness.events("table_changed"))
        entry.real_servers[server.key] = server
        harness.write(config_dict(harness.tmp))
        answer = await monitor.reload()
        assert answer["ok"] and answer["operations"] == 0, answer
        assert len(harness.events("table_changed")) == before
        assert harness.weights() == {"10.0.2.1": 1, "10.0.2.2": 2}
        # Static again, then the new owner's weight.
        config = config_dict(harness.tmp)
        config["services"] = []
        config["static_services"] = [static]
        harness.write(config)
        assert (await monitor.reload())["ok"]
        entry.real_servers[server.key] = server.replace(weight=7)

    assert harness.run(handover) == 0

    async def restarted(monitor: daemon.Monitor) -> None:
        await monitor._wait(monitor._request_apply(reconcile=True))
        assert harness.weights() == {"10.0.2.1": 7, "10.0.2.2": 2}
        config = config_dict(harness.tmp)
        config["services"] = []
        harness.write(config)  # no longer static either: it is not the monitor's
        assert (await monitor.reload())["ok"]
        await monitor._wait(monitor._request_apply(reconcile=True))
        assert harness.weights() == {"10.0.2.1": 7, "10.0.2.2": 2}

    assert harness.run(restarted) == 0

    async def restarted_without_it(monitor: daemon.Monitor) -> None:
        await monitor._wait(monitor._request_apply(reconcile=True))

    assert harness.run(restarted_without_it) == 0
    assert harness.weights() == {"10.0.2.1": 7, "10.0.2.2": 2}
    assert not harness.events("service_removed")


def test_a_reload_changes_only_what_the_file_changed(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.write(config_dict(harness.tmp, servers=(1, 2, 3)))

    async def scenario(monitor: daemon.Monitor) -> None:
        await until(lambda: len(harness.weights()) == 3, "all up")
        applied = len(harness.engine.applied)
        # The same file again: not read further than its digest, no apply.
        for attempt in ("first", "second"):
            result = await monitor.reload()
            assert result["ok"] and result["operations"] == 0, (attempt, result)
        assert "unchanged" in result["summary"]
        assert len(harness.engine.applied) == applied
        # Other bytes, the same services: nothing to plan, no apply asked.
        requests = []
        request_apply = monitor._request_apply

        def counted(reconcile: bool = False, services: Any = None) -> Any:
            requests.append((reconcile, services))
            return request_apply(reconcile, services)

        monkeypatch.setattr(monitor, "_request_apply", counted)
        with open(harness.path, "a") as handle:
            handle.write("# edited, no service changed\n")
        result = await monitor.reload()
        assert result["ok"] and result["operations"] == 0, result
        assert "unchanged" not in result["summary"] and requests == [], (result, requests)
        # One weight: exactly one kernel operation, the other servers kept.
        kept = monitor.config.services[0].real_servers[0]
        data = config_dict(harness.tmp, servers=(1, 2, 3))
        data["services"][0]["real_servers"][1]["weight"] = 9
        harness.write(data)
        result = await monitor.reload()
        # ...asked for the edited service alone (its entry is computed again).
        assert result["ok"] and result["operations"] == 1, result
        assert requests == [(False, {KEY})], requests
        assert [op.kind for op in harness.engine.applied[-1]] == ["set_real_server"]
        assert harness.weights() == {"10.0.2.1": 1, "10.0.2.2": 9, "10.0.2.3": 3}
        assert monitor.config.services[0].real_servers[0] == kept
        # A new service: only its own operations.
        data["services"].append(
            {
                "address": "10.0.0.2",
                "port": 80,
                "scheduler": "rr",
                "real_servers": [{"address": "10.0.3.1", "forwarding": "masq"}],
            }
        )
        harness.write(data)
        applied = len(harness.engine.applied)
        result = await monitor.reload()
        assert result["ok"], result
        new_key = ServiceKey.for_address("tcp", "10.0.0.2", 80)
        await until(lambda: new_key in harness.engine.table, "new service created")
        added = [op for ops in harness.engine.applied[applied:] for op in ops]
        assert {op.service.key for op in added} == {new_key}

    assert harness.run(scenario) == 0


LONG_LIVED_MODULES = (
    "haecs_monitor.config.model",
    "haecs_monitor.core.health",
    "haecs_monitor.core.desired",
    "ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model",
)


def test_what_a_reload_replaces_is_freed_without_the_cyclic_collector(
    harness: Harness,
) -> None:
    """The configuration, health board and desired table are frozen out of
    the collector's reach after the start and after each reload, so what a
    reload drops must go by reference counting alone: no cycle among them."""
    data = config_dict(harness.tmp, servers=(1, 2, 3))
    harness.write(data)
    leftovers: list[str] = []
    gc.collect()  # earlier tests' cycles are not this one's

    async def scenario(monitor: daemon.Monitor) -> None:
        await until(lambda: len(harness.weights()) == 3, "all up")
        held = [monitor.config, *monitor.board.servers.values(), *monitor.board.checks.values()]
        tracked = {id(obj) for obj in gc.get_objects()}
        assert not [obj for obj in held if id(obj) in tracked], "not frozen after the start"
        # A weight, a check, a server and a whole service changed, one reload each.
        service = data["services"][0]
        edits: list[Callable[[], None]] = [
            lambda: service["real_servers"][0].update(weight=7),
            lambda: service.update(checks=[{"type": "tcp", "timeout": 0.03}]),
            service["real_servers"].pop,
            lambda: data["services"].append(
                {
                    "address": "10.0.0.2",
                    "port": 80,
                    "scheduler": "rr",
                    "real_servers": [{"address": "10.0.3.1", "forwarding": "masq"}],
                }
            ),
        ]
        for edit in edits:
            edit()
            harness.write(data)
            result = await monitor.reload()
            assert result["ok"] and "unchanged" not in result["summary"], result
        await until(lambda: harness.weights().get("10.0.2.1") == 7, "the new weight applied")
        held = [monitor.config, *monitor.board.servers.values(), *monitor.board.checks.values()]
        tracked = {id(obj) for obj in gc.get_objects()}
        assert not [obj for obj in held if id(obj) in tracked], "not frozen after a reload"
        # Everything back in the collector's reach: what it finds unreachable
        # only through cycles would have stayed frozen for good.
        gc.unfreeze()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
        finally:
            gc.set_debug(0)
        leftovers.extend(
            "%s.%s" % (type(obj).__module__, type(obj).__qualname__)
            for obj in gc.garbage
            if type(obj).__module__ in LONG_LIVED_MODULES
        )
        gc.garbage.clear()

    assert harness.run(scenario) == 0
    assert leftovers == [], sorted(set(leftovers))


def test_the_desired_table_is_computed_in_slices_from_one_configuration(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop turns between the slices of a desired table (checks go on
    while a large table is computed), and a reload that is ready to switch
    meanwhile waits until the table is done: one configuration throughout."""
    monkeypatch.setattr(daemon, "DESIRED_SLICE_SECONDS", 0.0)  # a slice per service
    data = config_dict(harness.tmp, servers=(1, 2, 3))
    for n in (2, 3, 4):
        service = dict(copy.deepcopy(data["services"][0]), address="10.0.0.%d" % n)
        data["services"].append(service)
    harness.write(data)
    turns = [0]
    # (the computation, loop turns so far, id of the running config)
    slices: list[tuple[int, int, int]] = []
    race: dict[str, Any] = {"computations": 0}
    compute = daemon.desired_mod.compute

    def recorded(inputs: Any, below: Any = frozenset()) -> Any:
        monitor = race.get("monitor")
        if monitor is not None:
            slices.append((race["computations"], turns[0], id(monitor.config)))
            if race.get("reload") is None:
                # The next file (one weight), and a reload that reads it now.
                data["services"][0]["real_servers"][0]["weight"] = 7
                harness.write(data)
                race["reload"] = asyncio.ensure_future(monitor.reload())
            elif len(slices) == 2:
                time.sleep(0.3)  # long enough for the reload's load in its thread
        return compute(inputs, below)

    monkeypatch.setattr(daemon.desired_mod, "compute", recorded)

    async def scenario(monitor: daemon.Monitor) -> None:
        async def ticker() -> None:
            while True:
                turns[0] += 1
                await asyncio.sleep(0)

        ticking = asyncio.ensure_future(ticker())
        compute_desired = monitor.compute_desired

        async def counted(only: Any = None) -> Any:
            race["computations"] += 1
            return await compute_desired(only)

        monitor.compute_desired = counted  # type: ignore[method-assign]
        try:
            await until(
                lambda: (
                    sum(len(entry.real_servers) for entry in harness.engine.table.values()) == 12
                ),
                "four services, every real server up",
            )
            race["monitor"] = monitor
            await monitor._wait(monitor._request_apply())
            race.pop("monitor")
            result = await race["reload"]
            assert result["ok"] and result["operations"] == 1, result
        finally:
            ticking.cancel()

    assert harness.run(scenario) == 0
    # The first computation recorded (the reload's may follow at once): four
    # services, a slice each, then the empty rest.
    first = [entry[1:] for entry in slices if entry[0] == slices[0][0]]
    assert len(first) == 5, slices
    assert all(a[0] < b[0] for a, b in zip(first, first[1:])), (
        "the loop did not turn between slices"
    )
    assert len({config for _unused, config in first}) == 1, "the configuration changed mid-table"
    assert harness.engine.table[KEY].real_servers[("10.0.2.1", 80)].weight == 7


def computed_services(monkeypatch: pytest.MonkeyPatch) -> list[ServiceKey]:
    """The services whose desired entry is computed, in order, from now on."""
    computed: list[ServiceKey] = []
    compute = daemon.desired_mod.compute

    def recorded(inputs: Any, below: Any = frozenset()) -> Any:
        inputs = list(inputs)
        computed.extend(item.key for item in inputs)
        return compute(inputs, below)

    monkeypatch.setattr(daemon.desired_mod, "compute", recorded)
    return computed


def test_a_transition_computes_only_its_service_and_the_table_stays_whole(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server's transition recomputes its own service's entry, the others
    are kept from the last table, and a reconcile (every 0.1 s here) reads
    the kernel without computing any; through a churn of transitions and a
    reload the kernel ends as a computation from scratch would leave it."""
    data = config_dict(harness.tmp, servers=(1, 2, 3))
    data["global"]["reconcile_interval"] = 0.1
    base = data["services"][0]
    data["services"] = [
        dict(
            copy.deepcopy(base),
            address="10.0.0.%d" % n,
            real_servers=[
                {"address": "10.0.%d.%d" % (10 + n, k), "forwarding": "masq", "weight": k}
                for k in (1, 2, 3)
            ],
        )
        for n in (1, 2, 3, 4)
    ]
    keys = [ServiceKey.for_address("tcp", "10.0.0.%d" % n, 80) for n in (1, 2, 3, 4)]
    harness.write(data)
    computed = computed_services(monkeypatch)

    def kernel() -> dict[ServiceKey, dict[str, int]]:
        return {
            key: {k[0]: v.weight for k, v in entry.real_servers.items()}
            for key, entry in harness.engine.table.items()
        }

    def expected() -> dict[ServiceKey, dict[str, int]]:
        return {
            ServiceKey.for_address("tcp", service["address"], 80): {
                server["address"]: server["weight"]
                for server in service["real_servers"]
                if server["address"] not in harness.down
            }
            for service in data["services"]
        }

    async def scenario(monitor: daemon.Monitor) -> None:
        await until(lambda: kernel() == expected(), "all up")
        computed.clear()
        reconciles = monitor.actuator.reconciles_total
        await asyncio.sleep(0.35)
        assert monitor.actuator.reconciles_total > reconciles and computed == [], computed
        harness.down.add("10.0.12.2")
        await until(lambda: kernel() == expected(), "10.0.12.2 out")
        assert set(computed) == {keys[1]}, computed
        rng = __import__("random").Random(7)
        for _step in range(40):
            harness.down ^= {"10.0.%d.%d" % (rng.choice((11, 12, 13, 14)), rng.choice((1, 2, 3)))}
            await asyncio.sleep(rng.uniform(0, 0.06))
        await until(lambda: kernel() == expected(), "the churn settled", timeout=10)
        computed.clear()
        data["services"][2]["real_servers"][0]["weight"] = 7
        harness.write(data)
        result = await monitor.reload()
        assert result["ok"] and result["operations"] == (0 if "10.0.13.1" in harness.down else 1)
        assert set(computed) == {keys[2]}, computed
        assert kernel() == expected()

    assert harness.run(scenario) == 0


def test_a_slow_start_ramp_recomputes_its_own_service_up_to_the_full_weight(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = config_dict(harness.tmp, servers=(1, 10), slow_start=1.0)
    other = dict(
        copy.deepcopy(data["services"][0]),
        address="10.0.0.2",
        slow_start=0,
        real_servers=[{"address": "10.0.3.1", "forwarding": "masq"}],
    )
    data["services"].append(other)
    data["global"]["reconcile_interval"] = 0.1
    harness.write(data)
    computed = computed_services(monkeypatch)
    seen: list[int] = []

    async def scenario(monitor: daemon.Monitor) -> None:
        await until(lambda: harness.weights() == {"10.0.2.1": 1, "10.0.2.10": 10}, "all up")
        harness.down.add("10.0.2.10")
        await until(lambda: "10.0.2.10" not in harness.weights(), "10.0.2.10 out")
        computed.clear()
        harness.down.clear()
        deadline = time.monotonic() + 5  # the ramp takes 1 s
        while harness.weights().get("10.0.2.10") != 10:
            weight = harness.weights().get("10.0.2.10")
            if weight is not None and (not seen or seen[-1] != weight):
                seen.append(weight)
            assert time.monotonic() < deadline, "the ramp stopped at %s" % seen
            await asyncio.sleep(0.01)
        seen.append(10)
        # A table computed just before the ramp's end, the applier's next turn
        # after it: the full weight is due at once (no later wake would bring it).
        server = monitor.board.servers[ServerRef(KEY, "10.0.2.10", 80)]
        assert server.ramp_start is not None
        end = server.ramp_start + 1.0
        clock = monitor.clock
        monitor._computed_at, monitor.clock = end - 0.01, lambda: end + 0.01
        try:
            assert monitor._next_ramp_step() == (end + 0.01, {KEY})
            monitor._computed_at = end + 0.005
            assert monitor._next_ramp_step() == (None, set())
        finally:
            monitor.clock = clock

    assert harness.run(scenario) == 0
    assert seen == sorted(seen) and len(seen) >= 3 and seen[0] < 5, seen
    assert set(computed) == {KEY}, computed


def test_reconciles_are_spaced_to_a_tenth_of_the_time_when_a_read_is_slow(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reconcile every 0.1 s asked for, a kernel read of 0.05 s: the next
    reconcile waits ten times as long as the last took."""
    data = config_dict(harness.tmp)
    data["global"]["reconcile_interval"] = 0.1
    harness.write(data)
    read_each = harness.engine.read_each

    def slow_read(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.05)
        yield from read_each(*args, **kwargs)

    monkeypatch.setattr(harness.engine, "read_each", slow_read)

    async def scenario(monitor: daemon.Monitor) -> None:
        await until(lambda: len(harness.weights()) == 2, "all up")
        reconciles = monitor.actuator.reconciles_total
        await asyncio.sleep(1.6)
        # At least 0.5 s apart: at most 4 in 1.6 s (16 at the asked interval).
        assert 1 <= monitor.actuator.reconciles_total - reconciles <= 4

    assert harness.run(scenario) == 0


def test_results_within_ten_milliseconds_share_one_recorded_time() -> None:
    def unread() -> float:
        raise AssertionError("the result's time comes with it: no clock read")

    owner = types.SimpleNamespace(clock=unread, _result_times=SharedFloat(daemon.RESULT_TIME_GRAIN))
    first = daemon.Monitor._result_time(owner, 10.0)  # type: ignore[arg-type]
    assert first == 10.0
    assert daemon.Monitor._result_time(owner, 10.005) is first  # type: ignore[arg-type]
    assert daemon.Monitor._result_time(owner, 10.009) is first  # type: ignore[arg-type]
    assert daemon.Monitor._result_time(owner, 10.012) == 10.012  # type: ignore[arg-type]
    assert daemon.Monitor._result_time(owner, 9.0) == 9.0  # type: ignore[arg-type]  # set back


def test_the_table_read_at_the_start_is_let_go(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel's table, read to adopt it, and the set of the servers it
    holds are not held for the daemon's life (a read-back copy of every real
    server; a reference and a set entry each)."""

    class Read(dict):  # type: ignore[type-arg]  # a table that can be referenced weakly
        pass

    class Present(set):  # type: ignore[type-arg]  # the same for the present servers
        pass

    reads: list[weakref.ref[Any]] = []
    plain_read = harness.engine.read
    plain_present = daemon.Monitor._present

    def read(with_stats: bool = False, services_only: bool = False) -> Table:
        table = Read(plain_read(with_stats, services_only))
        reads.append(weakref.ref(table))
        return table

    def present(monitor: daemon.Monitor, kernel: Table) -> set[Any]:
        servers = Present(plain_present(monitor, kernel))
        reads.append(weakref.ref(servers))
        return servers

    harness.engine.read = read  # type: ignore[method-assign]
    monkeypatch.setattr(daemon.Monitor, "_present", present)
    harness.engine.table[KEY] = VirtualService(
        Service(KEY, scheduler="wrr"),
        {("10.0.2.%d" % n, 80): RealServer("10.0.2.%d" % n, 80, "masq", n) for n in (1, 2)},
    )
    harness.write(config_dict(harness.tmp))

    async def scenario(monitor: daemon.Monitor) -> None:
        await asyncio.sleep(0.3)
        gc.collect()
        assert len(reads) >= 2 and all(ref() is None for ref in reads)
        assert len(monitor.board.servers) == 2

    assert harness.run(scenario) == 0
