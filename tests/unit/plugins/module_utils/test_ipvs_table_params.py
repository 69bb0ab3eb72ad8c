"""A table as a list of services: validation paths and the gathered round trip."""

from __future__ import annotations

import pytest

from ansible_collections.haecs.lvs.plugins.module_utils._ipvs_table_params import (
    parse_table,
    table_params,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.params import ValidationError

SERVICES = [
    {
        "address": "192.0.2.10",
        "port": 80,
        "scheduler": "wrr",
        "real_servers": [
            {"address": "10.0.0.1", "port": 8080, "forwarding": "masq", "weight": 3},
            {
                "address": "10.0.0.2",
                "port": 8080,
                "forwarding": "masq",
                "upper_threshold": 9,
                "lower_threshold": 2,
            },
        ],
    },
    {
        "fwmark": 42,
        "family": "ipv6",
        "scheduler": "sh",
        "scheduler_flags": ["sh-port"],
        "persistence_timeout": 60,
        "persistence_prefix_length": 64,
    },
    {
        "protocol": "udp",
        "address": "192.0.2.10",
        "port": 53,
        "persistence_timeout": 30,
        "persistence_netmask": "255.255.255.0",
        "real_servers": [
            {
                "address": "2001:db8::1",
                "forwarding": "tunnel",
                "tunnel_type": "gue",
                "tunnel_port": 6080,
                "tunnel_checksum": "csum",
            },
            {"address": "10.0.0.3", "forwarding": "route"},
        ],
    },
]


def test_gathered_format_round_trips() -> None:
    table, listed = parse_table(SERVICES)
    assert listed == [True, False, True]
    again, _unused = parse_table(table_params(table))
    assert again == table


def test_absent_options_from_ansible_are_ignored() -> None:
    table, _unused = parse_table(
        [{"address": "192.0.2.1", "port": 80, "scheduler": None, "real_servers": None}]
    )
    assert next(iter(table.values())).service.scheduler == "wlc"


@pytest.mark.parametrize(
    ("services", "message"),
    [
        ([SERVICES[0], SERVICES[0]], "services[1]: duplicates services[0] (tcp 192.0.2.10:80)"),
        (
            [
                {
                    "address": "192.0.2.1",
                    "port": 80,
                    "real_servers": [{"address": "10.0.0.1"}, {"address": "10.0.0.1", "port": 80}],
                }
            ],
            "services[0].real_servers[1]: duplicates real server 10.0.0.1:80",
        ),
        (
            [
                {
                    "address": "192.0.2.1",
                    "port": 80,
                    "real_servers": [{"address": "10.0.0.1", "weight": 70000}],
                }
            ],
            "services[0].real_servers[0].weight: must be an integer from 0 to 65535, got 70000",
        ),
        (
            [{"address": "192.0.2.1", "port": 80, "schedular": "rr"}],
            "services[0].schedular: unknown option",
        ),
        (
            [
                {
                    "address": "192.0.2.1",
                    "port": 80,
                    "real_servers": [{"address": "10.0.0.1", "wieght": 1}],
                }
            ],
            "services[0].real_servers[0].wieght: unknown option",
        ),
        (["tcp 192.0.2.1:80"], "services[0]: must be a dictionary"),
        (
            [{"address": "192.0.2.1", "port": 80, "real_servers": "10.0.0.1"}],
            "services[0].real_servers: must be a list",
        ),
        (
            [{"address": "192.0.2.1", "port": 80, "real_servers": ["10.0.0.1"]}],
            "services[0].real_servers[0]: must be a dictionary",
        ),
    ],
)
def test_errors_name_the_entry(services, message) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_table(services)
    assert str(caught.value).startswith(message)
