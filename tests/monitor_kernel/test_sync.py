"""haecs-sync in a real kernel: keepalived's notify states switch the IPVS
connection sync daemons (read back with ipvsadm, an independent tool)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SYNC_BIN = os.path.join(os.path.dirname(os.path.dirname(HERE)), "monitor", "bin", "haecs-sync")
NETNS = "haecs-sync-test"


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", NETNS, *argv], capture_output=True, text=True, check=False
    )


def daemons() -> list[str]:
    """ipvsadm's view: one line per running daemon, e.g. 'master sync daemon (mcast=sync0, syncid=51...)'."""
    out = run("ipvsadm", "-L", "--daemon").stdout
    return sorted(
        line.split(" sync daemon")[0] for line in out.splitlines() if "sync daemon" in line
    )


@pytest.fixture
def namespace(tmp_path: object) -> Iterator[None]:
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    for argv in (
        ["ip", "link", "set", "lo", "up"],
        ["ip", "link", "add", "sync0", "type", "dummy"],
        ["ip", "link", "set", "sync0", "multicast", "on", "up"],
        ["ip", "addr", "add", "10.77.0.1/24", "dev", "sync0"],
    ):
        subprocess.run(["ip", "netns", "exec", NETNS, *argv], check=True)
    try:
        yield
    finally:
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True, check=False)


def notify(tmp: str, *event: str) -> subprocess.CompletedProcess[str]:
    return run(
        SYNC_BIN,
        "notify",
        "--interface",
        "sync0",
        "--sync-id",
        "51",
        "--log",
        os.path.join(tmp, "sync.log"),
        "--lock",
        os.path.join(tmp, "sync.lock"),
        *event,
    )


def test_each_vrrp_state_runs_its_daemons(namespace: None, tmp_path: object) -> None:
    tmp = str(tmp_path)
    steps = [
        ("MASTER", ["master"]),
        ("MASTER", ["master"]),  # again: nothing to change
        ("BACKUP", ["backup"]),
        ("FAULT", ["backup"]),
        ("MASTER", ["master"]),
        ("STOP", []),
    ]
    for state, expected in steps:
        done = notify(tmp, "INSTANCE", "haecs", state, "150")
        assert done.returncode == 0, done.stderr
        assert daemons() == expected, (state, run("ipvsadm", "-L", "--daemon").stdout)
    with open(os.path.join(tmp, "sync.log")) as handle:
        log = handle.read().splitlines()
    assert len(log) == len(steps)
    assert "INSTANCE haecs MASTER: sync daemons master on sync0 (sync id 51) (was none)" in log[0]
    assert log[1].endswith(": no change"), log[1]
    assert "--stop-daemon master" in log[2] and "--start-daemon backup" in log[2], log[2]
    assert run(SYNC_BIN, "show").stdout.strip() == "none"


def test_bad_input_changes_nothing(namespace: None, tmp_path: object) -> None:
    tmp = str(tmp_path)
    assert notify(tmp, "INSTANCE", "haecs", "BACKUP", "100").returncode == 0
    for event, message in (
        (
            ("INSTANCE", "haecs", "PRIMARY", "100"),
            "STATE: must be one of MASTER, BACKUP, FAULT, STOP",
        ),
        (("INSTANCE", "haecs"), "expected TYPE NAME STATE [PRIORITY]"),
    ):
        done = notify(tmp, *event)
        assert done.returncode == 2 and message in done.stderr, done.stderr
    done = run(
        SYNC_BIN, "notify", "--interface", "sync0", "--sync-id", "300", "INSTANCE", "h", "MASTER"
    )
    assert done.returncode == 2 and "--sync-id: must be from 0 to 255, got 300" in done.stderr
    # An interface that does not exist: the kernel refuses, the backup daemon stays.
    done = run(
        SYNC_BIN,
        "notify",
        "--interface",
        "nosuch0",
        "--lock",
        os.path.join(tmp, "l"),
        "INSTANCE",
        "h",
        "MASTER",
        "1",
    )
    assert done.returncode == 1 and "sync daemons not changed" in done.stderr, done.stderr
    assert daemons() == ["backup"]
    assert run(SYNC_BIN, "show").stdout.strip() == "backup on sync0 (sync id 51)"
