#!/usr/bin/python
# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ipvs_real_server
short_description: Manage one real server of an IPVS (LVS) virtual service
version_added: 0.1.0
description:
  - Add, edit or remove one real server (IPVS destination) of an existing
    virtual service in the Linux kernel's IPVS table, over netlink.
  - A real server is keyed by O(address) and O(port) within its service.
  - A changed O(weight), thresholds or O(forwarding) is edited in place (like
    C(ipvsadm -e)); the server is never removed and re-added, so its active
    connections and counters survive.
  - An option left out keeps the server's current value; its default applies
    only when the server is added. So a task with the key and O(weight=0)
    drains a server and changes nothing else (its forwarding and port stay).
  - To drain a server, set O(weight=0) first; new connections stop going to
    it while existing ones finish. Note that a persistent service keeps sending
    clients that have a persistence entry to a weight-0 server until the
    entry expires.
extends_documentation_fragment:
  - haecs.lvs.attributes
  - haecs.lvs.managed_host
  - haecs.lvs.managed_host.ipvs
  - haecs.lvs.ipvs_options.real_server
options:
  state:
    description:
      - V(present) adds the real server or edits it to match the options.
      - V(absent) removes it. Only O(address) and O(port) matter then, and a
        missing service or server is not an error.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    description:
      - Can run in check mode and return the changed status prediction without modifying the kernel table.
      - In check mode a missing virtual service is not an error (an earlier task
        may create it); the module warns and reports the server as to be added.
    support: full
  diff_mode:
    description:
      - Returns the service and its real servers before and after in diff mode,
        as the lines C(ipvsadm -Sn) prints, then a labelled comment line per
        server with thresholds (C(-Sn) does not show them).
    support: full
notes:
  - Every option is checked before anything is sent to the kernel; a bad value
    fails with a message that names the option, and the table stays as it was.
  - The virtual service must exist (M(haecs.lvs.ipvs_service)); otherwise the
    module fails and says so.
seealso:
  - module: haecs.lvs.ipvs_service
  - module: haecs.lvs.ipvs_info
author: HAECS developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: A NAT real server on port 8080 behind a port-80 service
  haecs.lvs.ipvs_real_server:
    virtual_service:
      address: 192.0.2.10
      port: 80
    address: 10.10.2.11
    port: 8080
    forwarding: masq
    weight: 10

- name: Drain it in place; its connections finish, new ones go elsewhere
  haecs.lvs.ipvs_real_server:
    virtual_service:
      address: 192.0.2.10
      port: 80
    address: 10.10.2.11
    weight: 0

- name: A direct-routing server of an IPv6 firewall-mark service
  haecs.lvs.ipvs_real_server:
    virtual_service:
      fwmark: 7
      family: ipv6
    address: 2001:db8:2::11
    forwarding: route

- name: An IPv6 server behind an IPv4 service, through a GUE tunnel
  haecs.lvs.ipvs_real_server:
    virtual_service:
      protocol: udp
      address: 192.0.2.10
      port: 53
    address: 2001:db8:2::53
    forwarding: tunnel
    tunnel_type: gue
    tunnel_port: 6080

- name: Remove a real server
  haecs.lvs.ipvs_real_server:
    virtual_service:
      address: 192.0.2.10
      port: 80
    address: 10.10.2.11
    port: 8080
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
  sample: ["-e -t 192.0.2.10:80 -r 10.10.2.11:8080 -m -w 0"]
real_server:
  description:
    - The real server after the run, as the kernel reports it (in check mode,
      as it would be). Empty when it does not exist.
  returned: always
  type: dict
  sample:
    address: 10.10.2.11
    weight: 0
    upper_threshold: 0
    lower_threshold: 0
    active_connections: 2
    inactive_connections: 5
    persistent_connections: 0
    stats:
      connections: 7
      packets_in: 60
      packets_out: 52
      bytes_in: 4200
      bytes_out: 39000
      connections_per_second: 0
      packets_in_per_second: 0
      packets_out_per_second: 0
      bytes_in_per_second: 0
      bytes_out_per_second: 0
"""

from typing import Any, Dict, List, Optional

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.haecs.lvs.plugins.module_utils._failing import failing_cleanly
from ansible_collections.haecs.lvs.plugins.module_utils._ipvs_module import (
    ServiceMissing,
    changed_result,
    converge,
    parse_key,
    parse_real_server_key,
    real_server_spec,
    real_server_summary,
    state_spec,
    virtual_service_spec,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    THRESHOLDS_LABEL,
    RealServer,
    Service,
    ServiceKey,
    Table,
    VirtualService,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.params import (
    check_real_server,
    parse_real_server,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.plan import (
    ADD_REAL_SERVER,
    Operation,
    plan,
    plan_removal,
)


def argument_spec() -> Dict[str, Any]:
    spec = virtual_service_spec()
    spec.update(real_server_spec())
    spec.update(state_spec())
    return spec


class Present:
    """Plans state=present once the table is read; remembers the server it meant."""

    def __init__(self, params: Dict[str, Any], key: ServiceKey) -> None:
        self.params = params
        self.key = key
        self.server: Optional[RealServer] = None

    def __call__(self, current: Table) -> List[Operation]:
        entry = current.get(self.key)
        if entry is None:
            # Still check the options (as for a new server) before saying so.
            self.server = parse_real_server(self.params, self.key)
            raise ServiceMissing(self.key)
        # Omitted options keep the values of an existing server; defaults
        # apply when it is added.
        server = parse_real_server(self.params, self.key, existing=entry.real_servers)
        self.server = server
        return plan(current, {self.key: VirtualService(entry.service, {server.key: server})})


def assumed_result(module: AnsibleModule, key: ServiceKey, server: RealServer) -> Dict[str, Any]:
    """Check mode, service missing: assume an earlier task would create it."""
    module.warn("%s; check mode assumes an earlier task creates it" % ServiceMissing(key))
    line = Operation(ADD_REAL_SERVER, Service(key), server).ipvsadm_line()
    result: Dict[str, Any] = {
        "changed": True,
        "operations": [line],
        "real_server": server.summary(),
    }
    if module._diff:
        result["diff"] = {
            "before": "",
            "after": "".join(
                line + "\n"
                for line in VirtualService(Service(key), {server.key: server}).ipvsadm_lines()[1:]
            )
            + "".join(
                THRESHOLDS_LABEL + line + "\n" for line in [server.thresholds_line(key)] if line
            ),
        }
    return result


def run_module(module: AnsibleModule) -> Dict[str, Any]:
    params = module.params
    key = parse_key(params["virtual_service"], "virtual_service")
    if params["state"] == "absent":
        server_key = parse_real_server_key(params, key)
        run = converge(
            lambda current: plan_removal(current, real_servers=[(key, server_key)]),
            module.check_mode,
            keys=[key],
        )
    else:
        # What can be checked without the current server is checked first.
        check_real_server(params, key)
        decide = Present(params, key)
        try:
            run = converge(decide, module.check_mode, keys=[key])
        except ServiceMissing:
            if not module.check_mode or decide.server is None:
                raise
            return assumed_result(module, key, decide.server)
        if decide.server is None:
            raise RuntimeError("the plan named no real server")
        server_key = decide.server.key
    result = changed_result(run, key, module._diff)
    result["real_server"] = real_server_summary(run.after, key, server_key)
    return result


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    with failing_cleanly(module):
        result = run_module(module)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
