#!/usr/bin/python
# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ipvs_config
short_description: Manage IPVS connection timeouts and connection sync daemons
version_added: 0.1.0
description:
  - Sets the kernel's IPVS connection timeouts (like C(ipvsadm --set)) and
    starts or stops its connection synchronisation daemons (like
    C(ipvsadm --start-daemon) and C(ipvsadm --stop-daemon)), over netlink.
  - The kernel runs at most one V(master) and one V(backup) sync daemon and
    cannot change a running one. A daemon whose settings differ is stopped
    and started again, which briefly interrupts connection synchronisation
    (new connections in that moment are not synchronised to the backup).
  - Every option is checked before anything is changed; if the kernel refuses
    a daemon, the daemons and timeouts changed earlier in the same run are
    restored.
extends_documentation_fragment:
  - haecs.lvs.attributes
  - haecs.lvs.managed_host
  - haecs.lvs.managed_host.ipvs
options:
  timeouts:
    description:
      - Connection timeouts in seconds, each from V(1) to V(2147483).
      - A timeout that is not given stays as it is. Omit O(timeouts) to leave
        all three alone.
    type: dict
    suboptions:
      tcp:
        description: Idle timeout of established TCP connections (kernel default V(900)).
        type: int
      tcp_fin:
        description: Timeout of TCP connections after a FIN (kernel default V(120)).
        type: int
      udp:
        description: Timeout of UDP flows (kernel default V(300)).
        type: int
  sync_daemons:
    description:
      - The sync daemons that must run, at most one per O(sync_daemons[].state).
      - A running daemon in a state that is not listed is left alone unless
        O(purge_sync_daemons=true).
      - Omit O(sync_daemons) to leave the daemons alone.
    type: list
    elements: dict
    suboptions:
      state:
        description:
          - V(master) sends the director's connections to the group,
            V(backup) receives them from a master.
        type: str
        required: true
        choices: [master, backup]
      interface:
        description:
          - The interface the sync messages are sent or received on (for
            example a dedicated VLAN or a veth). It must exist.
        type: str
        required: true
      sync_id:
        description:
          - Sync id (V(0) to V(255)). A backup only accepts messages of a
            master with the same id; V(0) on a backup accepts every master.
        type: int
        default: 0
      max_length:
        description:
          - Largest sync message payload in bytes (C(--sync-maxlen)), from V(1)
            (V(1024) for a backup) to 65507 (IPv4 group) or 65487 (IPv6 group).
          - When omitted the kernel derives it from the interface MTU, and any
            running value is accepted.
        type: int
      group:
        description:
          - Multicast group, IPv4 (224.0.0.0/4) or IPv6 (ff00::/8).
        type: str
        default: 224.0.0.81
      port:
        description:
          - UDP port of the group. A master with more than one sync thread
            (sysctl C(net.ipv4.vs.sync_ports)) also uses the following ports.
        type: int
        default: 8848
      ttl:
        description: Multicast TTL of the sync messages (V(1) to V(255)).
        type: int
        default: 1
  purge_sync_daemons:
    description:
      - Stop every running daemon whose state is not in O(sync_daemons).
        With O(sync_daemons) omitted or empty, this stops all daemons.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
  diff_mode:
    description: Returns the timeouts and daemons before and after as C(ipvsadm --set) and C(ipvsadm --start-daemon) lines.
    support: full
notes:
  - While a sync daemon runs the kernel refuses an IPv6 real server on an IPv4
    service (and the reverse); such tunnelled real servers need the daemons stopped.
  - The IPVS settings belong to the network namespace the module runs in.
seealso:
  - module: haecs.lvs.ipvs_service
  - module: haecs.lvs.ipvs_info
  - name: ipvsadm(8)
    description: The C(--set), C(--start-daemon) and C(--stop-daemon) commands this module mirrors.
    link: https://man7.org/linux/man-pages/man8/ipvsadm.8.html
author: HAECS developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Shorter TCP idle timeout, the other two as they are
  haecs.lvs.ipvs_config:
    timeouts:
      tcp: 600

- name: The active director sends its connections over eth1
  haecs.lvs.ipvs_config:
    sync_daemons:
      - state: master
        interface: eth1
        sync_id: 10

- name: Both daemons (keepalived-style active/backup pair), on a private group, nothing else
  haecs.lvs.ipvs_config:
    timeouts:
      tcp: 900
      tcp_fin: 120
      udp: 300
    sync_daemons:
      - state: master
        interface: eth1
        sync_id: 10
        group: 239.255.10.1
        port: 8848
        ttl: 1
      - state: backup
        interface: eth1
        sync_id: 10
        group: 239.255.10.1
    purge_sync_daemons: true

- name: Stop all sync daemons
  haecs.lvs.ipvs_config:
    sync_daemons: []
    purge_sync_daemons: true
"""

RETURN = r"""
timeouts:
  description:
    - The timeouts after the run in seconds (in check mode, as they would be).
  returned: always
  type: dict
  sample:
    tcp: 900
    tcp_fin: 120
    udp: 300
sync_daemons:
  description:
    - The sync daemons after the run (in check mode, as they would be), master first.
    - O(sync_daemons[].max_length) is V(0) where the kernel will choose it (check mode only).
  returned: always
  type: list
  elements: dict
  sample:
    - state: master
      interface: eth1
      sync_id: 10
      max_length: 1472
      group: 224.0.0.81
      port: 8848
      ttl: 1
operations:
  description:
    - The changes made (or that would be made) as C(ipvsadm) arguments, in
      order. A changed daemon shows as a stop and a start.
  returned: always
  type: list
  elements: str
  sample:
    - "--set 600 120 300"
    - "--stop-daemon master"
    - "--start-daemon master --mcast-interface eth1 --syncid 10 --mcast-group 224.0.0.81 --mcast-port 8848 --mcast-ttl 1"
"""

from typing import Any, Dict, List, Optional

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.haecs.lvs.plugins.module_utils._failing import failing_cleanly
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.config import (
    DaemonOperation,
    KernelConfigError,
    SyncDaemon,
    Timeouts,
    apply_daemons,
    daemon_lines,
    daemon_summary,
    missing_interfaces,
    parse_sync_daemons,
    parse_timeouts,
    plan_daemons,
    plan_timeouts,
    read_daemons,
    read_timeouts,
    set_timeouts,
    with_running_max_length,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.engine import IPVS

DAEMON_OPTIONS: Dict[str, Any] = {
    "state": {"type": "str", "required": True, "choices": ["master", "backup"]},
    "interface": {"type": "str", "required": True},
    "sync_id": {"type": "int", "default": 0},
    "max_length": {"type": "int"},
    "group": {"type": "str", "default": "224.0.0.81"},
    "port": {"type": "int", "default": 8848},
    "ttl": {"type": "int", "default": 1},
}


def argument_spec() -> Dict[str, Any]:
    return {
        "timeouts": {
            "type": "dict",
            "options": {name: {"type": "int"} for name in ("tcp", "tcp_fin", "udp")},
        },
        "sync_daemons": {"type": "list", "elements": "dict", "options": DAEMON_OPTIONS},
        "purge_sync_daemons": {"type": "bool", "default": False},
    }


def desired_daemons(params: Dict[str, Any]) -> Optional[List[SyncDaemon]]:
    """The daemons asked for, or None when the daemons are to be left alone."""
    if params["sync_daemons"] is None and not params["purge_sync_daemons"]:
        return None
    daemons = parse_sync_daemons(params["sync_daemons"] or [])
    error = missing_interfaces(daemons)
    if error is not None:
        raise error
    return daemons


def lines(timeouts: Timeouts, daemons: List[SyncDaemon]) -> str:
    return "".join(line + "\n" for line in [timeouts.ipvsadm_line(), *daemon_lines(daemons)])


def run_module(module: AnsibleModule) -> Dict[str, Any]:
    params = module.params
    # Everything is validated before the kernel is touched.
    wanted_timeouts = parse_timeouts(params["timeouts"])
    wanted_daemons = desired_daemons(params)

    with IPVS() as ipvs:
        sock = ipvs.socket
        timeouts_before = read_timeouts(sock)
        daemons_before = read_daemons(sock)
        new_timeouts = plan_timeouts(timeouts_before, wanted_timeouts)
        daemon_ops: List[DaemonOperation] = []
        if wanted_daemons is not None:
            daemon_ops = plan_daemons(
                daemons_before, wanted_daemons, purge=params["purge_sync_daemons"]
            )

        if module.check_mode or (new_timeouts is None and not daemon_ops):
            timeouts_after = new_timeouts or timeouts_before
            daemons_after = predicted_daemons(daemons_before, wanted_daemons, daemon_ops)
        else:
            apply_changes(sock, timeouts_before, new_timeouts, daemon_ops)
            timeouts_after = read_timeouts(sock)
            daemons_after = read_daemons(sock)

    operations = ([new_timeouts.ipvsadm_line()] if new_timeouts else []) + [
        op.ipvsadm_line() for op in daemon_ops
    ]
    result: Dict[str, Any] = {
        "changed": bool(operations),
        "operations": operations,
        "timeouts": timeouts_after.as_dict(),
        "sync_daemons": daemon_summary(daemons_after),
    }
    if module._diff:
        result["diff"] = {
            "before": lines(timeouts_before, daemons_before),
            "after": lines(timeouts_after, daemons_after),
            "before_header": "ipvsadm timeouts and sync daemons (before)",
            "after_header": "ipvsadm timeouts and sync daemons (after)",
        }
    return result


def predicted_daemons(
    current: List[SyncDaemon], wanted: Optional[List[SyncDaemon]], operations: List[DaemonOperation]
) -> List[SyncDaemon]:
    if wanted is None or not operations:
        return current
    stopped = {op.daemon.state for op in operations}
    kept = [daemon for daemon in current if daemon.state not in stopped]
    started = [op.daemon for op in operations if op.kind == "start"]
    return with_running_max_length(kept + started, current)


def apply_changes(
    sock: Any,
    timeouts_before: Timeouts,
    new_timeouts: Optional[Timeouts],
    daemon_ops: List[DaemonOperation],
) -> None:
    if new_timeouts is not None:
        set_timeouts(sock, new_timeouts)
    try:
        apply_daemons(sock, daemon_ops)
    except KernelConfigError as error:
        if new_timeouts is None:
            raise
        try:
            set_timeouts(sock, timeouts_before)
        except KernelConfigError as undo_error:
            raise KernelConfigError(
                "%s; restoring the timeouts also failed: %s" % (error, undo_error)
            ) from None
        raise KernelConfigError("%s; the timeouts were restored" % error) from None


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    with failing_cleanly(module):
        result = run_module(module)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
