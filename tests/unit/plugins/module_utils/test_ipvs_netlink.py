"""The netlink codec: round trips, and pyroute2 as an independent decoder."""

from __future__ import annotations

import socket

from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2.netlink.generic.ipvs import ipvsmsg

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs import codec as nl
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs import genl
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    RealServer,
    Service,
    ServiceKey,
    Stats,
)

FAMILY_ID = 0x22


def message(cmd: int, payload: bytes) -> bytes:
    body = genl._GENLHDR.pack(cmd, 1, 0) + payload
    return genl._NLMSGHDR.pack(16 + len(body), FAMILY_ID, genl.NLM_F_REQUEST, 1, 0) + body


def inner(encoded: bytes, attr_type: int) -> dict:
    return genl.parse_attrs(genl.parse_attrs(encoded)[attr_type])


ipv4 = st.ip_addresses(v=4).filter(lambda a: not (a.is_multicast or a.is_unspecified)).map(str)
ipv6 = (
    st.ip_addresses(v=6)
    .filter(lambda a: not (a.is_multicast or a.is_unspecified))
    .map(lambda a: a.compressed)
)


@st.composite
def services(draw) -> Service:
    if draw(st.booleans()):
        key = ServiceKey.for_fwmark(
            draw(st.integers(1, 2**32 - 1)), draw(st.sampled_from(["ipv4", "ipv6"]))
        )
    else:
        address = draw(st.one_of(ipv4, ipv6))
        key = ServiceKey.for_address(
            draw(st.sampled_from(["tcp", "udp", "sctp"])), address, draw(st.integers(0, 65535))
        )
    scheduler = draw(st.sampled_from(["rr", "wlc", "sh", "mh"]))
    flags: tuple = ()
    if scheduler in ("sh", "mh"):
        flags = tuple(
            f for f in ("%s-fallback" % scheduler, "%s-port" % scheduler) if draw(st.booleans())
        )
    timeout = draw(st.one_of(st.none(), st.integers(1, 2678400)))
    prefix = None
    if timeout is not None:
        top = 128 if key.family == "ipv6" else 32
        prefix = draw(st.one_of(st.none(), st.integers(1, top - 1)))
    return Service(
        key=key,
        scheduler=scheduler,
        scheduler_flags=flags,
        one_packet=draw(st.booleans()),
        persistence_timeout=timeout,
        persistence_prefix=prefix,
        persistence_engine="sip" if timeout is not None and draw(st.booleans()) else None,
    )


@st.composite
def real_servers(draw) -> RealServer:
    forwarding = draw(st.sampled_from(["masq", "route", "tunnel"]))
    tunnel_type, tunnel_port, checksum = "ipip", 0, "none"
    if forwarding == "tunnel":
        tunnel_type = draw(st.sampled_from(["ipip", "gue", "gre"]))
        tunnel_port = draw(st.integers(1, 65535)) if tunnel_type == "gue" else 0
        checksum = (
            draw(st.sampled_from(["none", "csum", "remcsum"])) if tunnel_type != "ipip" else "none"
        )
    upper = draw(st.integers(0, 2**32 - 1))
    return RealServer(
        address=draw(st.one_of(ipv4, ipv6)),
        port=draw(st.integers(0, 65535)),
        forwarding=forwarding,
        weight=draw(st.integers(0, 65535)),
        upper_threshold=upper,
        lower_threshold=draw(st.integers(0, upper)),
        tunnel_type=tunnel_type,
        tunnel_port=tunnel_port,
        tunnel_checksum=checksum,
    )


@settings(max_examples=300, deadline=None)
@given(services())
def test_service_round_trip(service: Service) -> None:
    assert nl.decode_service(inner(nl.encode_service(service), nl.ATTR_SERVICE)) == service


@settings(max_examples=300, deadline=None)
@given(real_servers(), st.sampled_from(["ipv4", "ipv6"]))
def test_real_server_round_trip(server: RealServer, service_family: str) -> None:
    assert (
        nl.decode_real_server(inner(nl.encode_real_server(server), nl.ATTR_DEST), service_family)
        == server
    )


def test_pyroute2_reads_our_service_message() -> None:
    service = Service(
        ServiceKey.for_address("tcp", "10.1.2.3", 8080),
        scheduler="sh",
        scheduler_flags=("sh-port",),
        persistence_timeout=600,
        persistence_prefix=24,
    )
    decoded = ipvsmsg(message(nl.CMD_NEW_SERVICE, nl.encode_service(service)))
    decoded.decode()
    attrs = decoded.get_attr("IPVS_CMD_ATTR_SERVICE")
    assert attrs.get_attr("IPVS_SVC_ATTR_AF") == socket.AF_INET
    assert attrs.get_attr("IPVS_SVC_ATTR_PROTOCOL") == socket.IPPROTO_TCP
    assert attrs.get_attr("IPVS_SVC_ATTR_ADDR") == "10.1.2.3"
    assert attrs.get_attr("IPVS_SVC_ATTR_PORT") == 8080
    assert attrs.get_attr("IPVS_SVC_ATTR_SCHED_NAME") == "sh"
    assert attrs.get_attr("IPVS_SVC_ATTR_TIMEOUT") == 600
    assert attrs.get_attr("IPVS_SVC_ATTR_NETMASK") == "255.255.255.0"
    flags = attrs.get_attr("IPVS_SVC_ATTR_FLAGS")
    assert flags["flags"] == nl.SVC_F_PERSISTENT | 0x10
    assert flags["mask"] == 0xFFFFFFFF


def test_pyroute2_reads_our_real_server_message() -> None:
    server = RealServer("2001:db8::7", 443, "masq", 9, 100, 10)
    decoded = ipvsmsg(message(nl.CMD_NEW_DEST, nl.encode_real_server(server)))
    decoded.decode()
    attrs = decoded.get_attr("IPVS_CMD_ATTR_DEST")
    assert attrs.get_attr("IPVS_DEST_ATTR_ADDR") == "2001:db8::7"
    assert attrs.get_attr("IPVS_DEST_ATTR_PORT") == 443
    assert attrs.get_attr("IPVS_DEST_ATTR_FWD_METHOD") == 0
    assert attrs.get_attr("IPVS_DEST_ATTR_WEIGHT") == 9
    assert attrs.get_attr("IPVS_DEST_ATTR_U_THRESH") == 100
    assert attrs.get_attr("IPVS_DEST_ATTR_L_THRESH") == 10


def test_we_read_what_pyroute2_writes() -> None:
    request = ipvsmsg()
    request["cmd"] = nl.CMD_NEW_SERVICE
    request["version"] = 1
    request["attrs"] = [
        [
            "IPVS_CMD_ATTR_SERVICE",
            {
                "attrs": [
                    ["IPVS_SVC_ATTR_AF", socket.AF_INET],
                    ["IPVS_SVC_ATTR_PROTOCOL", socket.IPPROTO_UDP],
                    ["IPVS_SVC_ATTR_ADDR", "192.0.2.9"],
                    ["IPVS_SVC_ATTR_PORT", 53],
                    ["IPVS_SVC_ATTR_SCHED_NAME", "rr"],
                    ["IPVS_SVC_ATTR_FLAGS", {"flags": 0x2 | 0x4, "mask": 0xFFFFFFFF}],
                    ["IPVS_SVC_ATTR_TIMEOUT", 0],
                    ["IPVS_SVC_ATTR_NETMASK", "255.255.255.255"],
                ]
            },
        ]
    ]
    request.encode()
    top = genl.parse_attrs(bytes(request.data), 20)
    service = nl.decode_service(genl.parse_attrs(top[nl.ATTR_SERVICE]))
    # The kernel's HASHED flag (0x2) is not part of the model: never a change.
    assert service == Service(
        ServiceKey.for_address("udp", "192.0.2.9", 53), scheduler="rr", one_packet=True
    )


def test_stats_decoding_prefers_64_bit_counters() -> None:
    stats64 = b"".join(genl.nla(i + 1, genl._U64.pack(1000 + i)) for i in range(10))
    stats = nl.decode_stats(stats64, None)
    assert stats == Stats(*(1000 + i for i in range(10)))
    stats32 = b"".join(
        genl.nla(i + 1, genl._U64.pack(i) if i + 1 in (4, 5) else genl._U32.pack(i))
        for i in range(10)
    )
    assert nl.decode_stats(None, stats32) == Stats(*range(10))
    assert nl.decode_stats(None, None) is None


def test_unknown_forwarding_and_local_destination() -> None:
    server = RealServer("10.0.0.5", 80, "route")
    attrs = inner(nl.encode_real_server(server), nl.ATTR_DEST)
    attrs[nl.DEST_FWD_METHOD] = genl._U32.pack(1)
    assert nl.decode_real_server(attrs, "ipv4").forwarding == "local"
    assert nl.decode_real_server(attrs, "ipv4").same_as(server)


def test_ext_ack_message_is_extracted() -> None:
    original = genl._NLMSGHDR.pack(40, FAMILY_ID, 1, 5, 0)
    payload = genl._I32.pack(-22) + original + genl.nla(genl.NLMSGERR_ATTR_MSG, b"bad thing\0")
    assert genl._ext_ack_message(payload, genl.NLM_F_ACK_TLVS | 0x100) == "bad thing"
    assert genl._ext_ack_message(payload, 0) == ""
