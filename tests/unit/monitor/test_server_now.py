"""GET /servers/{service}/{server}: a real server as the kernel holds it now
(control/connections.py and the API), on a monitor with a fake kernel, and
`haecsctl drain --wait` against it."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Collection
from typing import Any

import api_contract
import pytest
from haecs_monitor.config.load import load_config
from haecs_monitor.control import cli, client, connections, drain_wait
from haecs_monitor.errors import Ambiguous, NotFound
from haecs_monitor.runtime import daemon
from monitor_fakes import FakeEngine
from test_daemon import KEY, Harness, config_dict, until

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs import engine as ipvs_engine
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    RealServer,
    Service,
    ServiceKey,
    Table,
    VirtualService,
)

SERVER = ("10.0.2.1", 80)


def kernel(weight: int = 0, active: int = 0, inactive: int = 0, templates: int = 0) -> Table:
    server = RealServer(
        *SERVER,
        "masq",
        weight,
        active_connections=active,
        inactive_connections=inactive,
        persistent_connections=templates,
    )
    return {KEY: VirtualService(Service(KEY, "wrr", persistence_timeout=300), {SERVER: server})}


@pytest.fixture
def config(tmp_path: Any) -> Any:
    path = tmp_path / "monitor.yml"
    path.write_text(json.dumps(config_dict(str(tmp_path))))
    return load_config(str(path))


# --------------------------------------------------------------- the counters


def test_entry_reads_the_kernel_counters(config: Any) -> None:
    service = config.services[0]
    entry = connections.server_entry(
        service, "10.0.2.1:80", "drain", kernel(active=1, inactive=2, templates=3)
    )
    assert entry == {
        "service": "tcp:10.0.0.1:80",
        "admin": "drain",
        "in_kernel": True,
        "weight": 0,
        "configured_weight": 1,
        "persistent": True,  # the kernel's service, not the config's
        "active_connections": 1,
        "inactive_connections": 2,
        "persistence_templates": 3,
        "drained": False,
        "idle": False,
    }


@pytest.mark.parametrize(
    ("table", "drained", "idle"),
    [
        (kernel(weight=0, active=0, inactive=0), True, True),
        (kernel(weight=0, active=0, inactive=4, templates=2), True, False),
        (kernel(weight=0, active=1), False, False),
        (kernel(weight=1, active=0), False, False),  # still takes new connections
        ({}, True, True),  # not in the kernel: nothing reaches it
    ],
)
def test_drained_and_idle(config: Any, table: Table, drained: bool, idle: bool) -> None:
    entry = connections.server_entry(config.services[0], "10.0.2.1:80", "drain", table)
    assert (entry["drained"], entry["idle"]) == (drained, idle)


def test_a_server_the_kernel_lacks_has_no_counters(config: Any) -> None:
    entry = connections.server_entry(config.services[0], "10.0.2.1:80", "disable", {})
    assert entry["in_kernel"] is False and entry["weight"] is None
    assert entry["persistent"] is False  # the configured service's
    assert [entry[name] for name in connections.COUNTERS] == [None, None, None]
    assert connections.summary([entry])["active_connections"] == 0


def test_summary_adds_up_the_services(config: Any) -> None:
    one = connections.server_entry(config.services[0], "10.0.2.1:80", "drain", kernel(active=2))
    other = dict(one, service="tcp:10.0.0.1:443", active_connections=0, drained=True)
    gone = connections.server_entry(config.services[0], "10.0.2.1:80", "drain", {})
    assert connections.summary([one, other, gone]) == {
        "active_connections": 2,
        "inactive_connections": 0,
        "persistence_templates": 0,
        "drained": False,
        "idle": False,
    }


def test_resolve_names_what_it_cannot_find(tmp_path: Any) -> None:
    document = config_dict(str(tmp_path))
    udp = dict(document["services"][0], protocol="udp", checks=[])
    document["services"].append(udp)
    path = tmp_path / "two.yml"
    path.write_text(json.dumps(document))
    config = load_config(str(path))
    services, server = connections.resolve(config, "*", "10.0.2.1:80")
    assert server == "10.0.2.1:80" and len(services) == 2
    assert connections.resolve(config, "udp:10.0.0.1:80", "10.0.2.1:80")[0] == [config.services[1]]
    for service, server, error, says in (
        ("tcp:10.0.0.9:80", "10.0.2.1:80", NotFound, "no service tcp:10.0.0.9:80"),
        ("tcp:10.0.0.1:80", "10.9.9.9:80", NotFound, "has no real server 10.9.9.9:80"),
        ("*", "10.9.9.9:80", NotFound, "no service has real server 10.9.9.9:80"),
        ("*", "nonsense", NotFound, "'nonsense' is not a real server"),
        ("10.0.0.1:80", "10.0.2.1:80", Ambiguous, "names several services"),
    ):
        with pytest.raises(error, match=says):
            connections.resolve(config, service, server)


def test_read_kernel_never_loads_a_module() -> None:
    if os.path.exists("/proc/net/ip_vs"):
        pytest.skip("this kernel has IPVS loaded")
    # No IPVS family here: the engine would modprobe ip_vs; the read refuses to.
    with pytest.raises(connections.KernelUnreadable) as raised:
        connections.read_kernel([KEY])
    assert str(raised.value).startswith("cannot read the IPVS table: IPVS is not available")
    assert "ip_vs is not loaded" in str(raised.value)


class BrokenIPVS:
    """An engine whose read fails."""

    def __init__(self, load_module: Any) -> None:
        pass

    def __enter__(self) -> BrokenIPVS:
        return self

    def __exit__(self, *_exc: object) -> None:
        pass

    def read(self, only: Collection[ServiceKey]) -> Table:
        raise ipvs_engine.IPVSError("reading the IPVS table failed: EPERM")


def test_read_kernel_reports_a_failed_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ipvs_engine, "IPVS", BrokenIPVS)
    with pytest.raises(connections.KernelUnreadable, match="failed: EPERM"):
        connections.read_kernel([KEY])


# ---------------------------------------------------------------------- the API


class Counters:
    """A kernel read on the monitor's fake engine, with counters set by the
    test (the fake engine keeps none) and a count of reads."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.of: dict[tuple[str, int], tuple[int, int, int]] = {}
        self.reads: list[list[ServiceKey]] = []
        self.broken = False

    def __call__(self, keys: Collection[ServiceKey]) -> Table:
        self.reads.append(list(keys))
        if self.broken:
            raise connections.KernelUnreadable("cannot read the IPVS table: gone")
        table = {key: entry for key, entry in self.engine.read().items() if key in keys}
        for entry in table.values():
            for key, server in list(entry.real_servers.items()):
                active, inactive, templates = self.of.get(key, (0, 0, 0))
                entry.real_servers[key] = server.replace(
                    active_connections=active,
                    inactive_connections=inactive,
                    persistent_connections=templates,
                )
        return table


@pytest.fixture
def harness(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Harness:
    harness = Harness(str(tmp_path), FakeEngine(), monkeypatch)
    harness.write(config_dict(harness.tmp))
    return harness


async def _get(monitor: daemon.Monitor, method: str, target: str) -> tuple[int, Any, list[str]]:
    """(status, JSON answer, problems against the OpenAPI document)."""
    loop = asyncio.get_running_loop()
    path = monitor.config.settings.control_socket
    status, ctype, body = await loop.run_in_executor(
        None, api_contract.send, method, target, b"", path
    )
    problems = api_contract.validate(method, target, status, ctype, body)
    return status, json.loads(body) if body else None, problems


def test_the_endpoint_reads_the_kernel_at_each_request(harness: Harness) -> None:
    seen: dict[str, Any] = {}

    async def scenario(monitor: daemon.Monitor) -> None:
        counters = Counters(harness.engine)
        monitor.api.read_kernel = counters
        await until(lambda: harness.weights() == {"10.0.2.1": 1, "10.0.2.2": 2}, "both up")
        target = "/servers/tcp:10.0.0.1:80/10.0.2.1:80"
        counters.of[SERVER] = (3, 1, 0)
        seen["up"] = await _get(monitor, "GET", target)
        await monitor.set_admin("*", "10.0.2.1:80", "drain")
        seen["draining"] = await _get(monitor, "GET", target)
        counters.of[SERVER] = (0, 1, 0)
        seen["drained"] = await _get(monitor, "GET", target)
        seen["all"] = await _get(monitor, "GET", "/servers/*/10.0.2.1:80")
        seen["head"] = await _get(monitor, "HEAD", target)
        seen["reads"] = list(counters.reads)
        counters.broken = True
        seen["broken"] = await _get(monitor, "GET", target)

    assert harness.run(scenario) == 0
    for name in ("up", "draining", "drained", "all", "head"):
        assert seen[name][0] == 200 and seen[name][2] == [], (name, seen[name])
    up, draining, drained = (seen[name][1] for name in ("up", "draining", "drained"))
    assert up["services"][0]["weight"] == 1 and up["services"][0]["admin"] == "enabled"
    assert (up["active_connections"], up["drained"]) == (3, False)
    assert draining["services"][0]["weight"] == 0 and draining["services"][0]["admin"] == "drain"
    assert (draining["active_connections"], draining["drained"]) == (3, False)
    assert (drained["active_connections"], drained["inactive_connections"]) == (0, 1)
    assert (drained["drained"], drained["idle"]) == (True, False)
    assert seen["all"][1]["services"][0]["service"] == "tcp:10.0.0.1:80"
    assert seen["reads"] == [[KEY]] * 5  # one read of the one service per request, no cache
    status, body, _problems = seen["broken"]
    assert status == 503 and body == {"error": "cannot read the IPVS table: gone", "status": 503}


def test_the_endpoint_refuses_what_it_cannot_answer(harness: Harness) -> None:
    answers: dict[str, Any] = {}

    async def scenario(monitor: daemon.Monitor) -> None:
        monitor.api.read_kernel = Counters(harness.engine)
        for method, target in (
            ("GET", "/servers/tcp:10.0.0.1:80/10.9.9.9:80"),
            ("GET", "/servers/nope/10.0.2.1:80"),
            ("GET", "/servers/*/x"),
            ("POST", "/servers/*/10.0.2.1:80"),
            ("DELETE", "/servers/*/10.0.2.1:80"),
        ):
            answers[method + " " + target] = await _get(monitor, method, target)

    assert harness.run(scenario) == 0
    statuses = {request: answer[0] for request, answer in answers.items()}
    assert list(statuses.values()) == [404, 404, 404, 405, 405]
    assert all(answer[2] == [] for answer in answers.values()), answers
    errors = [answer[1]["error"] for answer in answers.values()]
    assert errors[0] == "service tcp:10.0.0.1:80 has no real server 10.9.9.9:80"
    assert errors[1] == "no service nope"
    assert errors[2].startswith("'x' is not a real server")


def test_the_document_describes_the_endpoint() -> None:
    operation = api_contract.DOCUMENT["paths"]["/servers/{service}/{server}"]["get"]
    assert set(operation["responses"]) >= {"200", "404", "409", "503"}
    schema = api_contract.DOCUMENT["components"]["schemas"]["ServerNowEntry"]
    assert set(schema["required"]) == set(schema["properties"])
    assert api_contract.operation("GET", "/servers/*/10.0.2.1:80")[0] == (
        "/servers/{service}/{server}"
    )


# -------------------------------------------------- haecsctl drain --wait, end to end


def test_haecsctl_drain_wait_against_a_monitor(harness: Harness, capsys: Any) -> None:
    codes: dict[str, int] = {}

    async def scenario(monitor: daemon.Monitor) -> None:
        counters = Counters(harness.engine)
        monitor.api.read_kernel = counters
        await until(lambda: harness.weights() == {"10.0.2.1": 1, "10.0.2.2": 2}, "both up")
        counters.of[SERVER] = (1, 0, 0)
        socket_path = monitor.config.settings.control_socket
        loop = asyncio.get_running_loop()
        argv = ["--socket", socket_path, "drain", "10.0.2.1:80", "--wait", "--interval", "0.05"]
        waiting = loop.run_in_executor(None, cli.ctl_main, argv)
        await until(lambda: harness.weights().get("10.0.2.1") == 0, "weight 0")
        await until(lambda: len(counters.reads) >= 2, "two polls")
        assert not waiting.done()  # one active connection: still waiting
        counters.of[SERVER] = (0, 2, 0)
        codes["drained"] = await asyncio.wait_for(waiting, 10)
        counters.of[("10.0.2.2", 80)] = (5, 0, 0)
        timeout = ["--socket", socket_path, "drain", "10.0.2.2:80", "--wait", "--timeout", "0.2"]
        timeout += ["--interval", "0.05"]
        codes["timeout"] = await loop.run_in_executor(None, cli.ctl_main, timeout)

    assert harness.run(scenario) == 0
    assert codes == {"drained": 0, "timeout": drain_wait.EXIT_TIMEOUT}
    out, err = capsys.readouterr()
    # "waited 0s", or a tenth or more when a loaded machine delayed the first poll
    assert re.search(
        r"10\.0\.2\.1:80: 1 active, 0 inactive connections left; waited [0-9.]+s\n", out
    )
    assert "10.0.2.1:80 is drained (no established connection): 0 active, 2 inactive" in out
    assert err.startswith(
        "haecsctl: timed out after 0.2s waiting for 10.0.2.2:80 to drain: "
        "5 active, 0 inactive connections left (in tcp:10.0.0.1:80)"
    )


def test_haecsctl_drain_wait_without_a_monitor(tmp_path: Any, capsys: Any) -> None:
    argv = ["--socket", str(tmp_path / "none.sock"), "drain", "10.0.2.1:80", "--wait"]
    assert cli.ctl_main(argv) == 2
    assert "is the monitor running?" in capsys.readouterr().err
    with pytest.raises(client.ClientError):
        client.request("GET", "/servers/*/10.0.2.1:80", socket_path=str(tmp_path / "none.sock"))
