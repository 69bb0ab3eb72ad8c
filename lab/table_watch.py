"""Sample both directors' IPVS tables through a failover (lab/failover.yml
starts it, lab/failover-return.yml stops it and checks what it saw).

    python3 table_watch.py STOP_FILE OUT_FILE [INTERVAL]

Every INTERVAL seconds (default 2) until STOP_FILE exists: `ipvsadm -Sn`
in each director's namespace (the independent tool, not the collection's
engine), entered with setns(2) rather than `ip netns exec`: each process is
slow in the test kernel, and the sampling shares its one CPU with the run
under test. (A server taken out and put back between two samples shows in
the monitor's events, which lab/failover-return.yml checks too.)

Writes one JSON object to OUT_FILE: per director, each distinct table seen
with its first and last sample time (seconds since the start) and how many
samples showed it; the number of samples, and of reads that failed. Nothing
here decides what is right: the play compares.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import time

DIRECTORS = ("dir1", "dir2")
CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)


def enter(director: str) -> None:
    """Move this process into the director's namespace (ipvsadm inherits it)."""
    fd = os.open("/run/netns/lab-" + director, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns lab-" + director)
    finally:
        os.close(fd)


def table(director: str) -> str | None:
    try:
        enter(director)
        done = subprocess.run(["ipvsadm", "-Sn"], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return "\n".join(sorted(done.stdout.splitlines())) if done.returncode == 0 else None


def main(stop_file: str, out_file: str, interval: float) -> None:
    started = time.monotonic()
    seen: dict[str, dict[str, dict[str, float]]] = {d: {} for d in DIRECTORS}
    failed = {d: 0 for d in DIRECTORS}
    samples = 0
    while not os.path.exists(stop_file):
        samples += 1
        for director in DIRECTORS:
            now = round(time.monotonic() - started, 2)
            text = table(director)
            if text is None:
                failed[director] += 1
                continue
            entry = seen[director].setdefault(text, {"first": now, "last": now, "samples": 0})
            entry["last"] = now
            entry["samples"] += 1
        time.sleep(interval)
    result = {
        "interval": interval,
        "seconds": round(time.monotonic() - started, 2),
        "samples": samples,
        "failed_reads": failed,
        "tables": {
            director: [dict(entry, table=text.splitlines()) for text, entry in tables.items()]
            for director, tables in seen.items()
        },
    }
    with open(out_file + ".part", "w") as handle:
        json.dump(result, handle)
    os.rename(out_file + ".part", out_file)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 2.0)
