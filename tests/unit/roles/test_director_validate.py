"""The director role's checks (tasks_from: validate) on bad and good settings,
through a real ansible-playbook on this host (connection local; the checks
change nothing and need no kernel): each message names the variable and its
rule, and only the settings that are wrong."""

from __future__ import annotations

import pathlib
import sys
from typing import Any

from local_playbook import validation_messages

SERVICES = [
    {
        "name": "web",
        "protocol": "tcp",
        "address": "192.0.2.10",
        "port": 80,
        "real_servers_group": "web",
    }
]

# (settings of dir1, the messages it must give, or [] when they pass)
CASES: list[tuple[dict[str, Any], list[str]]] = [
    ({}, []),
    ({"director_ipvs_timeouts": {"tcp": 120}}, []),
    ({"director_ipvs_timeouts": {"tcp": 1, "tcp_fin": 2147483, "udp": 300}}, []),
    ({"director_ipvs_timeouts": {"tcp": None, "udp": "300"}}, []),
    (
        {"director_ipvs_timeouts": {"tcp": 0}},
        ["director_ipvs_timeouts.tcp: must be a whole number of seconds from 1 to 2147483, got 0"],
    ),
    (
        {"director_ipvs_timeouts": {"udp": 2147484, "tcp_fin": 120}},
        [
            "director_ipvs_timeouts.udp: must be a whole number of seconds from 1 to 2147483,"
            " got 2147484"
        ],
    ),
    (
        {"director_ipvs_timeouts": {"tcp": -5}, "director_drain_timeout": -1},
        [
            "director_drain_timeout: must be from 0 to 86400 seconds, got -1",
            "director_ipvs_timeouts.tcp: must be a whole number of seconds from 1 to 2147483,"
            " got -5",
        ],
    ),
    (
        {"director_ipvs_timeouts": {"tcpfin": 60}},
        ["director_ipvs_timeouts.tcpfin: not a timeout of IPVS (tcp, tcp_fin, udp)"],
    ),
    (
        {"director_ipvs_timeouts": {"tcp": "soon", "udp": 1.5, "tcp_fin": True}},
        [
            "director_ipvs_timeouts.tcp: must be a whole number of seconds from 1 to 2147483,"
            ' got "soon"',
            "director_ipvs_timeouts.udp: must be a whole number of seconds from 1 to 2147483,"
            " got 1.5",
            "director_ipvs_timeouts.tcp_fin: must be a whole number of seconds from 1 to 2147483,"
            " got true",
        ],
    ),
    # Not a mapping: ansible-core's check of sub-options stopped with a bare
    # TypeError on these ("argument of type 'int' is not iterable"); "tcp=120"
    # passed its conversion to a dict and failed in the role's own template.
    (
        {"director_ipvs_timeouts": 120},
        ["director_ipvs_timeouts", "unable to convert to dict"],
    ),
    (
        {"director_ipvs_timeouts": [120]},
        ["director_ipvs_timeouts", "unable to convert to dict"],
    ),
    (
        {"director_ipvs_timeouts": "tcp=120"},
        [
            "director_ipvs_timeouts: must be a mapping of tcp, tcp_fin and udp to seconds,"
            ' got "tcp=120"'
        ],
    ),
]


def test_each_bad_setting_is_refused_naming_the_variable(tmp_path: pathlib.Path) -> None:
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "haecs_services": SERVICES,
                "director_vip_interface": "front",
            },
            "children": {
                "lvs_directors": {"hosts": {"dir1": {}}},
                "web": {"hosts": {"rs1": {"haecs_real_server_address": "10.10.0.11"}}},
            },
        }
    }
    found = validation_messages(
        tmp_path,
        inventory,
        "haecs.lvs.director",
        [settings for settings, _messages in CASES],
        "dir1",
    )["found"]
    for (settings, messages), seen in zip(CASES, found):
        if not messages:
            assert seen == "", (settings, seen)
        else:
            for message in messages:
                assert message in seen, (settings, seen)
            if all(":" in message for message in messages):  # ours: nothing else named
                assert seen == "; ".join(messages), (settings, seen)
