"""Benchmark the HAECS engine against ipvsadm in the same kernel, same run.

Run inside a kernel with IPVS (make bench does):
    tests/kernel/run --mem 2G -- bench/python bench/ipvs_bench.py [--sizes 1000x10,10000x10]

For each size it measures whole processes (interpreter start included for
HAECS, fork+exec for ipvsadm) and prints one table with the ratios:
  create   empty -> table        vs  ipvsadm -R (what ipvsadm-restore runs after a flush)
           (each tool in its own network namespace: its own, fresh IPVS table)
  read     dump the whole table  vs  ipvsadm -Sn
  converge read + plan, no-op    vs  ipvsadm -Sn
  change   10% of weights        vs  ipvsadm -R of the same -e lines
  rss      peak RSS of the converge process
and, through a whole `ansible-playbook` process running haecs.lvs.ipvs_table
with `src:` (an ipvsadm rules file written once on the director), each above
the floor of the same play converging a one-service file (printed beside):
  ansible create    empty -> table   vs  ipvsadm -R
  ansible no-change nothing to do    vs  ipvsadm -Sn
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

from ipvs_worker import desired_table

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import table_lines

HERE = os.path.dirname(os.path.abspath(__file__))

GOALS = {
    "create": 0.25,
    "read": 1.0,
    "converge": 1.0,
    "ansible create": 0.25,
    "ansible no-change": 1.0,
}
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
NAMESPACES = {
    "reference": "haecs-bench-ipvsadm",
    "haecs": "haecs-bench-engine",
    "ansible": "haecs-bench-ansible",
}
ROOT = os.path.dirname(HERE)
PLAYBOOK = """\
- name: Converge the IPVS table to a rules file on the director
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: The table
      haecs.lvs.ipvs_table:
        state: overridden
        src: "{{ rules }}"
"""


def ansible_play(scratch: str, rules_text: str, name: str) -> float:
    """Seconds of one whole ansible-playbook process converging `rules_text`."""
    rules = os.path.join(scratch, name + ".rules")
    with open(rules, "w") as handle:
        handle.write(rules_text)
    playbook = os.path.join(scratch, "play.yml")
    with open(playbook, "w") as handle:
        handle.write(PLAYBOOK)
    argv = [
        os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
        "-i", "localhost,",
        "-e", "rules=%s" % rules,
        "-e", "ansible_python_interpreter=%s" % sys.executable,
        playbook,
    ]  # fmt: skip
    seconds, _rss, _out = run(inside("ansible", argv))
    return seconds


def ansible_environment(scratch: str) -> None:
    for name in ("home", "local", "remote"):
        os.makedirs(os.path.join(scratch, name), exist_ok=True)
    os.environ.update(
        HOME=os.path.join(scratch, "home"),
        ANSIBLE_LOCAL_TEMP=os.path.join(scratch, "local"),
        ANSIBLE_REMOTE_TEMP=os.path.join(scratch, "remote"),
        ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "build", "collections"),
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
    )


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
        # ansible-playbook: the floor (a one-service file), then the table.
        scratch = tempfile.mkdtemp(prefix="haecs-bench-ansible.")
        ansible_environment(scratch)
        floor_text = "-A -t 192.0.2.1:80 -s rr\n-a -t 192.0.2.1:80 -r 10.0.0.1:80 -m -w 1\n"
        # The floor is the fastest of two runs (ansible-playbook's own start
        # dominates it and varies with the machine's load).
        floor = min(ansible_play(scratch, floor_text, "floor") for _ in range(2))
        subprocess.run(inside("ansible", ["ipvsadm", "-C"]), check=True)
        ours = ansible_play(scratch, restore, "table")
        # (the reference table has had the change step: compare with the file)
        theirs, reference = saved_table("ansible"), sorted(lines)
        if theirs != reference:
            raise SystemExit(
                "ansible-playbook did not build the rules file's table: %s"
                % sorted(set(theirs) ^ set(reference))[:6]
            )
        results["ansible create"] = {
            "haecs": ours - floor,
            "reference": results["create"]["reference"],
            "floor": floor,
            "whole": ours,
        }
        ours = min(ansible_play(scratch, restore, "table") for _ in range(2))
        results["ansible no-change"] = {
            "haecs": ours - floor,
            "reference": results["read"]["reference"],
            "floor": floor,
            "whole": ours,
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
    row = "%-9s %-17s %10s %10s %8s %-8s %-8s %9s"
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
                    "%.0f MB" % (figures["rss"] / 1024)
                    if "rss" in figures
                    else "whole %.2f s, floor %.2f s" % (figures["whole"], figures["floor"]),
                ),
                flush=True,
            )
        peak = max(figures.get("rss", 0) for figures in results.values()) / 1024
        if entries >= 100000:
            print(
                "%-9s %-17s peak RSS %.0f MB, goal < %d MB for 110,000 entries: %s"
                % ("", "rss", peak, RSS_GOAL_MB, "met" if peak < RSS_GOAL_MB else "NOT MET")
            )
    if args.json:
        with open(args.json, "w") as output:
            json.dump(report, output, indent=2)


if __name__ == "__main__":
    main()
