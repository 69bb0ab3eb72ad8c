"""Drain before removal (ipvs.drain): which servers leave, which get weight 0
first, and how long the wait goes on, with the clock faked."""

from __future__ import annotations

from typing import List

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.drain import (
    active_connections,
    leaving,
    quiesce,
    wait_drained,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    RealServer,
    Service,
    ServiceKey,
    Table,
    VirtualService,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.plan import plan, plan_removal

WEB = ServiceKey.for_address("tcp", "192.0.2.10", 80)
DNS = ServiceKey.for_address("udp", "192.0.2.10", 53)


def server(last: int, weight: int = 1, active: int = 0) -> RealServer:
    return RealServer("10.0.0.%d" % last, 8080, "masq", weight, active_connections=active)


def table(*servers: RealServer, key: ServiceKey = WEB) -> Table:
    return {key: VirtualService(Service(key, scheduler="rr"), {s.key: s for s in servers})}


def test_leaving_lists_deleted_servers_and_those_of_deleted_services() -> None:
    current = table(server(1), server(2))
    current.update(table(server(3), key=DNS))
    operations = plan(current, table(server(1)), purge_real_servers=True, purge_services=True)
    gone = sorted((service.key, member.address) for service, member in leaving(operations))
    assert gone == [(WEB, "10.0.0.2"), (DNS, "10.0.0.3")]


def test_quiesce_sets_weight_zero_where_it_is_not_yet() -> None:
    current = table(server(1, active=4), server(2, active=0), server(3, weight=0, active=9))
    operations = plan_removal(current, real_servers=[(WEB, s) for s in current[WEB].real_servers])
    quiet = quiesce(operations, current)
    assert [op.ipvsadm_line() for op in quiet] == [
        "-e -t 192.0.2.10:80 -r 10.0.0.1:8080 -m -w 0",
        "-e -t 192.0.2.10:80 -r 10.0.0.2:8080 -m -w 0",
    ]
    # Undone, it gives the weight back.
    assert [op.ipvsadm_line() for op in quiet[0].inverse()] == [
        "-e -t 192.0.2.10:80 -r 10.0.0.1:8080 -m -w 1"
    ]


def test_active_connections_skips_servers_already_gone() -> None:
    members = [(WEB, ("10.0.0.1", 8080)), (WEB, ("10.0.0.7", 8080))]
    assert active_connections(table(server(1, active=3)), members) == {members[0]: 3}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: List[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_ends_when_the_connections_are_gone() -> None:
    clock = Clock()
    counts = iter([5, 2, 0])
    members = [(WEB, ("10.0.0.1", 8080))]
    drained = wait_drained(
        lambda: table(server(1, active=next(counts))), members, 30, clock, clock.sleep
    )
    assert drained.left == {members[0]: 0}
    assert drained.waited == 2.0 and clock.sleeps == [1.0, 1.0]
    assert drained.report() == [
        {"service": "tcp 192.0.2.10:80", "real_server": "10.0.0.1:8080", "connections_left": 0}
    ]


def test_wait_gives_up_at_the_timeout_and_reports_what_is_left() -> None:
    clock = Clock()
    members = [(WEB, ("10.0.0.1", 8080))]
    drained = wait_drained(lambda: table(server(1, active=3)), members, 2.5, clock, clock.sleep)
    assert drained.left == {members[0]: 3}
    assert drained.waited == 2.5
    assert clock.sleeps == [1.0, 1.0, 0.5]


def test_no_wait_when_nothing_is_connected() -> None:
    clock = Clock()
    members = [(WEB, ("10.0.0.1", 8080))]
    drained = wait_drained(lambda: table(server(1)), members, 30, clock, clock.sleep)
    assert drained.waited == 0 and clock.sleeps == []
