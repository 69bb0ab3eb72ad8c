"""The ha role's keepalived configuration: one VRRP instance per interface and
address family (keepalived ignores a VIP of the other family in an
instance), IPv6 instances in VRRP version 3 without authentication, each
instance's unicast addresses of its own family, ha_vrrp_version 3 with
sub-second adverts; keepalived itself (`keepalived -t`) accepts what the
template renders."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
from typing import Any

import jinja2
import pytest

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
        "ha_vrrp_version": 2,
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


def test_version_2_adverts_are_whole_seconds() -> None:
    found = instances(render(ha_advert_interval=2.0))
    assert "    advert_int 2\n" in found["haecs_back"]
    assert "    advert_int 2\n" in found["haecs_back_v6"]


def test_version_3_makes_every_instance_version_3_with_sub_second_adverts() -> None:
    found = instances(render(ha_vrrp_version=3, ha_advert_interval=0.5, ha_auth_pass=""))
    for name, body in found.items():
        assert "    version 3\n" in body, name
        assert "    advert_int 0.5\n" in body, name
        assert "authentication {" not in body, name


def _host_interface() -> str:
    """A link of this host other than lo (keepalived -t wants one that exists)."""
    links = sorted(name for name in os.listdir("/sys/class/net") if name != "lo")
    if not links:
        pytest.fail("this host has no network link but lo: keepalived -t cannot be tried")
    return links[0]


@pytest.mark.parametrize(
    "settings",
    [
        {"ha_vrrp_version": 2, "ha_advert_interval": 1, "ha_auth_pass": "secret"},
        {"ha_vrrp_version": 3, "ha_advert_interval": 0.25, "ha_auth_pass": ""},
        {"ha_vrrp_version": 3, "ha_advert_interval": 40.95, "ha_auth_pass": ""},
    ],
)
def test_keepalived_accepts_the_configuration(
    tmp_path: pathlib.Path, settings: dict[str, Any]
) -> None:
    keepalived = shutil.which("keepalived") or "/usr/sbin/keepalived"
    if not os.access(keepalived, os.X_OK):
        pytest.fail("keepalived is missing: make deps installs it (tests/kernel/install-deps)")
    link = _host_interface()
    text = render(
        ha_instances=_cluster.ha_instances(
            SERVICES, link, [{"address": "10.10.0.1/24", "interface": link}], 51
        ),
        ha_unicast=False,
        # keepalived checks that the notify script exists and only root can change it.
        ha_sync_command="/bin/true",
        ha_sync_interface=link,
        **settings,
    )
    config = tmp_path / "keepalived.conf"
    config.write_text(text)
    checked = subprocess.run(
        [keepalived, "-t", "-f", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # keepalived -t exits 0 only when it had nothing to say, warnings included
    # (an advert it would round, an unknown interface).
    assert checked.returncode == 0, checked.stdout + checked.stderr
