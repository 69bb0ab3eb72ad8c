"""One benchmark step with the HAECS engine, as its own process.

    bench/python bench/ipvs_worker.py MODE SERVICES REAL_SERVERS

MODE: create (empty -> table), read (dump the table and print it as
`ipvsadm -Sn` does, one line per entry), converge (read + plan, nothing to
change), change (read + plan + apply 10% of weights changed).
Prints, last, one JSON line: mode, seconds of each phase, operations,
entries.  The driver measures the whole process (interpreter start included).
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.engine import IPVS  # noqa: E402
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (  # noqa: E402
    RealServer,
    Service,
    ServiceKey,
    Table,
    VirtualService,
    service_order,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.plan import plan  # noqa: E402


def desired_table(services: int, real_servers: int, changed: bool = False) -> Table:
    """`services` TCP services on 10.100.0.0/16, each with `real_servers` NAT servers.

    With `changed`, every tenth service has the weight of one server raised:
    10% of the services, one entry each.
    """
    table: Table = {}
    for index in range(services):
        address = "10.100.%d.%d" % (index // 250, index % 250 + 1)
        key = ServiceKey.for_address("tcp", address, 80)
        servers = {}
        for member in range(real_servers):
            weight = 1
            if changed and index % 10 == 0 and member == 0:
                weight = 2
            server = RealServer(
                "10.200.%d.%d" % (member, index % 250 + 1), 8000 + index // 250, "masq", weight
            )
            servers[server.key] = server
        table[key] = VirtualService(Service(key, scheduler="wrr"), servers)
    return table


def main(mode: str, services: int, real_servers: int) -> None:
    imported = time.perf_counter()
    # A read needs no desired table (ipvsadm -Sn builds none either).
    desired = {} if mode == "read" else desired_table(services, real_servers, mode == "change")
    started = time.perf_counter()
    operations = 0
    with IPVS() as ipvs:
        current = ipvs.read()
        if mode == "read":
            # One service at a time through a 64 KB buffer, as ipvsadm's
            # stdio writes: the whole text at once would cost the test
            # kernel hundreds of page faults more, and sys.stdout under
            # PYTHONUNBUFFERED (set where the bench ran) one write(2) per
            # service, a tenth of the read there.
            with open(sys.stdout.fileno(), "w", buffering=1 << 16, closefd=False) as out:
                for key in sorted(current, key=service_order):
                    out.write("".join(line + "\n" for line in current[key].ipvsadm_lines()))
        else:
            todo = plan(current, desired, purge_services=True, purge_real_servers=True)
            operations = len(todo)
            if mode in ("create", "change"):
                ipvs.apply(todo)
            elif operations:
                raise SystemExit("converge found %d operations; expected none" % operations)
    seconds = time.perf_counter() - started
    entries = sum(1 + len(entry.real_servers) for entry in current.values())
    phases = {"import": imported - STARTED, "build_desired": started - imported, "engine": seconds}
    print(
        json.dumps(
            {"mode": mode, "seconds": phases, "operations": operations, "entries_read": entries}
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
