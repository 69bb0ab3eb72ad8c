"""The ha role's keepalived configuration: one VRRP instance per interface and
address family (keepalived ignores a VIP of the other family in an
instance), IPv6 instances in VRRP version 3 without authentication, each
instance's unicast addresses of its own family."""

from __future__ import annotations

import pathlib
import re
from typing import Any

import jinja2

from ansible_collections.haecs.lvs.plugins.module_utils import _cluster

TEMPLATE = pathlib.Path(__file__).resolve().parents[3] / "roles/ha/templates/keepalived.conf.j2"
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
        "address": "2001:db8:f::10",
        "port": 80,
        "real_servers_group": "web",
    },
]
GATEWAYS = [
    {"address": "10.10.0.1/24", "interface": "back"},
    {"address": "fd00:10::1/64", "interface": "back"},
]
ADDRESSES = {
    "dir1": {"front": ["192.0.2.2", "2001:db8:f::2"], "back": ["fd00:10::2", "10.10.0.2"]},
    "dir2": {"front": ["192.0.2.3", "2001:db8:f::3"], "back": ["10.10.0.3", "fd00:10::3"]},
}


def render(**variables: Any) -> str:
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    # Ansible's test of the same name.
    environment.tests["search"] = lambda value, pattern: re.search(pattern, value) is not None
    template = environment.from_string(TEMPLATE.read_text())
    settings: dict[str, Any] = {
        "ansible_managed": "Ansible managed",
        "inventory_hostname": "dir1",
        "ha_instances": _cluster.ha_instances(SERVICES, "front", GATEWAYS, 51),
        "ha_sync_command": "/usr/sbin/haecs-sync",
        "ha_sync_interface": "back",
        "ha_sync_id": 51,
        "ha_priority": 250,
        "ha_advert_interval": 1,
        "ha_preempt": False,
        "ha_preempt_delay": 0,
        "ha_auth_pass": "secret",
        "ha_unicast": True,
        "ha_addresses": ADDRESSES["dir1"],
        "ha_peers": ["dir2"],
        "hostvars": {"dir2": {"ha_addresses": ADDRESSES["dir2"]}},
    }
    settings.update(variables)
    return template.render(**settings)


def instances(text: str) -> dict[str, str]:
    return dict(re.findall(r"^vrrp_instance (\S+) \{\n(.*?)^\}", text, re.M | re.S))


def test_one_instance_per_interface_and_family_in_one_sync_group() -> None:
    text = render()
    found = instances(text)
    assert list(found) == ["haecs_back", "haecs_front", "haecs_back_v6", "haecs_front_v6"]
    group = re.search(r"group \{\n(.*?)\}", text, re.S)
    assert group is not None and group.group(1).split() == list(found)
    assert "10.10.0.1/24 dev back" in found["haecs_back"]
    assert "fd00:10::1/64 dev back" in found["haecs_back_v6"]
    assert "2001:db8:f::10/128 dev front" in found["haecs_front_v6"]
    assert "2001:db8" not in found["haecs_front"]


def test_ipv6_instances_are_version_3_without_authentication() -> None:
    found = instances(render())
    for name in ("haecs_back_v6", "haecs_front_v6"):
        assert "    version 3\n" in found[name]
        assert "authentication {" not in found[name]
    for name in ("haecs_back", "haecs_front"):
        assert "version 3" not in found[name]
        assert "auth_pass secret" in found[name]


def test_unicast_addresses_of_each_instance_s_family() -> None:
    found = instances(render())
    assert "unicast_src_ip 10.10.0.2\n" in found["haecs_back"]
    assert re.search(r"unicast_peer \{\s+10\.10\.0\.3\s+\}", found["haecs_back"])
    assert "unicast_src_ip fd00:10::2\n" in found["haecs_back_v6"]
    assert re.search(r"unicast_peer \{\s+fd00:10::3\s+\}", found["haecs_back_v6"])
    # A single address (not a list) still serves its own family.
    single = instances(
        render(
            ha_instances=_cluster.ha_instances(SERVICES[:1], "front", [], 51),
            ha_addresses={"front": "192.0.2.2"},
            hostvars={"dir2": {"ha_addresses": {"front": "192.0.2.3"}}},
        )
    )
    assert "unicast_src_ip 192.0.2.2\n" in single["haecs_front"]
