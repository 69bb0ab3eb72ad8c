"""`haecsctl drain --wait` against a real monitor and a real connection through the VIP.

A client in its namespace holds one TCP connection open through the VIP (to
whichever real server the scheduler picked: the API says which); the drain
of that server waits while the kernel counts the connection, and ends once
it is closed.
States and exit statuses are asserted, never wall times.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from typing import IO, Any, Callable

import pytest
from conftest import (
    HAECSCTL_BIN,
    PYTHON,
    VIP,
    Lab,
    Monitor,
    base_config,
    http_service,
    rs_address,
    wait_for,
)

pytestmark = pytest.mark.kernel

MonitorFactory = Callable[..., Monitor]
SERVICE = "tcp:10.0.0.1:80"
SERVERS = {"%s:80" % rs_address(n): rs_address(n) for n in (1, 2)}
UP_WITHIN = 15  # rise 2 x 0.3 s and a generous margin: UML is slow at process starts
HOLD = """\
import socket, sys
sock = socket.create_connection((sys.argv[1], 80), timeout=10)
print("connected", sock.getsockname()[1], flush=True)
sys.stdin.read()  # until the test closes our stdin
sock.close()
"""


class HeldConnection:
    """One TCP connection from the client namespace through the VIP, open until close()."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", "client", PYTHON, "-c", HOLD, VIP],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("connected"), "the client could not connect: %r" % line

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(20)


class Background:
    """haecsctl in the background, its output lines collected as they come."""

    def __init__(self, monitor: Monitor, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, HAECSCTL_BIN, "--socket", monitor.socket, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err))
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str], lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    def running(self) -> bool:
        return self.process.poll() is None

    def finish(self, timeout: float) -> int:
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code


def config(tmp: str, **service_options: Any) -> dict[str, Any]:
    document = base_config(tmp)
    document["services"] = [http_service((1, 2), **service_options)]
    return document


def server_now(monitor: Monitor, server: str, service: str = SERVICE) -> dict[str, Any]:
    """GET /servers/SERVICE/SERVER through the control socket."""
    from haecs_monitor.control import client

    reply = client.request("GET", "/servers/%s/%s" % (service, server), socket_path=monitor.socket)
    assert reply.status == 200, reply.body
    return reply.json()  # type: ignore[no-any-return]


def holding(monitor: Monitor) -> tuple[str, str]:
    """(the server the held connection went to, the other one), as the API says."""
    active = {server: server_now(monitor, server)["active_connections"] for server in SERVERS}
    assert sorted(active.values()) == [0, 1], active
    held = next(server for server, count in active.items() if count == 1)
    return held, next(server for server in SERVERS if server != held)


def weights_after_drain(held: str, other: str) -> dict[str, int]:
    return {SERVERS[held]: 0, SERVERS[other]: 1}


def ipvsadm_counts(server: str) -> tuple[int, int]:
    """(ActiveConn, InActConn) of SERVER as ipvsadm -Ln prints them: the witness."""
    listing = subprocess.run(["ipvsadm", "-Ln"], capture_output=True, text=True, check=True).stdout
    line = next(line for line in listing.splitlines() if line.split()[1:2] == [server])
    return int(line.split()[4]), int(line.split()[5])


def templates_in_proc(server: str) -> list[str]:
    """Persistence templates to SERVER in /proc/net/ip_vs_conn: client port 0000."""
    address, port = server.split(":")
    dest = "%08X %04X" % (int.from_bytes(bytes(map(int, address.split("."))), "big"), int(port))
    with open("/proc/net/ip_vs_conn") as handle:
        rows = handle.read().splitlines()[1:]
    return [row for row in rows if row.split()[2] == "0000" and " %s " % dest in row]


def _started(lab: Lab, monitor_factory: MonitorFactory, tmp: str, **options: Any) -> Monitor:
    lab.start(1)
    lab.start(2)
    monitor = monitor_factory(config(tmp, **options))
    wait_for(lambda: lab.weights() == {rs_address(1): 1, rs_address(2): 1}, UP_WITHIN, "both in")
    return monitor


def test_drain_wait_waits_for_the_held_connection(
    lab: Lab, monitor_factory: MonitorFactory, tmp_path: Any
) -> None:
    monitor = _started(lab, monitor_factory, str(tmp_path))
    held = HeldConnection()
    try:
        server, other = holding(monitor)
        wait = Background(monitor, "drain", SERVICE, server, "--wait", "--timeout", "30")
        # Inactive entries may be left from earlier tests (TIME_WAIT outlives a service).
        progress = re.compile(r"%s: 1 active, \d+ inactive connections left; waited" % server)
        wait_for(
            lambda: any(progress.match(line) for line in wait.out),
            30,
            "haecsctl to report the held connection",
        )
        assert wait.out[0] == "%s %s: drain" % (SERVICE, server)
        # Drained in the kernel, the connection still counted there: it keeps waiting.
        state = server_now(monitor, server)
        assert (state["services"][0]["weight"], state["services"][0]["admin"]) == (0, "drain")
        assert (state["active_connections"], state["drained"]) == (1, False)
        assert ipvsadm_counts(server)[0] == 1
        assert wait.running(), wait.err
    finally:
        held.close()
    assert wait.finish(40) == 0, wait.err
    assert wait.out[-1].startswith("%s is drained (no established connection): 0 active" % server)
    assert wait.err == []
    # The closed connection waits for its timer as an inactive entry: drained, not idle.
    state = server_now(monitor, server)
    assert (state["active_connections"], state["drained"]) == (0, True)
    assert state["inactive_connections"] == ipvsadm_counts(server)[1] >= 1
    assert state["idle"] is False
    # --until all waits for it too (kube-proxy's rule): here it times out, saying so.
    until_all = monitor.ctl("drain", SERVICE, server, "--wait", "--until", "all", "--timeout", "1")
    assert until_all.returncode == 4, until_all.stderr
    assert re.match(
        r"haecsctl: timed out after [\d.]+s waiting for %s to drain: 0 active, [1-9]\d* inactive "
        r"connections left \(in %s\)\n\Z" % (re.escape(server), re.escape(SERVICE)),
        until_all.stderr,
    ), until_all.stderr
    assert lab.weights() == weights_after_drain(server, other)


def test_drain_wait_times_out_and_says_what_is_left(
    lab: Lab, monitor_factory: MonitorFactory, tmp_path: Any
) -> None:
    monitor = _started(lab, monitor_factory, str(tmp_path), persistence_timeout=300)
    held = HeldConnection()
    try:
        server, other = holding(monitor)
        state = server_now(monitor, server, service="*")  # every service that has it
        assert state["services"][0]["persistent"] is True
        # One template pins the client to the server: the kernel's counter and /proc agree.
        assert (state["active_connections"], state["persistence_templates"]) == (1, 1)
        templates = templates_in_proc(server)
        assert len(templates) == 1 and templates[0].split()[7] in ("NONE", "ASSURED"), templates
        assert templates_in_proc(other) == []
        result = monitor.ctl("drain", server, "--wait", "--timeout", "2", "--interval", "0.5")
        assert result.returncode == 4, result.stderr
        assert re.match(
            r"haecsctl: timed out after [\d.]+s waiting for %s to drain: 1 active, \d+ inactive "
            r"connections, 1 persistence template left \(in %s\)\n\Z"
            % (re.escape(server), re.escape(SERVICE)),
            result.stderr,
        ), result.stderr
        assert re.search(
            r"1 active, \d+ inactive connections, 1 persistence template", result.stdout
        )
        # Still drained, still counted: nothing was undone by the timeout.
        assert lab.weights() == weights_after_drain(server, other)
        assert ipvsadm_counts(server)[0] == 1
        as_json = monitor.ctl("--json", "drain", server, "--wait", "--timeout", "0")
        assert as_json.returncode == 4
        assert json.loads(as_json.stdout)["persistence_templates"] == 1
    finally:
        held.close()
    done = monitor.ctl("drain", server, "--wait", "--timeout", "30", "--interval", "0.2")
    assert done.returncode == 0, done.stderr
    assert "its persistence templates still send their clients' new connections to it" in (
        done.stdout
    )


def test_a_restart_goes_on_draining_a_leaving_server(
    lab: Lab, monitor_factory: MonitorFactory, tmp_path: Any
) -> None:
    """A reload drops the real server that holds a connection: it leaves
    (weight 0 until the connection ends). The monitor restarted meanwhile
    keeps it so (the state file has it), not deleted at its first
    reconcile, and removes it once the connection is closed."""
    from haecs_monitor.control import client

    monitor = _started(lab, monitor_factory, str(tmp_path))
    held = HeldConnection()
    try:
        server, other = holding(monitor)
        document = config(str(tmp_path))
        document["global"]["drain_timeout"] = 120
        document["services"][0]["real_servers"] = [
            rs for rs in document["services"][0]["real_servers"] if rs["address"] == SERVERS[other]
        ]
        monitor.write_config(document)
        assert monitor.ctl("reload").returncode == 0
        wait_for(
            lambda: lab.weights() == weights_after_drain(server, other), 15, "the server leaving"
        )
        assert monitor.stop() == 0
        monitor.start()  # returns once the first reconcile is done (table_adopted)
        assert monitor.has_event("server_leaving", server=server)
        time.sleep(2.5)  # more than a reconcile interval and a leaving poll
        assert lab.weights() == weights_after_drain(server, other), "deleted after the restart"
        assert ipvsadm_counts(server)[0] == 1
        status = client.request("GET", "/status", socket_path=monitor.socket).json()
        assert [leaver["server"] for leaver in status["leaving"]] == [server]
    finally:
        held.close()
    wait_for(lambda: lab.weights() == {SERVERS[other]: 1}, 30, "the server gone once drained")
    (left,) = monitor.events("server_left")
    assert left["server"] == server and left["reason"].startswith("drained"), left
