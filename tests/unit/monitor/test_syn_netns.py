"""SYN probing in a real network stack: two network namespaces and a veth.

    client ns  10.99.0.1 / fd00:99::1  --veth--  10.99.0.2 / fd00:99::2  server ns

The client (the director) runs the tcp check by SYN (HAECS_MONITOR_TCP_CHECK
=syn) behind a stateful nftables input chain that drops everything but
conntrack's established traffic (and neighbour discovery): the SYN-ACK and
RST come in only because conntrack tracked our raw socket's SYN.  The server
listens on OPEN, has nothing on CLOSED, and drops every SYN to DROPPED (a
port it also listens on).  Afterwards its kernel holds no half-open or
other connection: only the listeners.

Needs root (network namespaces, raw sockets, nft); skipped otherwise.  No
IPVS is involved, so it runs natively with the unit tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
CLIENT = "haecs-syn-c-%d" % os.getpid()
SERVER = "haecs-syn-s-%d" % os.getpid()
OPEN, CLOSED, DROPPED = 8080, 8081, 8082
ADDRESSES = {"ipv4": ("10.99.0.1", "10.99.0.2"), "ipv6": ("fd00:99::1", "fd00:99::2")}

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"),
    reason="needs root, ip and nft",
)

LISTENER = """
import socket, sys, time
held = []
for family, address in ((socket.AF_INET, "10.99.0.2"), (socket.AF_INET6, "fd00:99::2")):
    for port in (%d, %d):
        sock = socket.socket(family)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(64)
        held.append(sock)
print("ready", flush=True)
sys.stdin.read()
""" % (OPEN, DROPPED)

PROBES = """
import asyncio, json, sys
from haecs_monitor.checks import tcp
from haecs_monitor.checks.syn import method
from haecs_monitor.config.model import CheckSpec, CheckTiming

def spec(address, port):
    return CheckSpec("tcp", CheckTiming(1.0, 0.4, 2, 3, 0.5, 5.0, 0.0), address, port)

async def main():
    loop = asyncio.get_running_loop()
    out = {"method": method.describe(loop), "results": []}
    for address, port in json.loads(sys.argv[1]):
        started = loop.time()
        result = await tcp.check(spec(address, port), address, port)
        out["results"].append([address, port, result.outcome, result.detail,
                               round(loop.time() - started, 3)])
    print(json.dumps(out))

asyncio.run(main())
"""


def sh(*args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(args), result.stderr.strip()))
    return result.stdout


def in_ns(namespace: str, *args: str) -> str:
    return sh("ip", "netns", "exec", namespace, *args)


@pytest.fixture(scope="module")
def namespaces() -> Iterator[subprocess.Popen[str]]:
    created: list[str] = []
    listener = None
    try:
        for namespace in (CLIENT, SERVER):
            sh("ip", "netns", "add", namespace)
            created.append(namespace)
        sh(
            "ip",
            "link",
            "add",
            "hsync%d" % (os.getpid() % 10**6),
            "type",
            "veth",
            "peer",
            "name",
            "hsyns%d" % (os.getpid() % 10**6),
        )
        for namespace, end, side in ((CLIENT, "hsync", 0), (SERVER, "hsyns", 1)):
            link = "%s%d" % (end, os.getpid() % 10**6)
            sh("ip", "link", "set", link, "netns", namespace)
            in_ns(namespace, "ip", "link", "set", "lo", "up")
            in_ns(namespace, "ip", "link", "set", link, "up")
            in_ns(namespace, "ip", "address", "add", ADDRESSES["ipv4"][side] + "/24", "dev", link)
            in_ns(
                namespace,
                "ip",
                "address",
                "add",
                ADDRESSES["ipv6"][side] + "/64",
                "dev",
                link,
                "nodad",
            )
        subprocess.run(
            ["ip", "netns", "exec", CLIENT, "nft", "-f", "-"],
            input="table inet haecs_test {\n"
            " chain input { type filter hook input priority 0; policy drop;\n"
            "  iif lo accept\n  ct state established,related accept\n"
            "  icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept\n }\n}\n",
            text=True,
            check=True,
        )
        subprocess.run(
            ["ip", "netns", "exec", SERVER, "nft", "-f", "-"],
            input="table inet haecs_test {\n"
            " chain input { type filter hook input priority 0; policy accept;\n"
            "  tcp dport %d drop\n }\n}\n" % DROPPED,
            text=True,
            check=True,
        )
        listener = subprocess.Popen(
            ["ip", "netns", "exec", SERVER, sys.executable, "-c", LISTENER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        yield listener
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        for namespace in created:
            subprocess.run(["ip", "netns", "del", namespace], check=False)


def probe(targets: list[tuple[str, int]]) -> dict:
    env = dict(os.environ)
    env["HAECS_MONITOR_TCP_CHECK"] = "syn"
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.join(REPO, "build", "collections"), os.path.join(REPO, "monitor")]
    )
    out = subprocess.run(
        ["ip", "netns", "exec", CLIENT, sys.executable, "-c", PROBES, json.dumps(targets)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def server_connections() -> list[str]:
    """`ss -tan` in the server namespace, listeners left out."""
    lines = in_ns(SERVER, "ss", "-tanH").splitlines()
    return [line for line in lines if line.split() and line.split()[0] != "LISTEN"]


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_up_refused_and_dropped(namespaces: subprocess.Popen[str], family: str) -> None:
    server = ADDRESSES[family][1]
    done = probe([(server, OPEN), (server, CLOSED), (server, DROPPED)] * 2)
    assert done["method"][family] == "syn"
    outcomes = [(port, outcome, detail) for _a, port, outcome, detail, _s in done["results"]]
    assert (
        outcomes
        == [
            (OPEN, "up", "SYN-ACK: listening"),
            (CLOSED, "down", "refused (RST)"),
            (DROPPED, "down", "timed out after 0.4s"),
        ]
        * 2
    )
    for _address, port, _outcome, _detail, seconds in done["results"]:
        if port == DROPPED:
            assert 0.35 < seconds < 1.0
        else:
            assert seconds < 0.3
    time.sleep(0.2)
    assert server_connections() == []  # no SYN-RECV, nothing established, no TIME-WAIT


def test_no_route_is_down_at_once(namespaces: subprocess.Popen[str]) -> None:
    # no route from the client to 203.0.113.0/24: the source lookup fails
    done = probe([("203.0.113.9", OPEN)])
    (_address, _port, outcome, detail, _seconds) = done["results"][0]
    assert (outcome, detail) == ("down", "route: Network is unreachable")
