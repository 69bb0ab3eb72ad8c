"""The monitor in a real kernel: network namespaces, real servers, the monitor process.

Run as root in a kernel with IPVS:

    tests/kernel/run -- .venv/bin/pytest tests/monitor_kernel -x

Topology (created once per session, removed at the end):

    client ns 10.0.1.2 --veth-- 10.0.1.1  director (root ns)  VIP 10.0.0.1 on dummy0
                                            10.1.N.1 --veth-- rsN ns 10.1.N.2 (N = 1..5, 9 = sorry)

Forwarding is NAT (masq): each real server routes back through the director.
Each test starts its own monitor with a config in tmp and short intervals,
and leaves an empty IPVS table behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MONITOR_BIN = os.path.join(REPO, "monitor", "bin", "haecs-monitor")
HAECSCTL_BIN = os.path.join(REPO, "monitor", "bin", "haecsctl")
BACKEND = os.path.join(HERE, "backend.py")
CLIENT = os.path.join(HERE, "client_loop.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

VIP = "10.0.0.1"
SERVERS = (1, 2, 3, 4, 5, 9)  # 9 is the sorry server
TIMINGS: list[tuple[str, str]] = []


def sh(*args: str, check: bool = True) -> str:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(args), result.stderr.strip()))
    return result.stdout


def rs_address(n: int) -> str:
    return "10.1.%d.2" % n


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.1) -> float:
    """Poll until `predicate()` is truthy; the seconds it took.  Fails after `timeout`."""
    start = time.monotonic()
    while True:
        value = predicate()
        if value:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            pytest.fail("timed out after %gs waiting for %s" % (timeout, what))
        time.sleep(step)


def record(name: str, value: str) -> None:
    TIMINGS.append((name, value))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.section("monitor kernel timings")
        for name, value in TIMINGS:
            terminalreporter.write_line("%-60s %s" % (name, value))


# ------------------------------------------------------------------- kernel


def _ipvs_available() -> Optional[str]:
    if os.geteuid() != 0:
        return "needs root (run through tests/kernel/run)"
    if not os.path.exists("/proc/net/ip_vs"):
        subprocess.run(["modprobe", "ip_vs"], capture_output=True, check=False)
    if not os.path.exists("/proc/net/ip_vs"):
        return "no IPVS in this kernel (run through tests/kernel/run)"
    if shutil.which("ipvsadm") is None:
        return "ipvsadm not installed"
    return None


class Lab:
    def __init__(self, work: str) -> None:
        self.work = work
        self.backends: dict[int, subprocess.Popen[bytes]] = {}

    def setup(self) -> None:
        for module in ("ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_wlc", "veth", "dummy"):
            subprocess.run(["modprobe", module], capture_output=True, check=False)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("sysctl", "-qw", "net.ipv4.vs.conntrack=1", check=False)
        sh("ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", "dummy0", "type", "dummy")
        sh("ip", "addr", "add", VIP + "/32", "dev", "dummy0")
        sh("ip", "link", "set", "dummy0", "up")
        self._namespace("client", "10.0.1.1", "10.0.1.2")
        for n in SERVERS:
            self._namespace("rs%d" % n, "10.1.%d.1" % n, rs_address(n))

    def _namespace(self, name: str, outer: str, inner: str) -> None:
        sh("ip", "netns", "add", name)
        sh("ip", "link", "add", "v-" + name, "type", "veth", "peer", "name", "eth0", "netns", name)
        sh("ip", "addr", "add", outer + "/24", "dev", "v-" + name)
        sh("ip", "link", "set", "v-" + name, "up")
        sh("ip", "-n", name, "link", "set", "lo", "up")
        sh("ip", "-n", name, "addr", "add", inner + "/24", "dev", "eth0")
        sh("ip", "-n", name, "link", "set", "eth0", "up")
        sh("ip", "-n", name, "route", "add", "default", "via", outer)

    def teardown(self) -> None:
        self.stop_all()
        for name in ["client"] + ["rs%d" % n for n in SERVERS]:
            sh("ip", "netns", "del", name, check=False)
        sh("ip", "link", "del", "dummy0", check=False)

    # real servers
    def mode_file(self, n: int) -> str:
        return os.path.join(self.work, "rs%d.mode" % n)

    def set_mode(self, n: int, mode: str) -> None:
        with open(self.mode_file(n), "w") as handle:
            handle.write(mode)

    def start(self, n: int, mode: str = "ok") -> None:
        self.set_mode(n, mode)
        if n in self.backends and self.backends[n].poll() is None:
            return
        self.backends[n] = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                "rs%d" % n,
                PYTHON,
                BACKEND,
                rs_address(n),
                "80",
                "rs%d" % n,
                self.mode_file(n),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: self._listening(n), 15, "rs%d to listen" % n)

    def _listening(self, n: int) -> bool:
        out = sh("ip", "netns", "exec", "rs%d" % n, "ss", "-Htln", check=False)
        return ("%s:80" % rs_address(n)) in out

    def kill(self, n: int) -> None:
        process = self.backends.pop(n, None)
        if process is not None:
            process.kill()
            process.wait()

    def stop_all(self) -> None:
        for n in list(self.backends):
            self.kill(n)

    # the table
    def table(self) -> str:
        return sh("ipvsadm", "-Sn")

    def weights(self, port: int = 80) -> dict[str, int]:
        """{real server address: weight} of the VIP:port service, from ipvsadm -Sn."""
        weights = {}
        pattern = re.compile(r"^-a -t %s:%d -r ([\d.]+):\d+ \S+ -w (\d+)" % (re.escape(VIP), port))
        for line in self.table().splitlines():
            match = pattern.match(line)
            if match:
                weights[match.group(1)] = int(match.group(2))
        return weights

    def clear(self) -> None:
        sh("ipvsadm", "-C")


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    reason = _ipvs_available()
    if reason:
        pytest.skip(reason)
    lab = Lab(str(tmp_path_factory.mktemp("lab")))
    try:
        lab.setup()
    except Exception:
        lab.teardown()
        raise
    yield lab
    lab.teardown()


# ------------------------------------------------------------------ monitor


def base_config(tmp: str, **global_options: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "name": "test",
        "control_socket": os.path.join(tmp, "run", "monitor.sock"),
        "state_file": os.path.join(tmp, "lib", "monitor.state"),
        "reconcile_interval": 1,
        "log_format": "json",
        "check_defaults": {
            "interval": 0.3,
            "timeout": 0.25,
            "rise": 2,
            "fall": 2,
            "fast_interval": 0.2,
            "down_interval": 0.3,
            "jitter": 0.1,
        },
    }
    settings.update(global_options)
    return {"global": settings, "services": []}


def http_service(servers: tuple[int, ...], port: int = 80, **options: Any) -> dict[str, Any]:
    service: dict[str, Any] = {
        "protocol": "tcp",
        "address": VIP,
        "port": port,
        "scheduler": "wrr",
        "checks": [{"type": "http", "path": "/", "expect_status": [200]}],
        "real_servers": [
            {"address": rs_address(n), "port": 80, "forwarding": "masq", "weight": 1}
            for n in servers
        ],
    }
    service.update(options)
    return service


class Monitor:
    """The monitor as a subprocess, with its JSON log lines and its API."""

    def __init__(self, tmp: str, config: dict[str, Any]) -> None:
        self.tmp = tmp
        self.config_path = os.path.join(tmp, "monitor.yml")
        self.log_path = os.path.join(tmp, "monitor.log")
        self.socket = config["global"]["control_socket"]
        self.process: Optional[subprocess.Popen[bytes]] = None
        self._offset = 0  # log lines of earlier runs sharing the file are not ours
        self.write_config(config)

    def write_config(self, config: dict[str, Any]) -> None:
        with open(self.config_path, "w") as handle:
            yaml.safe_dump(config, handle)

    def start(self, wait: bool = True) -> float:
        started = time.monotonic()
        self._offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, MONITOR_BIN, self.config_path],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        if wait:
            wait_for(
                lambda: self.exited() or self.has_event("table_adopted"), 30, "the monitor to start"
            )
            assert not self.exited(), "monitor exited: %s" % self.log_text()[-2000:]
        return time.monotonic() - started

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail("monitor did not stop within %gs" % timeout)
            raise

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    # logs
    def log_text(self) -> str:
        """This run's part of the log."""
        with open(self.log_path, "rb") as handle:
            handle.seek(self._offset)
            return handle.read().decode(errors="replace")

    def events(self, name: Optional[str] = None) -> list[dict[str, Any]]:
        found = []
        for line in self.log_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and (name is None or record.get("event") == name):
                found.append(record)
        return found

    def has_event(self, name: str, **fields: Any) -> bool:
        return any(all(event.get(k) == v for k, v in fields.items()) for event in self.events(name))

    # control
    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, HAECSCTL_BIN, "--socket", self.socket, *args],
            capture_output=True,
            text=True,
            check=False,
        )

    def status(self) -> dict[str, Any]:
        result = self.ctl("--json", "status")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def server(self, n: int, service: int = 0) -> dict[str, Any]:
        for server in self.status()["services"][service]["servers"]:
            if server["address"] == rs_address(n):
                return server  # type: ignore[no-any-return]
        raise KeyError(n)

    def kernel_operations(self) -> int:
        return int(self.status()["kernel"]["operations_total"])


@pytest.fixture
def monitor_factory(lab: Lab, tmp_path: Any) -> Iterator[Callable[..., Monitor]]:
    made: list[Monitor] = []

    def make(config: dict[str, Any], start: bool = True, subdir: str = "m") -> Monitor:
        folder = os.path.join(str(tmp_path), subdir)
        os.makedirs(folder, exist_ok=True)
        monitor = Monitor(folder, config)
        made.append(monitor)
        if start:
            monitor.start()
        return monitor

    yield make
    for monitor in made:
        # Shown by pytest when the test failed.
        print("---- monitor log %s (last 40 lines)" % monitor.log_path)
        if os.path.exists(monitor.log_path):
            print("\n".join(monitor.log_text().splitlines()[-40:]))
        if monitor.process is not None and monitor.process.poll() is None:
            monitor.stop(signal.SIGKILL)
    lab.stop_all()
    lab.clear()
