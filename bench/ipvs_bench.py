"""Benchmark the HAECS engine against ipvsadm in the same kernel, same run.

Run inside a kernel with IPVS (make bench does):
    tests/kernel/run --mem 3G -- bench/python bench/ipvs_bench.py [--sizes 1000x10] [--rounds 5]

For each size it runs every case in several rounds, the two tools in
alternating order (drift in the machine's load falls on both), each round in
fresh network namespaces, and prints the median over the rounds: the ratio
is the median of each round's own ratio, with its spread (lowest-highest).
It measures whole processes (interpreter start and imports included for
HAECS, fork+exec for ipvsadm) and prints one table with the ratios.  The
engine's bytecode is compiled once first, as an installed program's is
(pip and the distributions' packages compile it; `make` exports
PYTHONDONTWRITEBYTECODE, under which every worker compiled the whole engine
anew: 0.065 s of a 1 s read in the test kernel):
  create   empty -> table        vs  ipvsadm -R (what ipvsadm-restore runs after a flush)
           (each tool in its own network namespace: its own, fresh IPVS table)
  read     dump the whole table, print it as ipvsadm -Sn does  vs  ipvsadm -Sn
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
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple, TypeVar

from ipvs_worker import desired_table

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import table_lines

HERE = os.path.dirname(os.path.abspath(__file__))

# Issue 14's goals for the engine's own processes, issue 9's for ansible-playbook.
GOALS = {
    "create": 0.1,
    "read": 1.0,
    "converge": 1.0,
    "ansible create": 0.25,
    "ansible no-change": 1.0,
}
RSS_GOAL_MB = 200
A = TypeVar("A")
B = TypeVar("B")
# The ansible-playbook floor: the same play converging a one-service file.
FLOOR_RULES = "-A -t 192.0.2.1:80 -s rr\n-a -t 192.0.2.1:80 -r 10.0.0.1:80 -m -w 1\n"


class Measured(NamedTuple):
    seconds: float  # wall
    rss: int  # peak, KiB
    output: str
    cpu: float  # user + system, its waited-for descendants included


def run(argv: List[str], stdin: Optional[str] = None) -> Measured:
    """One whole process, measured."""
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
    return Measured(seconds, usage.ru_maxrss, output, usage.ru_utime + usage.ru_stime)


# Each tool gets its own network namespace, so its own IPVS table.  After a
# flush the kernel keeps deleted destinations in a trash list that every new
# destination is looked up in (ip_vs_trash_get_dest): whoever creates second
# in a shared table pays for the other's flush.
NAMESPACES = {
    "reference": "haecs-bench-ipvsadm",
    "haecs": "haecs-bench-engine",
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


def ansible_play(scratch: str, namespace: str, rules_text: str, name: str) -> Measured:
    """One whole ansible-playbook process converging `rules_text` in
    `namespace` (its CPU time includes its workers' and the module's process)."""
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
    return run(in_namespace(namespace, argv))


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


def fresh_namespace(namespace: str) -> str:
    subprocess.run(["ip", "netns", "del", namespace], check=False, stderr=subprocess.DEVNULL)
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    # Without a local table IPVS rejects every real server as not unicast.
    subprocess.run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True)
    return namespace


def make_namespaces() -> None:
    for namespace in NAMESPACES.values():
        fresh_namespace(namespace)


def remove_namespaces() -> None:
    for namespace in NAMESPACES.values():
        subprocess.run(["ip", "netns", "del", namespace], check=False)


def in_namespace(namespace: str, argv: List[str]) -> List[str]:
    return ["ip", "netns", "exec", namespace, *argv]


def inside(tool: str, argv: List[str]) -> List[str]:
    return in_namespace(NAMESPACES[tool], argv)


def saved_table(namespace: str) -> List[str]:
    result = subprocess.run(
        in_namespace(namespace, ["ipvsadm", "-Sn"]), check=True, capture_output=True, text=True
    )
    return sorted(result.stdout.splitlines())


def ordered(round_number: int, first: Callable[[], A], second: Callable[[], B]) -> Tuple[A, B]:
    """Run both, alternating which goes first, so drift in the machine's load
    falls on both tools alike; results in the order (first, second)."""
    if round_number % 2:
        later = second()
        return first(), later
    earlier = first()
    return earlier, second()


def check_same(namespace: str, expected: List[str], what: str) -> None:
    table = saved_table(namespace)
    if table != expected:
        raise SystemExit(
            "%s: the table in %s differs from ipvsadm's: %s"
            % (what, namespace, sorted(set(table) ^ set(expected))[:6])
        )


def measure_round(
    round_number: int, services: int, real_servers: int, texts: Dict[str, str], repeats: int
) -> Dict[str, Dict[str, Any]]:
    """One round of every case, each tool in a fresh namespace of its own."""
    python = sys.executable
    worker = os.path.join(HERE, "ipvs_worker.py")
    size = [str(services), str(real_servers)]
    verify = round_number == 0
    figures: Dict[str, Dict[str, Any]] = {}
    make_namespaces()

    def ours(mode: str) -> Callable[[], Measured]:
        return lambda: run(inside("haecs", [python, worker, mode, *size]))

    def theirs(argv: List[str], stdin: Optional[str] = None) -> Callable[[], Measured]:
        return lambda: run(inside("reference", argv), stdin)

    def figure(ours: Measured, theirs: Measured) -> Dict[str, Any]:
        return {
            "haecs": ours.seconds,
            "reference": theirs.seconds,
            "haecs_cpu": ours.cpu,
            "reference_cpu": theirs.cpu,
            "rss": ours.rss,
        }

    figures["create"] = figure(
        *ordered(round_number, ours("create"), theirs(["ipvsadm", "-R"], texts["restore"]))
    )
    if verify:
        check_same(NAMESPACES["haecs"], saved_table(NAMESPACES["reference"]), "create")
    read_ref = theirs(["ipvsadm", "-Sn"])
    read_ours, read_theirs = ordered(round_number, ours("read"), read_ref)
    if verify:
        printed = sorted(read_ours.output.splitlines()[:-1])  # the last line is the worker's JSON
        expected = sorted(read_theirs.output.splitlines())
        if printed != expected:
            raise SystemExit(
                "read: the engine's lines differ from ipvsadm -Sn's: %s"
                % sorted(set(printed) ^ set(expected))[:6]
            )
    figures["read"] = figure(read_ours, read_theirs)
    figures["converge"] = figure(*ordered(round_number + 1, ours("converge"), read_ref))
    changed, edits = ordered(
        round_number, ours("change"), theirs(["ipvsadm", "-R"], texts["edits"])
    )
    if verify:
        check_same(NAMESPACES["haecs"], saved_table(NAMESPACES["reference"]), "change")
    figures["change"] = {
        **figure(changed, edits),
        "operations": json.loads(changed.output)["operations"],
    }

    figures.update(ansible_cases(round_number, texts, repeats))
    return figures


def ansible_repeat(
    scratch: str, round_number: int, repeat: int, texts: Dict[str, str]
) -> List[Tuple[str, Measured]]:
    """One run of every ansible case and its reference, in fresh namespaces."""
    floor_ns = fresh_namespace("haecs-bench-floor-%d" % repeat)
    table_ns = fresh_namespace("haecs-bench-table-%d" % repeat)
    reference_ns = fresh_namespace("haecs-bench-restore-%d" % repeat)

    def floors() -> List[Tuple[str, Measured]]:
        return [
            ("floor", ansible_play(scratch, floor_ns, FLOOR_RULES, "floor")),
            ("floor no-change", ansible_play(scratch, floor_ns, FLOOR_RULES, "floor")),
        ]

    def tables() -> List[Tuple[str, Measured]]:
        created = ansible_play(scratch, table_ns, texts["restore"], "table")
        if round_number == 0 and repeat == 0:
            check_same(table_ns, sorted(texts["restore"].splitlines()), "ansible-playbook create")
        return [
            ("create", created),
            ("no-change", ansible_play(scratch, table_ns, texts["restore"], "table")),
            ("read", run(in_namespace(table_ns, ["ipvsadm", "-Sn"]))),
            ("restore", run(in_namespace(reference_ns, ["ipvsadm", "-R"]), texts["restore"])),
        ]

    first, second = ordered(round_number + repeat, floors, tables)
    return first + second


def ansible_cases(
    round_number: int, texts: Dict[str, str], repeats: int
) -> Dict[str, Dict[str, Any]]:
    """The whole `ansible-playbook` cases, each above its own floor.

    One ansible-playbook process costs seconds in the test kernel and moves
    from one process to the next by more than the module's own work at
    11,000 entries, so each play is run `repeats` times and its quickest run
    counts (the noise only ever adds).  Every repeat creates in fresh
    namespaces (creating after a flush pays for the kernel's trash list):
      floor             the play converging a one-service file, from empty
      floor no-change   the same play again
      create            the play converging the table file, from empty
      no-change         the same play again
      ipvsadm -Sn       the same table read, right after (no-change's reference)
      ipvsadm -R        the table created from empty (create's reference)
    The floors and the table cases alternate which goes first.
    """
    scratch = tempfile.mkdtemp(prefix="haecs-bench-ansible.")
    ansible_environment(scratch)
    runs: Dict[str, List[Measured]] = {}
    try:
        for repeat in range(repeats):
            for name, measured in ansible_repeat(scratch, round_number, repeat, texts):
                runs.setdefault(name, []).append(measured)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        for repeat in range(repeats):
            for name in ("floor", "table", "restore"):
                subprocess.run(
                    ["ip", "netns", "del", "haecs-bench-%s-%d" % (name, repeat)], check=False
                )

    def quickest(name: str) -> Measured:
        return min(runs[name], key=lambda measured: measured.seconds)

    def least_cpu(name: str) -> float:
        return min(measured.cpu for measured in runs[name])

    figures: Dict[str, Dict[str, Any]] = {}
    for case, play, floor, reference in (
        ("ansible create", "create", "floor", "restore"),
        ("ansible no-change", "no-change", "floor no-change", "read"),
    ):
        figures[case] = {
            "haecs": quickest(play).seconds - quickest(floor).seconds,
            "haecs_cpu": least_cpu(play) - least_cpu(floor),
            "whole": quickest(play).seconds,
            "floor": quickest(floor).seconds,
            "reference": quickest(reference).seconds,
            "reference_cpu": least_cpu(reference),
            "runs": {
                name: [measured.seconds for measured in runs[name]]
                for name in (play, floor, reference)
            },
        }
    return figures


def spread(values: List[float]) -> Dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(rounds: List[Dict[str, Dict[str, Any]]]) -> Dict[str, Dict[str, Any]]:
    """Per case: the medians over the rounds, and the median ratio with its
    spread, in wall time and in CPU time (user + system).  The ratio of
    each round is taken within that round (the same load for both tools);
    the ansible cases' HAECS figure is the whole play minus the same round's
    floor."""
    summary: Dict[str, Dict[str, Any]] = {}
    for case in rounds[0]:
        entries = [figures[case] for figures in rounds]
        extra: Dict[str, Any] = {}
        for name in ("whole", "floor"):
            if name in entries[0]:
                extra[name] = statistics.median(entry[name] for entry in entries)
        if "rss" in entries[0]:
            extra["rss"] = max(entry["rss"] for entry in entries)
        summary[case] = {
            "haecs": statistics.median(entry["haecs"] for entry in entries),
            "reference": statistics.median(entry["reference"] for entry in entries),
            "ratio": spread([entry["haecs"] / entry["reference"] for entry in entries]),
            "cpu_ratio": spread(
                [entry["haecs_cpu"] / max(entry["reference_cpu"], 1e-3) for entry in entries]
            ),
            **extra,
        }
    return summary


def compile_bytecode() -> None:
    """The engine's bytecode in its __pycache__, where its imports read it."""
    import compileall

    if not compileall.compile_dir(os.path.join(ROOT, "plugins", "module_utils"), quiet=1):
        raise SystemExit("could not compile the engine's bytecode")


def measure(services: int, real_servers: int, rounds: int, repeats: int) -> Dict[str, Any]:
    lines = table_lines(desired_table(services, real_servers))
    changed = desired_table(services, real_servers, changed=True)
    edits = [
        line.replace("-a ", "-e ", 1)
        for line in table_lines(changed)
        if line.startswith("-a") and " -w 2" in line
    ]
    texts = {"restore": "\n".join(lines) + "\n", "edits": "\n".join(edits) + "\n"}
    results = []
    try:
        for round_number in range(rounds):
            print(
                "  %d x %d: round %d of %d" % (services, real_servers, round_number + 1, rounds),
                file=sys.stderr,
                flush=True,
            )
            results.append(measure_round(round_number, services, real_servers, texts, repeats))
    finally:
        remove_namespaces()
    return {"summary": summarise(results), "rounds": results}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="1000x10,10000x10", help="SERVICESxREAL_SERVERS, comma separated"
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds per size (median printed)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of each ansible-playbook case per round (the quickest counts)",
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds: must be at least 1")
    if args.repeats < 1:
        parser.error("--repeats: must be at least 1")
    resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536))
    compile_bytecode()
    report = {}
    print(
        "HAECS engine vs ipvsadm, same kernel, same run (%s), median of %d interleaved rounds"
        % (os.uname().release, args.rounds),
        flush=True,
    )
    row = "%-9s %-17s %9s %10s %7s %-13s %-8s %-8s %7s %-13s %s"
    header = row % (
        "entries",
        "case",
        "HAECS s",
        "ipvsadm s",
        "ratio",
        "spread",
        "goal",
        "",
        "CPU",
        "CPU spread",
        "",
    )
    print(header)
    print("-" * len(header))
    for spec in args.sizes.split(","):
        services, real_servers = (int(part) for part in spec.split("x"))
        entries = services * (real_servers + 1)
        results = measure(services, real_servers, args.rounds, args.repeats)
        report[spec] = results
        summary = results["summary"]
        for case, figures in summary.items():
            goal = GOALS.get(case)
            ratio, cpu = figures["ratio"], figures["cpu_ratio"]
            print(
                row
                % (
                    f"{entries:,}" if case == "create" else "",
                    case,
                    "%.3f" % figures["haecs"],
                    "%.3f" % figures["reference"],
                    "%.2fx" % ratio["median"],
                    "%.2f-%.2fx" % (ratio["min"], ratio["max"]),
                    "<= %.2fx" % goal if goal is not None else "",
                    ("met" if ratio["median"] <= goal else "NOT MET") if goal is not None else "",
                    "%.2fx" % cpu["median"],
                    "%.2f-%.2fx" % (cpu["min"], cpu["max"]),
                    "peak RSS %.0f MB" % (figures["rss"] / 1024)
                    if "rss" in figures
                    else "whole %.2f s, floor %.2f s" % (figures["whole"], figures["floor"]),
                ),
                flush=True,
            )
        peak = max(figures.get("rss", 0) for figures in summary.values()) / 1024
        if entries >= 100000:
            print(
                "%-9s %-17s peak RSS %.0f MB, goal < %d MB for 110,000 entries: %s"
                % ("", "rss", peak, RSS_GOAL_MB, "met" if peak < RSS_GOAL_MB else "NOT MET")
            )
    print(
        "ratio: the median of each round's HAECS / ipvsadm in wall time (the goal applies to it); "
        "spread: its lowest and highest; CPU: the same in user + system time; "
        "ansible cases: the quickest of %d runs above the quickest of the same round's floor"
        % args.repeats
    )
    if args.json:
        with open(args.json, "w") as output:
            json.dump(report, output, indent=2)


if __name__ == "__main__":
    main()
