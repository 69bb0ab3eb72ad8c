"""The vip module's pure logic: parsing, planning, sysctl paths and text."""

from __future__ import annotations

from typing import Dict, Optional

import pytest

from ansible_collections.haecs.lvs.plugins.module_utils import vip_address as va
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.params import ValidationError


def test_defaults_for_a_dr_real_server() -> None:
    vip = va.parse_vip({"address": "192.0.2.10"})
    assert (vip.interface, vip.prefix_length, vip.scope, vip.label, vip.state) == (
        "lo",
        32,
        "global",
        None,
        "present",
    )
    v6 = va.parse_vip({"address": "2001:DB8::10"})
    assert (v6.address, v6.prefix_length, v6.scope, v6.nodad) == ("2001:db8::10", 128, None, True)
    # The link's state is left alone unless link_up asks.
    assert not vip.link_up
    assert va.parse_vip({"address": "192.0.2.12", "interface": "tunl0", "link_up": True}).link_up


def test_cidr_form() -> None:
    assert va.parse_vip({"address": "192.0.2.10/24"}).prefix_length == 24
    assert va.parse_vip({"address": "192.0.2.10/24", "prefix_length": 24}).prefix_length == 24


@pytest.mark.parametrize(
    ("params", "field", "text"),
    [
        ({"address": "not-an-ip"}, "address", "must be an IPv4 or IPv6 address"),
        ({"address": None}, "address", "is required"),
        ({"address": "224.0.0.1"}, "address", "must be a unicast address"),
        ({"address": "::"}, "address", "must be a unicast address"),
        ({"address": "192.0.2.10/x"}, "address", "not a number"),
        ({"address": "192.0.2.10/33"}, "address", "from 1 to 32"),
        ({"address": "192.0.2.10", "prefix_length": 0}, "prefix_length", "from 1 to 32"),
        ({"address": "2001:db8::1", "prefix_length": 129}, "prefix_length", "from 1 to 128"),
        ({"address": "192.0.2.10/24", "prefix_length": 32}, "prefix_length", "address says /24"),
        (
            {"address": "192.0.2.10", "interface": "eth0:1"},
            "interface",
            "not a valid interface name",
        ),
        (
            {"address": "192.0.2.10", "interface": "x" * 16},
            "interface",
            "not a valid interface name",
        ),
        ({"address": "192.0.2.10", "scope": "site"}, "scope", "must be one of global, link, host"),
        ({"address": "2001:db8::1", "scope": "host"}, "scope", "applies to IPv4 only"),
        ({"address": "2001:db8::1", "label": "lo"}, "label", "applies to IPv4 only"),
        ({"address": "192.0.2.10", "label": "eth0:vip"}, "label", "start with 'lo:'"),
        ({"address": "192.0.2.10", "label": "lo:" + "x" * 13}, "label", "at most 15"),
    ],
)
def test_bad_input_names_the_option(params: dict, field: str, text: str) -> None:
    with pytest.raises(ValidationError, match=text) as raised:
        va.parse_vip(params)
    assert raised.value.field == field


LO = va.Address("192.0.2.10", 32, "global", "lo")


def test_plan_add_when_missing() -> None:
    plan = va.plan_addresses(va.parse_vip({"address": "192.0.2.10"}), [])
    assert plan.add == LO and plan.remove == [] and plan.after == [LO]
    assert plan.commands("lo") == ["ip address add 192.0.2.10/32 dev lo scope global"]


def test_plan_nothing_when_present() -> None:
    plan = va.plan_addresses(va.parse_vip({"address": "192.0.2.10"}), [LO])
    assert not plan.changed and plan.after == [LO]
    labelled = va.Address("192.0.2.10", 32, "global", "lo:vip")
    assert not va.plan_addresses(va.parse_vip({"address": "192.0.2.10"}), [labelled]).changed


def test_plan_replace_keeps_label_and_dedups() -> None:
    old = va.Address("192.0.2.10", 24, "global", "lo:vip")
    plan = va.plan_addresses(va.parse_vip({"address": "192.0.2.10", "scope": "host"}), [old, LO])
    assert plan.remove == [old, LO]
    assert plan.add == va.Address("192.0.2.10", 32, "host", "lo:vip")
    assert plan.commands("lo") == [
        "ip address del 192.0.2.10/24 dev lo",
        "ip address del 192.0.2.10/32 dev lo",
        "ip address add 192.0.2.10/32 dev lo scope host label lo:vip",
    ]
    keep_one = va.plan_addresses(va.parse_vip({"address": "192.0.2.10"}), [old, LO])
    assert keep_one.remove == [old] and keep_one.add is None


def test_plan_absent_removes_every_entry() -> None:
    other = va.Address("192.0.2.10", 24, "global", "lo")
    plan = va.plan_addresses(
        va.parse_vip({"address": "192.0.2.10", "state": "absent"}), [LO, other]
    )
    assert plan.remove == [LO, other] and plan.after == [] and plan.changed
    assert not va.plan_addresses(
        va.parse_vip({"address": "192.0.2.10", "state": "absent"}), []
    ).changed


def test_ipv6_scope_not_compared() -> None:
    found = va.Address("2001:db8::10", 128, "global", None)
    assert not va.plan_addresses(va.parse_vip({"address": "2001:db8::10"}), [found]).changed
    assert found.line("lo") == "inet6 2001:db8::10/128 scope global dev lo"
    assert found.command("add", "lo") == "ip address add 2001:db8::10/128 dev lo"


def test_plan_sysctls_only_raises() -> None:
    values: Dict[str, Optional[int]] = {
        "net.ipv4.conf.all.arp_ignore": 0,
        "net.ipv4.conf.all.arp_announce": 2,
        "net.ipv4.conf.lo.arp_ignore": 2,  # stricter already: left
        "net.ipv4.conf.default.arp_announce": 1,
    }
    changes = va.plan_sysctls("lo", values.get)
    assert changes == [
        ("net.ipv4.conf.all.arp_ignore", 0, 1),
        ("net.ipv4.conf.lo.arp_announce", 1, 2),  # missing: inherits default
    ]


def test_sysctl_path_keeps_dots_in_interface_names() -> None:
    assert (
        va.sysctl_path("net.ipv4.conf.eth0.100.arp_ignore")
        == "/proc/sys/net/ipv4/conf/eth0.100/arp_ignore"
    )
    assert (
        va.sysctl_path("net.ipv4.conf.all.arp_announce")
        == "/proc/sys/net/ipv4/conf/all/arp_announce"
    )


def test_read_and_write_sysctl(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(va, "PROC_SYS", str(tmp_path))
    folder = tmp_path / "net" / "ipv4" / "conf" / "all"
    folder.mkdir(parents=True)
    (folder / "arp_ignore").write_text("0\n")
    assert va.read_sysctl("net.ipv4.conf.all.arp_ignore") == 0
    va.write_sysctl("net.ipv4.conf.all.arp_ignore", 1)
    assert va.read_sysctl("net.ipv4.conf.all.arp_ignore") == 1
    assert va.read_sysctl("net.ipv4.conf.eth9.arp_ignore") is None
    with pytest.raises(va.VipError, match=r"cannot set net\.ipv4\.conf\.eth9\.arp_ignore=1"):
        va.write_sysctl("net.ipv4.conf.eth9.arp_ignore", 1)


def test_state_lines() -> None:
    text = va.state_lines("lo", True, True, [LO], {"net.ipv4.conf.all.arp_ignore": 1})
    assert (
        text
        == "interface lo: up\ninet 192.0.2.10/32 scope global lo\nnet.ipv4.conf.all.arp_ignore = 1\n"
    )
    assert va.state_lines("vip0", False, False, [], {}) == "interface vip0: absent\n"


def test_dummy_commands() -> None:
    plan = va.Plan(
        create_interface=True, bring_up=True, add=va.Address("192.0.2.10", 32, "global", "vip0")
    )
    plan.sysctls = [("net.ipv4.conf.all.arp_ignore", 0, 1)]
    assert plan.commands("vip0") == [
        "ip link add vip0 type dummy",
        "ip link set vip0 up",
        "ip address add 192.0.2.10/32 dev vip0 scope global",
        "sysctl -w net.ipv4.conf.all.arp_ignore=1",
    ]
