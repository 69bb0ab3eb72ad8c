"""Profile the monitor's SIGHUP reload natively: no kernel, a fake engine.

The reload is parsing, validating and diffing in Python, so it can be timed
and profiled on the host at full size; the UML bench (monitor_bench.py,
phase reload) confirms the figures against a real kernel.

    bench/python bench/reload_profile.py [--services 2000] [--per-service 15]
        [--format yaml|json] [--change none|edited|weight|check|switch] [--profile FILE]

Runs one `Monitor` (the daemon itself) with checks that answer "up" at once,
reloads it and prints the reload's seconds (wall and CPU: on a shared host
the CPU figure is the steadier one), its kernel operations, the
worst event-loop lag seen during it, and (with --profile) the cProfile
table of the reload's main thread and of the config load.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Collection, Iterator
from typing import Any, Optional

from haecs_monitor.checks.base import CheckResult
from haecs_monitor.config import load as config_load
from haecs_monitor.config.sections import SectionMemory
from haecs_monitor.runtime import daemon, scheduler
from haecs_monitor.runtime.events import EventLog

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs import plan as ipvs_plan
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.engine import ApplyResult
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    ServiceKey,
    Table,
    VirtualService,
)

LAG_PERIOD = 0.01  # how often the lag probe wakes during the reload


class CountingEngine:
    """Holds the table in memory; counts the operations applied."""

    def __init__(self) -> None:
        self.table: Table = {}
        self.operations: list[ipvs_plan.Operation] = []
        self.reads = 0

    def read(self, with_stats: bool = False, services_only: bool = False) -> Table:
        self.reads += 1
        return {k: VirtualService(v.service, dict(v.real_servers)) for k, v in self.table.items()}

    def read_each(
        self, with_stats: bool = False, only: Optional[Collection[ServiceKey]] = None
    ) -> Iterator[VirtualService]:
        table = self.read()  # a copy, as a kernel read is
        return iter([entry for key, entry in table.items() if only is None or key in only])

    def apply(self, operations: list[ipvs_plan.Operation]) -> ApplyResult:
        self.table = ipvs_plan.simulate(self.table, operations)
        self.operations.extend(operations)
        return ApplyResult(list(operations), 1)


def config_data(services: int, per_service: int, weight_of_first: int = 1) -> dict[str, Any]:
    """The bench's layout (monitor_bench.write_haecs_config) as data."""
    entries = []
    for index in range(services):
        servers = []
        for member in range(per_service):
            block, host = divmod(index * per_service + member, 250)
            address = "10.%d.%d.%d" % (64 + block // 256, block % 256, host + 1)
            servers.append({"address": address, "port": 8080, "forwarding": "masq", "weight": 1})
        entries.append(
            {
                "protocol": "tcp",
                "address": "10.200.%d.%d" % (index // 250, index % 250 + 1),
                "port": 80,
                "scheduler": "wlc",
                "on_failure": "remove",
                "checks": [{"type": "tcp"}],
                "real_servers": servers,
            }
        )
    entries[0]["real_servers"][0]["weight"] = weight_of_first
    return {
        "global": {
            "name": "profile",
            "control_socket": os.path.join(tempfile.gettempdir(), "haecs-profile.sock"),
            "state_file": os.path.join(tempfile.gettempdir(), "haecs-profile.state"),
            "check_defaults": {"interval": 60, "timeout": 1, "rise": 1, "fall": 3, "jitter": 0},
        },
        "services": entries,
    }


def write(path: str, data: dict[str, Any], form: str) -> None:
    with open(path, "w") as handle:
        if form == "json":
            json.dump(data, handle)
        else:
            import yaml  # type: ignore[import-untyped]

            # Keys in the order given, as the UML bench writes them: a switch of
            # format is then the same data.
            yaml.dump(data, handle, Dumper=getattr(yaml, "CDumper", yaml.Dumper), sort_keys=False)


async def checked_up(spec: Any, address: str, port: int) -> CheckResult:
    return CheckResult(True, None, "up")


async def measure(args: argparse.Namespace, path: str) -> dict[str, Any]:
    engine = CountingEngine()
    sections = SectionMemory()  # as haecs-monitor starts (control/cli.py)
    config = config_load.load_config(path, sections)
    # As in the UML bench: the table is in the kernel already, the monitor adopts it.
    engine.table = {
        service.key: VirtualService(
            service.service, {rs.key: rs.server for rs in service.real_servers}
        )
        for service in config.services
    }
    monitor = daemon.Monitor(path, config, engine, EventLog(io.StringIO()), sections=sections)
    task = asyncio.get_running_loop().create_task(monitor.run())
    while monitor.actuator.known is None:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    if args.change == "weight":
        write(path, config_data(args.services, args.per_service, weight_of_first=2), args.format)
    elif args.change == "edited":  # other bytes, the same services
        with open(path, "a") as handle:
            handle.write("\n# edited\n" if args.format == "yaml" else "\n")
    elif args.change == "switch":  # the same services written in the other format
        other = "json" if args.format == "yaml" else "yaml"
        write(path, config_data(args.services, args.per_service), other)
    elif args.change == "check":
        data = config_data(args.services, args.per_service)
        data["services"][-1]["checks"] = [{"type": "tcp", "timeout": 0.5}]
        write(path, data, args.format)
    engine.operations.clear()
    lags: list[float] = []
    stop = asyncio.Event()

    async def probe() -> None:
        while not stop.is_set():
            expected = time.monotonic() + LAG_PERIOD
            await asyncio.sleep(LAG_PERIOD)
            lags.append(time.monotonic() - expected)

    prober = asyncio.get_running_loop().create_task(probe())
    profiler = cProfile.Profile() if args.profile else None
    started = time.monotonic()
    cpu = time.process_time()
    if profiler is not None:
        profiler.enable()
    answer = await monitor.reload("profile")
    if profiler is not None:
        profiler.disable()
    seconds = time.monotonic() - started
    cpu = time.process_time() - cpu
    stop.set()
    await prober
    monitor.stop()
    await asyncio.wait_for(task, 60)
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(45)
        with open(args.profile, "w") as handle:
            handle.write(out.getvalue())
    return {
        "services": args.services,
        "per_service": args.per_service,
        "format": args.format,
        "change": args.change,
        "reload_seconds": round(seconds, 3),
        "reload_cpu_seconds": round(cpu, 3),  # of every thread: the load runs in a worker
        "kernel_operations": len(engine.operations),
        "operations": [op.kind for op in engine.operations[:5]],
        "max_loop_lag_seconds": round(max(lags, default=0.0), 3),
        "answer": answer.get("summary") or answer.get("errors"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=2000)
    parser.add_argument("--per-service", type=int, default=15)
    parser.add_argument("--format", choices=("yaml", "json"), default="yaml")
    parser.add_argument(
        "--change", choices=("none", "edited", "weight", "check", "switch"), default="none"
    )
    parser.add_argument("--profile", help="write the cProfile table of the reload here")
    args = parser.parse_args()
    scheduler.CHECKS = {"tcp": checked_up}  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "monitor.%s" % args.format)
        write(path, config_data(args.services, args.per_service), args.format)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(config_load.load_config, path)
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
            with open(args.profile + ".load", "w") as handle:
                handle.write(out.getvalue())
        result = asyncio.run(measure(args, path))
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
