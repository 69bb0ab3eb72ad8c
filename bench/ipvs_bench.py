"""Benchmark the HAECS engine against ipvsadm in the same kernel, same run.

Run inside a kernel with IPVS (make bench does):
    tests/kernel/run --mem 2G -- .venv/bin/python bench/ipvs_bench.py [--sizes 1000x10,10000x10]

For each size it measures whole processes (interpreter start included for
HAECS, fork+exec for ipvsadm) and prints one table with the ratios:
  create   empty -> table        vs  ipvsadm -R (what ipvsadm-restore runs after a flush)
           (each tool in its own network namespace: its own, fresh IPVS table)
  read     dump the whole table  vs  ipvsadm -Sn
  converge read + plan, no-op    vs  ipvsadm -Sn
  change   10% of weights        vs  ipvsadm -R of the same -e lines
  rss      peak RSS of the converge process
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from ipvs_worker import desired_table  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(HERE), "build", "collections"))
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs_model import table_lines  # noqa: E402

GOALS = {"create": 0.25, "read": 1.0, "converge": 1.0}
RSS_GOAL_MB = 200


def run(argv: List[str], stdin: Optional[str] = None) -> Tuple[float, int, str]:
    """Wall seconds, peak RSS in KiB and stdout of one process."""
    with tempfile.TemporaryFile("w+") as stdin_file:
        stdin_file.write(stdin or "")
        stdin_file.seek(0)
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdin=stdin_file, stdout=subprocess.PIPE, text=True)
        output = process.stdout.read() if process.stdout else ""
        _pid, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("failed: %s" % " ".join(argv))
    return seconds, usage.ru_maxrss, output


# Each tool gets its own network namespace, so its own IPVS table.  After a
# flush the kernel keeps deleted destinations in a trash list that every new
# destination is looked up in (ip_vs_trash_get_dest): whoever creates second
# in a shared table pays for the other's flush.
NAMESPACES = {"reference": "haecs-bench-ipvsadm", "haecs": "haecs-bench-engine"}


def make_namespaces() -> None:
    for namespace in NAMESPACES.values():
        subprocess.run(["ip", "netns", "del", namespace], check=False, stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "netns", "add", namespace], check=True)
        # Without a local table IPVS rejects every real server as not unicast.
        subprocess.run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True)


def remove_namespaces() -> None:
    for namespace in NAMESPACES.values():
        subprocess.run(["ip", "netns", "del", namespace], check=False)


def inside(tool: str, argv: List[str]) -> List[str]:
    return ["ip", "netns", "exec", NAMESPACES[tool], *argv]


def saved_table(tool: str) -> List[str]:
    result = subprocess.run(
        inside(tool, ["ipvsadm", "-Sn"]), check=True, capture_output=True, text=True
    )
    return sorted(result.stdout.splitlines())


def measure(services: int, real_servers: int) -> Dict[str, Dict[str, float]]:
    python = sys.executable
    worker = os.path.join(HERE, "ipvs_worker.py")
    size = [str(services), str(real_servers)]
    lines = table_lines(desired_table(services, real_servers))
    restore = "\n".join(lines) + "\n"
    changed = desired_table(services, real_servers, changed=True)
    edits = (
        "\n".join(
            line.replace("-a ", "-e ", 1)
            for line in table_lines(changed)
            if line.startswith("-a") and " -w 2" in line
        )
        + "\n"
    )
    results: Dict[str, Dict[str, float]] = {}
    make_namespaces()
    try:
        ref, _, _ = run(inside("reference", ["ipvsadm", "-R"]), restore)
        ours, rss_create, _ = run(inside("haecs", [python, worker, "create", *size]))
        if saved_table("haecs") != saved_table("reference"):
            raise SystemExit("HAECS and ipvsadm -R built different tables")
        results["create"] = {"haecs": ours, "reference": ref, "rss": rss_create}

        ref, _, _ = run(inside("reference", ["ipvsadm", "-Sn"]))
        ours, rss_read, _ = run(inside("haecs", [python, worker, "read", *size]))
        results["read"] = {"haecs": ours, "reference": ref, "rss": rss_read}

        ours, rss_converge, _ = run(inside("haecs", [python, worker, "converge", *size]))
        results["converge"] = {"haecs": ours, "reference": ref, "rss": rss_converge}

        ref, _, _ = run(inside("reference", ["ipvsadm", "-R"]), edits)
        ours, rss_change, out = run(inside("haecs", [python, worker, "change", *size]))
        if saved_table("haecs") != saved_table("reference"):
            raise SystemExit("HAECS and ipvsadm -R changed the tables differently")
        results["change"] = {
            "haecs": ours,
            "reference": ref,
            "rss": rss_change,
            "operations": json.loads(out)["operations"],
        }
    finally:
        remove_namespaces()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="1000x10,10000x10", help="SERVICESxREAL_SERVERS, comma separated"
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536))
    report = {}
    print("HAECS engine vs ipvsadm, same kernel, same run (%s)" % os.uname().release, flush=True)
    row = "%-9s %-9s %10s %10s %8s %-8s %-8s %9s"
    header = row % ("entries", "case", "HAECS s", "ipvsadm s", "ratio", "goal", "", "peak RSS")
    print(header)
    print("-" * len(header))
    for spec in args.sizes.split(","):
        services, real_servers = (int(part) for part in spec.split("x"))
        entries = services * (real_servers + 1)
        results = measure(services, real_servers)
        report[spec] = results
        for case, figures in results.items():
            ratio = figures["haecs"] / figures["reference"]
            goal = GOALS.get(case)
            print(
                row
                % (
                    f"{entries:,}" if case == "create" else "",
                    case,
                    "%.3f" % figures["haecs"],
                    "%.3f" % figures["reference"],
                    "%.2fx" % ratio,
                    "<= %.2fx" % goal if goal is not None else "",
                    ("met" if ratio <= goal else "NOT MET") if goal is not None else "",
                    "%.0f MB" % (figures["rss"] / 1024),
                ),
                flush=True,
            )
        peak = max(figures["rss"] for figures in results.values()) / 1024
        if entries >= 100000:
            print(
                "%-9s %-9s peak RSS %.0f MB, goal < %d MB for 110,000 entries: %s"
                % ("", "rss", peak, RSS_GOAL_MB, "met" if peak < RSS_GOAL_MB else "NOT MET")
            )
    if args.json:
        with open(args.json, "w") as output:
            json.dump(report, output, indent=2)


if __name__ == "__main__":
    main()
