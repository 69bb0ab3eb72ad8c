"""desired.compute: health + admin + quorum + sorry servers -> the table."""

from __future__ import annotations

import gc

import pytest
from haecs_monitor.core import desired
from haecs_monitor.core.desired import DISABLE, DRAIN, INHIBIT, Quorum, ServerInput, ServiceInput

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    RealServer,
    Service,
    ServiceKey,
)

KEY = ServiceKey.for_address("tcp", "10.0.0.1", 80)
SERVICE = Service(KEY, scheduler="wrr")


def rs(last: int, weight: int = 1) -> RealServer:
    return RealServer("10.0.2.%d" % last, 80, "masq", weight)


def server(
    last: int,
    up: bool = True,
    weight: int = 1,
    health_weight: int | None = None,
    admin: str = "enabled",
) -> ServerInput:
    return ServerInput(
        rs(last, weight), up, weight if health_weight is None else health_weight, admin
    )


def weights(result: desired.Desired, key: ServiceKey = KEY) -> dict[str, int]:
    return {
        address: entry.weight
        for (address, _port), entry in sorted(result.table[key].real_servers.items())
    }


def test_equal_outcomes_are_one_object() -> None:
    """Kept from one apply to the next for every server: shared, not one each."""
    first = desired.compute([ServiceInput(SERVICE, (server(1, weight=3), server(2, weight=3)))])
    again = desired.compute([ServiceInput(SERVICE, (server(3, weight=3), server(4, up=False)))])
    outcomes = [*first.services[KEY].servers.values(), *again.services[KEY].servers.values()]
    assert [(o.in_table, o.weight, o.reason) for o in outcomes] == [
        (True, 3, "up"),
        (True, 3, "up"),
        (True, 3, "up"),
        (False, 0, "down"),
    ]
    assert outcomes[0] is outcomes[1] is outcomes[2]


def test_all_up_keeps_configured_weights() -> None:
    result = desired.compute([ServiceInput(SERVICE, (server(1, weight=3), server(2, weight=1)))])
    assert result.table[KEY].service == SERVICE
    assert weights(result) == {"10.0.2.1": 3, "10.0.2.2": 1}
    outcome = result.services[KEY]
    assert (outcome.below_quorum, outcome.healthy_weight, outcome.total_weight) == (False, 4, 4)
    assert outcome.servers[("10.0.2.1", 80)].reason == "up"


def test_the_outcomes_of_a_service_all_up_are_read_from_its_entry() -> None:
    """Every server up and in the table above weight 0 (the most common case):
    the outcomes keep nothing but the entry's servers, and say what a dict of
    them said, also after the leaving servers join the entry at weight 0."""
    result = desired.compute(
        [ServiceInput(SERVICE, (server(1, weight=3), server(2, health_weight=2)))]
    )
    entry, outcomes = result.table[KEY], result.services[KEY].servers
    assert [o for o in gc.get_referents(outcomes) if not isinstance(o, type)] == [
        entry.real_servers
    ]
    up = {
        ("10.0.2.1", 80): desired.ServerOutcome(True, 3, "up"),
        ("10.0.2.2", 80): desired.ServerOutcome(True, 2, "up"),
    }
    assert dict(outcomes) == up and outcomes == up and len(outcomes) == 2
    entry.real_servers[("10.0.2.9", 80)] = rs(9, 0)  # a leaving server, as leaving.add_to
    assert dict(outcomes) == up and outcomes.get(("10.0.2.9", 80)) is None
    assert outcomes.get(("10.0.2.8", 80)) is None and ("10.0.2.8", 80) not in outcomes
    for inputs in (
        (server(1), server(2, up=False)),  # one down
        (server(1), server(2, health_weight=0)),  # up at weight 0
        (server(1), server(2, admin=DRAIN)),
    ):
        other = desired.compute([ServiceInput(SERVICE, inputs)]).services[KEY].servers
        assert isinstance(other, dict) and len(other) == 2


def test_down_server_removed_by_default() -> None:
    result = desired.compute([ServiceInput(SERVICE, (server(1), server(2, up=False)))])
    assert weights(result) == {"10.0.2.1": 1}
    assert result.services[KEY].servers[("10.0.2.2", 80)] == desired.ServerOutcome(False, 0, "down")


def test_down_server_inhibited_keeps_entry_with_weight_zero() -> None:
    result = desired.compute(
        [ServiceInput(SERVICE, (server(1), server(2, up=False, weight=5)), on_failure=INHIBIT)]
    )
    assert weights(result) == {"10.0.2.1": 1, "10.0.2.2": 0}
    # The rest of the entry is the configured one (forwarding etc.).
    assert result.table[KEY].real_servers[("10.0.2.2", 80)].forwarding == "masq"


def test_health_weight_dynamic_or_slow_start_is_used_while_up() -> None:
    result = desired.compute(
        [ServiceInput(SERVICE, (server(1, weight=10, health_weight=4), server(2, health_weight=0)))]
    )
    assert weights(result) == {"10.0.2.1": 4, "10.0.2.2": 0}


def test_negative_health_weight_is_clamped() -> None:
    result = desired.compute([ServiceInput(SERVICE, (server(1, health_weight=-3),))])
    assert weights(result) == {"10.0.2.1": 0}


def test_drain_keeps_entry_with_weight_zero_and_disable_removes() -> None:
    result = desired.compute(
        [
            ServiceInput(
                SERVICE, (server(1), server(2, admin=DRAIN), server(3, admin=DISABLE), server(4))
            )
        ]
    )
    assert weights(result) == {"10.0.2.1": 1, "10.0.2.2": 0, "10.0.2.4": 1}
    reasons = {k[0]: v.reason for k, v in result.services[KEY].servers.items()}
    assert reasons == {
        "10.0.2.1": "up",
        "10.0.2.2": "drained",
        "10.0.2.3": "disabled",
        "10.0.2.4": "up",
    }


def test_drained_and_down_follows_on_failure() -> None:
    removed = desired.compute(
        [ServiceInput(SERVICE, (server(1), server(2, up=False, admin=DRAIN)))]
    )
    assert weights(removed) == {"10.0.2.1": 1}
    inhibited = desired.compute(
        [ServiceInput(SERVICE, (server(1), server(2, up=False, admin=DRAIN)), on_failure=INHIBIT)]
    )
    assert weights(inhibited) == {"10.0.2.1": 1, "10.0.2.2": 0}


def test_disabled_server_gone_even_with_inhibit() -> None:
    result = desired.compute(
        [ServiceInput(SERVICE, (server(1), server(2, admin=DISABLE)), on_failure=INHIBIT)]
    )
    assert weights(result) == {"10.0.2.1": 1}


def test_service_without_servers_is_still_in_the_table() -> None:
    result = desired.compute([ServiceInput(SERVICE, ())])
    assert result.table[KEY].real_servers == {}
    assert result.services[KEY].below_quorum


def test_all_down_brings_in_sorry_server() -> None:
    sorry = RealServer("10.0.3.1", 80, "masq", 1)
    result = desired.compute(
        [ServiceInput(SERVICE, (server(1, up=False), server(2, up=False)), sorry_servers=(sorry,))]
    )
    assert weights(result) == {"10.0.3.1": 1}
    assert result.services[KEY].sorry_active
    assert result.services[KEY].servers[("10.0.3.1", 80)].reason == "sorry"
    assert result.below_quorum() == frozenset({KEY})


def test_sorry_server_leaves_when_a_server_recovers() -> None:
    sorry = RealServer("10.0.3.1", 80, "masq", 1)
    spec = ServiceInput(SERVICE, (server(1), server(2, up=False)), sorry_servers=(sorry,))
    result = desired.compute([spec], below_quorum=frozenset({KEY}))
    assert weights(result) == {"10.0.2.1": 1}
    assert not result.services[KEY].sorry_active
    assert result.below_quorum() == frozenset()


def test_all_down_without_sorry_servers_only_reports() -> None:
    result = desired.compute([ServiceInput(SERVICE, (server(1, up=False),), on_failure=INHIBIT)])
    assert weights(result) == {"10.0.2.1": 0}
    assert result.services[KEY].below_quorum and not result.services[KEY].sorry_active


def test_all_drained_counts_as_below_quorum() -> None:
    sorry = RealServer("10.0.3.1", 80, "masq", 1)
    result = desired.compute(
        [ServiceInput(SERVICE, (server(1, admin=DRAIN),), sorry_servers=(sorry,))]
    )
    # Below quorum with a sorry server: the sorry server answers alone; the
    # drained server is treated as failed (removed).
    assert weights(result) == {"10.0.3.1": 1}


def quorum_service(ups: tuple[bool, ...], quorum: Quorum, **kwargs: object) -> ServiceInput:
    servers = tuple(server(i + 1, up=up, weight=1) for i, up in enumerate(ups))
    sorry = (RealServer("10.0.3.1", 80, "masq", 1),)
    return ServiceInput(SERVICE, servers, quorum=quorum, sorry_servers=sorry, **kwargs)  # type: ignore[arg-type]


def test_quorum_by_weight_with_sorry_replacing_every_real_server() -> None:
    quorum = Quorum(min_healthy_weight=3)
    above = desired.compute([quorum_service((True, True, True, False), quorum)])
    assert not above.services[KEY].below_quorum
    below = desired.compute([quorum_service((True, True, False, False), quorum)])
    outcome = below.services[KEY]
    assert outcome.below_quorum and outcome.sorry_active and outcome.threshold == 3
    # keepalived's rule: below quorum the sorry server answers alone.
    assert weights(below) == {"10.0.3.1": 1}
    assert outcome.servers[("10.0.2.1", 80)].reason == "below-quorum"


def test_below_quorum_with_inhibit_keeps_real_servers_at_weight_zero() -> None:
    below = desired.compute(
        [quorum_service((True, False, False), Quorum(min_healthy_weight=2), on_failure=INHIBIT)]
    )
    assert weights(below) == {"10.0.2.1": 0, "10.0.2.2": 0, "10.0.2.3": 0, "10.0.3.1": 1}


def test_quorum_hysteresis_holds_until_threshold_plus_hysteresis() -> None:
    quorum = Quorum(min_healthy_weight=2, hysteresis=1)
    state: frozenset[ServiceKey] = frozenset()
    steps = [
        ((True, True, True, False), False),  # 3 >= 2: above
        ((True, False, False, False), True),  # 1 < 2: below
        ((True, True, False, False), True),  # 2 < 2+1: still below (hysteresis)
        ((True, True, True, False), False),  # 3 >= 3: above again
        ((True, True, False, False), False),  # 2 >= 2: stays above
    ]
    for ups, expect_below in steps:
        result = desired.compute([quorum_service(ups, quorum)], state)
        assert result.services[KEY].below_quorum is expect_below, ups
        state = result.below_quorum()


def test_quorum_by_fraction_of_non_disabled_weight() -> None:
    quorum = Quorum(min_healthy_fraction=0.5)
    servers = (
        server(1, weight=2),
        server(2, weight=2, up=False),
        server(3, weight=4, admin=DISABLE),
    )
    result = desired.compute([ServiceInput(SERVICE, servers, quorum=quorum)])
    outcome = result.services[KEY]
    # total 4 (the disabled server does not count), half of it is 2, healthy 2.
    assert (outcome.total_weight, outcome.threshold, outcome.healthy_weight) == (4, 2, 2)
    assert not outcome.below_quorum


@pytest.mark.parametrize(
    ("quorum", "total", "threshold"),
    [
        (Quorum(), 10, 1),
        (Quorum(min_healthy_weight=4), 10, 4),
        (Quorum(min_healthy_fraction=0.5), 10, 5),
        (Quorum(min_healthy_fraction=0.5), 9, 5),
        (Quorum(min_healthy_fraction=0.3), 10, 3),
        (Quorum(min_healthy_weight=2, min_healthy_fraction=0.5), 10, 5),
        (Quorum(min_healthy_weight=7, min_healthy_fraction=0.5), 10, 7),
        (Quorum(min_healthy_fraction=0.5), 0, 1),
    ],
)
def test_quorum_threshold(quorum: Quorum, total: int, threshold: int) -> None:
    assert quorum.threshold(total) == threshold


def test_services_are_independent_and_all_present() -> None:
    other_key = ServiceKey.for_fwmark(42)
    other = Service(other_key, scheduler="rr")
    result = desired.compute(
        [
            ServiceInput(SERVICE, (server(1, up=False),)),
            ServiceInput(other, (ServerInput(RealServer("10.0.2.1", 0, "route", 2), True, 2),)),
        ],
        below_quorum=frozenset({other_key}),
    )
    assert set(result.table) == {KEY, other_key}
    assert weights(result) == {}
    assert weights(result, other_key) == {"10.0.2.1": 2}
    assert result.below_quorum() == frozenset({KEY})


def test_sorry_server_wins_a_key_collision() -> None:
    sorry = RealServer("10.0.2.1", 80, "masq", 7)
    result = desired.compute(
        [ServiceInput(SERVICE, (server(1, up=False),), on_failure=INHIBIT, sorry_servers=(sorry,))]
    )
    assert weights(result) == {"10.0.2.1": 7}


def test_merged_takes_the_recomputed_services_from_the_part_in_configured_order() -> None:
    keys = [ServiceKey.for_address("tcp", "10.0.0.%d" % n, 80) for n in (1, 2, 3, 4)]

    def inputs(*down: int) -> list[ServiceInput]:
        return [
            ServiceInput(Service(key, scheduler="wrr"), (server(1, up=n not in down),))
            for n, key in enumerate(keys)
        ]

    previous = desired.compute(inputs())
    now = desired.compute(inputs(1, 3))
    # Service 1 computed again (its server went down); service 3 is held out
    # of the kernel (recomputed, absent from the part); the rest kept.
    part = desired.compute([item for item in inputs(1, 3) if item.key == keys[1]])
    result = desired.merged(previous, part, reversed(keys), {keys[1], keys[3]})
    assert list(result.table) == list(result.services) == [keys[2], keys[1], keys[0]]
    assert result.table[keys[1]] is part.table[keys[1]]
    assert result.table[keys[1]] == now.table[keys[1]] != previous.table[keys[1]]
    assert result.table[keys[0]] is previous.table[keys[0]]
    assert result.services[keys[2]] is previous.services[keys[2]]
