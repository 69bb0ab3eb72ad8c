"""Validation of service and real-server options: every rule names its field."""

from __future__ import annotations

import pytest

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    FORWARDING_METHODS,
    ServiceKey,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.params import (
    ValidationError,
    check_unknown,
    parse_real_server,
    parse_service,
    parse_service_key,
)

TCP80 = ServiceKey.for_address("tcp", "10.0.0.1", 80)
FWMARK4 = ServiceKey.for_fwmark(7)


def error_of(call, *args, **kwargs) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        call(*args, **kwargs)
    return caught.value


@pytest.mark.parametrize(
    ("params", "field", "fragment"),
    [
        ({"address": "not-an-ip", "port": 80}, "address", "IPv4 or IPv6"),
        ({"address": "224.0.0.1", "port": 80}, "address", "unicast"),
        ({"address": "10.0.0.1", "port": 70000}, "port", "0 to 65535"),
        ({"address": "10.0.0.1", "port": -1}, "port", "0 to 65535"),
        ({"address": "10.0.0.1", "port": "http"}, "port", "integer"),
        ({"address": "10.0.0.1", "port": True}, "port", "integer"),
        ({"address": "10.0.0.1", "port": "\u00b2"}, "port", "integer"),
        ({"address": "10.0.0.1", "port": 10**5000}, "port", "16610-bit"),
        ({"address": "10.0.0.1"}, "port", "required"),
        ({"port": 80}, "address", "required"),
        ({"fwmark": 0}, "fwmark", "1 to"),
        ({"fwmark": 2**32}, "fwmark", "1 to"),
        ({"fwmark": 5, "address": "10.0.0.1"}, "address", "fwmark"),
        ({"address": "10.0.0.1", "port": 80, "protocol": "icmp"}, "protocol", "tcp, udp, sctp"),
        ({"address": "10.0.0.1", "port": 80, "family": "ipv6"}, "family", "is ipv4"),
        ({"address": "10.0.0.1", "port": 80, "scheduler": "fastest"}, "scheduler", "one of"),
        (
            {"address": "10.0.0.1", "port": 80, "scheduler": "rr", "scheduler_flags": ["sh-port"]},
            "scheduler_flags",
            "needs scheduler sh",
        ),
        (
            {"address": "10.0.0.1", "port": 80, "scheduler": "sh", "scheduler_flags": ["sh-turbo"]},
            "scheduler_flags",
            "unknown flag",
        ),
        ({"address": "10.0.0.1", "port": 80, "scheduler_flags": 3}, "scheduler_flags", "list"),
        ({"address": "10.0.0.1", "port": 80, "one_packet": True}, "one_packet", "UDP"),
        ({"address": "10.0.0.1", "port": 80, "one_packet": "yes"}, "one_packet", "true or false"),
        (
            {"address": "10.0.0.1", "port": 80, "persistence_timeout": -1},
            "persistence_timeout",
            "0 to",
        ),
        (
            {"address": "10.0.0.1", "port": 0, "persistence_timeout": 0},
            "persistence_timeout",
            "0 (all ports) is only allowed for a persistent service",
        ),
        (
            {"address": "10.0.0.1", "port": 80, "persistence_netmask": "255.255.255.0"},
            "persistence_netmask",
            "needs persistence_timeout",
        ),
        (
            {
                "address": "10.0.0.1",
                "port": 80,
                "persistence_timeout": 60,
                "persistence_netmask": "255.0.255.0",
            },
            "persistence_netmask",
            "contiguous",
        ),
        (
            {
                "address": "10.0.0.1",
                "port": 80,
                "persistence_timeout": 60,
                "persistence_prefix_length": 24,
            },
            "persistence_prefix_length",
            "IPv6",
        ),
        (
            {
                "address": "2001:db8::1",
                "port": 80,
                "persistence_timeout": 60,
                "persistence_netmask": "255.255.255.0",
            },
            "persistence_netmask",
            "IPv4",
        ),
        (
            {
                "address": "2001:db8::1",
                "port": 80,
                "persistence_timeout": 60,
                "persistence_prefix_length": 129,
            },
            "persistence_prefix_length",
            "1 to 128",
        ),
        (
            {"address": "10.0.0.1", "port": 5060, "protocol": "udp", "persistence_engine": "sip"},
            "persistence_engine",
            "persistent",
        ),
        (
            {
                "address": "10.0.0.1",
                "port": 5060,
                "persistence_timeout": 60,
                "persistence_engine": "sip",
            },
            "persistence_engine",
            "UDP",
        ),
        (
            {
                "address": "10.0.0.1",
                "port": 5060,
                "protocol": "udp",
                "persistence_timeout": 60,
                "persistence_engine": "h323",
            },
            "persistence_engine",
            "one of",
        ),
        ({"address": "10.0.0.1", "port": 0}, "port", "persistent"),
    ],
)
def test_bad_service_names_field(params, field, fragment) -> None:
    error = error_of(parse_service, params, "services[3]")
    assert error.field == "services[3].%s" % field
    assert fragment in error.rule
    assert str(error).startswith("services[3].%s: " % field)


def test_service_defaults_and_normalisation() -> None:
    service = parse_service({"address": "2001:DB8:0:0::1", "port": 443})
    assert service.key == ServiceKey("ipv6", "tcp", "2001:db8::1", 443, 0)
    assert service.scheduler == "wlc"
    assert not service.persistent
    assert service.effective_prefix == 128


def test_full_service() -> None:
    service = parse_service(
        {
            "protocol": "udp",
            "address": "10.0.0.1",
            "port": 5060,
            "scheduler": "sh",
            "scheduler_flags": "sh-port,sh-fallback,sh-port",
            "one_packet": True,
            "persistence_timeout": 300,
            "persistence_netmask": "255.255.255.0",
            "persistence_engine": "sip",
        }
    )
    assert service.scheduler_flags == ("sh-fallback", "sh-port")
    assert service.persistence_prefix == 24
    assert service.ipvsadm_line() == (
        "-A -u 10.0.0.1:5060 -s sh -p 300 -M 255.255.255.0 --pe sip -o -b sh-fallback,sh-port"
    )


def test_port_zero_allowed_for_persistent_all_ports_service() -> None:
    service = parse_service({"address": "10.0.0.1", "port": 0, "persistence_timeout": 60})
    assert service.key.port == 0


def test_fwmark_key_defaults_to_ipv4_and_ipv6_prefix() -> None:
    assert parse_service_key({"fwmark": 9}) == ServiceKey("ipv4", "", "", 0, 9)
    service = parse_service(
        {"fwmark": 9, "family": "ipv6", "persistence_timeout": 5, "persistence_prefix_length": 64}
    )
    assert service.persistence_prefix == 64
    assert service.ipvsadm_line() == "-A -f 9 -6 -s wlc -p 5 -M 64"


@pytest.mark.parametrize(
    ("params", "service", "field", "fragment"),
    [
        ({"address": "nope"}, TCP80, "address", "IPv4 or IPv6"),
        ({}, TCP80, "address", "required"),
        ({"address": "2001:db8::2"}, TCP80, "address", "tunnel"),
        ({"address": "10.0.0.2", "port": 0}, TCP80, "port", "1 to 65535"),
        ({"address": "10.0.0.2", "port": 65536}, TCP80, "port", "65535"),
        ({"address": "10.0.0.2", "port": 8080}, TCP80, "port", "only masq"),
        ({"address": "10.0.0.2", "weight": 65536}, TCP80, "weight", "0 to 65535"),
        ({"address": "10.0.0.2", "weight": -1}, TCP80, "weight", "0 to 65535"),
        (
            {"address": "10.0.0.2", "lower_threshold": 5},
            TCP80,
            "lower_threshold",
            "upper_threshold",
        ),
        (
            {"address": "10.0.0.2", "upper_threshold": 5, "lower_threshold": 6},
            TCP80,
            "lower_threshold",
            "above",
        ),
        ({"address": "10.0.0.2", "forwarding": "nat"}, TCP80, "forwarding", "masq, route, tunnel"),
        ({"address": "10.0.0.2", "tunnel_type": "gue"}, TCP80, "tunnel_type", "forwarding tunnel"),
        (
            {"address": "10.0.0.2", "forwarding": "tunnel", "tunnel_type": "gue"},
            TCP80,
            "tunnel_port",
            "required",
        ),
        (
            {"address": "10.0.0.2", "forwarding": "tunnel", "tunnel_port": 6080},
            TCP80,
            "tunnel_port",
            "only applies",
        ),
        (
            {"address": "10.0.0.2", "forwarding": "tunnel", "tunnel_checksum": "csum"},
            TCP80,
            "tunnel_checksum",
            "gue or gre",
        ),
        (
            {
                "address": "10.0.0.2",
                "forwarding": "tunnel",
                "tunnel_type": "gre",
                "tunnel_checksum": "remcsum",
            },
            TCP80,
            "tunnel_checksum",
            "needs tunnel_type gue",
        ),
    ],
)
def test_bad_real_server_names_field(params, service, field, fragment) -> None:
    error = error_of(parse_real_server, params, service, "real_servers[1]")
    assert error.field == "real_servers[1].%s" % field
    assert fragment in error.rule


def test_real_server_defaults() -> None:
    server = parse_real_server({"address": "10.0.0.2"}, TCP80)
    assert (server.port, server.forwarding, server.weight) == (80, "route", 1)
    assert server.ipvsadm_line(TCP80) == "-a -t 10.0.0.1:80 -r 10.0.0.2:80 -g -w 1"


def test_a_choice_is_kept_as_the_shared_constant() -> None:
    # An equal string made at run time (as a YAML or JSON loader makes one per
    # value), not the constant itself.
    given = "".join(["ma", "sq"])
    assert given == "masq" and given is not FORWARDING_METHODS[0]
    server = parse_real_server({"address": "10.0.0.2", "forwarding": given}, TCP80)
    assert server.forwarding is FORWARDING_METHODS[0]


def test_masq_maps_ports_and_fwmark_allows_port_zero() -> None:
    masq = parse_real_server(
        {"address": "10.0.0.2", "port": 8080, "forwarding": "masq", "weight": 0}, TCP80
    )
    assert masq.port == 8080 and masq.weight == 0
    assert parse_real_server({"address": "10.0.0.2"}, FWMARK4).port == 0
    assert (
        parse_real_server({"address": "10.0.0.2", "port": 0, "forwarding": "masq"}, FWMARK4).port
        == 0
    )


def test_mixed_family_needs_tunnel() -> None:
    server = parse_real_server(
        {
            "address": "2001:db8::2",
            "forwarding": "tunnel",
            "tunnel_type": "gue",
            "tunnel_port": 6080,
            "tunnel_checksum": "remcsum",
            "upper_threshold": 100,
            "lower_threshold": 10,
        },
        TCP80,
    )
    assert server.family == "ipv6"
    assert server.ipvsadm_line(TCP80) == (
        "-a -t 10.0.0.1:80 -r [2001:db8::2]:80 -i -w 1 -x 100 -y 10 --tun-type gue --tun-port 6080 --tun-remcsum"
    )


def test_unknown_keys_are_rejected() -> None:
    check_unknown({"address": 1, "port": 2}, ("address", "port"), "x")
    error = error_of(check_unknown, {"adress": 1}, ("address", "port"), "services[0]")
    assert error.field == "services[0].adress"
    assert "allowed: address, port" in error.rule
