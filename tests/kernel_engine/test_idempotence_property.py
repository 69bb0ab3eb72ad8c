"""Every value is idempotent in the kernel, boundaries included.

Generated module options (tests/strategies/ipvs_options.py: full-length
masks and prefixes, port 0 where allowed, weight 0 and 65535, thresholds 0
and 2**32-1, every scheduler flag combination, addresses in several textual
forms) are applied to the kernel; reading the table back plans no change,
as declared and merged, and `ipvsadm -Sn` prints exactly our -Sn lines.
"""

from __future__ import annotations

from typing import Any, Dict

import pytest
from conftest import ipvsadm, saved_table
from hypothesis import HealthCheck, given, settings
from ipvs_options import service_options

from ansible_collections.haecs.lvs.plugins.module_utils._ipvs_table_params import parse_table
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import table_lines
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.plan import plan


def converge_and_check(ipvs: Any, options: Dict[str, Any]) -> None:
    ipvsadm("-C")
    declared, _listed = parse_table([options])
    ipvs.apply(plan(ipvs.read(), declared))
    current = ipvs.read()
    assert plan(current, declared, purge_real_servers=True) == [], (options, current)
    merged, _listed = parse_table([options], current=current)
    assert plan(current, merged) == []
    # The -Sn lines are ipvsadm's own, byte for byte (real servers in our order).
    saved = saved_table()
    ours = table_lines(current)
    assert saved[:1] == ours[:1]
    assert sorted(saved) == sorted(ours)


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(options=service_options())
def test_generated_options_are_idempotent_in_the_kernel(ipvs: Any, options: Dict[str, Any]) -> None:
    converge_and_check(ipvs, options)


BOUNDARIES = [
    {"address": "198.51.100.10", "port": 443, "persistence_timeout": 60,
     "persistence_netmask": "255.255.255.255"},
    {"address": "2001:db8::10", "port": 443, "persistence_timeout": 60,
     "persistence_prefix_length": 128},
    {"address": "198.51.100.10", "port": 443, "persistence_timeout": 60,
     "persistence_netmask": "128.0.0.0"},
    {"address": "2001:DB8:0:0:0:0:0:10", "port": 0, "persistence_timeout": 2678400,
     "persistence_prefix_length": 1},
    {"fwmark": 2147483647, "family": "ipv6", "scheduler": "mh",
     "scheduler_flags": ["mh-port", "mh-fallback"],
     "real_servers": [{"address": "2001:db8::21", "port": 0, "weight": 65535,
                       "upper_threshold": 4294967295, "lower_threshold": 4294967295}]},
    {"protocol": "udp", "address": " 192.0.2.10 ", "port": 65535, "scheduler": "sh",
     "scheduler_flags": ["sh-port"], "one_packet": True,
     "real_servers": [{"address": "192.0.2.21", "weight": 0, "upper_threshold": 0,
                       "lower_threshold": 0},
                      {"address": "2001:DB8::0022", "forwarding": "tunnel",
                       "tunnel_type": "gue", "tunnel_port": 65535,
                       "tunnel_checksum": "remcsum"}]},
]  # fmt: skip


@pytest.mark.parametrize("options", BOUNDARIES, ids=range(len(BOUNDARIES)))
def test_boundaries_are_idempotent_in_the_kernel(ipvs: Any, options: Dict[str, Any]) -> None:
    converge_and_check(ipvs, dict(options))


def test_largest_fwmark_is_idempotent(ipvs: Any) -> None:
    """Mark 2**32-1 reads back equal; ipvsadm -Sn prints it as -1 (signed %d)."""
    ipvsadm("-C")
    declared, _listed = parse_table([{"fwmark": 4294967295, "scheduler": "rr"}])
    ipvs.apply(plan(ipvs.read(), declared))
    assert plan(ipvs.read(), declared) == []
    assert saved_table() == ["-A -f -1 -s rr"]


def test_full_length_mask_needs_no_edit(ipvs: Any) -> None:
    """The issue's case: `-E ... -p 60` on every run for a /32 mask."""
    options = BOUNDARIES[0]
    converge_and_check(ipvs, dict(options))
    assert saved_table() == ["-A -t 198.51.100.10:443 -s wlc -p 60"]
