"""The ha role's checks (tasks_from: validate) on bad and good settings, through
a real ansible-playbook on this host (connection local; the checks change
nothing and need no kernel): each message names the variable and its rule."""

from __future__ import annotations

import pathlib
import sys
from typing import Any

from local_playbook import validation_messages

DIRECTORS = ["dir1", "dir2", "dir3", "dir4"]
SERVICES = [
    {
        "name": "web",
        "protocol": "tcp",
        "address": "192.0.2.10",
        "port": 80,
        "real_servers_group": "web",
    },
    {
        "name": "web6",
        "protocol": "tcp",
        "address": "2001:db8::10",
        "port": 80,
        "real_servers_group": "web",
    },
]

# (settings of dir1, the message, or None when they pass)
CASES: list[tuple[dict[str, Any], str | None]] = [
    ({}, None),
    ({"ha_vrrp_version": 3, "ha_advert_interval": 0.5, "ha_auth_pass": ""}, None),
    ({"ha_vrrp_version": 3, "ha_advert_interval": 40.95, "ha_auth_pass": ""}, None),
    ({"ha_advert_interval": 0}, "ha_advert_interval: must be from 1 to 255 seconds, got 0"),
    (
        {"ha_advert_interval": 0.5},
        "ha_advert_interval: must be from 1 to 255 seconds, got 0.5 (whole seconds in VRRP version 2; "
        "ha_vrrp_version 3 takes hundredths)",
    ),
    (
        {"ha_advert_interval": 100},
        "ha_advert_interval: must be at most 40.95 seconds with IPv6 VIPs (their instances are VRRP version 3), got 100",
    ),
    (
        {"ha_vrrp_version": 3, "ha_advert_interval": 0.555, "ha_auth_pass": ""},
        "ha_advert_interval: must be from 0.01 to 40.95 seconds in hundredths with ha_vrrp_version 3, got 0.555",
    ),
    (
        {"ha_vrrp_version": 3, "ha_advert_interval": 41, "ha_auth_pass": ""},
        "ha_advert_interval: must be from 0.01 to 40.95 seconds in hundredths with ha_vrrp_version 3, got 41",
    ),
    (
        {"ha_vrrp_version": 3, "ha_auth_pass": "secret"},
        "ha_auth_pass: VRRP version 3 has no authentication; leave it empty with ha_vrrp_version 3",
    ),
    ({"ha_vrrp_version": 4}, "value of ha_vrrp_version must be one of: 2, 3, got: 4"),
]


def test_each_bad_setting_is_refused_naming_the_variable(tmp_path: pathlib.Path) -> None:
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "haecs_services": SERVICES,
                "ha_vip_interface": "front",
            },
            "children": {"lvs_directors": {"hosts": {name: {} for name in DIRECTORS}}},
        }
    }
    result = validation_messages(
        tmp_path,
        inventory,
        "haecs.lvs.ha",
        [settings for settings, _message in CASES],
        "dir1",
        keep={"peers": "ha_peers"},
    )
    # The unicast peers in inventory order, so the rendered file is the same on every run.
    assert result["peers"] == DIRECTORS[1:]
    for (settings, message), seen in zip(CASES, result["found"]):
        if message is None:
            assert seen == "", (settings, seen)
        else:
            assert message in seen, (settings, seen)
