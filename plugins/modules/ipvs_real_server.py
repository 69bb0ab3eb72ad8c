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
  - To drain a server, set O(weight=0) first; new connections stop going to
    it while existing ones finish. Note that a persistent service keeps sending
    clients that have a persistence entry to a weight-0 server until the
    entry expires.
extends_documentation_fragment:
  - haecs.lvs.managed_host
  - haecs.lvs.ipvs_service_key.virtual_service
options:
  state:
    description:
      - V(present) adds the real server or edits it to match the options.
      - V(absent) removes it. Only O(address) and O(port) matter then, and a
        missing service or server is not an error.
    type: str
    choices: [present, absent]
    default: present
  address:
    description:
      - IPv4 or IPv6 address of the real server.
      - Its family must match the service unless O(forwarding=tunnel).
    type: str
    required: true
  port:
    description:
      - Port of the real server. Defaults to the service port.
      - Only O(forwarding=masq) can map to another port; V(0) (the port the
        client asked for) is only allowed on fwmark and all-port services.
    type: int
  forwarding:
    description:
      - Forwarding method. Defaults to V(route).
      - V(masq) is NAT (C(ipvsadm -m)), V(route) is direct routing (C(-g)),
        V(tunnel) is IP-in-IP or GUE/GRE tunnelling (C(-i)).
    type: str
    choices: [masq, route, tunnel]
  weight:
    description:
      - Weight, V(0) to V(65535). Defaults to V(1). V(0) takes the server out of
        scheduling for new connections (drain).
    type: int
  upper_threshold:
    description:
      - Upper connection threshold (C(ipvsadm -x)); V(0), the default, means none.
    type: int
  lower_threshold:
    description:
      - Lower connection threshold (C(ipvsadm -y)); must not be above
        O(upper_threshold). Defaults to V(0).
    type: int
  tunnel_type:
    description:
      - Tunnel encapsulation with O(forwarding=tunnel). Defaults to V(ipip).
    type: str
    choices: [ipip, gue, gre]
  tunnel_port:
    description:
      - Destination port of the GUE tunnel; required with O(tunnel_type=gue).
    type: int
  tunnel_checksum:
    description:
      - Tunnel checksum for V(gue) and V(gre) tunnels (V(remcsum) needs V(gue)).
        Defaults to V(none).
    type: str
    choices: [none, csum, remcsum]
attributes:
  check_mode:
    description:
      - Can run in check mode and return the changed status prediction without modifying the kernel table.
      - In check mode a missing virtual service is not an error (an earlier task
        may create it); the module warns and reports the server as to be added.
    support: full
  diff_mode:
    description: Returns the service and its real servers before and after as C(ipvsadm -Sn)-style lines in diff mode.
    support: full
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
requirements:
  - root (CAP_NET_ADMIN)
  - Linux kernel with IPVS (C(ip_vs)); the module is loaded when missing
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
    port: 8080
    forwarding: masq
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
    port: 8080
    forwarding: masq
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

from typing import Any, Dict, List

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs_model import (
    RealServer,
    Service,
    ServiceKey,
    Table,
    VirtualService,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs_module import (
    ServiceMissing,
    changed_result,
    converge,
    failing_cleanly,
    parse_key,
    parse_real_server_key,
    real_server_spec,
    real_server_summary,
    state_spec,
    virtual_service_spec,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs_params import parse_real_server
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs_plan import (
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


def present(current: Table, key: ServiceKey, server: RealServer) -> List[Operation]:
    entry = current.get(key)
    if entry is None:
        raise ServiceMissing(key)
    return plan(current, {key: VirtualService(entry.service, {server.key: server})})


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
        result["diff"] = {"before": "", "after": line + "\n"}
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
        server = parse_real_server(params, key)
        server_key = server.key
        try:
            run = converge(
                lambda current: present(current, key, server), module.check_mode, keys=[key]
            )
        except ServiceMissing:
            if not module.check_mode:
                raise
            return assumed_result(module, key, server)
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
