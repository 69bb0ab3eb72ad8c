"""The engine against a real kernel, checked with ipvsadm as the witness."""

from __future__ import annotations

import re
import sys
from typing import Optional

import pytest
from conftest import saved_table

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.engine import IPVSError
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    RealServer,
    Service,
    ServiceKey,
    VirtualService,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.params import (
    parse_real_server,
    parse_service,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.plan import (
    ADD_REAL_SERVER,
    ADD_SERVICE,
    Operation,
    plan,
)

FEATURES = [
    (
        {
            "protocol": "tcp",
            "address": "10.0.0.1",
            "port": 80,
            "scheduler": "sh",
            "scheduler_flags": ["sh-port", "sh-fallback"],
            "persistence_timeout": 300,
            "persistence_netmask": "255.255.255.0",
        },
        [
            {"address": "10.0.1.1", "port": 8080, "forwarding": "masq", "weight": 5},
            {"address": "10.0.1.2", "port": 8080, "forwarding": "masq", "weight": 0},
        ],
    ),
    (
        {
            "protocol": "udp",
            "address": "10.0.0.1",
            "port": 5060,
            "persistence_timeout": 60,
            "persistence_engine": "sip",
            "one_packet": True,
        },
        [{"address": "10.0.1.3", "forwarding": "route"}],
    ),
    (
        {"protocol": "sctp", "address": "10.0.0.1", "port": 2905, "scheduler": "wrr"},
        [
            {
                "address": "10.0.1.4",
                "forwarding": "route",
                "upper_threshold": 100,
                "lower_threshold": 50,
            }
        ],
    ),
    (
        {
            "address": "2001:db8::1",
            "port": 443,
            "scheduler": "mh",
            "scheduler_flags": ["mh-port"],
            "persistence_timeout": 30,
            "persistence_prefix_length": 64,
        },
        [
            {
                "address": "2001:db8:1::1",
                "forwarding": "tunnel",
                "tunnel_type": "gue",
                "tunnel_port": 6080,
                "tunnel_checksum": "remcsum",
            },
            {
                "address": "2001:db8:1::2",
                "forwarding": "tunnel",
                "tunnel_type": "gre",
                "tunnel_checksum": "csum",
            },
            {"address": "10.0.1.5", "forwarding": "tunnel"},
        ],
    ),
    (
        {"fwmark": 42, "scheduler": "lblcr"},
        [
            {"address": "10.0.1.6", "forwarding": "masq"},
            {"address": "10.0.1.7", "port": 8443, "forwarding": "masq"},
        ],
    ),
    (
        {"fwmark": 43, "family": "ipv6", "scheduler": "fo"},
        [{"address": "2001:db8:1::9", "forwarding": "route"}],
    ),
    (
        {"address": "10.0.0.2", "port": 0, "persistence_timeout": 3600, "scheduler": "ovf"},
        [{"address": "10.0.1.8"}],
    ),
]

# What `ipvsadm -Sn` must print for FEATURES, written out by hand.
EXPECTED_SAVE = [
    "-A -t 10.0.0.1:80 -s sh -p 300 -M 255.255.255.0 -b sh-fallback,sh-port",
    "-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 5",
    "-a -t 10.0.0.1:80 -r 10.0.1.2:8080 -m -w 0",
    "-A -u 10.0.0.1:5060 -s wlc -p 60 --pe sip -o",
    "-a -u 10.0.0.1:5060 -r 10.0.1.3:5060 -g -w 1",
    "-A --sctp-service 10.0.0.1:2905 -s wrr",
    "-a --sctp-service 10.0.0.1:2905 -r 10.0.1.4:2905 -g -w 1",
    "-A -t [2001:db8::1]:443 -s mh -p 30 -M 64 -b mh-port",
    "-a -t [2001:db8::1]:443 -r [2001:db8:1::1]:443 -i -w 1 --tun-type gue --tun-port 6080 --tun-remcsum",
    "-a -t [2001:db8::1]:443 -r [2001:db8:1::2]:443 -i -w 1 --tun-type gre --tun-csum",
    "-a -t [2001:db8::1]:443 -r 10.0.1.5:443 -i -w 1 --tun-type ipip",
    "-A -f 42 -s lblcr",
    "-a -f 42 -r 10.0.1.6:0 -m -w 1",
    "-a -f 42 -r 10.0.1.7:8443 -m -w 1",
    "-A -f 43 -6 -s fo",
    "-a -f 43 -6 -r [2001:db8:1::9]:0 -g -w 1",
    "-A -t 10.0.0.2:0 -s ovf -p 3600",
    "-a -t 10.0.0.2:0 -r 10.0.1.8:0 -g -w 1",
]


def build(features: Optional[list] = None) -> dict:  # type: ignore[type-arg]
    table = {}
    for service_params, servers in FEATURES if features is None else features:
        service = parse_service(service_params)
        entry = VirtualService(service)
        for server_params in servers:
            server = parse_real_server(server_params, service.key)
            entry.real_servers[server.key] = server
        table[service.key] = entry
    return table


def test_every_feature_reaches_the_kernel_and_reads_back(ipvs) -> None:  # type: ignore[no-untyped-def]
    desired = build()
    ipvs.apply(plan(ipvs.read(), desired))
    assert sorted(saved_table()) == sorted(EXPECTED_SAVE)
    current = ipvs.read()
    assert current == desired
    # The kernel's HASHED flag and counters never show as a change.
    assert plan(current, desired, purge_services=True, purge_real_servers=True) == []


def test_thresholds_are_set(ipvs) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    ipvs.apply(plan(ipvs.read(), build(FEATURES[2:3])))
    listing = subprocess.run(
        ["ipvsadm", "-Ln", "--thresholds"], check=True, capture_output=True, text=True
    ).stdout
    assert any(
        line.split()[1:4] == ["10.0.1.4:2905", "100", "50"]
        for line in listing.splitlines()
        if "->" in line
    )


def test_edits_are_in_place(ipvs) -> None:  # type: ignore[no-untyped-def]
    ipvs.apply(plan(ipvs.read(), build()))
    changed = [
        (
            {
                **FEATURES[0][0],
                "scheduler": "rr",
                "scheduler_flags": None,
                "persistence_timeout": 60,
                "persistence_netmask": None,
            },
            [{**FEATURES[0][1][0], "weight": 7, "upper_threshold": 9}, FEATURES[0][1][1]],
        ),
        (
            FEATURES[3][0],
            [
                {
                    **FEATURES[3][1][0],
                    "tunnel_type": "ipip",
                    "tunnel_port": None,
                    "tunnel_checksum": None,
                }
            ],
        ),
    ]
    desired = build(changed)
    operations = plan(ipvs.read(), desired, purge_real_servers=True)
    assert [op.ipvsadm_line().split()[0] for op in operations] == ["-E", "-e", "-e", "-d", "-d"]
    ipvs.apply(operations)
    current = ipvs.read()
    for key, entry in desired.items():
        assert current[key] == entry
    assert "-A -t 10.0.0.1:80 -s rr -p 60" in saved_table()


def test_refused_change_is_undone_and_named(ipvs) -> None:  # type: ignore[no-untyped-def]
    ipvs.apply(plan(ipvs.read(), build(FEATURES[:2])))
    before = saved_table()
    web = build(FEATURES[:1])
    existing = next(iter(web.values()))
    new_key = ServiceKey.for_address("tcp", "10.9.9.9", 80)
    new_service = Service(new_key, scheduler="rr")
    duplicate = RealServer("10.0.1.1", 8080, "masq", 5)
    operations = [
        Operation(ADD_SERVICE, new_service),
        Operation(ADD_REAL_SERVER, new_service, RealServer("10.0.2.1", 80, "route")),
        Operation(ADD_REAL_SERVER, existing.service, RealServer("10.0.1.9", 8080, "masq")),
        Operation(ADD_REAL_SERVER, existing.service, duplicate),  # exists: EEXIST
        Operation(
            ADD_REAL_SERVER, new_service, RealServer("10.0.2.2", 80, "route")
        ),  # applied after the failure
    ]
    with pytest.raises(IPVSError) as caught:
        ipvs.apply(operations)
    assert "-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 5" in str(caught.value)
    assert "File exists" in str(caught.value)
    assert "4 change(s) already made were undone" in str(caught.value)
    assert caught.value.rolled_back
    assert saved_table() == before


def test_undo_never_deletes_what_was_there_before(ipvs) -> None:  # type: ignore[no-untyped-def]
    """A refused add followed by adds of entries that already exist (refused
    too, EEXIST) and one new entry: only the new one is undone.  A table
    read after the batch cannot tell an entry the batch added from one that
    was there; the kernel's refusals can (found by the lab: a monitor
    adopting a service took its three real servers out)."""
    ipvs.apply(plan(ipvs.read(), build(FEATURES[:1])))
    before = saved_table()
    existing = next(iter(build(FEATURES[:1]).values()))
    present = next(iter(existing.real_servers.values()))
    operations = [
        Operation(ADD_SERVICE, existing.service),  # exists: EEXIST
        Operation(ADD_REAL_SERVER, existing.service, present),  # exists: EEXIST
        Operation(ADD_REAL_SERVER, existing.service, RealServer("10.0.1.77", 8080, "masq")),
    ]
    with pytest.raises(IPVSError) as caught:
        ipvs.apply(operations)
    assert "File exists" in str(caught.value)
    assert "the 1 change(s) already made were undone" in str(caught.value), str(caught.value)
    assert saved_table() == before


@pytest.mark.parametrize("chunk_bytes", [64, 32768])
def test_failure_in_a_later_chunk_is_undone(ipvs, chunk_bytes: int) -> None:  # type: ignore[no-untyped-def]
    before = saved_table()
    services = [
        Service(ServiceKey.for_address("udp", "10.0.0.3", 1000 + i), scheduler="rr")
        for i in range(50)
    ]
    operations = [Operation(ADD_SERVICE, service) for service in services]
    operations.append(Operation(ADD_SERVICE, services[0]))  # duplicate: EEXIST
    with pytest.raises(IPVSError, match=re.escape("-A -u 10.0.0.3:1000 -s rr")):
        ipvs.apply(operations, chunk_bytes=chunk_bytes)
    assert saved_table() == before


def test_kernel_refuses_mixed_family_without_tunnel(ipvs) -> None:  # type: ignore[no-untyped-def]
    service = Service(ServiceKey.for_address("tcp", "10.0.0.1", 80), scheduler="rr")
    ipvs.apply([Operation(ADD_SERVICE, service)])
    before = saved_table()
    with pytest.raises(IPVSError, match="Invalid argument"):
        ipvs.apply([Operation(ADD_REAL_SERVER, service, RealServer("2001:db8::5", 80, "masq"))])
    assert saved_table() == before


def test_large_table_round_trip(ipvs) -> None:  # type: ignore[no-untyped-def]
    desired = {}
    for i in range(300):
        key = ServiceKey.for_address("tcp", "10.1.%d.%d" % (i // 250, i % 250 + 1), 80)
        servers = {}
        for j in range(10):
            server = RealServer("10.2.%d.%d" % (j, i % 250 + 1), 8000 + i // 250, "masq", j)
            servers[server.key] = server
        desired[key] = VirtualService(Service(key, scheduler="wrr"), servers)
    ipvs.apply(plan({}, desired))
    assert ipvs.read() == desired
    assert len(saved_table()) == 300 * 11
    ipvs.apply(plan(ipvs.read(), {}, purge_services=True))
    assert saved_table() == []


def test_read_only_named_services(ipvs) -> None:  # type: ignore[no-untyped-def]
    desired = build()
    ipvs.apply(plan(ipvs.read(), desired))
    wanted = [key for key in desired if key.is_fwmark]
    partial = ipvs.read(only=wanted)
    assert sorted(partial, key=str) == sorted(wanted, key=str)
    assert all(partial[key] == desired[key] for key in wanted)


def test_read_each_gives_the_table_service_by_service(ipvs) -> None:  # type: ignore[no-untyped-def]
    desired = build()
    ipvs.apply(plan(ipvs.read(), desired))
    whole = ipvs.read(with_stats=True)
    each = list(ipvs.read_each(with_stats=True))
    assert [entry.key for entry in each] == list(whole)
    assert all(entry == whole[entry.key] for entry in each)
    assert all(entry.real_servers == whole[entry.key].real_servers for entry in each)
    wanted = [key for key in desired if key.is_fwmark]
    assert [entry.key for entry in ipvs.read_each(only=wanted)] == [
        key for key in whole if key in wanted
    ]
    # The reader keeps no entry it gave: the caller's reference and
    # getrefcount's argument are the only ones.
    reader = ipvs.read_each()
    first = next(reader)
    next(reader)
    assert sys.getrefcount(first) == 2
