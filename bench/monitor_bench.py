#!/usr/bin/env python3
"""HAECS monitor against keepalived's checker: CPU, detection latency, RSS, reload.

Boots ONE kernel with IPVS (tests/kernel/run, UML by default) and runs both
daemons in it, one after the other, on the same virtual services, the same
real servers and the same TCP check timing:

  (a) CPU seconds per 10,000 TCP checks (utime + stime of the daemon's
      processes from /proc/PID/stat over a fixed window);
  (b) detection latency from closing a real server's listener to the kernel
      table change (table polled through the engine every ~10 ms), p50/p99;
      and the daemon's reaction: from the SYN that decided it (the fall-th
      to reach the closed listener after the kill, stamped by the real
      servers' kernel on arrival) to the same table change;
  (c) RSS of the daemon with an empty configuration, 5,000 and 30,000 real
      servers (--rss-sizes), and the memory per real server: the slope
      (RSS at N - RSS empty) / N, for both daemons;
  (d) SIGHUP reload of 2,000 virtual services x 15 real servers, nothing
      changed: time to "reload done" and the kernel operations it caused;
      for HAECS also, in one process, YAML and JSON: the same file, the file
      edited without changing a service, one weight changed (exactly one
      kernel operation expected), each with the worst event-loop lag during
      the reload (its config_reloaded line says it).

keepalived is Debian's 2.2.7 as a checker only:
`keepalived --dont-fork --check --log-console -f CONF` (pid files under /run).

Real servers live in a network namespace: one process (selectors) owns every
listener; addresses come from an "AnyIP" local route (10.64.0.0/10 on lo), so
no address needs configuring.  (a)/(b) use one listener per real server on
port 8080 (a kill closes it: connection refused; a revive reopens it), (c)/(d)
one wildcard listener on port 80 serving every address.  Forwarding is NAT;
no traffic goes through the virtual services.

How each figure is measured (also in the --json document):
  (a) checks = handshakes the real servers' listeners answered during the
      window: PassiveOpens + AttemptFails of their namespace's Tcp counters
      (a completed connect counts once in PassiveOpens, a SYN probe, reset
      in SYN-RECV, once in AttemptFails: the same counter for both);
      cross-checks: connections accepted (0 for HAECS's SYN probes, which
      complete no connection), HAECS's haecs_checks_total,
      and for keepalived servers x window / delay_loop.  keepalived's CPU is
      its parent plus its checker child.
  (b) a kill closes one listener (connection refused); up to --concurrent
      kills are in flight at random phases; after detection the listeners
      reopen and both daemons must put the servers back before the next round.
      With the same timing, a detection is the wait for the first check
      after the kill (uniform over one interval), fall - 1 intervals, and the
      reaction; only the reaction is the daemon's own, and at 100 kills the
      p99 of the first part alone varies by about 10 ms from run to run.
  (c) VmRSS (keepalived: both processes summed), largest of 1 s samples over
      1.5 check intervals once every server is in the table; the interval is
      --rss-interval, longer at large sizes so that both daemons run at most
      --rss-check-rate checks a second.  "Empty" is one virtual service
      without real servers (keepalived starts its checker process only for a
      virtual server).  A size at which a daemon cannot run is reported with
      the largest RSS sampled before it stopped, and both daemons are then
      measured at --rss-fallback-servers as well.
  (d) HAECS: SIGHUP to its "config_reloaded" log line; kernel operations from
      haecs_kernel_operations_total.  keepalived: SIGHUP to its checker's
      "Reload complete" line; kernel operations by a second reload under
      strace (IPVS netlink commands that change the table); both: the table
      dumped before and after.  In UML every guest page is one host mapping,
      so a guest process above ~250 MB dies at the host's default
      vm.max_map_count (65530): (d) then runs again at a smaller size and
      the table says so.

Usage (from the repository root, on the host):

    bench/run-monitor-bench [--json FILE] [--quick] [--phases cpu,latency,rss,reload]

which runs `bench/python bench/monitor_bench.py` and that boots the kernel
with `tests/kernel/run --mem 2G -- ... --inside`.  Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MONITOR_BIN = os.path.join(ROOT, "monitor", "bin", "haecs-monitor")
KERNEL_RUN = os.path.join(ROOT, "tests", "kernel", "run")
RESULT_MARK = "MONITOR-BENCH-RESULT "

NETNS = "haecsbench"
VIP_PORT = 80
KILL_PORT = 8080  # one listener per real server (killable)
BULK_PORT = 80  # one wildcard listener for every real server address
WORK = "/run/haecs-bench"
HAECS_SOCKET = "/run/haecs/bench.sock"
POLL_SECONDS = 0.010
REAL_SERVER_LINK = "hbr0"  # the real servers' end of the link from the directors
ETH_P_IP = 0x0800
SO_TIMESTAMPNS = 35  # linux/asm-generic/socket.h; also SCM_TIMESTAMPNS
PACKET_OUTGOING = 4
TCP_SYN, TCP_ACK = 0x02, 0x10
STOP_GRACE_SECONDS = 8
STOP_PROBLEMS: list[str] = []  # daemons that had to be killed (reported)
MB = 1024.0 * 1024.0


class BenchError(Exception):
    """A step of the benchmark could not be done (the message says which)."""


def log(message: str) -> None:
    elapsed = time.monotonic() - STARTED
    print("[%6.1fs] %s" % (elapsed, message), file=sys.stderr, flush=True)


STARTED = time.monotonic()


# ------------------------------------------------------------------ settings


@dataclass(frozen=True)
class Timing:
    """The check timing both daemons get (see `mapping()` for keepalived)."""

    interval: float
    timeout: float
    fall: int
    rise: int = 1

    def haecs(self) -> dict[str, Any]:
        return {
            "interval": self.interval,
            "timeout": self.timeout,
            "rise": self.rise,
            "fall": self.fall,
            "fast_interval": self.interval,
            "down_interval": self.interval,
            "jitter": 0,
        }

    def keepalived(self) -> dict[str, Any]:
        return {
            "delay_loop": self.interval,
            "connect_timeout": self.timeout,
            "retry": self.fall - 1,
            "delay_before_retry": self.interval,
        }


def mapping(timing: Timing) -> list[str]:
    return [
        "interval %gs = keepalived delay_loop %g" % (timing.interval, timing.interval),
        "timeout %gs = keepalived connect_timeout %g" % (timing.timeout, timing.timeout),
        "fall %d = keepalived retry %d (keepalived declares a server down after retry+1 "
        "consecutive failures)" % (timing.fall, timing.fall - 1),
        "HAECS fast_interval %gs (delay between the failures of a falling server) = keepalived "
        "delay_before_retry %g" % (timing.interval, timing.interval),
        "HAECS rise 1, down_interval %gs = keepalived: one success restores a server, a down "
        "server is checked every delay_loop" % timing.interval,
        "HAECS jitter 0 (keepalived has none; both spread the first checks over the interval)",
    ]


@dataclass(frozen=True)
class Layout:
    """`services` TCP virtual services on 10.200/16, each with `per_service`
    NAT real servers of their own in 10.64.0.0/10 (no server is shared)."""

    services: int
    per_service: int
    rs_port: int

    @property
    def servers(self) -> int:
        return self.services * self.per_service

    def vip(self, index: int) -> str:
        return "10.200.%d.%d" % (index // 250, index % 250 + 1)

    def members(self) -> Iterator[tuple[str, list[tuple[str, int]]]]:
        for index in range(self.services):
            yield (
                self.vip(index),
                [
                    (rs_address(index * self.per_service + member), self.rs_port)
                    for member in range(self.per_service)
                ],
            )


def rs_address(index: int) -> str:
    block, host = divmod(index, 250)
    return "10.%d.%d.%d" % (64 + block // 256, block % 256, host + 1)


# ------------------------------------------------------------ real servers


def real_server_main() -> int:
    """Listener process (runs inside the real servers' namespace).

    Commands are JSON lines on stdin, each answered by one JSON line:
    {"op": "open"|"close", "endpoints": [[address, port], ...]},
    {"op": "any", "port": P} (one wildcard listener), {"op": "count"},
    {"op": "watch", "on": true|false}.
    Every accepted connection is closed at once and counted.  While
    watching, the SYNs that reach a closed endpoint are stamped with their
    arrival time (the kernel's, on the namespace's link); the "open" that
    revives endpoints returns them ("syns", monotonic seconds by endpoint).
    """
    selector = selectors.DefaultSelector()
    listeners: dict[tuple[str, int], socket.socket] = {}
    accepted = 0
    os.set_blocking(0, False)
    selector.register(0, selectors.EVENT_READ, None)
    pending = b""
    watcher: Optional[socket.socket] = None
    syns: dict[tuple[str, int], list[float]] = {}  # closed endpoints while watching

    def open_listener(address: str, port: int) -> Optional[str]:
        if (address, port) in listeners:
            return None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.listen(4096)
            sock.setblocking(False)
        except OSError as error:
            sock.close()
            return "%s:%d: %s" % (address, port, error)
        selector.register(sock, selectors.EVENT_READ, (address, port))
        listeners[(address, port)] = sock
        return None

    def handle(command: dict[str, Any]) -> dict[str, Any]:
        nonlocal watcher
        op = command.get("op")
        errors: list[str] = []
        arrivals: dict[str, list[float]] = {}
        if op == "open":
            read_syns()
            for address, port in command["endpoints"]:
                times = syns.pop((address, int(port)), None)
                if times is not None:
                    arrivals["%s:%d" % (address, int(port))] = times
                problem = open_listener(address, int(port))
                if problem:
                    errors.append(problem)
        elif op == "watch":
            if command.get("on") and watcher is None:
                try:
                    watcher = syn_watcher(REAL_SERVER_LINK)
                except OSError as error:  # no packet sockets: no reaction figures
                    errors.append("watching the SYNs on %s: %s" % (REAL_SERVER_LINK, error))
                else:
                    selector.register(watcher, selectors.EVENT_READ, "syns")
            elif not command.get("on") and watcher is not None:
                selector.unregister(watcher)
                watcher.close()
                watcher = None
                syns.clear()
        elif op == "any":
            problem = open_listener("0.0.0.0", int(command["port"]))
            if problem:
                errors.append(problem)
        elif op == "close":
            for address, port in command["endpoints"]:
                sock = listeners.pop((address, int(port)), None)
                if sock is not None:
                    selector.unregister(sock)
                    sock.close()
                if watcher is not None:
                    syns[(address, int(port))] = []
        elif op != "count":
            errors.append("unknown op %r" % op)
        return {
            "ok": not errors,
            "errors": errors[:5],
            "t": time.monotonic(),
            "accepted": accepted,
            "handshakes": tcp_handshakes(),
            "listeners": len(listeners),
            "syns": arrivals,
        }

    def read_syns() -> None:
        if watcher is not None:
            for endpoint, when in read_syn_arrivals(watcher):
                times = syns.get(endpoint)
                if times is not None:
                    times.append(when)

    while True:
        for key, _ in selector.select():
            if key.data is None:
                chunk = os.read(0, 65536)
                if not chunk:
                    return 0
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    reply = json.dumps(handle(json.loads(line))).encode() + b"\n"
                    os.write(1, reply)
                continue
            if key.data == "syns":
                read_syns()
                continue
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            for _ in range(64):
                try:
                    conn, _peer = sock.accept()
                except OSError:
                    break
                conn.close()
                accepted += 1


def syn_watcher(link: str) -> socket.socket:
    """A packet socket that sees the IPv4 packets of LINK, each stamped with
    the kernel's time of arrival."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    sock.bind((link, ETH_P_IP))
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setblocking(False)
    return sock


def read_syn_arrivals(sock: socket.socket) -> list[tuple[tuple[str, int], float]]:
    """(destination, monotonic arrival time) of each SYN queued on SOCK
    (`syn_watcher`): the connection attempts and the probes, nothing else."""
    found: list[tuple[tuple[str, int], float]] = []
    offset = time.time() - time.monotonic()  # the stamps are wall-clock time
    while True:
        try:
            data, ancillary, _flags, address = sock.recvmsg(64, socket.CMSG_SPACE(16))
        except (BlockingIOError, InterruptedError):
            return found
        if address[2] == PACKET_OUTGOING or len(data) < 20 or data[9] != socket.IPPROTO_TCP:
            continue
        if struct.unpack_from("!H", data, 6)[0] & 0x1FFF:  # a later fragment: no TCP header
            continue
        start = (data[0] & 0x0F) * 4
        if len(data) < start + 14 or data[start + 13] & (TCP_SYN | TCP_ACK) != TCP_SYN:
            continue
        stamp = next(
            (
                struct.unpack("qq", value[:16])
                for level, kind, value in ancillary
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS
            ),
            None,
        )
        if stamp is None:
            continue
        port = struct.unpack_from("!H", data, start + 2)[0]
        found.append(((socket.inet_ntoa(data[16:20]), port), stamp[0] + stamp[1] / 1e9 - offset))


def tcp_handshakes() -> int:
    """PassiveOpens + AttemptFails of this process's network namespace
    (/proc/net/snmp): every SYN a listener answered, whether the client
    completed the handshake (a connect) or reset it (a SYN probe)."""
    with open("/proc/net/snmp") as handle:
        rows = [line.split() for line in handle if line.startswith("Tcp:")]
    names, values = rows[0], rows[1]
    return int(values[names.index("PassiveOpens")]) + int(values[names.index("AttemptFails")])


class RealServers:
    """The harness's handle on the listener process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", NETNS, sys.executable, __file__, "_realservers"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def call(self, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError("the real server process ended")
        reply: dict[str, Any] = json.loads(line)
        if not reply["ok"]:
            raise BenchError("real servers: %s" % "; ".join(reply["errors"]))
        return reply

    def accepted(self) -> int:
        return int(self.call(op="count")["accepted"])

    def counts(self) -> tuple[int, int]:
        """(connections accepted, handshakes answered) so far."""
        reply = self.call(op="count")
        return int(reply["accepted"]), int(reply["handshakes"])

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def sh(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError("%s: %s" % (" ".join(argv), done.stderr.strip() or done.returncode))
    return done.stdout


def setup_network() -> None:
    sh("modprobe", "-a", "ip_vs", "ip_vs_wlc", "veth")
    sh("ip", "netns", "add", NETNS)
    peer = REAL_SERVER_LINK
    sh("ip", "link", "add", "hbd0", "type", "veth", "peer", "name", peer, "netns", NETNS)
    sh("ip", "addr", "add", "10.0.0.1/30", "dev", "hbd0")
    sh("ip", "link", "set", "hbd0", "up")
    sh("ip", "route", "add", "10.64.0.0/10", "via", "10.0.0.2")
    inside = ["ip", "-n", NETNS]
    sh(*inside, "addr", "add", "10.0.0.2/30", "dev", REAL_SERVER_LINK)
    sh(*inside, "link", "set", REAL_SERVER_LINK, "up")
    sh(*inside, "link", "set", "lo", "up")
    sh(*inside, "route", "add", "local", "10.64.0.0/10", "dev", "lo")
    sh(*inside, "route", "add", "default", "via", "10.0.0.1")
    os.makedirs(WORK, exist_ok=True)
    os.makedirs(os.path.dirname(HAECS_SOCKET), exist_ok=True)


# ------------------------------------------------------------------ kernel


def engine() -> Any:
    from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.engine import IPVS

    return IPVS()


def desired_table(layout: Layout) -> dict[Any, Any]:
    from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
        RealServer,
        Service,
        ServiceKey,
        VirtualService,
    )

    table = {}
    for vip, members in layout.members():
        key = ServiceKey.for_address("tcp", vip, VIP_PORT)
        servers = {}
        for address, port in members:
            server = RealServer(address, port, "masq", 1)
            servers[server.key] = server
        table[key] = VirtualService(Service(key, scheduler="wlc"), servers)
    return table


def load_table(ipvs: Any, layout: Layout) -> None:
    """Put the layout into the kernel (HAECS then adopts it: its normal restart)."""
    from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.plan import plan

    ipvs.apply(plan(ipvs.read(), desired_table(layout), purge_services=True))


def flush() -> None:
    sh("ipvsadm", "-C")


def count_entries(table: dict[Any, Any]) -> int:
    return sum(len(entry.real_servers) for entry in table.values())


def wait_table(ipvs: Any, servers: int, timeout: float, daemon: Daemon) -> float:
    """Wait until the kernel holds `servers` real servers; the wall seconds taken."""
    started = time.monotonic()
    deadline = started + timeout
    found = -1
    while time.monotonic() < deadline:
        daemon.check_alive()
        found = count_entries(ipvs.read())
        if found == servers:
            return time.monotonic() - started
        time.sleep(0.25 if servers < 5000 else 1.0)
    raise BenchError(
        "%s: the kernel holds %d of %d real servers after %.0fs"
        % (daemon.name, found, servers, timeout)
    )


# ----------------------------------------------------------------- daemons


def proc_cpu(pid: int) -> float:
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_memory(pid: int) -> dict[str, int]:
    found = {}
    with open("/proc/%d/status" % pid) as handle:
        for line in handle:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0]) * 1024
    try:
        with open("/proc/%d/smaps_rollup" % pid) as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    found["Pss"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return found


class Daemon:
    """A daemon under test: its processes, and its output lines with arrival times."""

    name = "?"

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.lines: list[tuple[float, str]] = []
        self.eof = False
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.lines.append((time.monotonic(), line))
                self._cond.notify_all()
        with self._cond:
            self.eof = True
            self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self.lines)

    def tail(self, count: int = 15) -> str:
        with self._cond:
            return self._tail_locked(count)

    def _tail_locked(self, count: int = 15) -> str:
        return "\n".join("    " + line[:300] for _, line in self.lines[-count:])

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(
                "%s exited with %s; its last lines:\n%s"
                % (self.name, self.proc.returncode, self.tail())
            )

    def wait_for(
        self, predicate: Callable[[str], bool], after: int = 0, timeout: float = 60.0
    ) -> tuple[float, str, int]:
        """The first line from index `after` on that matches: (time, line, index)."""
        deadline = time.monotonic() + timeout
        index = after
        with self._cond:
            while True:
                while index < len(self.lines):
                    when, line = self.lines[index]
                    index += 1
                    if predicate(line):
                        return when, line, index
                if self.eof:
                    raise BenchError(
                        "%s closed its output (status %s) before the expected line; "
                        "last lines:\n%s" % (self.name, self.proc.poll(), self._tail_locked())
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BenchError(
                        "%s: expected line not seen within %.0fs; last lines:\n%s"
                        % (self.name, timeout, self._tail_locked())
                    )
                self._cond.wait(min(remaining, 1.0))

    def pids(self) -> list[int]:
        return [self.proc.pid]

    def cpu(self) -> float:
        return sum(proc_cpu(pid) for pid in self.pids())

    def memory(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for pid in self.pids():
            for name, value in proc_memory(pid).items():
                total[name] = total.get(name, 0) + value
        return total

    def ready(self, ipvs: Any, layout: Layout) -> float:
        raise NotImplementedError

    def stop(self, fast: bool = False) -> None:
        """SIGTERM (SIGKILL when `fast`), SIGKILL after a grace period."""
        started = time.monotonic()
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL if fast else signal.SIGTERM)
            except ProcessLookupError:
                pass
        grace = 10 if fast else STOP_GRACE_SECONDS
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            STOP_PROBLEMS.append(
                "%s did not exit within %ds of SIGTERM (killed); last lines:\n%s"
                % (self.name, grace, self.tail(8))
            )
            log("  WARNING: " + STOP_PROBLEMS[-1])
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait()
        self._reader.join(10)
        took = time.monotonic() - started
        if took > 5:
            log("  %s took %.1fs to stop" % (self.name, took))


class Haecs(Daemon):
    name = "HAECS"

    def __init__(self, layout: Layout, timing: Timing) -> None:
        self.config = os.path.join(WORK, "haecs.yml")
        write_haecs_config(self.config, layout, timing)
        for stale in (HAECS_SOCKET, os.path.join(WORK, "haecs.state")):
            if os.path.exists(stale):
                os.unlink(stale)
        super().__init__([sys.executable, MONITOR_BIN, self.config])

    def ready(self, ipvs: Any, layout: Layout) -> float:
        started = time.monotonic()
        self.wait_for(lambda line: '"event":"table_adopted"' in line, timeout=300)
        wait_table(ipvs, layout.servers, 120, self)
        return time.monotonic() - started

    def metrics(self) -> dict[str, float]:
        from haecs_monitor.control import client

        reply = client.request("GET", "/metrics", socket_path=HAECS_SOCKET, timeout=120)
        if reply.status != 200:
            raise BenchError("HAECS /metrics answered HTTP %d" % reply.status)
        totals: dict[str, float] = {}
        for line in reply.body.decode("utf-8", "replace").splitlines():
            if not line or line.startswith("#"):
                continue
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            try:
                value = float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                continue
            totals[name] = totals.get(name, 0.0) + value
        return totals


class Keepalived(Daemon):
    name = "keepalived"

    def __init__(self, layout: Layout, timing: Timing) -> None:
        self.config = os.path.join(WORK, "keepalived.conf")
        write_keepalived_config(self.config, layout, timing)
        pid_files = [os.path.join(WORK, "keepalived%s.pid" % part) for part in ("", "-c", "-r")]
        for path in pid_files:
            if os.path.exists(path):
                os.unlink(path)
        argv = [
            "keepalived",
            "--dont-fork",
            "--check",
            "--log-console",
            "-f",
            self.config,
            "-p",
            pid_files[0],
            "-c",
            pid_files[1],
            "-r",
            pid_files[2],
        ]
        stdbuf = shutil.which("stdbuf")
        if stdbuf:  # line-buffered output: each line's arrival time is when it was logged
            argv = [stdbuf, "-oL", "-eL", *argv]
        super().__init__(argv)
        self.child: Optional[int] = None

    def ready(self, ipvs: Any, layout: Layout) -> float:
        started = time.monotonic()
        _, line, _ = self.wait_for(lambda text: "Starting Healthcheck child process" in text)
        match = re.search(r"pid=(\d+)", line)
        if not match:
            raise BenchError("keepalived: no checker pid in %r" % line)
        self.child = int(match.group(1))
        self.wait_for(lambda text: "Startup complete" in text, timeout=300)
        wait_table(ipvs, layout.servers, 300, self)
        return time.monotonic() - started

    def pids(self) -> list[int]:
        return [self.proc.pid] + ([self.child] if self.child else [])


def haecs_config_data(
    layout: Layout, timing: Timing, changed_weight: bool = False
) -> dict[str, Any]:
    """The HAECS configuration; `changed_weight`: the last service's first
    real server at weight 2 instead of 1 (one kernel operation)."""
    services = [
        {
            "protocol": "tcp",
            "address": vip,
            "port": VIP_PORT,
            "scheduler": "wlc",
            "on_failure": "remove",
            "checks": [{"type": "tcp"}],
            "real_servers": [
                {"address": address, "port": port, "forwarding": "masq", "weight": 1}
                for address, port in members
            ],
        }
        for vip, members in layout.members()
    ]
    if changed_weight:
        services[-1]["real_servers"][0]["weight"] = 2
    return {
        "global": {
            "name": "bench",
            "control_socket": HAECS_SOCKET,
            "state_file": "%s/haecs.state" % WORK,
            "log_format": "json",
            "on_exit": "keep",
            "check_defaults": timing.haecs(),
        },
        "services": services,
    }


def write_haecs_config(
    path: str,
    layout: Layout,
    timing: Timing,
    form: str = "yaml",
    changed_weight: bool = False,
    edited: bool = False,
) -> None:
    """YAML as people write it (a real server per line) or JSON as the monitor
    role writes it; `edited`: other bytes, the same services (a comment in
    YAML, another indentation in JSON)."""
    data = haecs_config_data(layout, timing, changed_weight)
    if form == "json":
        text = json.dumps(data, indent=2 if edited else None) + "\n"
    else:
        text = ("# edited: no service changed\n" if edited else "") + haecs_yaml(data)
    with open(path, "w") as handle:
        handle.write(text)


def haecs_yaml(data: dict[str, Any]) -> str:
    lines = ["global:"]
    for key, value in data["global"].items():
        if isinstance(value, dict):
            lines.append("  %s:" % key)
            lines += ["    %s: %s" % item for item in value.items()]
        else:
            lines.append("  %s: %s" % (key, value))
    lines.append("services:")
    for service in data["services"]:
        lines += [
            "  - protocol: %(protocol)s" % service,
            "    address: %(address)s" % service,
            "    port: %(port)d" % service,
            "    scheduler: %(scheduler)s" % service,
            "    on_failure: %(on_failure)s" % service,
            "    checks: [{type: tcp}]",
            "    real_servers:" if service["real_servers"] else "    real_servers: []",
        ]
        lines += [
            "      - {address: %(address)s, port: %(port)d, forwarding: %(forwarding)s, "
            "weight: %(weight)d}" % server
            for server in service["real_servers"]
        ]
    return "\n".join(lines) + "\n"


def write_keepalived_config(path: str, layout: Layout, timing: Timing) -> None:
    settings = timing.keepalived()
    check = (
        "    TCP_CHECK {\n"
        "      connect_timeout %(connect_timeout)g\n"
        "      retry %(retry)d\n"
        "      delay_before_retry %(delay_before_retry)g\n"
        "    }\n" % settings
    )
    parts = ["global_defs {\n  router_id haecs_bench\n}\n"]
    for vip, members in layout.members():
        parts.append(
            "virtual_server %s %d {\n  delay_loop %g\n  lb_algo wlc\n  lb_kind NAT\n"
            "  protocol TCP\n" % (vip, VIP_PORT, settings["delay_loop"])
        )
        for address, port in members:
            parts.append("  real_server %s %d {\n    weight 1\n%s  }\n" % (address, port, check))
        parts.append("}\n")
    with open(path, "w") as handle:
        handle.write("".join(parts))


def start(
    kind: str,
    ipvs: Any,
    layout: Layout,
    timing: Timing,
    spawned: Optional[Callable[[Daemon], None]] = None,
) -> Daemon:
    """Start one daemon on an empty table (HAECS: the table loaded, it adopts);
    `spawned` is called as soon as its process runs."""
    flush()
    daemon: Daemon
    if kind == "haecs":
        load_table(ipvs, layout)
        daemon = Haecs(layout, timing)
    else:
        daemon = Keepalived(layout, timing)
    try:
        if spawned is not None:
            spawned(daemon)
        seconds = daemon.ready(ipvs, layout)
    except BaseException:
        daemon.stop(fast=True)
        raise
    log(
        "  %s up: %d services x %d real servers, ready in %.1fs"
        % (daemon.name, layout.services, layout.per_service, seconds)
    )
    return daemon


def stop(daemon: Daemon, fast: bool = False) -> None:
    daemon.stop(fast=fast)
    flush()


# ------------------------------------------------------------------ phases


@dataclass
class Options:
    timing: Timing
    cpu_servers: int
    cpu_seconds: float
    cpu_rounds: int
    latency_services: int
    latency_per_service: int
    kills: int
    concurrent: int
    rss_sizes: tuple[int, ...]
    rss_interval: float
    rss_check_rate: float
    rss_fallback_servers: int
    reload_services: int
    reload_per_service: int
    reload_interval: float
    reload_fallback_services: int
    strace_reload_limit: float
    seed: int
    phases: tuple[str, ...]


KINDS = ("haecs", "keepalived")


def phase_cpu(opts: Options, ipvs: Any, servers: RealServers) -> dict[str, Any]:
    layout = Layout(max(1, opts.cpu_servers // 10), min(10, opts.cpu_servers), KILL_PORT)
    timing = opts.timing
    rounds: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for round_number in range(opts.cpu_rounds):
        for kind in KINDS:
            daemon = start(kind, ipvs, layout, timing)
            try:
                time.sleep(2 * timing.interval + 1)  # past the first spread-out checks
                before_metrics = daemon.metrics() if isinstance(daemon, Haecs) else {}
                tm0 = time.monotonic()
                accepted0, segments0 = servers.counts()
                cpu0, t0 = daemon.cpu(), time.monotonic()
                time.sleep(opts.cpu_seconds)
                cpu1, t1 = daemon.cpu(), time.monotonic()
                accepted1, segments1 = servers.counts()
                after_metrics = daemon.metrics() if isinstance(daemon, Haecs) else {}
                tm1 = time.monotonic()
                daemon.check_alive()
            finally:
                stop(daemon)
            window = t1 - t0
            cpu = cpu1 - cpu0
            checks = segments1 - segments0
            entry: dict[str, Any] = {
                "round": round_number + 1,
                "window_seconds": round(window, 2),
                "cpu_seconds": round(cpu, 3),
                "checks_answered_by_real_servers": checks,
                "connections_accepted_by_real_servers": accepted1 - accepted0,
                "checks_expected": round(layout.servers * window / timing.interval),
            }
            if isinstance(daemon, Haecs):
                done = after_metrics.get("haecs_checks_total", 0) - before_metrics.get(
                    "haecs_checks_total", 0
                )
                entry["checks_from_metrics_scaled_to_window"] = round(done * window / (tm1 - tm0))
            entry["cpu_seconds_per_10k_checks"] = round(cpu / checks * 10000, 4) if checks else None
            rounds[kind].append(entry)
            log(
                "  (a) round %d %s: %.2f CPU s in %.1fs, %d checks -> %s CPU s / 10k checks"
                % (
                    round_number + 1,
                    daemon.name,
                    cpu,
                    window,
                    checks,
                    entry["cpu_seconds_per_10k_checks"],
                )
            )
    result: dict[str, Any] = {
        "layout": "%d services x %d real servers (%d), interval %gs"
        % (layout.services, layout.per_service, layout.servers, timing.interval),
        "rounds": rounds,
    }
    for kind in KINDS:
        cpu = sum(entry["cpu_seconds"] for entry in rounds[kind])
        checks = sum(entry["checks_answered_by_real_servers"] for entry in rounds[kind])
        result[kind] = round(cpu / checks * 10000, 4) if checks else None
    return result


def percentile(values: Sequence[float], fraction: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rounded(value: Optional[float], digits: int = 1) -> Optional[float]:
    return None if value is None else round(value, digits)


def present(table: dict[Any, Any], service: Any, server: tuple[str, int]) -> bool:
    entry = table.get(service)
    return entry is not None and server in entry.real_servers


def phase_latency(opts: Options, ipvs: Any, servers: RealServers) -> dict[str, Any]:
    from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import ServiceKey

    layout = Layout(opts.latency_services, opts.latency_per_service, KILL_PORT)
    timing = opts.timing
    targets = [
        (ServiceKey.for_address("tcp", vip, VIP_PORT), member)
        for vip, members in layout.members()
        for member in members
    ]
    result: dict[str, Any] = {
        "layout": "%d services x %d real servers, interval %gs, fall %d, %d kills, up to %d at once"
        % (
            layout.services,
            layout.per_service,
            timing.interval,
            timing.fall,
            opts.kills,
            opts.concurrent,
        ),
        "poll": "engine dump of the whole table every %d ms; a detection is stamped when the "
        "dump that no longer holds the server returns" % (POLL_SECONDS * 1000),
    }
    try:
        servers.call(op="watch", on=True)
    except BenchError as error:
        log("  (b) the reactions are not measured: %s" % error)
    try:
        measure_latency(opts, ipvs, servers, layout, targets, result)
    finally:
        servers.call(op="watch", on=False)
    return result


def measure_latency(
    opts: Options,
    ipvs: Any,
    servers: RealServers,
    layout: Layout,
    targets: list[tuple[Any, tuple[str, int]]],
    result: dict[str, Any],
) -> None:
    """(b) for each daemon, into RESULT."""
    timing = opts.timing
    for kind in KINDS:
        rng = random.Random(opts.seed)
        daemon = start(kind, ipvs, layout, timing)
        latencies: list[float] = []
        reactions: list[float] = []
        missed = 0
        polls = 0
        try:
            time.sleep(2 * timing.interval)
            while len(latencies) + missed < opts.kills:
                batch = rng.sample(
                    targets, min(opts.concurrent, opts.kills - len(latencies) - missed)
                )
                now = time.monotonic()
                schedule = sorted(
                    ((now + rng.uniform(0, timing.interval), target) for target in batch),
                    key=lambda item: item[0],
                )
                killed: dict[tuple[Any, tuple[str, int]], float] = {}
                detected: dict[tuple[str, int], tuple[float, float]] = {}  # (kill, seen)
                deadline = now + timing.interval * (timing.fall + 1) + 5.0
                while (schedule or killed) and time.monotonic() < deadline:
                    tick = time.monotonic()
                    while schedule and schedule[0][0] <= tick:
                        _, target = schedule.pop(0)
                        reply = servers.call(op="close", endpoints=[list(target[1])])
                        killed[target] = float(reply["t"])
                    if killed:
                        table = ipvs.read()
                        seen = time.monotonic()
                        polls += 1
                        for target in list(killed):
                            if not present(table, *target):
                                kill = killed.pop(target)
                                latencies.append(seen - kill)
                                detected[target[1]] = (kill, seen)
                    time.sleep(max(0.0, POLL_SECONDS - (time.monotonic() - tick)))
                missed += len(killed) + len(schedule)
                detected_at = time.monotonic()
                reply = servers.call(op="open", endpoints=[list(target[1]) for target in batch])
                reactions.extend(reaction_times(detected, reply["syns"], timing.fall))
                back_by = time.monotonic() + timing.interval * (timing.rise + 1) + 10.0
                while time.monotonic() < back_by:
                    table = ipvs.read()
                    if all(present(table, *target) for target in batch):
                        break
                    time.sleep(0.05)
                else:
                    raise BenchError("%s did not bring revived servers back" % daemon.name)
                log(
                    "    round: %d kills, detection done after %.1fs, revived in %.1fs"
                    % (len(batch), detected_at - now, time.monotonic() - detected_at)
                )
                time.sleep(rng.uniform(0, timing.interval))
                daemon.check_alive()
        finally:
            stop(daemon)
        ms = [value * 1000 for value in latencies]
        reaction_ms = [value * 1000 for value in reactions]
        result[kind] = {
            "kills": len(latencies) + missed,
            "detected": len(latencies),
            "missed": missed,
            "p50_ms": rounded(percentile(ms, 0.5)),
            "p99_ms": rounded(percentile(ms, 0.99)),
            "min_ms": round(min(ms), 1) if ms else None,
            "max_ms": round(max(ms), 1) if ms else None,
            "latencies_ms": [round(value, 1) for value in ms],
            "reactions": len(reaction_ms),
            "reaction_p50_ms": rounded(percentile(reaction_ms, 0.5)),
            "reaction_p99_ms": rounded(percentile(reaction_ms, 0.99)),
            "reactions_ms": [round(value, 1) for value in reaction_ms],
        }
        log(
            "  (b) %s: %d kills, p50 %s ms, p99 %s ms, max %s ms, missed %d; reaction "
            "(deciding probe to table change, %d kills) p50 %s ms, p99 %s ms"
            % (
                daemon.name,
                len(ms) + missed,
                result[kind]["p50_ms"],
                result[kind]["p99_ms"],
                result[kind]["max_ms"],
                missed,
                len(reaction_ms),
                result[kind]["reaction_p50_ms"],
                result[kind]["reaction_p99_ms"],
            )
        )


def reaction_times(
    detected: dict[tuple[str, int], tuple[float, float]],
    syns: dict[str, list[float]],
    fall: int,
) -> list[float]:
    """For each detected kill, the time from the SYN that decided it (the
    fall-th to reach the closed endpoint after the kill) to the dump that
    saw the server gone; a kill with fewer SYNs than that is left out."""
    found = []
    for (address, port), (kill, seen) in detected.items():
        after = sorted(t for t in syns.get("%s:%d" % (address, port), ()) if t >= kill)
        if len(after) >= fall and after[fall - 1] <= seen:
            found.append(seen - after[fall - 1])
    return found


def rss_layout(servers: int) -> Layout:
    """`servers` real servers as services of 10; 0: one service without any."""
    if servers == 0:
        return Layout(1, 0, BULK_PORT)
    return Layout(max(1, servers // 10), min(10, servers), BULK_PORT)


def rss_timing(opts: Options, servers: int) -> Timing:
    interval = max(opts.rss_interval, servers / opts.rss_check_rate)
    return Timing(interval, min(opts.timing.timeout, interval / 2), opts.timing.fall)


def phase_rss(opts: Options, ipvs: Any, servers: RealServers) -> dict[str, Any]:
    result: dict[str, Any] = {
        "how": "VmRSS of the daemon's processes (keepalived: parent + checker child, summed), "
        "sampled every second for 1.5 check intervals (at least 10 s) after every server is "
        "in the table; the largest sample.  Empty: one virtual service without real servers.  "
        "Per real server: (RSS at N - RSS empty) / N",
        "sizes": {},
    }
    sizes = list(opts.rss_sizes)
    index = 0
    while index < len(sizes):
        count = sizes[index]
        index += 1
        entry: dict[str, Any] = {}
        for kind in KINDS:
            entry[kind] = measure_rss(kind, ipvs, servers, count, rss_timing(opts, count))
        entry["layout"] = "%d services x %d real servers, interval %gs" % (
            rss_layout(count).services,
            rss_layout(count).per_service,
            rss_timing(opts, count).interval,
        )
        result["sizes"][str(count)] = entry
        failed = any("error" in entry[kind] for kind in KINDS)
        fallback = opts.rss_fallback_servers
        if failed and count > 0 and 0 < fallback < count and fallback not in sizes:
            log("  (c) %d real servers could not be measured; %d as well" % (count, fallback))
            sizes.append(fallback)
    result["per_real_server_kb"] = rss_slopes(result["sizes"])
    for count, slope in sorted(result["per_real_server_kb"].items(), key=lambda item: int(item[0])):
        log(
            "  (c) per real server at %s: HAECS %s KB, keepalived %s KB, ratio %s"
            % (count, slope["haecs"], slope["keepalived"], slope["ratio"])
        )
    return result


def measure_rss(
    kind: str, ipvs: Any, servers: RealServers, count: int, timing: Timing
) -> dict[str, Any]:
    """One daemon at one size: its RSS, or why it could not run there."""
    watches: list[MemoryWatch] = []
    try:
        daemon = start(
            kind, ipvs, rss_layout(count), timing, lambda d: watches.append(MemoryWatch(d))
        )
    except BenchError as error:
        memory = watches[0].stop() if watches else {}
        flush()
        log("  (c) %s at %d real servers: FAILED: %s" % (kind, count, str(error).splitlines()[0]))
        return {
            "error": str(error),
            "largest_rss_mb_before_it_stopped": memory.get("peak_rss_mb"),
            "host_max_map_count": host_max_map_count(),
        }
    samples: list[dict[str, int]] = []
    try:
        until = time.monotonic() + max(10.0, 1.5 * timing.interval)
        while time.monotonic() < until:
            samples.append(daemon.memory())
            time.sleep(1.0)
        daemon.check_alive()
        accepted = servers.accepted()
    finally:
        stop(daemon)
        watches[0].stop()
    peak = max(samples, key=lambda sample: sample.get("VmRSS", 0))
    found: dict[str, Any] = {
        "rss_mb": round(peak.get("VmRSS", 0) / MB, 1),
        "pss_mb": round(peak["Pss"] / MB, 1) if "Pss" in peak else None,
        "hwm_mb": round(peak.get("VmHWM", 0) / MB, 1),
        "processes": len(daemon.pids()),
        "real_server_connections_so_far": accepted,
    }
    log(
        "  (c) %s at %d real servers: RSS %.1f MB (PSS %s MB, peak HWM %.1f MB)"
        % (daemon.name, count, found["rss_mb"], found["pss_mb"], found["hwm_mb"])
    )
    return found


def rss_slopes(sizes: dict[str, Any]) -> dict[str, dict[str, Optional[float]]]:
    """KB per real server at each measured size: (RSS at N - RSS empty) / N."""
    empty = sizes.get("0", {})
    slopes: dict[str, dict[str, Optional[float]]] = {}
    for count, entry in sizes.items():
        if int(count) == 0:
            continue
        slope: dict[str, Optional[float]] = {}
        for kind in KINDS:
            base, at = empty.get(kind, {}), entry.get(kind, {})
            if "rss_mb" in base and "rss_mb" in at:
                slope[kind] = round((at["rss_mb"] - base["rss_mb"]) * 1024 / int(count), 2)
            else:
                slope[kind] = None
        h, k = slope["haecs"], slope["keepalived"]
        slope["ratio"] = round(h / k, 2) if h is not None and k else None
        slopes[count] = slope
    return slopes


IPVS_WRITE_COMMANDS = {
    1: "new_service",
    2: "set_service",
    3: "del_service",
    5: "new_dest",
    6: "set_dest",
    7: "del_dest",
    16: "zero",
    17: "flush",
}


def count_strace_ipvs(path: str) -> dict[str, int]:
    """IPVS generic-netlink commands in an strace log (`-xx` payloads)."""
    counts: dict[str, int] = {}
    pattern = re.compile(r'nlmsg_type=IPVS[^}]*\}, "\\x([0-9a-f]{2})')
    with open(path, errors="replace") as handle:
        for line in handle:
            for match in pattern.finditer(line):
                command = int(match.group(1), 16)
                name = IPVS_WRITE_COMMANDS.get(command, "read_%d" % command)
                counts[name] = counts.get(name, 0) + 1
    return counts


def mem_available() -> int:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


class MemoryWatch:
    """Samples a daemon's RSS and the kernel's MemAvailable twice a second."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.peak_rss = 0
        self.least_available = mem_available()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                rss = self.daemon.memory().get("VmRSS", 0)
            except OSError:
                return
            self.peak_rss = max(self.peak_rss, rss)
            self.least_available = min(self.least_available, mem_available())

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(5)
        return {
            "peak_rss_mb": round(self.peak_rss / MB, 1),
            "least_mem_available_mb": round(self.least_available / MB, 1),
        }


def oom_lines() -> str:
    done = subprocess.run(["dmesg"], capture_output=True, text=True)
    found = [
        line
        for line in done.stdout.splitlines()
        if re.search(r"out of memory|killed process|oom-kill", line, re.IGNORECASE)
    ]
    return "\n".join(found[-4:])


UML_HOST_OOM = "UML ran out of memory on the host side"


def phase_reload(opts: Options, ipvs: Any, servers: RealServers) -> dict[str, Any]:
    """(d) at the asked size; when UML cannot hold HAECS at that size (each guest
    page is one host mapping, so a guest process of ~250 MB exceeds the host's
    default vm.max_map_count of 65530), again at `--reload-fallback-services`
    for both daemons, labelled as such."""
    try:
        return reload_pair(opts, ipvs, opts.reload_services)
    except BenchError as error:
        if UML_HOST_OOM not in str(error) or not opts.reload_fallback_services:
            raise
        first = str(error)
    flush()
    log(
        "  (d) %d services do not fit in UML; again with %d"
        % (opts.reload_services, opts.reload_fallback_services)
    )
    result = reload_pair(opts, ipvs, opts.reload_fallback_services)
    result["full_size_error"] = first
    result["full_size_not_measured_why"] = (
        "at %d x %d the HAECS process was killed by UML: '%s' (host vm.max_map_count %s; "
        "each guest page is one host mapping)"
        % (opts.reload_services, opts.reload_per_service, UML_HOST_OOM, host_max_map_count())
    )
    return result


def host_max_map_count() -> str:
    return os.environ.get("HAECS_BENCH_HOST_MAX_MAP_COUNT", "unknown")


def reload_pair(opts: Options, ipvs: Any, services: int) -> dict[str, Any]:
    layout = Layout(services, opts.reload_per_service, BULK_PORT)
    timing = Timing(
        opts.reload_interval, min(opts.timing.timeout, opts.reload_interval / 2), opts.timing.fall
    )
    result: dict[str, Any] = {
        "layout": "%d services x %d real servers (%d), interval %gs, same file reloaded"
        % (layout.services, layout.per_service, layout.servers, timing.interval),
        "services": layout.services,
        "per_service": layout.per_service,
    }
    # HAECS: reload done = its "config_reloaded" log line (written after the
    # kernel apply); operations = haecs_kernel_operations_total before/after.
    daemon = start("haecs", ipvs, layout, timing)
    watch = MemoryWatch(daemon)
    try:
        assert isinstance(daemon, Haecs)
        time.sleep(3)
        runs = {}
        for name, form, changed_weight, edited in HAECS_RELOADS:
            write_haecs_config(daemon.config, layout, timing, form, changed_weight, edited)
            runs[name] = haecs_reload(daemon, ipvs)
            log("  (d) HAECS %s: %s" % (name, describe_reload(runs[name])))
    except BenchError as error:
        memory = watch.stop()
        raise BenchError(
            "%s\n  HAECS peak RSS %.0f MB, least MemAvailable %.0f MB; kernel: %s"
            % (
                error,
                memory["peak_rss_mb"],
                memory["least_mem_available_mb"],
                oom_lines() or "no OOM message",
            )
        ) from None
    finally:
        stop(daemon)
    result["haecs"] = {**runs["yaml_same_file"], "reloads": runs, **watch.stop()}

    # keepalived: reload done = the checker's "Reload complete" line (it then
    # re-arms its checkers: "Activating healthchecker" lines, also timed).
    # Operations: a second reload under strace, IPVS netlink commands counted.
    daemon = start("keepalived", ipvs, layout, timing)
    watch = MemoryWatch(daemon)
    entry: dict[str, Any] = {}
    try:
        assert isinstance(daemon, Keepalived)
        time.sleep(3)
        snapshot = ipvs.read()
        mark = daemon.mark()
        sent = time.monotonic()
        os.kill(daemon.proc.pid, signal.SIGHUP)
        when, _, index = daemon.wait_for(lambda text: "Reload complete" in text, mark, 600)
        activated = wait_quiet(daemon, index, "Activating healthchecker", layout.servers)
        entry["reload_seconds"] = round(when - sent, 3)
        entry["checkers_rearmed_seconds"] = (
            round(activated - sent, 3) if activated is not None else None
        )
        time.sleep(1)
        entry["table_unchanged"] = ipvs.read() == snapshot
        if entry["reload_seconds"] <= opts.strace_reload_limit:
            entry.update(strace_reload(daemon))
        else:
            entry["kernel_operations"] = None
            entry["kernel_operations_why"] = (
                "the reload took %.0f s, over --strace-reload-limit %g s: the second reload "
                "(under strace) that counts keepalived's netlink commands was skipped to bound "
                "the runtime; the table before and after the timed reload was %s"
                % (
                    entry["reload_seconds"],
                    opts.strace_reload_limit,
                    "identical" if entry["table_unchanged"] else "DIFFERENT",
                )
            )
        daemon.check_alive()
    finally:
        entry.update(watch.stop())
        stop(daemon, fast=True)
    result["keepalived"] = entry
    log(
        "  (d) keepalived: reload %s s (checkers re-armed at %s s), %s kernel operations, "
        "table unchanged: %s"
        % (
            entry.get("reload_seconds"),
            entry.get("checkers_rearmed_seconds"),
            entry.get("kernel_operations"),
            entry.get("table_unchanged"),
        )
    )
    return result


# (name, format, one weight changed, file edited without changing a service),
# in the order run against one HAECS process.  The first is the figure of
# record (the same file reloaded, as for keepalived); "edited" reloads change
# the file's bytes but no service, so every section's digest is compared;
# "json_changed" switches the format (every section is read again).
HAECS_RELOADS = (
    ("yaml_same_file", "yaml", False, False),
    ("yaml_edited_nothing_changed", "yaml", False, True),
    ("yaml_one_weight", "yaml", True, False),
    ("json_changed", "json", False, False),
    ("json_same_file", "json", False, False),
    ("json_edited_nothing_changed", "json", False, True),
    ("json_one_weight", "json", True, False),
)


def haecs_reload(daemon: Haecs, ipvs: Any) -> dict[str, Any]:
    """SIGHUP HAECS once: seconds to its log line, what the line says (with
    the kernel operations the reload made) and the table entries that differ
    1 s after it (the bench's own reads: any later operation shows there).

    No /metrics here: at 2,000 x 15 its answer (several MB, per check) is
    what pushes the monitor over UML's limit (see phase_reload)."""
    snapshot = ipvs.read()
    mark = daemon.mark()
    sent = time.monotonic()
    os.kill(daemon.proc.pid, signal.SIGHUP)
    when, line, _ = daemon.wait_for(
        lambda text: any(
            '"event":"%s"' % event in text
            for event in ("config_reloaded", "config_rejected", "reload_failed")
        ),
        after=mark,
        timeout=300,
    )
    event = json.loads(line)
    time.sleep(1)
    table = ipvs.read()
    daemon.check_alive()
    counted = re.search(r"(\d+) kernel operations", event.get("reason") or "")
    return {
        "reload_seconds": round(when - sent, 3) if event["event"] == "config_reloaded" else None,
        "event": event["event"],
        "summary": event.get("reason"),
        "load_seconds": event.get("load_seconds"),
        "apply_seconds": event.get("apply_seconds"),
        "loop_lag_seconds": event.get("loop_lag_seconds"),
        "kernel_operations": int(counted.group(1)) if counted else None,
        "operations_counted_by": "the monitor's config_reloaded line (its reload's apply); "
        "table_entries_changed: the table read by the bench before and 1 s after",
        "table_entries_changed": changed_entries(snapshot, table),
        "table_unchanged": table == snapshot,
    }


def changed_entries(before: dict[Any, Any], after: dict[Any, Any]) -> int:
    """Services and real servers added, removed or changed between two reads."""
    changed = 0
    for key in set(before) | set(after):
        old, new = before.get(key), after.get(key)
        if old is None or new is None:
            changed += 1 + len((old or new).real_servers)
            continue
        changed += old.service != new.service
        for server in set(old.real_servers) | set(new.real_servers):
            changed += old.real_servers.get(server) != new.real_servers.get(server)
    return changed


def describe_reload(run: dict[str, Any]) -> str:
    return (
        "reload %s s (load %s s, apply %s s), loop lag %s s, %s kernel operations, "
        "%d table entries changed (%s)"
        % (
            run["reload_seconds"],
            run["load_seconds"],
            run["apply_seconds"],
            run["loop_lag_seconds"],
            run["kernel_operations"],
            run["table_entries_changed"],
            run["summary"],
        )
    )


def wait_quiet(daemon: Daemon, after: int, text: str, expected: int) -> Optional[float]:
    """Arrival time of the `expected`-th line holding `text` from `after` on."""
    seen = 0
    index = after
    deadline = time.monotonic() + 600
    while seen < expected and time.monotonic() < deadline:
        try:
            when, _, index = daemon.wait_for(lambda line: text in line, index, 60)
        except BenchError:
            return None
        seen += 1
        if seen == expected:
            return when
    return None


def strace_reload(daemon: Keepalived) -> dict[str, Any]:
    strace = shutil.which("strace")
    if strace is None:
        return {
            "kernel_operations": None,
            "kernel_operations_why": "strace is not installed in this system",
        }
    output = os.path.join(WORK, "keepalived-reload.strace")
    argv = [strace, "-f", "-qq", "-xx", "-s", "512", "-e", "trace=sendmsg,sendto", "-o", output]
    for pid in daemon.pids():
        argv += ["-p", str(pid)]
    tracer = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(2)  # attached
    mark = daemon.mark()
    sent = time.monotonic()
    os.kill(daemon.proc.pid, signal.SIGHUP)
    found: dict[str, Any] = {}
    try:
        when, _, _ = daemon.wait_for(lambda text: "Reload complete" in text, mark, 600)
        found["reload_seconds_under_strace"] = round(when - sent, 3)
        time.sleep(3)
    finally:
        tracer.send_signal(signal.SIGINT)
        try:
            tracer.wait(30)
        except subprocess.TimeoutExpired:
            tracer.kill()
            tracer.wait()
    commands = count_strace_ipvs(output)
    writes = sum(count for name, count in commands.items() if not name.startswith("read_"))
    found.update(
        kernel_operations=writes,
        netlink_commands=commands,
        operations_counted_by="a second SIGHUP with strace attached to keepalived's processes: "
        "IPVS generic-netlink commands that change the table (new/set/del service or dest, "
        "zero, flush) sent from the SIGHUP to 3 s after 'Reload complete'",
    )
    return found


# ----------------------------------------------------------------- results


@dataclass
class Figure:
    key: str
    label: str
    unit: str
    haecs: Optional[float]
    keepalived: Optional[float]
    goal: str
    met: Optional[bool]
    why: str = ""
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        ratio = None
        if self.haecs is not None and self.keepalived:
            ratio = round(self.haecs / self.keepalived, 3)
        return {
            "label": self.label,
            "unit": self.unit,
            "haecs": self.haecs,
            "keepalived": self.keepalived,
            "ratio": ratio,
            "goal": self.goal,
            "met": self.met,
            "not_measured_why": self.why or None,
            "notes": self.notes,
        }


def failure_summary(error: str) -> str:
    """The first line of a daemon's failure, and UML's word when UML killed it."""
    first = error.splitlines()[0] if error else "failed"
    return first + (" (%s)" % UML_HOST_OOM if UML_HOST_OOM in error else "")


def rss_figures(opts: Options, rss: Optional[dict[str, Any]], why: str) -> list[Figure]:
    """(c): RSS at every size, and memory per real server against keepalived's."""
    out: list[Figure] = []
    sizes = rss["sizes"] if rss else {str(count): {} for count in opts.rss_sizes}
    slopes = rss["per_real_server_kb"] if rss else {}
    for count in sorted(sizes, key=int):
        entry = sizes[count]
        h, k = (entry.get(kind, {}).get("rss_mb") for kind in KINDS)
        label = "(c) RSS, %s real servers" % ("empty: no" if count == "0" else f"{int(count):,}")
        failed = "; ".join(
            "%s: %s (largest RSS sampled before: %s MB; host vm.max_map_count %s)"
            % (
                kind,
                failure_summary(entry[kind]["error"]),
                entry[kind]["largest_rss_mb_before_it_stopped"],
                entry[kind]["host_max_map_count"],
            )
            for kind in KINDS
            if "error" in entry.get(kind, {})
        )
        goal, met = (
            ("< 150 MB", h < 150 if h is not None else None) if count == "5000" else ("", None)
        )
        out.append(
            Figure(
                "rss_mb_%s" % count,
                label,
                "MB",
                h,
                k,
                goal,
                met,
                failed or (why if not rss else ""),
            )
        )
        if count == "0":
            continue
        slope = slopes.get(count, {})
        h, k = slope.get("haecs"), slope.get("keepalived")
        met = None if h is None or not k else h <= 1.5 * k
        out.append(
            Figure(
                "rss_per_real_server_kb_%s" % count,
                "(c) per real server at %s, (RSS - empty) / N" % f"{int(count):,}",
                "KB",
                h,
                k,
                "<= 1.5x keepalived",
                met,
                failed or (why if not rss else ("" if h is not None else "no empty figure")),
            )
        )
    return out


def figures(opts: Options, phases: dict[str, Any], errors: dict[str, str]) -> list[Figure]:
    timing = opts.timing
    out: list[Figure] = []

    def missing(phase: str) -> str:
        if phase in errors:
            return "phase failed: %s" % errors[phase].splitlines()[0]
        return "phase not run (--phases)"

    cpu = phases.get("cpu")
    if cpu:
        h, k = cpu["haecs"], cpu["keepalived"]
        out.append(
            Figure(
                "cpu_per_10k_checks",
                "(a) CPU s per 10,000 checks",
                "s",
                h,
                k,
                "<= 0.5x keepalived",
                None if h is None or k is None else h <= 0.5 * k,
                notes=[
                    "checks counted as handshakes the real servers answered in the "
                    "window (PassiveOpens + AttemptFails of their namespace: the same "
                    "counter for a connect and a SYN probe); cross-checks in details"
                ],
            )
        )
    else:
        out.append(
            Figure(
                "cpu_per_10k_checks",
                "(a) CPU s per 10,000 checks",
                "s",
                None,
                None,
                "<= 0.5x keepalived",
                None,
                missing("cpu"),
            )
        )
    latency = phases.get("latency")
    bound = timing.fall * timing.interval * 1000 + 100
    if latency:
        h, k = latency["haecs"], latency["keepalived"]
        out.append(
            Figure(
                "detection_p50_ms",
                "(b) detection p50",
                "ms",
                h["p50_ms"],
                k["p50_ms"],
                "(reported)",
                None,
            )
        )
        met = None
        if h["p99_ms"] is not None:
            met = (
                h["p99_ms"] <= bound
                and h["missed"] == 0
                and (k["p99_ms"] is None or h["p99_ms"] <= k["p99_ms"])
            )
        out.append(
            Figure(
                "detection_p99_ms",
                "(b) detection p99",
                "ms",
                h["p99_ms"],
                k["p99_ms"],
                "<= %g ms and <= keepalived" % bound,
                met,
            )
        )
        for quantile in ("p50", "p99"):
            out.append(
                Figure(
                    "reaction_%s_ms" % quantile,
                    "(b) reaction %s, deciding probe to change" % quantile,
                    "ms",
                    h.get("reaction_%s_ms" % quantile),
                    k.get("reaction_%s_ms" % quantile),
                    "(reported)",
                    None,
                )
            )
    else:
        for key, label in (
            ("detection_p50_ms", "(b) detection p50"),
            ("detection_p99_ms", "(b) detection p99"),
        ):
            out.append(
                Figure(
                    key,
                    label,
                    "ms",
                    None,
                    None,
                    "<= %g ms and <= keepalived" % bound,
                    None,
                    missing("latency"),
                )
            )
    out.extend(rss_figures(opts, phases.get("rss"), missing("rss")))
    reload = phases.get("reload")
    size = "%d x %d" % (opts.reload_services, opts.reload_per_service)
    if reload and "full_size_not_measured_why" in reload:
        out.append(
            Figure(
                "reload_seconds_full_size",
                "(d) reload %s, SIGHUP to done" % size,
                "s",
                None,
                None,
                "< 1 s",
                None,
                reload["full_size_not_measured_why"],
            )
        )
        size = "%d x %d (smaller: see above)" % (reload["services"], reload["per_service"])
    if reload:
        h, k = reload["haecs"], reload.get("keepalived", {})
        seconds = h["reload_seconds"]
        out.append(
            Figure(
                "reload_seconds",
                "(d) reload %s, SIGHUP to done" % size,
                "s",
                seconds,
                k.get("reload_seconds"),
                "< 1 s",
                None if seconds is None else seconds < 1.0,
                "" if seconds is not None else "HAECS: %s" % h["event"],
            )
        )
        out.append(
            Figure(
                "reload_kernel_operations",
                "(d) kernel ops, no-change reload %s" % size,
                "ops",
                h["kernel_operations"],
                k.get("kernel_operations"),
                "0",
                h["kernel_operations"] == 0,
                notes=["keepalived: not measured: %s" % k["kernel_operations_why"]]
                if k.get("kernel_operations_why")
                else [],
            )
        )
        out += haecs_reload_figures(h.get("reloads", {}), size)
    else:
        out.append(
            Figure(
                "reload_seconds",
                "(d) reload %s, SIGHUP to done" % size,
                "s",
                None,
                None,
                "< 1 s",
                None,
                missing("reload"),
            )
        )
        out.append(
            Figure(
                "reload_kernel_operations",
                "(d) kernel ops, no-change reload",
                "ops",
                None,
                None,
                "0",
                None,
                missing("reload"),
            )
        )
    return out


def haecs_reload_figures(runs: dict[str, Any], size: str) -> list[Figure]:
    """HAECS only: each reload of HAECS_RELOADS but the first (which is
    `reload_seconds`), its kernel operations, and the loop lag."""
    out: list[Figure] = []
    for name, run in runs.items():
        weight = name.endswith("one_weight")
        if name != "yaml_same_file":
            seconds = run["reload_seconds"]
            out.append(
                Figure(
                    "reload_seconds_%s" % name,
                    "(d) reload %s, %s" % (size, name.replace("_", " ")),
                    "s",
                    seconds,
                    None,
                    "< 1 s",
                    None if seconds is None else seconds < 1.0,
                    "" if seconds is not None else "HAECS: %s" % run["event"],
                    notes=["format switch: every section is read again"]
                    if name == "json_changed"
                    else [],
                )
            )
        if weight or name.endswith("edited_nothing_changed"):
            expected = 1 if weight else 0
            out.append(
                Figure(
                    "reload_kernel_operations_%s" % name,
                    "(d) kernel ops, %s" % name.replace("_", " "),
                    "ops",
                    run["kernel_operations"],
                    None,
                    str(expected),
                    run["kernel_operations"] == expected == run["table_entries_changed"],
                    notes=["%d table entries changed" % run["table_entries_changed"]],
                )
            )
    lags = [run["loop_lag_seconds"] for run in runs.values() if run["loop_lag_seconds"] is not None]
    if lags:
        out.append(
            Figure(
                "reload_loop_lag_seconds",
                "(d) worst event-loop lag during a reload %s" % size,
                "s",
                max(lags),
                None,
                "< 0.25 s (checks are not held up)",
                max(lags) < 0.25,
                notes=["%s: %s s" % (name, run["loop_lag_seconds"]) for name, run in runs.items()],
            )
        )
    return out


def show(value: Optional[float]) -> str:
    if value is None:
        return "not measured"
    if isinstance(value, int) or float(value).is_integer():
        return "%d" % value
    return "%.3g" % value if abs(value) < 10 else "%.1f" % value


def render(result: dict[str, Any]) -> str:
    rows = [["figure", "HAECS", "keepalived", "ratio", "goal", "result"]]
    for item in result["figures"].values():
        ratio = "%.2fx" % item["ratio"] if item["ratio"] is not None else "-"
        verdict = {True: "met", False: "NOT MET", None: "-"}[item["met"]]
        if item["haecs"] is None:
            verdict = "not measured"
        rows.append(
            [
                "%s (%s)" % (item["label"], item["unit"]),
                show(item["haecs"]),
                show(item["keepalived"]),
                ratio,
                item["goal"],
                verdict,
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    for item in result["figures"].values():
        if item["not_measured_why"]:
            lines.append("%s: not measured: %s" % (item["label"], item["not_measured_why"]))
        for note in item["notes"]:
            lines.append("%s: %s" % (item["label"], note))
    for problem in result.get("stop_problems", []):
        lines.append("note: %s" % problem.splitlines()[0])
    env = result.get("environment", {})
    if env:
        lines.append(
            "kernel: %s, %s CPU(s) inside; host load average before %s, after %s"
            % (
                env.get("guest"),
                env.get("guest_cpus"),
                env.get("host_loadavg_before"),
                env.get("host_loadavg_after"),
            )
        )
    return "\n".join(lines)


# ------------------------------------------------------------------- main


def inside(opts: Options) -> dict[str, Any]:
    """Everything that runs inside the kernel; the result document."""
    setup_network()
    ipvs = engine()
    servers = RealServers()
    errors: dict[str, str] = {}
    phases: dict[str, Any] = {}
    try:
        per_address = max(
            opts.cpu_servers if "cpu" in opts.phases else 0,
            opts.latency_services * opts.latency_per_service if "latency" in opts.phases else 0,
        )
        servers.call(op="open", endpoints=[[rs_address(i), KILL_PORT] for i in range(per_address)])
        servers.call(op="any", port=BULK_PORT)
        runners = {
            "cpu": phase_cpu,
            "latency": phase_latency,
            "rss": phase_rss,
            "reload": phase_reload,
        }
        for name in opts.phases:
            log("phase %s" % name)
            try:
                phases[name] = runners[name](opts, ipvs, servers)
            except BenchError as error:
                errors[name] = str(error)
                log("phase %s FAILED: %s" % (name, error))
                flush()
    finally:
        servers.stop()
        ipvs.close()
    version = subprocess.run(["keepalived", "--version"], capture_output=True, text=True)
    return {
        "settings": settings_dict(opts),
        "environment": {
            "guest": os.environ.get("HAECS_KERNEL_GUEST", "host"),
            "guest_cpus": os.cpu_count(),
            "guest_kernel": os.uname().release,
            "guest_loadavg_end": os.getloadavg(),
            "keepalived": (version.stdout + version.stderr).splitlines()[0:1],
            "python": sys.version.split()[0],
        },
        "mapping": mapping(opts.timing),
        "phases": phases,
        "errors": errors,
        "stop_problems": STOP_PROBLEMS,
        "figures": {f.key: f.as_dict() for f in figures(opts, phases, errors)},
    }


def settings_dict(opts: Options) -> dict[str, Any]:
    data = dict(opts.__dict__)
    data["timing"] = dict(opts.timing.__dict__)
    data["phases"] = list(opts.phases)
    return data


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", metavar="FILE", help="also write the result document here")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and short windows (a smoke run, figures not comparable)",
    )
    parser.add_argument("--phases", default="cpu,latency,rss,reload")
    parser.add_argument("--interval", type=float, default=1.0, help="check interval of (a), (b)")
    parser.add_argument("--timeout", type=float, default=0.5, help="check timeout")
    parser.add_argument("--fall", type=int, default=3)
    parser.add_argument("--cpu-servers", type=int, default=1000)
    parser.add_argument("--cpu-seconds", type=float, default=20.0)
    parser.add_argument("--cpu-rounds", type=int, default=2)
    parser.add_argument("--latency-services", type=int, default=10)
    parser.add_argument("--latency-per-service", type=int, default=5)
    # 100 kills in 10 rounds: the p99 is not the largest of them alone, and
    # the phase takes as long as 50 in rounds of 5 did
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--concurrent", type=int, default=10, help="kills in flight at once")
    parser.add_argument(
        "--rss-sizes",
        default="0,5000,30000",
        help="(c) real server counts, comma-separated (0: one service without real servers)",
    )
    parser.add_argument("--rss-interval", type=float, default=5.0)
    parser.add_argument(
        "--rss-check-rate",
        type=float,
        default=1000.0,
        help="(c) at most this many checks a second: the interval grows with the size",
    )
    parser.add_argument(
        "--rss-fallback-servers",
        type=int,
        default=20000,
        help="(c) size also measured when a daemon cannot run at a larger one (0: none)",
    )
    parser.add_argument("--reload-services", type=int, default=2000)
    parser.add_argument("--reload-per-service", type=int, default=15)
    parser.add_argument("--reload-interval", type=float, default=60.0)
    parser.add_argument(
        "--reload-fallback-services",
        type=int,
        default=500,
        help="(d) size when UML cannot hold HAECS at --reload-services (0: no retry)",
    )
    parser.add_argument(
        "--strace-reload-limit",
        type=float,
        default=60.0,
        help="(d) count keepalived's kernel operations (a second reload under strace) only "
        "when its timed reload took at most this many seconds",
    )
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--mem", default="2G", help="guest memory (tests/kernel/run --mem)")
    parser.add_argument("--kernel-timeout", type=int, default=1500)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in (
            ("cpu_servers", 100),
            ("cpu_seconds", 5.0),
            ("cpu_rounds", 1),
            ("kills", 6),
            ("rss_sizes", "0,200,500"),
            ("rss_interval", 2.0),
            ("reload_services", 100),
            ("reload_per_service", 5),
            ("reload_interval", 10.0),
        ):
            setattr(args, name, value)
    phases = tuple(name.strip() for name in args.phases.split(",") if name.strip())
    unknown = set(phases) - {"cpu", "latency", "rss", "reload"}
    if unknown:
        parser.error("unknown phase(s): %s" % ", ".join(sorted(unknown)))
    if not args.timeout < args.interval:
        parser.error("--timeout must be less than --interval (the monitor requires it)")
    args.phases = phases
    try:
        args.rss_sizes = tuple(int(part) for part in args.rss_sizes.split(",") if part.strip())
    except ValueError:
        parser.error("--rss-sizes: comma-separated real server counts")
    if any(count < 0 for count in args.rss_sizes):
        parser.error("--rss-sizes: counts must be 0 or more")
    return args


def options(args: argparse.Namespace) -> Options:
    return Options(
        timing=Timing(args.interval, args.timeout, args.fall),
        cpu_servers=args.cpu_servers,
        cpu_seconds=args.cpu_seconds,
        cpu_rounds=args.cpu_rounds,
        latency_services=args.latency_services,
        latency_per_service=args.latency_per_service,
        kills=args.kills,
        concurrent=args.concurrent,
        rss_sizes=args.rss_sizes,
        rss_interval=args.rss_interval,
        rss_check_rate=args.rss_check_rate,
        rss_fallback_servers=args.rss_fallback_servers,
        reload_services=args.reload_services,
        reload_per_service=args.reload_per_service,
        reload_interval=args.reload_interval,
        reload_fallback_services=args.reload_fallback_services,
        strace_reload_limit=args.strace_reload_limit,
        seed=args.seed,
        phases=args.phases,
    )


def forwarded(argv: Iterable[str]) -> list[str]:
    """Our command line minus what only the host side uses."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--json", "--mem", "--kernel-timeout"):
            skip = True
            continue
        if arg.startswith(("--json=", "--mem=", "--kernel-timeout=")):
            continue
        out.append(arg)
    return out


def host(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Boot the kernel, run ourselves inside, print the table, write --json."""
    load_before = [round(value, 2) for value in os.getloadavg()]
    try:
        with open("/proc/sys/vm/max_map_count") as handle:
            max_maps = handle.read().strip()
    except OSError:
        max_maps = "unknown"
    os.environ["HAECS_BENCH_HOST_MAX_MAP_COUNT"] = max_maps
    if "reload" in args.phases and max_maps.isdigit() and int(max_maps) < 262144:
        log(
            "note: host vm.max_map_count is %s; a UML guest process needs one host mapping per "
            "page, so a monitor much above ~250 MB (as at 2,000 x 15) is killed by UML; "
            "(d) then falls back to --reload-fallback-services" % max_maps
        )
    command = [
        KERNEL_RUN,
        "--mem",
        args.mem,
        "--timeout",
        str(args.kernel_timeout),
        "--",
        sys.executable,
        os.path.abspath(__file__),
        "--inside",
        *forwarded(argv),
    ]
    log("booting: %s (host load average %s)" % (" ".join(command), load_before))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    result: Optional[dict[str, Any]] = None
    for line in process.stdout:
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK) :])
        else:
            sys.stdout.write(line)
    status = process.wait()
    if result is None:
        print(
            "monitor_bench: no result from the kernel (tests/kernel/run exit %d)" % status,
            file=sys.stderr,
        )
        return 1
    result["environment"]["host_loadavg_before"] = load_before
    result["environment"]["host_loadavg_after"] = [round(value, 2) for value in os.getloadavg()]
    result["environment"]["host_cpus"] = os.cpu_count()
    print(render(result))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
            handle.write("\n")
        print("result document: %s" % args.json)
    return 0 if not result["errors"] else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_realservers"]:
        return real_server_main()
    args = parse_args(argv)
    if not args.inside:
        return host(args, argv)
    result = inside(options(args))
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
