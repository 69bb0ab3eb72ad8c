"""The planner: order, in-place edits, purge scopes, and its simulation."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    RealServer,
    Service,
    ServiceKey,
    VirtualService,
    table_lines,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.plan import (
    ADD_REAL_SERVER,
    ADD_SERVICE,
    DELETE_REAL_SERVER,
    DELETE_SERVICE,
    SET_REAL_SERVER,
    SET_SERVICE,
    Operation,
    plan,
    plan_removal,
    simulate,
)

WEB = ServiceKey.for_address("tcp", "10.0.0.1", 80)
DNS = ServiceKey.for_address("udp", "10.0.0.1", 53)


def table(*entries: VirtualService) -> dict:
    return {entry.key: entry for entry in entries}


def pool(key: ServiceKey, *servers: RealServer, scheduler: str = "rr") -> VirtualService:
    return VirtualService(Service(key, scheduler=scheduler), {s.key: s for s in servers})


def rs(last_octet: int, weight: int = 1, port: int = 80) -> RealServer:
    return RealServer("10.0.1.%d" % last_octet, port, "masq", weight)


def kinds(operations) -> list:
    return [op.kind for op in operations]


def test_empty_to_table_adds_service_before_its_servers() -> None:
    desired = table(pool(WEB, rs(1), rs(2)))
    operations = plan({}, desired)
    assert kinds(operations) == [ADD_SERVICE, ADD_REAL_SERVER, ADD_REAL_SERVER]
    assert simulate({}, operations) == desired


def test_weight_and_scheduler_change_are_in_place_sets() -> None:
    current = table(pool(WEB, rs(1), rs(2)))
    desired = table(pool(WEB, rs(1, weight=5), rs(2), scheduler="wrr"))
    operations = plan(current, desired)
    assert kinds(operations) == [SET_SERVICE, SET_REAL_SERVER]
    assert operations[0].ipvsadm_line() == "-E -t 10.0.0.1:80 -s wrr"
    assert operations[1].ipvsadm_line() == "-e -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 5"


def test_replaced_pool_never_goes_empty() -> None:
    current = table(pool(WEB, rs(1), rs(2)))
    desired = table(pool(WEB, rs(3), rs(4)))
    operations = plan(current, desired, purge_real_servers=True)
    assert kinds(operations) == [ADD_REAL_SERVER] * 2 + [DELETE_REAL_SERVER] * 2


def test_merge_keeps_undeclared_entries() -> None:
    current = table(pool(WEB, rs(1)), pool(DNS, rs(9, port=53)))
    desired = table(pool(WEB, rs(2)))
    assert kinds(plan(current, desired)) == [ADD_REAL_SERVER]


def test_overridden_purges_services_last() -> None:
    current = table(pool(WEB, rs(1)), pool(DNS, rs(9, port=53)))
    desired = table(pool(WEB, rs(1)))
    operations = plan(current, desired, purge_services=True)
    assert kinds(operations) == [DELETE_SERVICE]
    assert operations[0].removed_real_servers == (rs(9, port=53),)


def test_service_only_mode_ignores_servers() -> None:
    current = table(pool(WEB, rs(1)))
    desired = table(pool(WEB, scheduler="lc"))
    assert kinds(plan(current, desired, manage_real_servers=False)) == [SET_SERVICE]


def test_removal_of_missing_things_is_a_no_op() -> None:
    current = table(pool(WEB, rs(1)))
    assert plan_removal(current, [DNS], [(WEB, ("10.0.1.7", 80))]) == []
    operations = plan_removal(current, [WEB], [(WEB, ("10.0.1.1", 80))])
    assert kinds(operations) == [DELETE_SERVICE]


def test_counters_and_local_forwarding_are_not_changes() -> None:
    current = table(
        pool(WEB, RealServer("10.0.1.1", 80, "local", 1, active_connections=7)),
    )
    desired = table(pool(WEB, RealServer("10.0.1.1", 80, "route", 1)))
    assert plan(current, desired) == []


def test_inverse_restores_previous_state() -> None:
    current = table(pool(WEB, rs(1), rs(2)), pool(DNS, rs(9, port=53)))
    desired = table(pool(WEB, rs(1, weight=3), rs(4), scheduler="wlc"))
    operations = plan(current, desired, purge_services=True, purge_real_servers=True)
    after = simulate(current, operations)
    assert after == desired
    undo = [inverse for op in reversed(operations) for inverse in op.inverse()]
    assert simulate(after, undo) == current


def test_operation_lines() -> None:
    service = Service(WEB)
    assert Operation(DELETE_SERVICE, service).ipvsadm_line() == "-D -t 10.0.0.1:80"
    assert (
        Operation(DELETE_REAL_SERVER, service, rs(1)).ipvsadm_line()
        == "-d -t 10.0.0.1:80 -r 10.0.1.1:80"
    )


# ------------------------------------------------------------------ properties

services = st.sampled_from(
    [
        ServiceKey.for_address("tcp", "10.0.0.1", 80),
        ServiceKey.for_address("udp", "10.0.0.1", 53),
        ServiceKey.for_address("tcp", "2001:db8::1", 443),
        ServiceKey.for_fwmark(42),
    ]
)
servers = st.builds(
    RealServer,
    address=st.sampled_from(["10.0.1.1", "10.0.1.2", "10.0.1.3"]),
    port=st.just(80),
    forwarding=st.sampled_from(["masq", "route"]),
    weight=st.integers(0, 5),
    upper_threshold=st.just(0),
    lower_threshold=st.just(0),
)


@st.composite
def tables(draw):
    result = {}
    for key in draw(st.sets(services, max_size=4)):
        scheduler = draw(st.sampled_from(["rr", "wlc", "sh"]))
        members = draw(st.lists(servers, max_size=3, unique_by=lambda s: s.key))
        result[key] = VirtualService(Service(key, scheduler=scheduler), {s.key: s for s in members})
    return result


@settings(max_examples=300, deadline=None)
@given(tables(), tables())
def test_plan_reaches_desired_table_adds_before_deletes(current, desired) -> None:
    operations = plan(current, desired, purge_services=True, purge_real_servers=True)
    assert table_lines(simulate(current, operations)) == table_lines(desired)
    phases = [op.phase for op in operations]
    assert phases == sorted(phases)
    assert plan(desired, desired, purge_services=True, purge_real_servers=True) == []


@settings(max_examples=200, deadline=None)
@given(tables(), tables())
def test_merge_never_deletes(current, desired) -> None:
    operations = plan(current, desired)
    assert not [op for op in operations if op.kind in (DELETE_SERVICE, DELETE_REAL_SERVER)]
    after = simulate(current, operations)
    for key, entry in desired.items():
        assert after[key].service == entry.service
        for server_key, server in entry.real_servers.items():
            assert after[key].real_servers[server_key] == server
