#!/usr/bin/python
# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ipvs_service
short_description: Manage one IPVS (LVS) virtual service
version_added: 0.1.0
description:
  - Create, edit or delete one virtual service in the Linux kernel's IPVS
    table, talking to the kernel over netlink (no C(ipvsadm) needed).
  - A service is keyed by O(protocol), O(address) and O(port), or by O(fwmark)
    and O(family).
  - A changed scheduler, scheduler flags, one-packet scheduling or persistence
    is edited in place (like C(ipvsadm -E)); the service is never deleted and
    re-added, so its real servers, connections and counters survive.
  - Real servers are left alone; manage them with M(haecs.lvs.ipvs_real_server).
  - An option left out keeps the service's current value; its default applies
    only when the service is created. To take a setting away, give it
    explicitly (O(scheduler_flags=[]), O(one_packet=false),
    O(persistence_timeout=0), O(persistence_engine=none)).
extends_documentation_fragment:
  - haecs.lvs.attributes
  - haecs.lvs.managed_host
  - haecs.lvs.managed_host.ipvs
  - haecs.lvs.ipvs_options
  - haecs.lvs.ipvs_options.service
options:
  state:
    description:
      - V(present) creates the service or edits it to match the options.
      - V(absent) deletes the service and all its real servers. Only the key
        options matter then.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
  diff_mode:
    description: Returns the service before and after in diff mode, as the lines C(ipvsadm -Sn) prints.
    support: full
notes:
  - Every option is checked before anything is sent to the kernel; a bad value
    fails with a message that names the option, and the table stays as it was.
seealso:
  - module: haecs.lvs.ipvs_real_server
  - module: haecs.lvs.ipvs_info
author: HAECS developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: A round-robin web service
  haecs.lvs.ipvs_service:
    address: 192.0.2.10
    port: 80
    scheduler: rr

- name: Switch it to weighted least-connection, in place
  haecs.lvs.ipvs_service:
    address: 192.0.2.10
    port: 80
    scheduler: wlc

- name: Make the same service persistent; its scheduler and flags stay as they are
  haecs.lvs.ipvs_service:
    address: 192.0.2.10
    port: 80
    persistence_timeout: 300

- name: A persistent HTTPS service, clients of a /24 stick to one server for 10 minutes
  haecs.lvs.ipvs_service:
    protocol: tcp
    address: 192.0.2.10
    port: 443
    persistence_timeout: 600
    persistence_netmask: 255.255.255.0

- name: A source-hashing DNS service that falls back when a server has weight 0
  haecs.lvs.ipvs_service:
    protocol: udp
    address: 2001:db8::53
    port: 53
    scheduler: sh
    scheduler_flags: [sh-fallback, sh-port]

- name: An IPv6 firewall-mark service
  haecs.lvs.ipvs_service:
    fwmark: 7
    family: ipv6
    scheduler: mh
    scheduler_flags: [mh-port]

- name: Delete a service and its real servers
  haecs.lvs.ipvs_service:
    address: 192.0.2.10
    port: 80
    state: absent
"""

RETURN = r"""
operations:
  description:
    - The changes made (or, in check mode, that would be made) as C(ipvsadm)
      command lines; empty when nothing changed.
  returned: always
  type: list
  elements: str
  sample: ["-E -t 192.0.2.10:80 -s wlc"]
service:
  description:
    - The service after the run, as the kernel reports it (in check mode, as
      it would be). Empty when the service does not exist.
  returned: always
  type: dict
  sample:
    family: ipv4
    protocol: tcp
    address: 192.0.2.10
    port: 80
    scheduler: wlc
    scheduler_flags: []
    one_packet: false
    persistence_timeout: null
    persistence_engine: null
    stats:
      connections: 12
      packets_in: 80
      packets_out: 0
      bytes_in: 5120
      bytes_out: 0
      connections_per_second: 0
      packets_in_per_second: 0
      packets_out_per_second: 0
      bytes_in_per_second: 0
      bytes_out_per_second: 0
    real_servers:
      - address: 10.10.2.11
        port: 80
        forwarding: masq
        weight: 1
        upper_threshold: 0
        lower_threshold: 0
        active_connections: 0
        inactive_connections: 3
        persistent_connections: 0
"""

from typing import Any, Dict, List

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.haecs.lvs.plugins.module_utils._failing import failing_cleanly
from ansible_collections.haecs.lvs.plugins.module_utils._ipvs_module import (
    changed_result,
    converge,
    parse_key,
    service_spec,
    service_summary,
    state_spec,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import Table, VirtualService
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.params import (
    check_service,
    parse_service,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.plan import (
    Operation,
    plan,
    plan_removal,
)


def argument_spec() -> Dict[str, Any]:
    spec = service_spec()
    spec.update(state_spec())
    return spec


def run_module(module: AnsibleModule) -> Dict[str, Any]:
    params = module.params
    if params["state"] == "absent":
        key = parse_key(params)

        def decide(current: Table) -> List[Operation]:
            return plan_removal(current, services=[key])

    else:
        # What can be checked without the current service is checked first.
        key = check_service(params)

        def decide(current: Table) -> List[Operation]:
            # Omitted options keep the values of an existing service; defaults
            # apply when it is created.
            have = current.get(key)
            service = parse_service(params, existing=have.service if have is not None else None)
            # Service attributes only: its real servers are not this module's.
            return plan(current, {key: VirtualService(service)}, manage_real_servers=False)

    run = converge(decide, module.check_mode, keys=[key])
    result = changed_result(run, key, module._diff)
    result["service"] = service_summary(run.after, key)
    return result


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    with failing_cleanly(module):
        result = run_module(module)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
