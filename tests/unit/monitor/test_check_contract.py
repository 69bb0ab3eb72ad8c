"""One contract for every registered check type: a refused target is down
(not unknown, not an exception), a silent one is down by its own timeout, a
bad address is down with a reason, a cancelled check ends at once and
leaves nothing running.  A new type in checks/registry.py is covered here
without a line added (its cases are chosen by what it speaks)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from checkhelp import free_port, run, spec
from haecs_monitor.checks import CHECKS
from haecs_monitor.checks.registry import CHECK_TYPES
from haecs_monitor.config.model import CheckSpec

TIMEOUT = 0.5
TYPES = sorted(CHECK_TYPES)

# What each type needs to be meaningful; a script check's "target" is its command.
OPTIONS = {
    "http": {"path": "/"},
    "https": {"path": "/", "verify_tls": False},
    "dns": {"query": "example.org.", "qtype": "A", "protocol": "udp"},
}


def make(check_type: str, port: int, address: str = "127.0.0.1", **extra: object) -> CheckSpec:
    options = dict(OPTIONS.get(check_type, {}), **extra)
    return spec(check_type, port, timeout=TIMEOUT, address=address, **options)  # type: ignore[arg-type]


def script_spec(command: tuple[str, ...]) -> CheckSpec:
    return spec("script", 0, timeout=TIMEOUT, command=command, user="root")


@pytest.fixture
def silent_tcp() -> Iterator[int]:
    """Accepts connections (the kernel does) and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


def silent_target(check_type: str, tcp: int, udp: int) -> CheckSpec:
    """What 'says nothing' means for each type (tcp: see test_tcp_silent_in_a_namespace)."""
    if check_type == "script":
        return script_spec(("/bin/sleep", "30"))
    if check_type == "dns":
        return make(check_type, udp)
    return make(check_type, tcp)


# For a connect check, silence is a handshake that never completes: answers
# that never come.  In a network namespace of our own, nftables drops every
# packet from port 81 on the way in, so neither a SYN-ACK nor a RST arrives.
NAMESPACE_PROBE = r"""
import asyncio, json, subprocess, sys, time
for command in (["ip", "link", "set", "lo", "up"], ["nft", "add", "table", "inet", "t"],
                ["nft", "add chain inet t in { type filter hook input priority 0 ; }"],
                ["nft", "add", "rule", "inet", "t", "in", "tcp", "sport", "81", "drop"]):
    subprocess.run(command, check=True)
from checkhelp import spec
from haecs_monitor.checks import CHECKS
check = spec("tcp", 81, timeout=%(timeout)s, address="127.0.0.1")
started = time.monotonic()
result = asyncio.run(CHECKS["tcp"](check, check.address, check.port))
silent = time.monotonic() - started
async def cancel_soon():
    slow = spec("tcp", 81, timeout=30.0, address="127.0.0.1")
    task = asyncio.ensure_future(CHECKS["tcp"](slow, slow.address, slow.port))
    await asyncio.sleep(0.2)
    begun = time.monotonic()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return time.monotonic() - begun
    return -1.0
cancel = asyncio.run(cancel_soon())
print(json.dumps({"up": result.up, "timed_out": result.timed_out, "silent": silent, "cancel": cancel}))
"""


@pytest.fixture
def silent_udp() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def probe(check: CheckSpec) -> tuple[float, object]:
    started = time.monotonic()
    result = run(CHECKS[check.type](check, check.address, check.port))
    return time.monotonic() - started, result


def test_every_type_is_registered_whole() -> None:
    assert set(TYPES) == {"tcp", "http", "https", "smtp", "dns", "script"}
    for name, kind in CHECK_TYPES.items():
        assert kind.name == name and callable(kind.parse) and callable(kind.probe)
        assert len(set(kind.keys)) == len(kind.keys)


@pytest.mark.parametrize("check_type", TYPES)
def test_refused_is_down(check_type: str) -> None:
    check = (
        script_spec(("/bin/false",)) if check_type == "script" else make(check_type, free_port())
    )
    took, result = probe(check)
    assert not result.up and not result.unknown, result  # type: ignore[attr-defined]
    assert result.detail  # type: ignore[attr-defined]
    assert took < TIMEOUT * 4


@pytest.mark.parametrize("check_type", [t for t in TYPES if t != "tcp"])
def test_silent_is_down_by_its_own_timeout(
    check_type: str, silent_tcp: int, silent_udp: int
) -> None:
    check = silent_target(check_type, silent_tcp, silent_udp)
    took, result = probe(check)
    assert not result.up and result.timed_out, result  # type: ignore[attr-defined]
    assert TIMEOUT * 0.9 <= took < TIMEOUT * 4


@pytest.mark.parametrize("check_type", [t for t in TYPES if t != "script"])
def test_a_bad_address_is_down_with_a_reason(check_type: str) -> None:
    # A multicast address: the socket layer refuses to connect to it.
    took, result = probe(make(check_type, 80, address="224.0.0.1"))
    assert not result.up and result.detail, result  # type: ignore[attr-defined]
    assert took < TIMEOUT * 4


@pytest.mark.parametrize("check_type", [t for t in TYPES if t != "tcp"])
def test_cancelling_ends_the_check_at_once(
    check_type: str, silent_tcp: int, silent_udp: int
) -> None:
    check = silent_target(check_type, silent_tcp, silent_udp)
    check = check._replace(timing=check.timing._replace(timeout=30.0, interval=60.0))

    async def cancel_soon() -> float:
        task = asyncio.ensure_future(CHECKS[check.type](check, check.address, check.port))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - started

    assert run(cancel_soon()) < 2.0


def test_tcp_silent_in_a_namespace() -> None:
    """tcp's silent and cancelled cases, with the answers dropped (root: unshare, nft)."""
    if os.geteuid() != 0:
        pytest.skip("a network namespace of its own needs root (make test runs as root)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run(
        ["unshare", "--net", "--", sys.executable, "-c", NAMESPACE_PROBE % {"timeout": TIMEOUT}],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert not seen["up"] and seen["timed_out"], seen
    assert TIMEOUT * 0.9 <= seen["silent"] < TIMEOUT * 4
    assert 0 <= seen["cancel"] < 2.0
