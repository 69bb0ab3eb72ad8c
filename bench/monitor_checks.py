#!/usr/bin/env python3
"""CPU seconds per 1,000 TCP checks of the monitor's tcp check.

Opens N listeners on 127.0.0.1 (plain sockets with a large backlog; the
kernel completes the handshakes, nobody accepts, so the listeners cost no
CPU in this process), then runs the monitor's tcp check against each of them
once per `--interval` seconds for `--seconds`, spread over the interval like
the daemon would.  Reports the process's CPU time (user + system) per 1,000
checks and per check, so it can be set beside keepalived's TCP_CHECK measured
the same way (kernel-substrate.md: 0.21 ms per check).

    bench/python bench/monitor_checks.py --listeners 1000 --seconds 20 [--json]

Run it with PYTHONPATH=build/collections:monitor (the Makefile does).  Raise
`ulimit -n` above 2 x N first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import sys
import time
from typing import Any

from haecs_monitor.checks import tcp
from haecs_monitor.config.model import CheckSpec, CheckTiming


def listeners(count: int) -> list[socket.socket]:
    opened = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(4096)
        opened.append(sock)
    return opened


def spec_for(port: int, interval: float) -> CheckSpec:
    timing = CheckTiming(interval, min(1.0, interval / 2), 2, 3, 0.5, 5.0, 0.0)
    return CheckSpec("tcp", timing, "127.0.0.1", port)


async def streams_check(check: CheckSpec) -> bool:
    """The obvious asyncio design (for comparison): open_connection + close."""
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(check.address, check.port), check.timing.timeout
        )
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


async def checker(
    check: CheckSpec, offset: float, until: float, counts: dict[str, int], streams: bool
) -> None:
    await asyncio.sleep(offset)
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        started = loop.time()
        if streams:
            up = await streams_check(check)
        else:
            result = await tcp.check(check, check.address, check.port)
            up = result.up
            if not up:
                counts["why: " + result.detail] = counts.get("why: " + result.detail, 0) + 1
        counts["up" if up else "down"] += 1
        await asyncio.sleep(max(0.0, check.timing.interval - (loop.time() - started)))


class _Health:
    def __init__(self, spec: CheckSpec) -> None:
        self.spec = spec


class _Board:
    """What the scheduler asks of a HealthBoard: checks, first and next delay."""

    def __init__(self, specs: list[CheckSpec], interval: float) -> None:
        self.checks = {("tcp", index): _Health(spec) for index, spec in enumerate(specs)}
        self._interval = interval
        self._count = len(specs)

    def first_delay(self, key: Any) -> float:
        return float(self._interval * key[1] / self._count)

    def next_delay(self, key: Any) -> float:
        return float(self._interval)


async def through_scheduler(
    specs: list[CheckSpec], seconds: float, interval: float, counts: dict[str, int]
) -> None:
    """The daemon's way: runtime.scheduler.CheckScheduler over a stand-in board."""
    import io

    from haecs_monitor.runtime.events import EventLog
    from haecs_monitor.runtime.scheduler import CheckScheduler

    def observe(key: Any, spec: CheckSpec, result: Any, duration: float) -> None:
        counts["up" if result.up else "down"] += 1
        if not result.up:
            counts["why: " + result.detail] = counts.get("why: " + result.detail, 0) + 1

    loop = asyncio.get_running_loop()
    scheduler = CheckScheduler(EventLog(io.StringIO()), loop.time, observe)
    scheduler.sync(_Board(specs, interval))  # type: ignore[arg-type]
    await asyncio.sleep(seconds)
    await scheduler.stop()


async def run(
    count: int, seconds: float, interval: float, streams: bool = False, scheduler: bool = False
) -> dict[str, Any]:
    socks = listeners(count)
    specs = [spec_for(sock.getsockname()[1], interval) for sock in socks]
    counts = {"up": 0, "down": 0}
    loop = asyncio.get_running_loop()
    before = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.monotonic()
    until = loop.time() + seconds
    if scheduler:
        await through_scheduler(specs, seconds, interval, counts)
    else:
        tasks = [
            asyncio.ensure_future(checker(spec, interval * index / count, until, counts, streams))
            for index, spec in enumerate(specs)
        ]
        await asyncio.gather(*tasks)
    wall = time.monotonic() - wall
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    for sock in socks:
        sock.close()
    checks = counts["up"] + counts["down"]
    return {
        "checker": "asyncio-streams"
        if streams
        else ("haecs-scheduler-tcp" if scheduler else "haecs-tcp"),
        "listeners": count,
        "seconds": round(wall, 2),
        "checks": checks,
        "failed": counts["down"],
        "cpu_seconds": round(cpu, 3),
        "cpu_user": round(after.ru_utime - before.ru_utime, 3),
        "cpu_system": round(after.ru_stime - before.ru_stime, 3),
        "cpu_seconds_per_1000_checks": round(cpu / checks * 1000, 4) if checks else None,
        "ms_per_check": round(cpu / checks * 1000, 4) if checks else None,
        "rss_mb": round(after.ru_maxrss / 1024, 1),
        "failures": {key[5:]: value for key, value in counts.items() if key.startswith("why: ")},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listeners", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--json", action="store_true", help="one JSON object instead of text")
    parser.add_argument(
        "--streams",
        action="store_true",
        help="measure asyncio.open_connection instead (the baseline)",
    )
    parser.add_argument(
        "--scheduler",
        action="store_true",
        help="run the checks through the monitor's CheckScheduler (as the daemon does)",
    )
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * args.listeners + 100
    if soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
        except (ValueError, OSError):
            pass
    result = asyncio.run(
        run(args.listeners, args.seconds, args.interval, args.streams, args.scheduler)
    )
    if args.json:
        print(json.dumps(result))
    else:
        print(
            "%(checker)s: %(checks)d checks (%(failed)d failed) of %(listeners)d listeners in %(seconds)ss: "
            "CPU %(cpu_seconds)ss (user %(cpu_user)s, sys %(cpu_system)s) = "
            "%(cpu_seconds_per_1000_checks)s CPU s per 1,000 checks (%(ms_per_check)s ms/check), "
            "RSS %(rss_mb)s MB" % result
        )
    return 0 if result["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
