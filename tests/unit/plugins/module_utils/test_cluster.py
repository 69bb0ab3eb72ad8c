"""The cluster's inventory model -> the director's table and VIPs, the real
servers' VIPs; every error names the inventory variable."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ansible_collections.haecs.lvs.plugins.module_utils import _cluster
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.errors import HaecsError
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.rules import parse_rules

WEB = {
    "name": "web",
    "protocol": "tcp",
    "address": "192.0.2.10",
    "port": 80,
    "scheduler": "rr",
    "forwarding": "masq",
    "real_server_port": 8080,
    "real_servers_group": "web",
}
DNS = {
    "name": "dns",
    "protocol": "udp",
    "address": "2001:db8::53",
    "port": 53,
    "real_servers_group": "dns",
    "vip_interface": "dummy0",
}
GROUPS = {"web": ["rs2", "rs1"], "dns": ["ns1"], "empty": []}
HOSTVARS: dict[str, Any] = {
    "rs1": {"haecs_real_server_address": "10.10.0.11"},
    "rs2": {"ansible_host": "10.10.0.12", "haecs_real_server_overrides": {"web": {"weight": 3}}},
    "ns1": {"ansible_host": "2001:db8:1::53"},
}


def refused(services: Any, message: str, hostvars: Any = None, groups: Any = None) -> None:
    with pytest.raises(HaecsError, match="^" + re.escape(message)):
        _cluster.cluster_table(
            services, groups or GROUPS, HOSTVARS if hostvars is None else hostvars
        )


def test_the_table_comes_from_the_model_and_the_groups() -> None:
    table = _cluster.cluster_table([WEB, DNS], GROUPS, HOSTVARS)
    assert table == [
        {
            "protocol": "tcp",
            "address": "192.0.2.10",
            "port": 80,
            "scheduler": "rr",
            "real_servers": [
                {"address": "10.10.0.11", "port": 8080, "forwarding": "masq"},
                {"address": "10.10.0.12", "port": 8080, "forwarding": "masq", "weight": 3},
            ],
        },
        {
            "protocol": "udp",
            "address": "2001:db8::53",
            "port": 53,
            "real_servers": [{"address": "2001:db8:1::53", "port": 53}],
        },
    ]


def test_the_rules_file_is_what_ipvsadm_restore_and_ipvs_table_read() -> None:
    table = _cluster.cluster_table([WEB, DNS], GROUPS, HOSTVARS)
    rules = _cluster.ipvsadm_rules(table)
    assert rules.splitlines() == [
        "-A -t 192.0.2.10:80 -s rr",
        "-a -t 192.0.2.10:80 -r 10.10.0.11:8080 -m -w 1",
        "-a -t 192.0.2.10:80 -r 10.10.0.12:8080 -m -w 3",
        "-A -u [2001:db8::53]:53 -s wlc",
        "-a -u [2001:db8::53]:53 -r [2001:db8:1::53]:53 -g -w 1",
    ]
    services, _lines = parse_rules(rules)
    assert [len(service["real_servers"]) for service in services] == [2, 1]


def test_vips_of_the_director_and_of_direct_routing_real_servers() -> None:
    assert _cluster.director_vips([WEB, DNS], "front") == [
        {"address": "192.0.2.10", "interface": "front"},
        {"address": "2001:db8::53", "interface": "dummy0"},
    ]
    with pytest.raises(HaecsError, match=re.escape("haecs_services[0].vip_interface: required")):
        _cluster.director_vips([WEB], "")
    # NAT servers hold no VIP; a direct-routing one does (route is the default).
    assert _cluster.real_server_vips([WEB, DNS], "rs1", GROUPS, HOSTVARS) == []
    assert _cluster.real_server_vips([WEB, DNS], "ns1", GROUPS, HOSTVARS) == [
        {"address": "2001:db8::53", "forwarding": "route"}
    ]
    overridden = dict(
        HOSTVARS, rs1={"haecs_real_server_overrides": {"web": {"forwarding": "tunnel"}}}
    )
    assert _cluster.real_server_vips([WEB], "rs1", GROUPS, overridden) == [
        {"address": "192.0.2.10", "forwarding": "tunnel"}
    ]


def test_errors_name_the_variable_the_bad_value_came_from() -> None:
    refused({"web": WEB}, "haecs_services: must be a list of services, got dict")
    refused(
        [dict(WEB, forwarding="nat")],
        "haecs_services[0].forwarding: must be one of masq, route, tunnel",
    )
    refused(
        [dict(WEB, weight=70000)],
        "haecs_services[0].weight: must be an integer from 0 to 65535, got 70000",
    )
    refused(
        [dict(WEB, real_server_port=0)],
        "haecs_services[0].real_server_port: must be an integer from 1 to 65535",
    )
    refused([dict(WEB, scheduler="fastest")], "haecs_services[0].scheduler: must be one of")
    refused([dict(WEB, colour="red")], "haecs_services[0].colour: unknown option")
    refused([{k: v for k, v in WEB.items() if k != "name"}], "haecs_services[0].name: required")
    refused(
        [dict(WEB, real_servers_group="nope")],
        "haecs_services[0].real_servers_group: no inventory group 'nope'",
    )
    refused(
        [WEB, dict(WEB, address="192.0.2.11")],
        "haecs_services[1].name: duplicates haecs_services[0].name",
    )
    refused([WEB, dict(WEB, name="again")], "haecs_services[1]: duplicates haecs_services[0]")
    bad_override = dict(
        HOSTVARS,
        rs2={
            "ansible_host": "10.10.0.12",
            "haecs_real_server_overrides": {"web": {"weight": 70000}},
        },
    )
    refused(
        [WEB],
        "hostvars[rs2].haecs_real_server_overrides.web.weight: must be an integer from 0 to 65535, got 70000",
        bad_override,
    )
    unknown_override = dict(
        HOSTVARS,
        rs2={"ansible_host": "10.10.0.12", "haecs_real_server_overrides": {"web": {"speed": 1}}},
    )
    refused(
        [WEB],
        "hostvars[rs2].haecs_real_server_overrides.web.speed: unknown option",
        unknown_override,
    )
    no_address = dict(HOSTVARS, rs1={"ansible_host": "rs1.example.net"})
    refused([WEB], "hostvars[rs1].haecs_real_server_address: required", no_address)
    ipv4_only = dict(HOSTVARS, ns1={"haecs_real_server_address": "10.10.0.53"})
    refused(
        [DNS],
        "hostvars[ns1].haecs_real_server_address: has no IPv6 address for haecs_services[0]"
        " (a service of that family), got '10.10.0.53'",
        ipv4_only,
    )
    two_ipv4 = dict(HOSTVARS, rs1={"haecs_real_server_address": ["10.10.0.11", "10.10.0.21"]})
    refused(
        [WEB],
        "hostvars[rs1].haecs_real_server_address: at most one address per family,"
        " got 10.10.0.11 and 10.10.0.21",
        two_ipv4,
    )
    ipv6_host = dict(HOSTVARS, rs1={"ansible_host": "2001:db8::11"})
    refused(
        [WEB],
        "hostvars[rs1].haecs_real_server_address: required: the real server's IPv4 address for"
        " haecs_services[0] (ansible_host is not one)",
        ipv6_host,
    )
    bad_address = dict(HOSTVARS, rs1={"haecs_real_server_address": "10.10.0.300"})
    refused(
        [WEB],
        "hostvars[rs1].haecs_real_server_address: must be an IPv4 or IPv6 address, or a list",
        bad_address,
    )
    # A direct-routing server cannot map ports: the rule names the service's option.
    refused(
        [dict(WEB, forwarding="route")],
        "haecs_services[0].real_server_port: must equal the service port (80)",
    )


CHECKED = dict(
    WEB, checks=[{"type": "http", "path": "/"}], check_defaults={"interval": 1, "timeout": 0.5}
)


def test_one_owner_per_service() -> None:
    """A service with checks is the monitor's: not in the director's table,
    in the monitor's configuration; a static one is the other way round."""
    static = dict(WEB, name="static", port=8080)
    assert [
        entry["port"] for entry in _cluster.cluster_table([CHECKED, static], GROUPS, HOSTVARS)
    ] == [8080]
    monitored, sources = _cluster.monitor_services([CHECKED, static], GROUPS, HOSTVARS)
    assert [entry["port"] for entry in monitored] == [80]
    assert monitored[0]["checks"] == [{"type": "http", "path": "/"}]
    assert "real_servers_group" not in monitored[0] and "name" not in monitored[0]
    assert sources == [(0, ["rs1", "rs2"])]
    # Both are checked, whichever owns them.
    refused([dict(CHECKED, weight=70000), static], "haecs_services[0].weight: must be an integer")
    # What ipvs_table keeps: the monitored services' keys, fwmark ones too.
    marked = dict(CHECKED, name="marked", fwmark=7, family="ipv6")
    for name in ("protocol", "address", "port"):
        del marked[name]
    assert _cluster.monitored_keys([CHECKED, static, marked]) == [
        {"protocol": "tcp", "address": "192.0.2.10", "port": 80},
        {"fwmark": 7, "family": "ipv6"},
    ]
    with pytest.raises(HaecsError, match=re.escape("haecs_services[0].port: ")):
        _cluster.monitored_keys([dict(CHECKED, port=70000)])
    assert _cluster.static_keys([CHECKED, static, marked]) == [
        {"protocol": "tcp", "address": static["address"], "port": static["port"]}
    ]


def test_the_monitor_config_is_checked_by_the_monitor_and_names_the_variable() -> None:
    from ansible.errors import AnsibleFilterError

    from ansible_collections.haecs.lvs.plugins.filter.cluster import FilterModule

    monitor_config = FilterModule().filters()["monitor_config"]

    static = dict(WEB, name="static", port=8080)
    document = monitor_config([static, CHECKED], GROUPS, HOSTVARS, {"name": "lab"})
    assert document["global"] == {"name": "lab"} and len(document["services"]) == 1
    # The static ones are named, so a service that stops being monitored is
    # handed over to the director role instead of being drained and deleted.
    assert document["static_services"] == [
        {"protocol": "tcp", "address": static["address"], "port": 8080}
    ]

    def refused_by_monitor(services: Any, settings: Any, message: str) -> None:
        with pytest.raises(AnsibleFilterError) as caught:
            monitor_config(services, GROUPS, HOSTVARS, settings)
        assert message in str(caught.value), str(caught.value)

    slow = dict(CHECKED, checks=[{"type": "http", "timeout": 5}])
    refused_by_monitor(
        [static, slow],
        {"name": "lab"},
        "haecs_services[1].checks[0].timeout: must be less than interval (1), got 5",
    )
    refused_by_monitor(
        [static, CHECKED],
        {"name": "lab", "reconcile_interval": -1},
        "monitor_settings.reconcile_interval: must be greater than 0",
    )
    per_server = dict(
        HOSTVARS,
        rs2={
            "ansible_host": "10.10.0.12",
            "haecs_real_server_overrides": {"web": {"weight": 70000}},
        },
    )
    with pytest.raises(
        AnsibleFilterError, match=re.escape("hostvars[rs2].haecs_real_server_overrides.web.weight")
    ):
        monitor_config([CHECKED], GROUPS, per_server, {"name": "lab"})


def test_ha_instances_one_per_interface_with_the_gateway() -> None:
    web = dict(WEB, name="web", address="192.0.2.10")
    dr = dict(WEB, name="dr", address="192.0.2.11", vip_interface="dmz")
    six = dict(WEB, name="six", address="2001:db8::10")
    gateway = [{"address": "10.10.0.1/24", "interface": "back"}]
    gateway6 = [{"address": "fd00:10::1/64", "interface": "back"}]
    instance = {"family": "inet"}
    assert _cluster.ha_instances([web, dr, six], "front", gateway + gateway6, 51) == [
        {
            **instance,
            "name": "haecs_back",
            "interface": "back",
            "router_id": 51,
            "vips": ["10.10.0.1/24"],
        },
        {
            **instance,
            "name": "haecs_dmz",
            "interface": "dmz",
            "router_id": 52,
            "vips": ["192.0.2.11/32"],
        },
        {
            **instance,
            "name": "haecs_front",
            "interface": "front",
            "router_id": 53,
            "vips": ["192.0.2.10/32"],
        },
        # One family per VRRP instance: the IPv6 VIPs in instances of their own, after the IPv4 ones.
        {
            "name": "haecs_back_v6",
            "interface": "back",
            "family": "inet6",
            "router_id": 54,
            "vips": ["fd00:10::1/64"],
        },
        {
            "name": "haecs_front_v6",
            "interface": "front",
            "family": "inet6",
            "router_id": 55,
            "vips": ["2001:db8::10/128"],
        },
    ]
    # Without IPv6 VIPs the IPv4 instances keep their ids.
    assert [
        entry["router_id"] for entry in _cluster.ha_instances([web, dr], "front", gateway, 51)
    ] == [
        51,
        52,
        53,
    ]
    assert _cluster.ha_instances([web], "front", [], "7")[0]["router_id"] == 7

    def refused(extra: Any, router_id: Any, message: str, services: Any = None) -> None:
        with pytest.raises(HaecsError) as caught:
            _cluster.ha_instances(
                [web] if services is None else services, "front", extra, router_id
            )
        assert str(caught.value) == message

    refused(
        [],
        0,
        "ha_router_id: must be from 1 to 255 (1 instances, one per interface and address family, take consecutive ids up to 255), got 0",
    )
    refused(
        gateway,
        255,
        "ha_router_id: must be from 1 to 254 (2 instances, one per interface and address family, take consecutive ids up to 255), got 255",
    )
    refused([], "x", "ha_router_id: must be an integer, got 'x'")
    refused(
        [{"address": "10.10.0.x/24", "interface": "back"}],
        51,
        "ha_extra_vips[0].address: must be an address with a prefix length, got '10.10.0.x/24'",
    )
    refused(
        [{"address": "192.0.2.10/24", "interface": "back"}],
        51,
        "ha_extra_vips[0].address: 192.0.2.10 is already a VIP",
    )
    refused(
        [{"address": "10.10.0.1/24", "interface": "a/b"}],
        51,
        "ha_extra_vips[0].interface: must be an interface name, got 'a/b'",
    )
    refused(
        [{"address": "10.10.0.1/24"}],
        51,
        "ha_extra_vips[0]: must be a mapping with address and interface, got {'address': '10.10.0.1/24'}",
    )
    refused(
        {"address": "10.10.0.1/24"},
        51,
        "ha_extra_vips: must be a list of {address, interface}, got dict",
    )
    refused([], 51, "haecs_services: declares no VIP for the pair to carry", services=[])


SHOP = {
    "name": "shop",
    "fwmark": 42,
    "persistence_timeout": 300,
    "forwarding": "route",
    "real_servers_group": "web",
    "marks": [
        {"address": "192.0.2.20", "ports": [443, 80]},
        {"address": "192.0.2.20", "protocol": "udp", "ports": [443]},
    ],
}


def test_an_fwmark_service_marks_its_ports_holds_its_vip_and_its_real_servers_take_it() -> None:
    assert _cluster.director_marks([WEB, SHOP]) == [
        {"mark": 42, "destination": "192.0.2.20", "ports": [443, 80]},
        {"mark": 42, "destination": "192.0.2.20", "ports": [443], "protocol": "udp"},
    ]
    assert _cluster.director_vips([WEB, SHOP], "eth0") == [
        {"address": "192.0.2.10", "interface": "eth0"},
        {"address": "192.0.2.20", "interface": "eth0"},
    ]
    # Direct routing: the real servers hold the VIP the marks match.
    assert _cluster.real_server_vips([WEB, SHOP], "rs1", GROUPS, HOSTVARS) == [
        {"address": "192.0.2.20", "forwarding": "route"}
    ]
    # The IPVS service is keyed by the mark only: the marks stay in the model.
    (table,) = _cluster.cluster_table([SHOP], GROUPS, HOSTVARS)
    assert "marks" not in table
    assert table["fwmark"] == 42
    assert [server["address"] for server in table["real_servers"]] == ["10.10.0.11", "10.10.0.12"]
    assert _cluster.director_marks([WEB]) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"marks": []}, "haecs_services[1].marks: must be a non-empty list"),
        ({"marks": [{"address": "192.0.2.20"}]}, "haecs_services[1].marks[0].ports: is required"),
        (
            {"marks": [{"address": "192.0.2.20", "ports": [80, 70000]}]},
            "haecs_services[1].marks[0].ports[1]: must be a port",
        ),
        (
            {"marks": [{"address": "192.0.2.20", "ports": [80], "protocol": "icmp"}]},
            "haecs_services[1].marks[0].protocol: must be one of tcp, udp, sctp",
        ),
        (
            {"marks": [{"address": "shop.example", "ports": [80]}]},
            "haecs_services[1].marks[0].address: required: the VIP",
        ),
        (
            {"marks": [{"address": "2001:db8::20", "ports": [80]}]},
            "haecs_services[1].marks[0].address: 2001:db8::20 is IPv6 but the service's family is ipv4",
        ),
        (
            {"marks": [{"address": "192.0.2.20", "ports": [80], "port": 80}]},
            "haecs_services[1].marks[0].port: unknown option; a mark takes address, protocol, ports",
        ),
        (
            {
                "marks": [
                    {"address": "192.0.2.20", "ports": [80]},
                    {"address": "192.0.2.20", "ports": [443]},
                ]
            },
            "haecs_services[1].marks[1]: the same address and protocol as haecs_services[1].marks[0]",
        ),
        (
            {"fwmark": None, "address": "192.0.2.20", "port": 80},
            "haecs_services[1].marks: only for a service keyed by fwmark",
        ),
    ],
)
def test_bad_marks_are_refused_naming_the_variable(change: dict[str, Any], message: str) -> None:
    shop = {key: value for key, value in {**SHOP, **change}.items() if value is not None}
    for derive in (
        lambda: _cluster.director_marks([WEB, shop]),
        lambda: _cluster.director_vips([WEB, shop], "eth0"),
        lambda: _cluster.real_server_vips([WEB, shop], "rs1", GROUPS, HOSTVARS),
        lambda: _cluster.cluster_table([WEB, shop], GROUPS, HOSTVARS),
    ):
        with pytest.raises(HaecsError, match="^" + re.escape(message)):
            derive()


def test_a_port_ipvs_would_ignore_is_refused() -> None:
    # A persistent fwmark service sends each connection to the port the
    # client asked for: a real server's port there would be ignored.
    nat = {**SHOP, "forwarding": "masq"}
    message = (
        "haecs_services[0].real_server_port: is ignored by IPVS in a persistent fwmark service: "
        "each connection goes to the port the client asked for"
    )
    with pytest.raises(HaecsError, match="^" + re.escape(message)):
        _cluster.cluster_table([{**nat, "real_server_port": 8080}], GROUPS, HOSTVARS)
    overridden = {
        **HOSTVARS,
        "rs1": {**HOSTVARS["rs1"], "haecs_real_server_overrides": {"shop": {"port": 8080}}},
    }
    with pytest.raises(
        HaecsError, match=re.escape("haecs_real_server_overrides.shop.port: is ignored by IPVS")
    ):
        _cluster.cluster_table([nat], GROUPS, overridden)
    # Without persistence IPVS uses the real server's port, and without a port the client's.
    assert _cluster.cluster_table(
        [{**nat, "real_server_port": 8080, "persistence_timeout": None}], GROUPS, HOSTVARS
    )
    assert "port" not in _cluster.cluster_table([nat], GROUPS, HOSTVARS)[0]["real_servers"][0]


def test_two_services_may_not_mark_the_same_packets() -> None:
    other = {
        **SHOP,
        "name": "other",
        "fwmark": 43,
        "marks": [{"address": "192.0.2.20", "ports": [8000, 443]}],
    }
    with pytest.raises(
        HaecsError,
        match=re.escape(
            "haecs_services[1].marks[0]: overlaps haecs_services[0].marks[0] (tcp 192.0.2.20 port 443) with a different mark (42, 43)"
        ),
    ):
        _cluster.director_marks([SHOP, other])


def test_a_dual_stack_host_serves_each_family_from_its_own_address() -> None:
    hostvars = {
        "rs1": {"haecs_real_server_address": ["fd00:10::11", "10.10.0.11"]},
        "rs2": {
            "ansible_host": "10.10.0.12",
            "haecs_real_server_address": ["10.10.0.12", "fd00:10::12"],
        },
    }
    web6 = dict(WEB, name="web6", address="2001:db8:f::10")
    table = _cluster.cluster_table([WEB, web6], {"web": ["rs1", "rs2"]}, hostvars)
    assert [[server["address"] for server in service["real_servers"]] for service in table] == [
        ["10.10.0.11", "10.10.0.12"],
        ["fd00:10::11", "fd00:10::12"],
    ]
