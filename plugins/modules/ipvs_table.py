#!/usr/bin/python
# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ipvs_table
short_description: Declare the whole IPVS (LVS) table, or part of it, at once
version_added: 0.1.0
description:
  - Makes the Linux kernel's IPVS table match a list of virtual services with
    their real servers, touching only what differs.
  - Changes are ordered so traffic keeps flowing. New services and real servers
    are added first, changed ones are edited in place (never deleted and
    re-added, so connections and counters survive), and removals come last,
    so a replaced pool never goes empty.
  - All or nothing. Every entry is validated and every scheduler module loaded
    before the first change. If the kernel still refuses an operation, the
    operations already applied are undone and the error names the refused
    entry; the table ends exactly as it began.
  - Many operations travel in one netlink message batch, which makes large
    tables fast (see the benchmark figures in the collection README).
extends_documentation_fragment:
  - haecs.lvs.attributes
  - haecs.lvs.managed_host
  - haecs.lvs.managed_host.ipvs
  - haecs.lvs.ipvs_options.table
options:
  state:
    description:
      - V(merged) adds and edits the listed services and real servers and
        leaves everything else alone. A service without O(services[].real_servers)
        keeps its real servers. An option left out of an entry that exists
        keeps its current value; defaults apply only to entries it adds (as
        with M(haecs.lvs.ipvs_service) and M(haecs.lvs.ipvs_real_server), a
        real server whose port is omitted is the service's only one at that
        address).
      - V(replaced) makes each listed service exactly as declared, removing its
        real servers that are not listed. Every option left out takes its
        default, whatever the entry has now. Services not listed are untouched.
      - V(overridden) makes the whole table exactly as declared, deleting every
        service that is not listed; every option left out takes its default.
        O(services=[]) empties the table.
      - V(deleted) deletes the listed real servers, or the whole service when a
        service lists no O(services[].real_servers). Only the key options matter.
      - V(gathered) changes nothing and returns the table in the format of
        O(services) as RV(gathered).
    type: str
    choices: [merged, replaced, overridden, deleted, gathered]
    default: merged
  src:
    description:
      - Path, on the director, of a rules file in the format of C(ipvsadm -Sn)
        and C(ipvsadm-restore) (C(-A) and C(-a) lines; C(-x)/C(-y) thresholds
        allowed; blank lines and C(#) comments skipped). Used instead of
        O(services).
      - Render it once on the director (for example with M(ansible.builtin.template)
        to C(/etc/ipvsadm.rules)) and converge with O(src); the same file
        restores the table at boot (C(ipvsadm-restore < /etc/ipvsadm.rules),
        as the Debian C(ipvsadm) service does). A large table then never goes
        through Ansible's templating and module arguments.
      - "Errors name the file and line, for example C(/etc/ipvsadm.rules:12: weight: ...)."
    type: path
  keep:
    description:
      - With V(overridden), services that this run leaves exactly as they
        are, real servers and all, although O(services) does not list them.
        They are the services another owner programs, such as those the HAECS
        monitor checks (this module must not fight it). Only the key options
        matter.
      - A service listed both here and in O(services) is an error.
    type: list
    elements: dict
    suboptions:
      protocol:
        description: C(tcp), C(udp) or C(sctp); with O(keep[].address) and O(keep[].port).
        type: str
        choices: [tcp, udp, sctp]
      address:
        description: The virtual IP address.
        type: str
      port:
        description: The virtual port.
        type: int
      fwmark:
        description: The firewall mark of a fwmark service (instead of protocol, address, port).
        type: int
      family:
        description: V(ipv4) or V(ipv6), for a fwmark service.
        type: str
        choices: [ipv4, ipv6]
  drain_timeout:
    description:
      - Seconds to drain a real server before this run deletes it (with
        V(replaced), V(overridden) or V(deleted), a deleted service's real
        servers included). Each one first gets weight 0, so it takes no new
        connection; the run then waits until
        their established connections (C(ActiveConn) of C(ipvsadm -Ln)) reach
        0 or this many seconds (at most 86400) have passed, and only then
        deletes. Connections already closing and UDP entries are not waited
        for.
      - V(0) deletes at once. Check mode never waits.
      - If the deletes then fail, the drained weights are restored with them.
    type: int
    default: 0
  detail:
    description:
      - Return the full detail. By default the result stays small at any
        table size. It holds the counts (RV(summary), RV(table)), at most 100
        RV(operations), and in diff mode the diff only when it has at most 100
        operations. With V(true) it holds every operation, the whole table
        before and after (RV(before), RV(after)) and the whole diff.
    type: bool
    default: false
author: HAECS developers (!UNKNOWN)
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
notes:
  - The diff lists only the services that change, as the lines C(ipvsadm -Sn)
    prints, then a labelled comment line per real server with thresholds
    (C(-Sn) does not show them).
  - Related modules are M(haecs.lvs.ipvs_service) and M(haecs.lvs.ipvs_real_server)
    for single entries, and M(haecs.lvs.ipvs_info) to read counters.
"""

EXAMPLES = r"""
- name: A web VIP with two NAT real servers, merged into the table
  haecs.lvs.ipvs_table:
    services:
      - address: 192.0.2.10
        port: 80
        scheduler: wrr
        real_servers:
          - {address: 10.10.2.11, port: 8080, forwarding: masq, weight: 3}
          - {address: 10.10.2.12, port: 8080, forwarding: masq, weight: 1}

- name: Drain one server; everything else it has (forwarding, port, thresholds) stays
  haecs.lvs.ipvs_table:
    services:
      - address: 192.0.2.10
        port: 80
        real_servers:
          - {address: 10.10.2.12, weight: 0}

- name: Replace the pool of one service (new servers in before old ones out)
  haecs.lvs.ipvs_table:
    state: replaced
    services:
      - address: 192.0.2.10
        port: 80
        scheduler: wrr
        real_servers:
          - {address: 10.10.2.13, port: 8080, forwarding: masq}

- name: Replace a pool; a server that leaves first finishes its connections (at most 2 min)
  haecs.lvs.ipvs_table:
    state: replaced
    drain_timeout: 120
    services:
      - address: 192.0.2.10
        port: 80
        scheduler: wrr
        real_servers:
          - {address: 10.10.2.11, port: 8080, forwarding: masq}

- name: The director's whole table, nothing else (purges undeclared services)
  haecs.lvs.ipvs_table:
    state: overridden
    services: "{{ lvs_services }}"

- name: Take one real server out
  haecs.lvs.ipvs_table:
    state: deleted
    services:
      - address: 192.0.2.10
        port: 80
        real_servers:
          - {address: 10.10.2.13, port: 8080}

- name: Render the director's table once, as the rules file the boot restores
  ansible.builtin.template:
    src: ipvsadm.rules.j2
    dest: /etc/ipvsadm.rules
    mode: "0600"

- name: Converge the kernel to it (large tables stay off Ansible's templating)
  haecs.lvs.ipvs_table:
    state: overridden
    src: /etc/ipvsadm.rules

- name: Read the table in the format of `services`
  haecs.lvs.ipvs_table:
    state: gathered
  register: lvs

- name: Empty the table
  haecs.lvs.ipvs_table:
    state: overridden
    services: []
"""

RETURN = r"""
operations:
  description:
    - What was done (or would be, in check mode), as C(ipvsadm) command lines, in order.
    - At most the first 100 unless O(detail=true); RV(operations_omitted) counts the rest.
  returned: always
  type: list
  elements: str
  sample: ["-a -t 192.0.2.10:80 -r 10.10.2.13:8080 -m -w 1", "-d -t 192.0.2.10:80 -r 10.10.2.11:8080"]
operations_omitted:
  description: How many operations RV(operations) leaves out (more than 100, without O(detail)).
  returned: when operations were left out
  type: int
  sample: 10900
summary:
  description: Counts of the operations by kind.
  returned: always
  type: dict
  sample: {added: 1, edited: 0, deleted: 1}
table:
  description: Size of the table after the run (predicted in check mode).
  returned: always
  type: dict
  sample: {services: 1000, real_servers: 10000}
before:
  description: The whole table before the run, as the lines C(ipvsadm -Sn) prints.
  returned: when O(detail=true)
  type: list
  elements: str
after:
  description: The whole table after the run (predicted in check mode), as the lines C(ipvsadm -Sn) prints.
  returned: when O(detail=true)
  type: list
  elements: str
drained:
  description:
    - The real servers drained before their deletion, with the established
      connections each still had when the deletes were made (0 unless
      O(drain_timeout) ran out), and the seconds the run waited.
  returned: when O(drain_timeout) is above 0 and the run deleted a real server
  type: dict
  contains:
    waited:
      description: Seconds the run waited for the connections to finish.
      type: float
    operations:
      description:
        - The weight-0 edits made before the wait, as C(ipvsadm) command lines (not in
          RV(operations), which holds the change itself, as check mode predicts it).
      type: list
      elements: str
    real_servers:
      description: One entry per drained real server.
      type: list
      elements: dict
  sample:
    waited: 3.0
    operations: ["-e -t 192.0.2.10:80 -r 10.10.2.12:8080 -m -w 0"]
    real_servers:
      - {service: "tcp 192.0.2.10:80", real_server: "10.10.2.12:8080", connections_left: 0}
gathered:
  description: The table in the format of O(services), ready to be fed back.
  returned: when O(state=gathered)
  type: list
  elements: dict
  sample:
    - protocol: tcp
      address: 192.0.2.10
      port: 80
      scheduler: wrr
      real_servers:
        - {address: 10.10.2.11, port: 8080, forwarding: masq, weight: 3}
"""

from typing import Any, Dict, FrozenSet, List, Optional, Tuple

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.haecs.lvs.plugins.module_utils._failing import failing_cleanly
from ansible_collections.haecs.lvs.plugins.module_utils._ipvs_module import (
    converge,
    parse_key,
    parse_real_server_key,
    read_table,
    real_server_spec,
    service_key_spec,
    service_spec,
)
from ansible_collections.haecs.lvs.plugins.module_utils._ipvs_table_params import (
    check_table,
    parse_table,
    table_params,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    ServiceKey,
    Table,
    diff_text,
    table_lines,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.params import ValidationError
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.plan import (
    ADD_REAL_SERVER,
    ADD_SERVICE,
    DELETE_REAL_SERVER,
    DELETE_SERVICE,
    Operation,
    plan,
    plan_removal,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.rules import locate, parse_rules

STATES = ["merged", "replaced", "overridden", "deleted", "gathered"]


def argument_spec() -> Dict[str, Any]:
    service = service_spec()
    service["real_servers"] = {"type": "list", "elements": "dict", "options": real_server_spec()}
    return {
        "state": {"type": "str", "default": "merged", "choices": STATES},
        "services": {"type": "list", "elements": "dict", "options": service},
        "src": {"type": "path"},
        "keep": {"type": "list", "elements": "dict", "options": service_key_spec()},
        "drain_timeout": {"type": "int", "default": 0},
        "detail": {"type": "bool", "default": False},
    }


def decide_for(state: str, services: List[Dict[str, Any]]) -> Tuple[Any, List[ServiceKey]]:
    """Validate everything, then return the planning function and the services named."""
    if state == "deleted":
        return _decide_deleted(services)
    if state == "merged":
        # Every entry is checked against the table as read: an omitted option
        # keeps the current value of an existing entry.  Without purge, plan()
        # only adds and edits: a service that lists no real servers keeps its own.
        keys = check_table(services)

        def decide(current: Table) -> List[Operation]:
            merged, _listed = parse_table(services, current=current)
            return plan(current, merged)

        return decide, keys
    desired, _listed = parse_table(services)

    def decide_exact(current: Table) -> List[Operation]:
        return plan(current, desired, purge_real_servers=True, purge_services=state == "overridden")

    return decide_exact, list(desired)


def _decide_deleted(services: List[Dict[str, Any]]) -> Tuple[Any, List[ServiceKey]]:
    whole: List[ServiceKey] = []
    servers: List[Tuple[ServiceKey, Tuple[str, int]]] = []
    for index, params in enumerate(services):
        path = "services[%d]" % index
        key = parse_key(params, path)
        listed = params.get("real_servers")
        if listed is None:
            whole.append(key)
            continue
        for server_index, server in enumerate(listed):
            servers.append(
                (
                    key,
                    parse_real_server_key(
                        server, key, "%s.real_servers[%d]" % (path, server_index)
                    ),
                )
            )

    def decide(current: Table) -> List[Operation]:
        return plan_removal(current, whole, servers)

    return decide, whole + [key for key, _server in servers]


def kept_keys(state: str, keep: Optional[List[Dict[str, Any]]]) -> FrozenSet[ServiceKey]:
    """The services `keep` names (only state overridden purges others)."""
    if not keep:
        return frozenset()
    if state != "overridden":
        raise ValidationError("keep", "applies only with state overridden, not %s" % state)
    return frozenset(parse_key(params, "keep[%d]" % index) for index, params in enumerate(keep))


def check_kept(named: List[ServiceKey], kept: FrozenSet[ServiceKey]) -> None:
    """A service has one owner: not both declared and kept."""
    for index, key in enumerate(named):
        if key in kept:
            raise ValidationError(
                "services[%d]" % index,
                "%s is also in keep: a service is either declared here or kept as it is" % key,
            )


def without(table: Table, kept: FrozenSet[ServiceKey]) -> Table:
    if not kept:
        return table
    return {key: entry for key, entry in table.items() if key not in kept}


def summary(operations: List[Operation]) -> Dict[str, int]:
    added = sum(op.kind in (ADD_SERVICE, ADD_REAL_SERVER) for op in operations)
    deleted = sum(op.kind in (DELETE_SERVICE, DELETE_REAL_SERVER) for op in operations)
    return {"added": added, "edited": len(operations) - added - deleted, "deleted": deleted}


def compact_diff(before: Table, after: Table, operations: List[Operation]) -> Dict[str, str]:
    """Only the services an operation touches, as ipvsadm -Sn lines."""
    touched = {op.service.key for op in operations}

    def text(table: Table) -> str:
        return diff_text({key: entry for key, entry in table.items() if key in touched})

    return {
        "before": text(before),
        "after": text(after),
        "before_header": "ipvsadm -Sn (changed services, before)",
        "after_header": "ipvsadm -Sn (changed services, after)",
    }


# A day: longer is a mistake (a run that never ends), not a drain.
MAX_DRAIN_TIMEOUT = 86400

# Above this many operations (or services in the task) the result carries
# counts, not the lines, unless detail is true.
SMALL = 100


def read_text(path: str) -> str:
    """The rules file on the director."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise ValidationError("src", "cannot read %s: %s" % (path, error)) from None


def rules_lines(text: str) -> List[str]:
    """The command lines of a rules file, words single-spaced, sorted."""
    lines = (" ".join(line.split()) for line in text.splitlines())
    return sorted(line for line in lines if line and not line.startswith("#"))


def table_rules(table: Table) -> List[str]:
    """The table as rules lines in our canonical form (thresholds included), sorted."""
    lines = []
    for key, entry in table.items():
        lines.append(entry.service.ipvsadm_line())
        lines.extend(server.ipvsadm_line(key) for server in entry.real_servers.values())
    return sorted(lines)


def converge_src(
    module: AnsibleModule,
    state: str,
    src: str,
    text: str,
    detail: bool,
    drain_timeout: int = 0,
    kept: FrozenSet[ServiceKey] = frozenset(),
) -> Dict[str, Any]:
    """Converge to a rules file.

    When the file's lines are exactly the current table's (in the canonical
    form the module writes and `ipvsadm -Sn` prints, thresholds as -x/-y),
    there is nothing to do: the file is neither parsed nor validated again,
    which keeps a run with nothing to change cheap on a large table.
    Otherwise every entry is parsed and checked; errors name the file and line.
    """
    wanted = rules_lines(text) if state != "deleted" else None

    def decide(current: Table) -> List[Operation]:
        current = without(current, kept)
        if wanted is not None and table_rules(current) == wanted:
            return []
        services, lines = parse_rules(text, src)
        try:
            plan_for, named = decide_for(state, services)
            check_kept(named, kept)
            operations: List[Operation] = plan_for(current)
        except ValidationError as error:
            raise locate(error, src, lines, services) from None
        return operations

    return converged(module, decide, detail, drain_timeout)


def converged(
    module: AnsibleModule, decide: Any, detail: bool, drain_timeout: int
) -> Dict[str, Any]:
    """Run `decide` against the table and shape the result.  Counters are not
    part of this module's result: not read.  Without detail or diff the after
    table is computed from the plan."""
    run = converge(
        decide,
        module.check_mode,
        with_stats=False,
        read_back=detail or bool(module._diff),
        drain_timeout=drain_timeout,
    )
    return shaped_result(run, detail, bool(module._diff))


def table_counts(table: Table) -> Dict[str, int]:
    return {
        "services": len(table),
        "real_servers": sum(len(entry.real_servers) for entry in table.values()),
    }


def shaped_result(run: Any, detail: bool, diff_mode: bool) -> Dict[str, Any]:
    """Counts always; operations and diff when asked (detail) or small."""
    lines = run.operation_lines()
    result: Dict[str, Any] = {
        "changed": run.changed,
        "summary": summary(run.operations),
        "table": table_counts(run.after),
        "operations": lines if detail or len(lines) <= SMALL else lines[:SMALL],
    }
    if run.drained is not None:
        result["drained"] = {
            "waited": run.drained.waited,
            "operations": run.drained.quiesced,
            "real_servers": run.drained.report(),
        }
    if len(result["operations"]) < len(lines):
        result["operations_omitted"] = len(lines) - SMALL
    if detail:
        result["before"] = table_lines(run.before)
        result["after"] = table_lines(run.after)
    if diff_mode and run.changed:
        if detail or len(lines) <= SMALL:
            result["diff"] = compact_diff(run.before, run.after, run.operations)
        else:
            note = "# %d operations; detail: true shows the ipvsadm -Sn lines\n" % len(lines)
            result["diff"] = {"before": "", "after": note}
    return result


def run_module(module: AnsibleModule) -> Dict[str, Any]:
    state = module.params["state"]
    services = module.params["services"]
    detail = module.params["detail"]
    if state == "gathered":
        table, _info = read_table(with_stats=False)
        result: Dict[str, Any] = {
            "changed": False,
            "gathered": table_params(table),
            "operations": [],
            "summary": summary([]),
            "table": table_counts(table),
        }
        if detail:
            result["before"] = result["after"] = table_lines(table)
        return result
    drain_timeout = module.params["drain_timeout"]
    if not 0 <= drain_timeout <= MAX_DRAIN_TIMEOUT:
        raise ValidationError(
            "drain_timeout",
            "must be from 0 to %d seconds, got %d" % (MAX_DRAIN_TIMEOUT, drain_timeout),
        )
    kept = kept_keys(state, module.params["keep"])
    src = module.params["src"]
    if src is not None:
        return converge_src(module, state, src, read_text(src), detail, drain_timeout, kept)
    if services is None:
        raise ValidationError(
            "services",
            "is required with state %s (use services: [] with state overridden to empty the table)"
            % state,
        )
    return converge_services(module, state, services, detail, drain_timeout, kept)


def converge_services(
    module: AnsibleModule,
    state: str,
    services: List[Dict[str, Any]],
    detail: bool,
    drain_timeout: int = 0,
    kept: FrozenSet[ServiceKey] = frozenset(),
) -> Dict[str, Any]:
    plan_for, named = decide_for(state, services)
    check_kept(named, kept)

    def decide(current: Table) -> List[Operation]:
        return plan_for(without(current, kept))

    return converged(module, decide, detail, drain_timeout)


def invocation(params: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """A short `invocation` for a large inline table (Ansible echoes the
    arguments back otherwise, the whole table); None keeps Ansible's own."""
    services = params.get("services")
    if params.get("detail") or services is None or len(services) <= SMALL:
        return None
    shown = dict(params, services="(%d services, not echoed back)" % len(services))
    return {"module_args": shown}


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        mutually_exclusive=[("services", "src")],
    )
    with failing_cleanly(module):
        result = run_module(module)
    short = invocation(module.params)
    if short is not None:
        result["invocation"] = short
    module.exit_json(**result)


if __name__ == "__main__":
    main()
