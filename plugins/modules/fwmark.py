#!/usr/bin/python
# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: fwmark
short_description: Mark packets for IPVS firewall-mark services with nftables
version_added: 0.1.0
description:
  - Keeps nftables rules that set a firewall mark (C(meta mark set N)) on
    packets to a destination address or network, protocol and ports, so that
    one IPVS fwmark service (M(haecs.lvs.ipvs_service) with O(haecs.lvs.ipvs_service#module:fwmark))
    can balance several ports together, for example HTTP and HTTPS with
    persistence across both.
  - The module owns one nftables table, O(table) (default C(inet haecs)), and
    never reads or changes any other table. In it, it keeps the chain
    C(prerouting) (C(type filter hook prerouting priority mangle)) and, with
    O(output=true), the chain C(output) (C(type route hook output priority mangle))
    for clients on the director itself. Every listed rule is put in each of these chains.
  - Each rule has the shape C(ip daddr 192.0.2.10 tcp dport { 80, 443 } meta mark set 42)
    and carries its identity in its comment, C(haecs:NAME) when O(rules[].name)
    is given, else C(haecs:MARK:PROTOCOL:DESTINATION). A listed rule whose
    identity is found but whose match or mark differs is replaced in place;
    rules of the table without such a comment are left alone unless O(purge=true).
  - All changes go to the kernel as one nftables transaction (C(nft -j -f -)),
    so a failure changes nothing. A rerun with the same options sends nothing.
  - In check mode the transaction is checked by the kernel (C(nft -c)) without
    being committed, so a change the kernel would refuse fails in check mode too.
extends_documentation_fragment:
  - haecs.lvs.attributes
  - haecs.lvs.managed_host
options:
  rules:
    description:
      - The marking rules.
      - With O(state=present), the rules that must exist.
      - With O(state=absent), the rules to remove, found by identity
        (O(rules[].name), or O(rules[].mark), O(rules[].protocol) and
        O(rules[].destination)); O(rules[].ports) is not needed then.
      - Two listed rules that match the same packets (same protocol,
        overlapping destinations and ports) with different marks are refused.
    type: list
    elements: dict
    default: []
    suboptions:
      mark:
        description:
          - The firewall mark to set, V(1) to V(4294967295) (decimal, or hex as a string like V("0x2a")).
          - The IPVS service uses the same number as its O(haecs.lvs.ipvs_service#module:fwmark).
          - Required with O(state=present); with O(state=absent) it names the rule unless O(rules[].name) does.
        type: int
      destination:
        description:
          - Destination (virtual) IP address, or a network in CIDR notation,
            IPv4 or IPv6. The rule matches C(ip daddr) or C(ip6 daddr) accordingly.
          - A network must not have host bits set (V(192.0.2.0/24), not V(192.0.2.5/24)).
          - An IPv6 destination needs a table of family C(inet) or C(ip6), an
            IPv4 one C(inet) or C(ip).
          - Required with O(state=present); with O(state=absent) it names the rule unless O(rules[].name) does.
        type: str
      protocol:
        description:
          - Transport protocol of the ports.
        type: str
        choices: [tcp, udp, sctp]
        default: tcp
      ports:
        description:
          - Destination ports, each a port V(1) to V(65535) or a range V("8000-8080").
          - Stored as nftables stores them, sorted with overlapping and adjacent ports
            merged, so V([81, 80]) and V(["80-81"]) are the same rule.
          - Required with O(state=present); ignored (but checked) with O(state=absent).
        type: list
        elements: raw
      name:
        description:
          - A stable name for the rule, used as its identity instead of
            mark, protocol and destination, so any of those can change and the
            rule is replaced rather than added next to the old one.
          - Starts with a letter; letters, digits, V(_), V(.) and V(-), at most 64 characters.
        type: str
  state:
    description:
      - V(present) adds the listed rules that are missing and replaces those
        that differ, creating the table and chains when needed.
      - V(absent) removes the listed rules from every chain of the table.
        With O(purge=true) (and no O(rules)) it deletes the whole table with
        everything in it.
    type: str
    choices: [present, absent]
    default: present
  purge:
    description:
      - With O(state=present), also remove every rule of the table that is not
        listed (including rules added by hand), every chain of the table this
        module does not keep (C(output) too, unless O(output=true)), and
        recreate a chain whose type, hook, priority or policy was changed.
        Only the table O(table) is affected.
      - With O(state=absent), delete the table O(table).
    type: bool
    default: false
  output:
    description:
      - Also keep the chain C(output) and put every listed rule there too, so
        connections opened on the director itself to a virtual address are
        marked.
      - With V(false), listed rules found in C(output) are removed from it; the
        chain itself is only deleted with O(purge=true).
    type: bool
    default: false
  table:
    description:
      - The nftables table the module owns, as C(FAMILY NAME); the family is
        V(inet), V(ip) or V(ip6). A bare name means family V(inet).
    type: str
    default: inet haecs
attributes:
  check_mode:
    support: full
  diff_mode:
    description: Returns the table before and after as C(nft list table)-style text in diff mode.
    support: full
requirements:
  - nftables (nft) >= 0.9 with JSON support
  - Linux kernel with nf_tables for the table's family (C(CONFIG_NF_TABLES_INET) for C(inet))
notes:
  - >-
    Every option is checked before C(nft) runs; a bad value fails with a message
    that names it, for example C(rules[1].ports[0]: must be a port 1-65535 or a range a-b),
    and the ruleset stays as it was.
  - The mark is set in C(prerouting) at priority mangle, before IPVS sees the packet;
    the virtual address must be a local address of the director.
  - Rules with the same identity found more than once in a chain are reduced to one.
seealso:
  - module: haecs.lvs.ipvs_service
  - name: nftables wiki, Setting packet metainformation
    description: How C(meta mark set) works.
    link: https://wiki.nftables.org/wiki-nftables/index.php/Setting_packet_metainformation
author: HAECS developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Mark HTTP and HTTPS to the VIP with 42, for one persistent fwmark service
  haecs.lvs.fwmark:
    rules:
      - mark: 42
        destination: 192.0.2.10
        protocol: tcp
        ports: [80, 443]

- name: The matching IPVS service (clients stick to one server across both ports)
  haecs.lvs.ipvs_service:
    fwmark: 42
    scheduler: rr
    persistence_timeout: 300

- name: Named rules, IPv6 and ranges; also mark connections opened on the director
  haecs.lvs.fwmark:
    output: true
    rules:
      - name: web6
        mark: 43
        destination: 2001:db8::10
        ports: [80, 443]
      - name: media
        mark: 44
        destination: 192.0.2.0/28
        protocol: udp
        ports: ["10000-20000", 5004]

- name: Exactly these rules in the table, nothing else
  haecs.lvs.fwmark:
    purge: true
    rules:
      - mark: 42
        destination: 192.0.2.10
        ports: [80, 443]

- name: Remove one rule (identity is mark, protocol and destination)
  haecs.lvs.fwmark:
    state: absent
    rules:
      - mark: 42
        destination: 192.0.2.10

- name: Remove a named rule
  haecs.lvs.fwmark:
    state: absent
    rules:
      - name: web6

- name: Remove the whole table inet haecs
  haecs.lvs.fwmark:
    state: absent
    purge: true
"""

RETURN = r"""
table:
  description: The table the module manages.
  returned: always
  type: str
  sample: inet haecs
rules:
  description:
    - The module's rules in the table after the run (in check mode, as they would be),
      one entry per identity.
  returned: always
  type: list
  elements: dict
  sample:
    - name: null
      mark: 42
      destination: 192.0.2.10
      protocol: tcp
      ports: ["80", "443"]
      comment: "haecs:42:tcp:192.0.2.10"
actions:
  description: The changes made (or, in check mode, that would be made), in words; empty when nothing changed.
  returned: always
  type: list
  elements: str
  sample:
    - add table inet haecs
    - add chain inet haecs prerouting
    - add rule inet haecs prerouting ip daddr 192.0.2.10 tcp dport { 80, 443 } meta mark set 42 comment "haecs:42:tcp:192.0.2.10"
commands:
  description: The nft JSON commands sent as one transaction (C(nft -j -f -)); empty when nothing changed.
  returned: always
  type: list
  elements: dict
  sample:
    - add:
        table:
          family: inet
          name: haecs
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.haecs.lvs.plugins.module_utils._failing import failing_cleanly
from ansible_collections.haecs.lvs.plugins.module_utils.nft.apply import (
    Nft,
)
from ansible_collections.haecs.lvs.plugins.module_utils.nft.params import (
    parse_desired,
)
from ansible_collections.haecs.lvs.plugins.module_utils.nft.plan import (
    plan,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            rules=dict(type="list", elements="dict", default=[]),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            purge=dict(type="bool", default=False),
            output=dict(type="bool", default=False),
            table=dict(type="str", default="inet haecs"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    with failing_cleanly(module):
        desired = parse_desired(
            rules=params["rules"],
            state=params["state"],
            table=params["table"],
            output=params["output"],
            purge=params["purge"],
        )

    binary = module.get_bin_path("nft")
    if not binary:
        module.fail_json(
            msg="nft (nftables) was not found on PATH or in the sbin folders: install nftables >= 0.9 with JSON support"
        )

    def runner(argv, stdin):
        return module.run_command(
            argv,
            data=stdin,
            binary_data=True,
            environ_update={"LC_ALL": "C", "LANG": "C"},
        )

    nft = Nft(binary, runner)
    with failing_cleanly(module, table=str(desired.table)):
        current = nft.read_table(desired.table)
        the_plan = plan(current, desired)
        nft.apply(the_plan, check=module.check_mode)

    result = dict(
        changed=the_plan.changed,
        table=str(desired.table),
        rules=[rule.as_dict() for rule in the_plan.after_rules],
        actions=the_plan.actions,
        commands=the_plan.commands,
    )
    if module._diff:
        result["diff"] = dict(
            before=the_plan.before,
            after=the_plan.after,
            before_header="%s (before)" % desired.table,
            after_header="%s (after)" % desired.table,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
