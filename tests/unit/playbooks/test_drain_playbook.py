"""playbooks/drain.yml through a real ansible-playbook on this host, against
fake monitors (tests/contract/monitor_api_fake.py) on unix sockets, one per
director (connection local): the order of its steps across directors and
real servers, the hook, and the message when a drain times out.  The lab
runs it against real monitors and connections (lab/run --test).
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import threading
import urllib.parse
from contextlib import ExitStack
from typing import Callable, Dict, Iterator, List, Tuple

import pytest
import yaml
from local_playbook import run_playbook
from monitor_api_fake import FakeMonitor, serving

from ansible_collections.haecs.lvs.plugins.module_utils.monitor_admin import Reply

ROOT = pathlib.Path(__file__).resolve().parents[3]
DIRECTORS = ["dir1", "dir2", "dir3"]
WEB = "tcp:192.0.2.10:80"
WEB6 = "tcp:[2001:db8::10]:80"
# Each real server's ids in the API, as drain.yml derives them from the model.
SERVERS = {
    "rs1": ["10.10.0.11:8080", "[fd00:10::11]:8080"],
    "rs2": ["10.10.0.12:8080", "[fd00:10::12]:8080"],
}
SERVICES = [
    {
        "name": name,
        "protocol": "tcp",
        "address": address,
        "port": 80,
        "forwarding": "masq",
        "real_server_port": 8080,
        "real_servers_group": "web",
        "checks": [{"type": "tcp"}],
    }
    for name, address in (("web", "192.0.2.10"), ("web6", "2001:db8::10"))
]
HOOK = [
    {
        "name": "The maintenance, seen by the monitors' log",
        "ansible.builtin.uri": {
            "url": "http://localhost/hook/{{ inventory_hostname }}",
            "unix_socket": "{{ hook_socket }}",
        },
    }
]

Log = List[Tuple[str, str, str]]


@pytest.fixture
def monitors(tmp_path: pathlib.Path) -> Iterator[Tuple[Dict[str, FakeMonitor], Log]]:
    """One fake monitor per director, each on its socket; one log of (director, method, path)."""
    log: Log = []
    lock = threading.Lock()
    fakes = {
        director: FakeMonitor(
            {server: [WEB if "." in server else WEB6] for ids in SERVERS.values() for server in ids}
        )
        for director in DIRECTORS
    }

    def answer_for(director: str) -> Callable[[str, str], Reply]:
        def answer(method: str, path: str) -> Reply:
            with lock:
                log.append((director, method, urllib.parse.unquote(path)))
                if path.startswith("/hook/"):
                    return Reply(200, {})
                return fakes[director].send(method, path)

        return answer

    with ExitStack() as stack:
        for director in DIRECTORS:
            stack.enter_context(
                serving(str(tmp_path / ("%s.sock" % director)), answer_for(director))
            )
        yield fakes, log


def run_drain(
    tmp_path: pathlib.Path, hash_seed: int, **extra: str
) -> subprocess.CompletedProcess[str]:
    directors = {
        director: {"monitor_settings": {"control_socket": str(tmp_path / ("%s.sock" % director))}}
        for director in DIRECTORS
    }
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "ansible_become": False,
                "haecs_services": SERVICES,
            },
            "children": {
                "lvs_directors": {"hosts": directors},
                "lvs_real_servers": {
                    "children": {
                        "web": {
                            "hosts": {
                                "rs1": {"haecs_real_server_address": ["10.10.0.11", "fd00:10::11"]},
                                "rs2": {"haecs_real_server_address": ["10.10.0.12", "fd00:10::12"]},
                            }
                        }
                    }
                },
            },
        }
    }
    (tmp_path / "hook.yml").write_text(yaml.safe_dump(HOOK, sort_keys=False))
    arguments = ["-e", "hook_socket=%s" % (tmp_path / "dir1.sock"), "-e", "drain_poll_interval=0.1"]
    for name, value in extra.items():
        arguments += ["-e", "%s=%s" % (name, value)]
    return run_playbook(tmp_path, inventory, ROOT / "playbooks" / "drain.yml", arguments, hash_seed)


def posts(log: Log) -> List[Tuple[str, str]]:
    return [
        (director, path)
        for director, method, path in log
        if method == "POST" or path.startswith("/hook/")
    ]


def test_each_server_is_drained_everywhere_maintained_and_enabled_before_the_next(
    tmp_path: pathlib.Path, monitors: Tuple[Dict[str, FakeMonitor], Log]
) -> None:
    fakes, log = monitors
    ran = run_drain(tmp_path, 0, drain_hook_tasks="hook.yml", drain_timeout="20")
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-2000:]
    expected: List[Tuple[str, str]] = []
    for host, ids in SERVERS.items():
        # drain on every director, then the wait on each (which sets it
        # again: the module makes sure of the state it waits for), the
        # hook, the enable and its wait on each.
        for action in ("drain", "drain", "hook", "enable"):
            if action == "hook":
                expected.append(("dir1", "/hook/%s" % host))
                continue
            for director in DIRECTORS:
                expected += [(director, "/servers/*/%s/%s" % (server, action)) for server in ids]
    assert posts(log) == expected
    for fake in fakes.values():
        assert set(fake.admin.values()) == {"enabled"}
        assert all(entry["weight"] == 1 for entry in fake.kernel.values())


@pytest.mark.parametrize("hash_seed", [1, 2])
def test_a_timeout_stops_the_rollout_naming_what_is_left_in_inventory_order(
    tmp_path: pathlib.Path, monitors: Tuple[Dict[str, FakeMonitor], Log], hash_seed: int
) -> None:
    fakes, log = monitors
    # dir2 keeps seeing an established connection to rs1.
    fakes["dir2"].active_for_reads["10.10.0.11:8080"] = 10**6
    ran = run_drain(tmp_path, hash_seed, drain_timeout="1")
    assert ran.returncode != 0
    message = " ".join(ran.stdout.split())
    left = ", ".join(
        "%s %s" % (director, server) for director in DIRECTORS for server in SERVERS["rs1"]
    )
    assert "drain.yml stopped at rs1: " in message, message[-4000:]
    assert "dir2: not drained within wait_timeout" in message, message[-4000:]
    assert "10.10.0.11:8080: 1 active, 0 inactive connections left" in message, message[-4000:]
    assert "Still drained (weight 0, no new connection): %s;" % left in message, message[-4000:]
    assert "haecs_ctl" not in message
    assert (
        "haecsctl --socket %s enable 10.10.0.11:8080 on dir1," % (tmp_path / "dir1.sock") in message
    )
    assert "No later host was touched." in message
    # rs1 stays drained on every director; rs2 was never touched.
    drains = [
        (director, "/servers/*/%s/drain" % server)
        for director in DIRECTORS
        for server in SERVERS["rs1"]
    ]
    assert posts(log) == drains + drains
    for fake in fakes.values():
        assert fake.admin[WEB, "10.10.0.11:8080"] == "drain"
        assert fake.kernel[WEB, "10.10.0.11:8080"]["weight"] == 0
