"""Real traffic through a service the engine built; edits keep connections.

Topology inside the test kernel (all addresses exist only in these namespaces):
  client ns 10.40.0.2 --- 10.40.0.1 director (root ns) 10.20.0.1 --- rs1 ns 10.20.0.2
                                                        10.21.0.1 --- rs2 ns 10.21.0.2
  VIP 10.30.0.1:80, NAT to port 8080 on the real servers.
"""

from __future__ import annotations

import socket
import subprocess
import time
from typing import Dict, Iterator, List

import pytest

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    RealServer,
    Service,
    ServiceKey,
    VirtualService,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.plan import plan

VIP = ServiceKey.for_address("tcp", "10.30.0.1", 80)
SERVERS = {"rs1": ("10.20.0.1", "10.20.0.2"), "rs2": ("10.21.0.1", "10.21.0.2")}
SERVE = (
    "import http.server,sys\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        body=sys.argv[1].encode(); self.send_response(200)\n"
    "        self.send_header('Content-Length',str(len(body))); self.end_headers(); self.wfile.write(body)\n"
    "    def log_message(self,*a): pass\n"
    "http.server.ThreadingHTTPServer(('0.0.0.0',8080),H).serve_forever()\n"
)
CLIENT = (
    "import socket,sys\n"
    "names=[]\n"
    "for _ in range(int(sys.argv[1])):\n"
    "    s=socket.create_connection(('10.30.0.1',80),timeout=5); s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
    "    data=b''\n"
    "    while True:\n"
    "        chunk=s.recv(4096)\n"
    "        if not chunk: break\n"
    "        data+=chunk\n"
    "    s.close(); names.append(data.split(b'\\r\\n\\r\\n',1)[1].decode())\n"
    "print(' '.join(names))\n"
)
HOLD = (
    "import socket,time\n"
    "s=socket.create_connection(('10.30.0.1',80),timeout=5)\n"
    "print('connected',flush=True)\n"
    "time.sleep(30)\n"
)


def sh(*args: str) -> None:
    subprocess.run(args, check=True)


def link(namespace: str, director_address: str, address: str) -> None:
    sh("ip", "netns", "add", namespace)
    sh(
        "ip",
        "link",
        "add",
        "v-" + namespace,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        namespace,
    )
    sh("ip", "addr", "add", director_address + "/24", "dev", "v-" + namespace)
    sh("ip", "link", "set", "v-" + namespace, "up")
    sh("ip", "-n", namespace, "addr", "add", address + "/24", "dev", "eth0")
    sh("ip", "-n", namespace, "link", "set", "eth0", "up")
    sh("ip", "-n", namespace, "link", "set", "lo", "up")
    sh("ip", "-n", namespace, "route", "add", "default", "via", director_address)


@pytest.fixture
def cluster(ipvs) -> Iterator[List[subprocess.Popen]]:  # type: ignore[no-untyped-def]
    with open("/proc/sys/net/ipv4/ip_forward", "w") as forward:
        forward.write("1")
    processes: List[subprocess.Popen] = []
    try:
        # IPVS takes packets at LOCAL_IN: the VIP must be local on the director.
        sh("ip", "addr", "add", "10.30.0.1/32", "dev", "lo")
        link("client", "10.40.0.1", "10.40.0.2")
        for name, (director, address) in SERVERS.items():
            link(name, director, address)
            processes.append(
                subprocess.Popen(["ip", "netns", "exec", name, "python3", "-c", SERVE, name])
            )
        for _name, (_director, address) in SERVERS.items():
            wait_for_port(address, 8080)
        yield processes
    finally:
        for process in processes:
            process.kill()
            process.wait()
        for name in ["client", *SERVERS]:
            subprocess.run(["ip", "netns", "del", name], check=False)
        subprocess.run(["ip", "addr", "del", "10.30.0.1/32", "dev", "lo"], check=False)


def wait_for_port(address: str, port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection((address, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("nothing listens on %s:%d" % (address, port))


def table(scheduler: str, weights: Dict[str, int]) -> dict:
    servers = {}
    for name, weight in weights.items():
        server = RealServer(SERVERS[name][1], 8080, "masq", weight)
        servers[server.key] = server
    return {VIP: VirtualService(Service(VIP, scheduler=scheduler), servers)}


def client_requests(count: int) -> List[str]:
    result = subprocess.run(
        ["ip", "netns", "exec", "client", "python3", "-c", CLIENT, str(count)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_round_robin_spreads_requests(ipvs, cluster) -> None:  # type: ignore[no-untyped-def]
    ipvs.apply(plan(ipvs.read(), table("rr", {"rs1": 1, "rs2": 1})))
    answers = client_requests(20)
    assert sorted(set(answers)) == ["rs1", "rs2"]
    assert abs(answers.count("rs1") - answers.count("rs2")) <= 1


def counted(ipvs, connections: int) -> VirtualService:  # type: ignore[no-untyped-def]
    """The service once the kernel's counters show `connections` on it and
    some on each real server. The estimator refreshes them every 2 s, not
    necessarily all in the same pass, and later on a busy machine."""
    deadline = time.monotonic() + 20
    while True:
        entry = ipvs.read(with_stats=True)[VIP]
        stats = [entry.service.stats] + [server.stats for server in entry.real_servers.values()]
        if all(stat is not None for stat in stats) and (
            stats[0].connections >= connections and all(stat.connections > 0 for stat in stats[1:])
        ):
            return entry
        assert time.monotonic() < deadline, "the counters never showed the connections: %s" % stats
        time.sleep(0.5)


def test_weight_and_scheduler_edits_keep_connections_and_counters(ipvs, cluster) -> None:  # type: ignore[no-untyped-def]
    ipvs.apply(plan(ipvs.read(), table("rr", {"rs1": 1, "rs2": 1})))
    client_requests(10)
    holder = subprocess.Popen(
        ["ip", "netns", "exec", "client", "python3", "-c", HOLD], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "connected"
        before = counted(ipvs, 11)
        active_before = sum(s.active_connections for s in before.real_servers.values())
        assert active_before == 1
        operations = plan(ipvs.read(), table("wlc", {"rs1": 5, "rs2": 3}))
        assert sorted(op.kind for op in operations) == [
            "set_real_server",
            "set_real_server",
            "set_service",
        ]
        ipvs.apply(operations)
        after = ipvs.read(with_stats=True)[VIP]
        assert after.service.scheduler == "wlc"
        assert sum(s.active_connections for s in after.real_servers.values()) == active_before
        # The counters were already up to date before (counted): a delete and
        # re-add would have reset them to zero.
        for key, server in after.real_servers.items():
            assert server.stats is not None and before.real_servers[key].stats is not None
            assert server.stats.connections >= before.real_servers[key].stats.connections > 0
        assert after.service.stats is not None and after.service.stats.connections >= 11
    finally:
        holder.kill()
        holder.wait()


HOLD_THEN_ASK = (
    "import socket,sys,time\n"
    "s=socket.create_connection(('10.30.0.1',80),timeout=30)\n"
    "print('connected',flush=True)\n"
    "time.sleep(float(sys.argv[1])); s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
    "data=b''\n"
    "while True:\n"
    "    chunk=s.recv(4096)\n"
    "    if not chunk: break\n"
    "    data+=chunk\n"
    "print(data.split(b'\\r\\n\\r\\n',1)[1].decode())\n"
)


def held_connection(ipvs, seconds: float):  # type: ignore[no-untyped-def]
    """A client connection that asks after `seconds`, and the server it went to."""
    holder = subprocess.Popen(
        ["ip", "netns", "exec", "client", "python3", "-c", HOLD_THEN_ASK, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "connected"
    servers = ipvs.read()[VIP].real_servers.values()
    busy = [
        name
        for name, (_d, a) in SERVERS.items()
        for s in servers
        if s.address == a and s.active_connections == 1
    ]
    assert len(busy) == 1, servers
    return holder, busy[0]


@pytest.mark.parametrize("hold", [3.0, 30.0])
def test_a_leaving_server_is_drained_before_it_is_deleted(ipvs, cluster, hold: float) -> None:  # type: ignore[no-untyped-def]
    """ipvs_table's drain_timeout, in the kernel: the leaving server gets weight 0
    (new requests go to the other one), its established connection finishes
    (or the timeout passes), and only then is it deleted."""
    from concurrent.futures import ThreadPoolExecutor

    from ansible_collections.haecs.lvs.plugins.module_utils._ipvs_module import converge

    ipvs.apply(plan(ipvs.read(), table("rr", {"rs1": 1, "rs2": 1})))
    holder, leaving = held_connection(ipvs, hold)
    staying = "rs2" if leaving == "rs1" else "rs1"
    try:
        wanted = table("rr", {staying: 1})
        with ThreadPoolExecutor(1) as pool:
            run = pool.submit(
                converge,
                lambda current: plan(current, wanted, purge_real_servers=True),
                False,
                drain_timeout=4,
            )
            time.sleep(1)
            assert set(client_requests(6)) == {staying}
            result = run.result(timeout=30)
        assert result.operations and [op.kind for op in result.operations] == ["delete_real_server"]
        assert result.drained is not None
        assert result.drained.quiesced == [
            "-e -t 10.30.0.1:80 -r %s:8080 -m -w 0" % SERVERS[leaving][1]
        ]
        left = list(result.drained.left.values())
        if hold < 4:
            # Finished within the timeout: it was answered by the leaving server.
            assert left == [0] and 2.0 <= result.drained.waited < 4
            assert holder.communicate(timeout=10)[0].strip() == leaving
        else:
            assert left == [1] and result.drained.waited >= 4
        assert [s.address for s in ipvs.read()[VIP].real_servers.values()] == [SERVERS[staying][1]]
    finally:
        holder.kill()
        holder.wait()
