#!/usr/bin/python
# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vip
short_description: Manage a virtual IP address on an interface (LVS VIP)
version_added: 0.1.0
description:
  - Adds or removes one virtual IP address (VIP) on a network interface over
    rtnetlink, like C(ip address add) and C(ip address del).
  - On a direct-routing (DR) or tunnelling real server the VIP goes on the
    loopback interface V(lo) as a single address (V(/32) or V(/128), the
    defaults), so the server accepts packets for it, together with
    O(arp_suppress=true) so it never answers ARP for it (the director must).
  - On a director the VIP usually goes on the interface that faces the
    clients, or on a dummy interface (O(create_dummy=true)).
  - An existing entry of the address with another prefix length, scope or
    label is replaced (removed, then added).
extends_documentation_fragment:
  - haecs.lvs.attributes
  - haecs.lvs.managed_host
options:
  address:
    description:
      - The IPv4 or IPv6 address. V(192.0.2.10/32) style (address and prefix
        length) is accepted too.
    type: str
    required: true
  prefix_length:
    description:
      - Prefix length; default V(32) for IPv4 and V(128) for IPv6.
      - Keep the default on V(lo), where a shorter prefix would make the whole
        subnet local to this host.
    type: int
  interface:
    description: The interface to put the address on.
    type: str
    default: lo
  state:
    description:
      - V(present) makes sure the address is on the interface as described.
      - V(absent) removes every entry of the address from the interface (any
        prefix length). A missing interface is then not an error. The
        interface itself and the ARP settings are never removed.
    type: str
    choices: [present, absent]
    default: present
  create_dummy:
    description:
      - When the interface does not exist, create it as a C(dummy) link and
        bring it up. Without it, a missing interface is an error.
    type: bool
    default: false
  link_up:
    description:
      - With O(state=present), bring the interface up when it is down (a VIP
        on a down link receives nothing). Needed for C(tunl0), which the
        C(ipip) module creates down.
      - Without it the link's state is left as it is (a link O(create_dummy)
        creates is always brought up).
    type: bool
    default: false
  label:
    description:
      - IPv4 only. Address label, the interface name or C(<interface>:<tag>)
        (at most 15 characters), shown by C(ip address) and C(ifconfig).
      - When omitted an existing entry keeps its label and a new one gets
        the interface name.
    type: str
  scope:
    description:
      - IPv4 only (the kernel derives an IPv6 address's scope from the
        address). Default V(global), as C(ip address add) gives.
      - V(global) is what a VIP needs, on V(lo) too; V(host) keeps the
        address for local use only.
    type: str
    choices: [global, link, host]
  nodad:
    description:
      - IPv6 only. Add the address without duplicate address detection
        (C(nodad)), so it is usable at once instead of staying tentative for
        about a second. Only used when the address is added.
    type: bool
    default: true
  arp_suppress:
    description:
      - Keep this host from answering ARP for the VIP, as a DR or TUN real
        server must. Sets C(net.ipv4.conf.all) and C(net.ipv4.conf.<interface>)
        C(arp_ignore) to V(1) and C(arp_announce) to V(2) through C(/proc/sys).
      - A value already higher is left; the settings are only raised, never
        lowered, and O(state=absent) leaves them.
      - Only IPv4 uses ARP. IPv6 neighbour discovery answers only for the
        addresses of the receiving interface, so a VIP on V(lo) needs nothing.
      - Not persistent over a reboot; use M(ansible.posix.sysctl) for that.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
  diff_mode:
    description: Returns the interface, the address entries and the ARP settings before and after.
    support: full
requirements:
  - pyroute2 on the managed host (Debian and Ubuntu package C(python3-pyroute2))
notes:
  - The address belongs to the network namespace the module runs in.
  - The address is not persistent over a reboot; this module changes the
    running kernel only.
seealso:
  - module: haecs.lvs.ipvs_service
  - module: ansible.posix.sysctl
author: HAECS developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: DR real server, the VIP on lo and no ARP answers for it
  haecs.lvs.vip:
    address: 192.0.2.10
    arp_suppress: true

- name: IPv6 VIP on lo of a DR real server
  haecs.lvs.vip:
    address: 2001:db8::10

- name: Director, the VIP on a dummy interface made for it
  haecs.lvs.vip:
    address: 192.0.2.10
    interface: vip0
    create_dummy: true

- name: Director, the VIP as a labelled secondary address of eth0
  haecs.lvs.vip:
    address: 192.0.2.10/24
    interface: eth0
    label: "eth0:vip"

- name: Remove the VIP
  haecs.lvs.vip:
    address: 192.0.2.10
    state: absent
"""

RETURN = r"""
addresses:
  description:
    - The entries of the address on the interface after the run (in check
      mode, as they would be); empty when absent. C(label) is null for IPv6.
  returned: always
  type: list
  elements: dict
  sample:
    - address: 192.0.2.10
      prefix_length: 32
      scope: global
      label: lo
interface_created:
  description: Whether the dummy interface was (or would be) created.
  returned: always
  type: bool
  sample: false
sysctl:
  description:
    - The ARP settings changed (or that would be), each with its value
      before and after; empty when none changed.
  returned: always
  type: dict
  sample:
    net.ipv4.conf.all.arp_ignore:
      before: 0
      after: 1
operations:
  description: The changes made (or that would be made), as C(ip) and C(sysctl) commands.
  returned: always
  type: list
  elements: str
  sample:
    - ip address add 192.0.2.10/32 dev lo scope global
    - sysctl -w net.ipv4.conf.all.arp_ignore=1
"""

from typing import Any, Dict, List, Optional, Tuple

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.haecs.lvs.plugins.module_utils._failing import failing_cleanly
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.params import ValidationError
from ansible_collections.haecs.lvs.plugins.module_utils.vip_address import (
    ARP_SETTINGS,
    Address,
    Links,
    Plan,
    Vip,
    parse_vip,
    plan_addresses,
    plan_sysctls,
    read_sysctl,
    state_lines,
    write_sysctl,
)


def argument_spec() -> Dict[str, Any]:
    return {
        "address": {"type": "str", "required": True},
        "prefix_length": {"type": "int"},
        "interface": {"type": "str", "default": "lo"},
        "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
        "create_dummy": {"type": "bool", "default": False},
        "link_up": {"type": "bool", "default": False},
        "label": {"type": "str"},
        "scope": {"type": "str", "choices": ["global", "link", "host"]},
        "nodad": {"type": "bool", "default": True},
        "arp_suppress": {"type": "bool", "default": False},
    }


def arp_values(interface: str) -> Dict[str, int]:
    values = {}
    for scope in ("all", interface):
        for name, _wanted in ARP_SETTINGS:
            key = "net.ipv4.conf.%s.%s" % (scope, name)
            value = read_sysctl(key)
            if value is not None:
                values[key] = value
    return values


def make_plan(vip: Vip, links: Links) -> Tuple[Plan, Optional[int], bool]:
    """The plan, the interface index (None if missing) and whether it is up."""
    index = links.index(vip.interface)
    if index is None and vip.state == "present" and not vip.create_dummy:
        raise ValidationError(
            "interface",
            "no interface %r on this host (set create_dummy=true to create it as a dummy link)"
            % vip.interface,
        )
    existing: List[Address] = links.entries(index, vip.address) if index is not None else []
    up = links.is_up(index) if index is not None else False
    plan = plan_addresses(vip, existing)
    if vip.state == "present":
        plan.create_interface = index is None
        plan.bring_up = index is None or (vip.link_up and not up)
        if vip.arp_suppress:
            plan.sysctls = plan_sysctls(vip.interface, read_sysctl)
    return plan, index, up


def apply(vip: Vip, plan: Plan, index: Optional[int], links: Links) -> None:
    if plan.create_interface:
        index = links.create_dummy(vip.interface)
    if index is None:
        return
    if plan.bring_up:
        links.bring_up(index, vip.interface)
    for entry in plan.remove:
        links.remove(index, entry, vip.interface)
    if plan.add is not None:
        links.add(index, plan.add, vip.interface, vip.nodad)
    for key, _old, new in plan.sysctls:
        write_sysctl(key, new)


def run_module(module: AnsibleModule) -> Dict[str, Any]:
    vip = parse_vip(module.params)
    with Links() as links:
        plan, index, up = make_plan(vip, links)
        existed = index is not None
        sysctl_before = arp_values(vip.interface) if vip.arp_suppress else {}
        if plan.changed and not module.check_mode:
            apply(vip, plan, index, links)
            index = links.index(vip.interface)
            after = links.entries(index, vip.address) if index is not None else []
            up_after = links.is_up(index) if index is not None else False
        else:
            after = plan.after
            up_after = up or plan.bring_up
    sysctl_after = dict(sysctl_before)
    sysctl_after.update((key, new) for key, _old, new in plan.sysctls)
    result: Dict[str, Any] = {
        "changed": plan.changed,
        "operations": plan.commands(vip.interface),
        "addresses": [entry.as_dict() for entry in after],
        "interface_created": plan.create_interface,
        "sysctl": {key: {"before": old, "after": new} for key, old, new in plan.sysctls},
    }
    if module._diff:
        exists_after = existed or plan.create_interface
        result["diff"] = {
            "before": state_lines(vip.interface, existed, up, plan.before, sysctl_before),
            "after": state_lines(vip.interface, exists_after, up_after, after, sysctl_after),
            "before_header": "%s on %s (before)" % (vip.address, vip.interface),
            "after_header": "%s on %s (after)" % (vip.address, vip.interface),
        }
    return result


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    with failing_cleanly(module):
        result = run_module(module)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
