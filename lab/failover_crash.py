"""Crash the VRRP master of the lab's director pair and time the takeover
(lab/failover.yml, in the kernel's own namespace).

    python3 failover_crash.py OUT_FILE

The master is the director whose namespace holds 192.0.2.10. Before the
crash: wait until the backup's connection table holds the client's
long-lived connection (the sync daemon carried it). The crash, as a real
one: keepalived's whole process group and the monitor killed with SIGKILL,
the links down; then what a reboot leaves (no VIP). Measured from the
crash: when the other director holds every VIP, and when its sync daemon
is the master. Writes one JSON object to OUT_FILE and prints it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

DIRECTORS = {"dir1": "lab1", "dir2": "lab2"}  # namespace suffix -> monitor name
VIPS = ("192.0.2.10", "192.0.2.11", "192.0.2.12", "10.10.0.1")
CLIENT = re.compile(r"ESTABLISHED +192\.0\.2\.100:\d+ +192\.0\.2\.10:80 ")


def inside(director: str, *argv: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", "lab-" + director, *argv],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def addresses(director: str) -> set[str]:
    out = subprocess.run(
        ["ip", "-n", "lab-" + director, "-j", "-4", "addr", "show"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {info["local"] for link in json.loads(out) for info in link.get("addr_info", [])}


def daemons(director: str) -> str:
    return " ".join(
        sorted(
            line.split()[0] for line in inside(director, "ipvsadm", "-L", "--daemon").splitlines()
        )
    )


def wait(predicate, timeout: float, step: float = 0.05) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise SystemExit("failover: timed out after %.0f s" % timeout)
        time.sleep(step)
    return time.monotonic() - start


def monitor_pid(name: str) -> int:
    wanted = "monitor-%s.yml" % name
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                if wanted in handle.read().decode(errors="replace"):
                    return int(pid)
        except OSError:
            continue
    raise SystemExit("failover: no monitor %s running" % name)


def last_event(name: str) -> int:
    """The sequence number of the monitor's newest event (0 if none)."""
    out = subprocess.run(
        ["haecsctl", "--name", name, "--json", "events", "--limit", "1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    events = json.loads(out)["events"]
    return int(events[-1]["seq"]) if events else 0


def main(out_file: str) -> None:
    masters = [d for d in DIRECTORS if "192.0.2.10" in addresses(d)]
    if len(masters) != 1:
        raise SystemExit("failover: expected one master, found %s" % masters)
    master = masters[0]
    backup = next(d for d in DIRECTORS if d != master)
    table_before = sorted(inside(master, "ipvsadm", "-Sn").splitlines())
    synced = wait(lambda: CLIENT.search(inside(backup, "ipvsadm", "-Lnc")) is not None, 30, 0.5)
    with open("/run/haecs/lab-%s.pid" % master) as handle:
        keepalived = int(handle.read())
    monitor = monitor_pid(DIRECTORS[master])
    # lab/failover-return.yml reads the backup's monitor events after this
    # one: no real server may go down there (a false failure on the new
    # master would reset the connections it carries).
    backup_events_since = last_event(DIRECTORS[backup])
    crashed = time.monotonic()
    os.killpg(keepalived, signal.SIGKILL)
    os.kill(monitor, signal.SIGKILL)
    subprocess.run(
        ["ip", "-n", "lab-" + master, "-b", "-"],
        input="link set front down\nlink set back down\n",
        text=True,
        check=True,
    )
    wait(lambda: set(VIPS) <= addresses(backup), 30)
    takeover = time.monotonic() - crashed
    wait(lambda: daemons(backup) == "master", 30)
    sync_master = time.monotonic() - crashed
    for vip in VIPS:  # what a reboot leaves: keepalived's VIPs are gone
        for device in ("front", "back"):
            subprocess.run(
                ["ip", "-n", "lab-" + master, "addr", "del", vip + "/32", "dev", device],
                capture_output=True,
                check=False,  # each VIP is on one of the two devices
            )
    subprocess.run(
        ["ip", "-n", "lab-" + master, "addr", "del", "10.10.0.1/24", "dev", "back"],
        capture_output=True,
        check=False,
    )
    time.sleep(3)  # the clients carry on through the new master
    table_after = sorted(inside(backup, "ipvsadm", "-Sn").splitlines())
    result = {
        "crashed": master,
        "new_master": backup,
        "new_master_monitor": DIRECTORS[backup],
        "new_master_events_since": backup_events_since,
        "synced_before_crash_seconds": round(synced, 2),
        "takeover_seconds": round(takeover, 2),
        "sync_master_seconds": round(sync_master, 2),
        "new_master_daemons": daemons(backup),
        "same_table": table_after == table_before,
        "table_difference": sorted(set(table_after) ^ set(table_before)),
    }
    with open(out_file, "w") as handle:
        json.dump(result, handle)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
