"""The status lines of playbooks/status.yml (module_utils/_status)."""

from __future__ import annotations

from typing import Any, Dict, List

from ansible_collections.haecs.lvs.plugins.module_utils._status import director_status

MODEL = [
    {
        "name": "web",
        "protocol": "tcp",
        "address": "192.0.2.10",
        "port": 80,
        "checks": [{"type": "http"}],
    },
    {"name": "web-static", "protocol": "tcp", "address": "192.0.2.10", "port": 8080},
]


def server(last: int, weight: int = 1, active: int = 0) -> Dict[str, Any]:
    return {
        "address": "10.10.0.%d" % last,
        "port": 8080,
        "forwarding": "masq",
        "weight": weight,
        "active_connections": active,
        "inactive_connections": 2,
    }


TABLE: List[Dict[str, Any]] = [
    {
        "protocol": "tcp",
        "address": "192.0.2.10",
        "port": 80,
        "scheduler": "rr",
        "real_servers": [server(11, active=3), server(13, weight=0)],
    },
    {
        "protocol": "tcp",
        "address": "192.0.2.10",
        "port": 8080,
        "scheduler": "wlc",
        "real_servers": [server(11), server(12)],
    },
    {"fwmark": 7, "family": "ipv6", "scheduler": "sh", "real_servers": []},
]
MONITOR = {
    "name": "lab",
    "kernel": {"last_error": None},
    "services": [
        {
            "service": "tcp 192.0.2.10:80",
            "below_quorum": False,
            "servers": [
                {"id": "10.10.0.11:8080", "health": "up", "admin": "enabled"},
                {
                    "id": "10.10.0.12:8080",
                    "health": "down",
                    "health_reason": "http: connection refused",
                    "admin": "enabled",
                },
            ],
        }
    ],
}


def test_each_service_with_its_owner_and_each_server_with_its_health() -> None:
    assert director_status(TABLE, MONITOR, MODEL) == [
        "3 services, 4 real servers; monitor lab: 1 up, 1 down",
        "tcp 192.0.2.10:80  rr  (web monitored)",
        "  -> 10.10.0.11:8080        nat   weight 1   active 3    inactive 2  up",
        "  -> 10.10.0.13:8080        nat   weight 0   active 0    inactive 2"
        "  (leaving: not in the monitor's configuration)",
        "  -- 10.10.0.12:8080        not in the table  down (http: connection refused)",
        "tcp 192.0.2.10:8080  wlc  (web-static static)",
        "  -> 10.10.0.11:8080        nat   weight 1   active 0    inactive 2",
        "  -> 10.10.0.12:8080        nat   weight 1   active 0    inactive 2",
        "fwmark 7 (ipv6)  sh  (not in the model)",
    ]


def test_without_a_monitor_it_says_so_when_the_model_expects_one() -> None:
    lines = director_status(TABLE[1:2], None, MODEL)
    assert lines[0] == "1 services, 2 real servers; no monitor answered"
    assert director_status([], None, MODEL[1:]) == ["0 services, 0 real servers"]
