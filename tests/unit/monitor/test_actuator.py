"""Actuator: plan against the managed part of the kernel, drift, adoption, counts."""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from typing import Any

from haecs_monitor.kernel.actuator import Actuator, find_drift
from monitor_fakes import FakeEngine

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs import plan as ipvs_plan
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.engine import IPVSError
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    RealServer,
    Service,
    ServiceKey,
    Table,
    VirtualService,
)

A = ServiceKey.for_address("tcp", "10.0.0.1", 80)
B = ServiceKey.for_address("tcp", "10.0.0.2", 80)
FOREIGN = ServiceKey.for_address("udp", "10.9.9.9", 53)


def rs(last: int, weight: int = 1) -> RealServer:
    return RealServer("10.0.2.%d" % last, 80, "masq", weight)


def vs(key: ServiceKey, *servers: RealServer, scheduler: str = "wrr") -> VirtualService:
    return VirtualService(Service(key, scheduler=scheduler), {s.key: s for s in servers})


def kinds(operations: list[ipvs_plan.Operation]) -> list[str]:
    return [op.kind for op in operations]


def test_first_reconcile_adopts_without_flushing() -> None:
    engine = FakeEngine({A: vs(A, rs(1), rs(2, 5)), FOREIGN: vs(FOREIGN, rs(9))})
    actuator = Actuator(engine)
    outcome = actuator.reconcile({A: vs(A, rs(1), rs(2, 3))})
    assert outcome.adopted and outcome.drift == []
    assert outcome.adopted_entries == 2  # the service and rs(1) were already right
    assert [op.ipvsadm_line() for op in outcome.operations] == [
        "-e -t 10.0.0.1:80 -r 10.0.2.2:80 -m -w 3"
    ]
    # The service we do not manage is untouched.
    assert engine.table[FOREIGN] == vs(FOREIGN, rs(9))


def test_unmanaged_services_are_never_deleted_and_extra_servers_are_purged() -> None:
    engine = FakeEngine({A: vs(A, rs(1), rs(7)), FOREIGN: vs(FOREIGN, rs(9))})
    actuator = Actuator(engine)
    outcome = actuator.reconcile({A: vs(A, rs(1)), B: vs(B, rs(1))})
    assert kinds(outcome.operations) == ["add_service", "add_real_server", "delete_real_server"]
    assert set(engine.table) == {A, B, FOREIGN}
    assert list(engine.table[A].real_servers) == [("10.0.2.1", 80)]


def test_nothing_to_do_costs_zero_operations() -> None:
    engine = FakeEngine()
    actuator = Actuator(engine)
    desired = {A: vs(A, rs(1))}
    actuator.reconcile(desired)
    before = sum(actuator.operations_total.values())
    assert before == 2
    for _unused in range(3):
        assert actuator.reconcile(desired).operations == []
        assert actuator.update(desired).operations == []
    assert sum(actuator.operations_total.values()) == before
    assert len(engine.applied) == 1


def test_update_does_not_read_the_kernel() -> None:
    engine = FakeEngine()
    actuator = Actuator(engine)
    actuator.reconcile({A: vs(A, rs(1), rs(2))})
    reads = engine.reads
    outcome = actuator.update({A: vs(A, rs(1))})
    assert engine.reads == reads and not outcome.read_kernel
    assert kinds(outcome.operations) == ["delete_real_server"]


def test_drift_is_reported_and_repaired() -> None:
    engine = FakeEngine()
    actuator = Actuator(engine)
    desired = {A: vs(A, rs(1), rs(2, 3))}
    actuator.reconcile(desired)
    # By hand: ipvsadm -d one server, -e another's weight, -a an extra one.
    del engine.table[A].real_servers[("10.0.2.1", 80)]
    engine.table[A].real_servers[("10.0.2.2", 80)] = rs(2, 9)
    engine.table[A].real_servers[("10.0.2.8", 80)] = rs(8)
    outcome = actuator.reconcile(desired)
    found = {(d.kind, d.server) for d in outcome.drift}
    assert found == {
        ("missing", ("10.0.2.1", 80)),
        ("changed", ("10.0.2.2", 80)),
        ("unexpected", ("10.0.2.8", 80)),
    }
    changed = next(d for d in outcome.drift if d.kind == "changed")
    assert changed.expected.endswith("-w 3") and changed.found.endswith("-w 9")
    assert actuator.drift_total == 3
    assert engine.table[A] == desired[A]


def test_drift_of_a_deleted_service() -> None:
    engine = FakeEngine()
    actuator = Actuator(engine)
    desired = {A: vs(A, rs(1))}
    actuator.reconcile(desired)
    del engine.table[A]
    outcome = actuator.reconcile(desired)
    assert [(d.kind, d.server) for d in outcome.drift] == [("missing", None)]
    assert engine.table[A] == desired[A]


def test_update_falls_back_to_reconcile_when_refused() -> None:
    engine = FakeEngine()
    actuator = Actuator(engine)
    actuator.reconcile({A: vs(A, rs(1))})
    engine.table[A].real_servers[("10.0.2.2", 80)] = rs(2)  # added by hand
    # Planning against the stale view would add rs(2) again: EEXIST.
    outcome = actuator.update({A: vs(A, rs(1), rs(2, 4))})
    assert outcome.read_kernel and outcome.error is None
    assert engine.table[A].real_servers[("10.0.2.2", 80)].weight == 4


def test_refused_apply_is_reported_and_next_update_reads() -> None:
    engine = FakeEngine()
    actuator = Actuator(engine)
    actuator.reconcile({A: vs(A, rs(1))})
    engine.refuse = True
    outcome = actuator.update({A: vs(A, rs(1), rs(2))})
    assert outcome.error is not None and "refused" in outcome.error
    assert actuator.errors_total == 1
    engine.refuse = False
    reads = engine.reads
    outcome = actuator.update({A: vs(A, rs(1), rs(2))})
    assert engine.reads == reads + 1 and outcome.error is None


def test_removed_services_are_deleted_only_if_named() -> None:
    engine = FakeEngine({FOREIGN: vs(FOREIGN, rs(9))})
    actuator = Actuator(engine)
    actuator.reconcile({A: vs(A, rs(1)), B: vs(B, rs(2))})
    outcome = actuator.update({A: vs(A, rs(1))}, remove=[B])
    assert kinds(outcome.operations) == ["delete_service"]
    assert set(engine.table) == {A, FOREIGN}
    assert actuator.known == {A: vs(A, rs(1))}


def test_remove_all_on_exit() -> None:
    engine = FakeEngine({FOREIGN: vs(FOREIGN, rs(9))})
    actuator = Actuator(engine)
    actuator.reconcile({A: vs(A, rs(1)), B: vs(B, rs(2))})
    outcome = actuator.remove_all([A, B])
    assert kinds(outcome.operations) == ["delete_service", "delete_service"]
    assert set(engine.table) == {FOREIGN}


def test_read_failure_is_an_error_not_an_exception() -> None:
    class Broken(FakeEngine):
        def read(self, with_stats: bool = False, services_only: bool = False) -> Table:
            raise IPVSError("IPVS is not available in this kernel")

        def read_each(self, with_stats: bool = False, only: object = None) -> Iterator[Any]:
            raise IPVSError("IPVS is not available in this kernel")

    actuator = Actuator(Broken())
    outcome = actuator.reconcile({A: vs(A)})
    assert outcome.error is not None and "not available" in outcome.error


def test_find_drift_service_attributes() -> None:
    drift = find_drift({A: vs(A, scheduler="wrr")}, {A: vs(A, scheduler="rr")})
    assert [(d.kind, d.server, d.found) for d in drift] == [
        ("changed", None, "-A -t 10.0.0.1:80 -s rr")
    ]


def test_update_of_named_services_plans_only_them_and_knows_the_rest() -> None:
    engine = FakeEngine()
    actuator = Actuator(engine)
    actuator.reconcile({A: vs(A, rs(1), rs(2)), B: vs(B, rs(1))})
    # B differs too, but only A is named: B is neither planned nor forgotten.
    outcome = actuator.update({A: vs(A, rs(1)), B: vs(B, rs(1), rs(3))}, services={A})
    assert [op.ipvsadm_line() for op in outcome.operations] == ["-d -t 10.0.0.1:80 -r 10.0.2.2:80"]
    assert actuator.known == {A: vs(A, rs(1)), B: vs(B, rs(1))} == engine.table
    # Named, B's change goes in.
    outcome = actuator.update({A: vs(A, rs(1)), B: vs(B, rs(1), rs(3))}, services={B})
    assert kinds(outcome.operations) == ["add_real_server"]
    assert actuator.known == {A: vs(A, rs(1)), B: vs(B, rs(1), rs(3))} == engine.table


def test_update_of_named_services_plans_all_when_the_services_differ() -> None:
    engine = FakeEngine()
    actuator = Actuator(engine)
    actuator.reconcile({A: vs(A, rs(1))})
    outcome = actuator.update({A: vs(A, rs(1)), B: vs(B, rs(1))}, services=set())
    assert kinds(outcome.operations) == ["add_service", "add_real_server"]
    outcome = actuator.update({B: vs(B, rs(2))}, remove=[A], services={B})
    assert set(kinds(outcome.operations)) == {
        "delete_service",
        "add_real_server",
        "delete_real_server",
    }
    assert actuator.known == {B: vs(B, rs(2))} == engine.table


def test_a_refused_update_of_named_services_reconciles_the_whole_table() -> None:
    """The fallback reconcile gets every service, not the named part: the
    others are neither reported as drift nor forgotten."""
    engine = FakeEngine()
    actuator = Actuator(engine)
    actuator.reconcile({A: vs(A, rs(1), rs(2)), B: vs(B, rs(1))})
    del engine.table[A].real_servers[("10.0.2.2", 80)]  # by hand: the delete is refused
    outcome = actuator.update({A: vs(A, rs(1)), B: vs(B, rs(1))}, services={A})
    assert outcome.error is None and outcome.read_kernel
    assert [(d.service, d.server, d.kind) for d in outcome.drift] == [
        (A, ("10.0.2.2", 80), "missing")
    ]
    assert actuator.known == {A: vs(A, rs(1)), B: vs(B, rs(1))} == engine.table


def whole_table_reconcile(
    kernel: Table, known: Table | None, desired: Table, remove: list[ServiceKey]
) -> tuple[list[str], list[tuple[object, ...]], int]:
    """The reconcile as it was before it read service by service: the whole
    managed table read, diffed and planned at once (the reference)."""
    remove = [key for key in remove if key not in desired]
    current = {key: kernel[key] for key in [*desired, *remove] if key in kernel}
    drift = find_drift(known, current) if known is not None else []
    adopted = 0
    if known is None:
        for key, want in desired.items():
            have = current.get(key)
            if have is not None:
                adopted += have.service == want.service
                adopted += sum(
                    1
                    for server_key, server in want.real_servers.items()
                    if server_key in have.real_servers
                    and have.real_servers[server_key].same_as(server)
                )
    operations = ipvs_plan.order(
        ipvs_plan.plan(current, desired, purge_real_servers=True)
        + ipvs_plan.plan_removal(current, remove)
    )
    return (
        [op.ipvsadm_line() for op in operations],
        [(d.service, d.server, d.kind, d.expected, d.found) for d in drift],
        adopted,
    )


def random_table(rand: random.Random, keys: list[ServiceKey]) -> Table:
    table: Table = {}
    for key in rand.sample(keys, rand.randint(0, len(keys))):
        servers = [
            rs(last, rand.randint(0, 2)) for last in rand.sample(range(1, 6), rand.randint(0, 4))
        ]
        table[key] = vs(key, *servers, scheduler=rand.choice(("wrr", "rr")))
    return table


def test_reconcile_service_by_service_equals_the_whole_table_diff() -> None:
    """Operations (in order), drift (in order) and adopted entries equal the
    whole-table diff's, over 400 random kernels, known and desired tables."""
    keys = [A, B, ServiceKey.for_address("tcp", "10.0.0.3", 80), FOREIGN]
    for seed in range(400):
        rand = random.Random(seed)
        kernel = random_table(rand, keys)
        desired = random_table(rand, keys[:3])
        known = random_table(rand, keys[:3]) if rand.random() < 0.7 else None
        remove = rand.sample(keys, rand.randint(0, 2))
        expected = whole_table_reconcile(kernel, known, desired, remove)
        engine = FakeEngine({key: vs(key) for key in ()})
        engine.table = {
            key: VirtualService(entry.service, dict(entry.real_servers))
            for key, entry in kernel.items()
        }
        actuator = Actuator(engine)
        actuator._known = known
        outcome = actuator.reconcile(desired, remove)
        got = (
            [op.ipvsadm_line() for op in outcome.operations],
            [(d.service, d.server, d.kind, d.expected, d.found) for d in outcome.drift],
            outcome.adopted_entries,
        )
        assert got == expected, seed
        assert outcome.error is None


def test_reconcile_lets_go_of_each_service_read_that_needs_nothing() -> None:
    """The table is never held whole: by the time a service is read, those
    read two steps before (found as desired) are referenced by nothing but
    the reader (the step between: the caller's loop variable holds the last)."""
    keys = [A, B, ServiceKey.for_address("tcp", "10.0.0.3", 80), FOREIGN]
    desired = {key: vs(key, rs(1), rs(2)) for key in keys[:3]}
    yielded: list[VirtualService] = []
    held: list[int] = []

    class Reader(FakeEngine):
        def read_each(self, with_stats: bool = False, only: Any = None) -> Iterator[Any]:
            for key in self.table:
                if len(yielded) >= 2:
                    held.append(sys.getrefcount(yielded[-2]))
                entry = self.table[key]
                yielded.append(VirtualService(entry.service, dict(entry.real_servers)))
                yield yielded[-1]

    engine = Reader({key: vs(key, rs(1), rs(2)) for key in keys[:3]})
    outcome = Actuator(engine).reconcile(desired)
    assert outcome.operations == [] and outcome.adopted_entries == 9
    # The list `yielded` and getrefcount's argument: nothing else holds it.
    assert held == [2]
