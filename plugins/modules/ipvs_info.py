#!/usr/bin/python
# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ipvs_info
short_description: Read the IPVS (LVS) table, its counters and rates
version_added: 0.1.0
description:
  - Return the virtual services of the Linux kernel's IPVS table with their
    real servers, connection counts, counters and rates, read over netlink.
  - Also returns the table as C(ipvsadm -Sn)-style lines and the IPVS version
    and connection table size.
  - Give the key options (O(address) and O(port), or O(fwmark)) to read one
    service only; without them every service is returned.
  - Never changes anything.
extends_documentation_fragment:
  - haecs.lvs.attributes
  - haecs.lvs.managed_host
  - haecs.lvs.managed_host.ipvs
  - haecs.lvs.ipvs_options
options:
  stats:
    description:
      - Include the counters and rates of each service and real server
        (their C(stats) in RV(services)).
    type: bool
    default: true
  query:
    description:
      - A JMESPath expression applied to the module's answer (the object with
        RV(services), RV(ipvsadm), RV(thresholds) and RV(info)); what it
        selects is returned as RV(query_result), for example the real servers
        of the services with weight 0.
      - Evaluated on the managed host, which then needs the C(jmespath)
        Python library (Debian C(python3-jmespath)); an expression that does
        not parse fails before the table is read, naming the problem.
    type: str
attributes:
  check_mode:
    description: Can run in check mode; it only reads.
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
requirements:
  - jmespath (only for O(query))
seealso:
  - module: haecs.lvs.ipvs_service
  - module: haecs.lvs.ipvs_real_server
author: HAECS developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Read the whole table
  haecs.lvs.ipvs_info:
  register: ipvs

- name: Show it as ipvsadm -Sn would
  ansible.builtin.debug:
    var: ipvs.ipvsadm

- name: Connections of each real server of one service
  haecs.lvs.ipvs_info:
    address: 192.0.2.10
    port: 80
  register: web

- name: Fail when a real server of it has no active connection
  ansible.builtin.assert:
    that: web.services[0].real_servers | map(attribute='active_connections') | min > 0

- name: The real servers drained to weight 0, in every service
  haecs.lvs.ipvs_info:
    stats: false
    query: "services[].real_servers[?weight==`0`].address[]"
  register: drained

- name: One IPv6 firewall-mark service, settings only
  haecs.lvs.ipvs_info:
    fwmark: 7
    family: ipv6
    stats: false
"""

RETURN = r"""
services:
  description:
    - Each virtual service (in C(ipvsadm) order), with its real servers.
      Empty when the table is, or when the service asked for does not exist.
  returned: always
  type: list
  elements: dict
  contains:
    family:
      description: V(ipv4) or V(ipv6).
      type: str
    protocol:
      description: V(tcp), V(udp) or V(sctp); absent for a fwmark service.
      type: str
    address:
      description: The virtual IP address; absent for a fwmark service.
      type: str
    port:
      description: The service port; absent for a fwmark service.
      type: int
    fwmark:
      description: The firewall mark; only for a fwmark service.
      type: int
    scheduler:
      description: The scheduler.
      type: str
    scheduler_flags:
      description: Scheduler flags such as V(sh-fallback).
      type: list
      elements: str
    one_packet:
      description: Whether one-packet scheduling is on.
      type: bool
    persistence_timeout:
      description: Persistence timeout in seconds, V(null) when not persistent.
      type: int
    persistence_netmask:
      description: Persistence netmask of a persistent IPv4 service.
      type: str
    persistence_prefix_length:
      description: Persistence prefix length of a persistent IPv6 service.
      type: int
    persistence_engine:
      description: Persistence engine, or V(null).
      type: str
    stats:
      description:
        - Counters since the service was created (V(connections), V(packets_in),
          V(packets_out), V(bytes_in), V(bytes_out)) and rates per second
          (V(connections_per_second), V(packets_in_per_second), ...).
        - Only with O(stats=true).
      type: dict
    real_servers:
      description:
        - Its real servers with V(address), V(port), V(forwarding), V(weight),
          V(upper_threshold), V(lower_threshold), V(active_connections),
          V(inactive_connections), V(persistent_connections), the tunnel
          settings for V(tunnel) forwarding, and V(stats) as for the service.
        - V(forwarding) is V(local) when the kernel found the address local.
      type: list
      elements: dict
  sample:
    - family: ipv4
      protocol: tcp
      address: 192.0.2.10
      port: 80
      scheduler: rr
      scheduler_flags: []
      one_packet: false
      persistence_timeout: null
      persistence_engine: null
      stats:
        connections: 20
        packets_in: 120
        packets_out: 100
        bytes_in: 9000
        bytes_out: 30000
        connections_per_second: 1
        packets_in_per_second: 6
        packets_out_per_second: 5
        bytes_in_per_second: 450
        bytes_out_per_second: 1500
      real_servers:
        - address: 10.10.2.11
          port: 80
          forwarding: masq
          weight: 1
          upper_threshold: 0
          lower_threshold: 0
          active_connections: 0
          inactive_connections: 10
          persistent_connections: 0
ipvsadm:
  description:
    - The (selected) table as the lines C(ipvsadm -Sn) prints, byte for byte.
      C(-Sn) does not show thresholds; see RV(thresholds).
  returned: always
  type: list
  elements: str
  sample:
    - "-A -t 192.0.2.10:80 -s rr"
    - "-a -t 192.0.2.10:80 -r 10.10.2.11:80 -m -w 1"
thresholds:
  description:
    - The connection thresholds that RV(ipvsadm) leaves out, one line per real
      server that has any, as C(<service> -r <server> -x <upper> -y <lower>).
  returned: always
  type: list
  elements: str
  sample:
    - "-t 192.0.2.10:80 -r 10.10.2.11:80 -x 100 -y 10"
query_result:
  description: What O(query) selected (any JSON type; V(null) when nothing matched).
  returned: when O(query) is given
  type: raw
  sample: ["10.10.2.12"]
info:
  description: IPVS itself.
  returned: always
  type: dict
  contains:
    version:
      description: The IPVS version, as C(ipvsadm) prints it.
      type: str
      sample: 1.2.1
    connection_table_size:
      description: Size of the connection hash table.
      type: int
      sample: 4096
"""

from typing import Any, Dict

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    import jmespath
    from jmespath.exceptions import JMESPathError
except ImportError:
    JMESPATH_IMPORT_ERROR: Any = True
else:
    JMESPATH_IMPORT_ERROR = None

from ansible_collections.haecs.lvs.plugins.module_utils._failing import failing_cleanly
from ansible_collections.haecs.lvs.plugins.module_utils._ipvs_module import (
    has_service_key,
    parse_key,
    read_table,
    service_key_spec,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    Table,
    service_order,
    table_lines,
    table_thresholds,
)


def argument_spec() -> Dict[str, Any]:
    spec = service_key_spec()
    spec["stats"] = {"type": "bool", "default": True}
    spec["query"] = {"type": "str"}
    return spec


def compile_query(module: AnsibleModule) -> Any:
    """The compiled O(query), or None; fails the module naming the option."""
    expression = module.params["query"]
    if expression is None:
        return None
    if JMESPATH_IMPORT_ERROR is not None:
        module.fail_json(msg="query: " + missing_required_lib("jmespath"))
    try:
        return jmespath.compile(expression)
    except JMESPathError as error:
        module.fail_json(msg="query: not a JMESPath expression: %s" % error)


def select(table: Table, params: Dict[str, Any]) -> Table:
    """The whole table, or the one service named by the key options."""
    if not has_service_key(params):
        return table
    key = parse_key(params)
    return {key: table[key]} if key in table else {}


def run_module(module: AnsibleModule) -> Dict[str, Any]:
    query = compile_query(module)
    table, info = read_table(with_stats=module.params["stats"])
    table = select(table, module.params)
    services = [table[key].summary() for key in sorted(table, key=service_order)]
    result: Dict[str, Any] = {
        "changed": False,
        "services": services,
        "ipvsadm": table_lines(table),
        "thresholds": table_thresholds(table),
        "info": info,
    }
    if query is not None:
        answer = {name: result[name] for name in ("services", "ipvsadm", "thresholds", "info")}
        result["query_result"] = query.search(answer)
    return result


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    with failing_cleanly(module):
        result = run_module(module)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
