#!/usr/bin/python
# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: monitor_server
short_description: Drain, disable or enable real servers through the HAECS monitor, and wait for the kernel
version_added: 0.1.0
description:
  - Sets the admin state of real servers in a running HAECS monitor (C(haecs-monitor)) through its API
    on the root-only control socket, like C(haecsctl drain), C(haecsctl disable) and C(haecsctl enable),
    for several servers in one call, and optionally waits until the kernel's IPVS table holds them so.
  - The monitor owns the services it checks, so a monitored service's real servers are drained here,
    never with M(haecs.lvs.ipvs_real_server) (the monitor would put the weight back).
  - Every server is read from the monitor before anything is set; a server or service the monitor does
    not know fails the task before any change.
  - The verdicts are the monitor's, read from the kernel at each request; the connection counters are
    the kernel's (C(ipvsadm -Ln)'s ActiveConn, InActConn and PersistConn).
  - The playbook C(haecs.lvs.drain) uses this module for rolling maintenance.
extends_documentation_fragment:
  - haecs.lvs.attributes
options:
  servers:
    description:
      - The real servers, each as the monitor names it, C(ADDRESS:PORT), an IPv6 address in brackets
        (C([2001:db8::1]:80)).
    type: list
    elements: str
    required: true
  service:
    description:
      - The service, as the monitor names it (C(tcp:192.0.2.10:80), C(udp:[2001:db8::10]:53),
        C(fwmark:1), or C(192.0.2.10:80) when one protocol has it), or V(*) for every monitored service
        that has the server.
    type: str
    default: "*"
  state:
    description:
      - V(drained) sets weight 0 (admin state C(drain)), so no new connection reaches it and established ones finish;
        persistence templates still send their clients to it.
      - V(disabled) takes the server out of the kernel's table (its connections are cut when
        C(expire_nodest_conn) is on).
      - V(enabled) gives the server back to its health checks; the kernel holds it again once they pass.
    type: str
    required: true
    choices: [drained, disabled, enabled]
  wait:
    description:
      - Wait until the kernel holds every server as O(state) wants, polling the monitor every
        O(poll_interval) seconds for at most O(wait_timeout) seconds; the task fails when the timeout
        passes first, and says what is left.
      - V(drained) waits for the rule of O(wait_until); V(enabled) until the server is in the kernel's table
        of every service with a weight above 0 (its configured weight, when that is 0; a C(slow_start)
        ramp is not waited for); V(disabled) until it is in no service's table.
    type: bool
    default: false
  wait_until:
    description:
      - With O(state=drained) and O(wait=true), V(active) waits until no connection is established
        (ActiveConn 0, the rule of M(haecs.lvs.ipvs_table)'s C(drain_timeout)); V(all) until not one
        connection entry is left, closing TCP and UDP flows included (kube-proxy's rule).
    type: str
    default: active
    choices: [active, all]
  wait_timeout:
    description: Seconds to wait at most, V(0) or more (V(0) looks once).
    type: float
    default: 300
  poll_interval:
    description: Seconds between two reads while waiting, above V(0).
    type: float
    default: 1
  monitor_name:
    description:
      - The monitor instance, whose control socket is C(/run/haecs/monitor-NAME.sock) (the C(monitor)
        role's C(monitor_name)).
      - Without O(monitor_name) and O(socket), the instance C(default).
      - Mutually exclusive with O(socket).
    type: str
  socket:
    description: The monitor's control socket, when it is not where O(monitor_name) puts it.
    type: path
  request_timeout:
    description: Seconds to wait for each answer of the monitor, above V(0).
    type: float
    default: 30
attributes:
  check_mode:
    description: Reads the servers and reports the admin states it would change; sets nothing and waits for nothing.
    support: full
  diff_mode:
    description: Returns each server's admin state per service before and after, one C(SERVICE SERVER STATE) line each.
    support: full
notes:
  - Runs on the director, as root (the control socket is root-only). With several directors, run it on
    each (O(ignore:delegate_to) in a loop), as C(haecs.lvs.drain) does.
  - The monitor keeps admin states across its restarts (its state file).
seealso:
  - module: haecs.lvs.ipvs_real_server
  - module: haecs.lvs.ipvs_info
author: HAECS developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Drain rs1 in every monitored service and wait until no connection is established
  haecs.lvs.monitor_server:
    monitor_name: web
    servers: ["10.10.0.11:8080", "[fd00:10::11]:8080"]
    state: drained
    wait: true
    wait_timeout: 600

- name: Enable it again and wait until its checks put it back
  haecs.lvs.monitor_server:
    monitor_name: web
    servers: ["10.10.0.11:8080", "[fd00:10::11]:8080"]
    state: enabled
    wait: true

- name: Take a server out of one service only
  haecs.lvs.monitor_server:
    socket: /run/haecs/monitor-web.sock
    service: tcp:192.0.2.10:443
    servers: 10.10.0.12:443
    state: disabled
"""

RETURN = r"""
servers:
  description:
    - Each server as the monitor answered C(GET /servers/SERVICE/SERVER) last (after the wait, when
      O(wait=true); before any change in check mode), in the order of O(servers).
    - C(active_connections), C(inactive_connections) and C(persistence_templates) are summed over the
      services the kernel holds it in; C(drained) and C(idle) hold when they hold in every service.
  returned: success, and on a failed wait
  type: list
  elements: dict
  sample:
    - server: "10.10.0.11:8080"
      active_connections: 0
      inactive_connections: 2
      persistence_templates: 0
      drained: true
      idle: false
      services:
        - service: "tcp:192.0.2.10:80"
          admin: drain
          in_kernel: true
          weight: 0
          configured_weight: 1
          persistent: false
          active_connections: 0
          inactive_connections: 2
          persistence_templates: 0
          drained: true
          idle: false
admin_changes:
  description: Each admin state set (or, in check mode, that would be set), per service and server.
  returned: always
  type: list
  elements: dict
  sample: [{service: "tcp:192.0.2.10:80", server: "10.10.0.11:8080", admin: drain, was: enabled}]
operations:
  description: The kernel operations the monitor made for these changes, as C(ipvsadm) lines.
  returned: always
  type: list
  elements: str
  sample: ["-e -t 192.0.2.10:80 -r 10.10.0.11:8080 -m -w 0"]
waited:
  description: Seconds waited (V(0) without O(wait)).
  returned: always
  type: float
  sample: 2.1
done:
  description: Whether the kernel holds every server as O(state) wants (after the wait; without it, at the last read).
  returned: always
  type: bool
  sample: true
"""

import json
import math
from typing import Any, Dict, List, Mapping, Tuple
from urllib.error import HTTPError

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

from ansible_collections.haecs.lvs.plugins.module_utils import monitor_admin
from ansible_collections.haecs.lvs.plugins.module_utils._failing import failing_cleanly
from ansible_collections.haecs.lvs.plugins.module_utils.monitor_admin import (
    MonitorError,
    Reply,
    Send,
)

SOCKET_TEMPLATE = "/run/haecs/monitor-%s.sock"


def argument_spec() -> Dict[str, Any]:
    return dict(
        servers=dict(type="list", elements="str", required=True),
        service=dict(type="str", default="*"),
        state=dict(type="str", required=True, choices=["drained", "disabled", "enabled"]),
        wait=dict(type="bool", default=False),
        wait_until=dict(type="str", default="active", choices=["active", "all"]),
        wait_timeout=dict(type="float", default=300),
        poll_interval=dict(type="float", default=1),
        monitor_name=dict(type="str"),
        socket=dict(type="path"),
        request_timeout=dict(type="float", default=30),
    )


def problems(params: Mapping[str, Any]) -> List[str]:
    """Each option that breaks its rule, named."""
    found = []
    servers = params["servers"]
    if not servers:
        found.append("servers: give at least one real server (ADDRESS:PORT)")
    for index, server in enumerate(servers):
        if not server.strip() or "/" in server:
            found.append(
                "servers[%d]: must be ADDRESS:PORT as the monitor names it, got %r"
                % (index, server)
            )
    if not params["service"].strip() or "/" in params["service"]:
        found.append(
            "service: must be a service as the monitor names it, or *, got %r" % params["service"]
        )
    for name, low, text in (
        ("wait_timeout", 0.0, "0 or more"),
        ("poll_interval", None, "above 0"),
        ("request_timeout", None, "above 0"),
    ):
        value = params[name]
        if not math.isfinite(value) or (value < low if low is not None else value <= 0):
            found.append("%s: must be %s seconds, got %g" % (name, text, value))
    name = params["monitor_name"]
    if name is not None and (not name.strip() or "/" in name):
        found.append("monitor_name: must be a monitor instance name (no /), got %r" % name)
    if params["wait"] and params["wait_until"] != "active" and params["state"] != "drained":
        found.append("wait_until: only applies to state drained, got state %s" % params["state"])
    return found


def sender(path: str, timeout: float) -> Send:
    """send(method, api_path) over the unix socket PATH; MonitorError when unreachable."""

    def send(method: str, target: str) -> Reply:
        try:
            response = open_url(
                "http://localhost" + target,
                method=method,
                unix_socket=path,
                timeout=timeout,
                follow_redirects="none",
                use_proxy=False,
            )
            status, body = response.getcode(), response.read()
        except HTTPError as error:
            status, body = error.code, error.read()
        except OSError as error:  # URLError and socket timeouts are OSErrors too
            reason = getattr(error, "reason", error)
            raise MonitorError(
                "cannot reach the monitor at %s: %s (is haecs-monitor running there? monitor_name, socket)"
                % (path, reason)
            ) from None
        try:
            data = json.loads(body.decode("utf-8")) if body else None
        except ValueError:
            data = None
        return Reply(status, data)

    return send


def diff_lines(answers: List[Mapping[str, Any]], state: str, after: bool) -> str:
    lines = []
    for answer in answers:
        for entry in monitor_admin.entries(answer):
            admin = monitor_admin.ADMIN_STATE[state] if after else entry.get("admin")
            lines.append("%s %s %s\n" % (entry.get("service"), answer.get("server"), admin))
    return "".join(lines)


def run_module(module: AnsibleModule) -> Tuple[Dict[str, Any], bool]:
    """The result, and whether the wait reached the wanted state."""
    params = module.params
    found = problems(params)
    if found:
        raise MonitorError("; ".join(found))
    path = params["socket"] or SOCKET_TEMPLATE % (params["monitor_name"] or "default")
    send = sender(path, params["request_timeout"])
    state, servers, service = params["state"], params["servers"], params["service"]
    outcome = monitor_admin.set_admin(send, service, servers, state, module.check_mode)
    before = outcome.answers
    if not module.check_mode and params["wait"]:
        outcome.done, outcome.answers, outcome.waited = monitor_admin.wait(
            send,
            service,
            servers,
            state,
            params["wait_until"],
            params["wait_timeout"],
            params["poll_interval"],
        )
    else:
        outcome.done = all(
            monitor_admin.is_done(answer, state, params["wait_until"]) for answer in outcome.answers
        )
    for warning in outcome.warnings:
        module.warn(warning)
    result: Dict[str, Any] = dict(
        changed=bool(outcome.admin_changes),
        servers=outcome.answers,
        admin_changes=outcome.admin_changes,
        operations=outcome.operations,
        waited=round(outcome.waited, 2),
        done=outcome.done,
    )
    if module._diff:
        result["diff"] = dict(
            before=diff_lines(before, state, False), after=diff_lines(before, state, True)
        )
    return result, outcome.done or not params["wait"] or module.check_mode


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[("monitor_name", "socket")],
        supports_check_mode=True,
    )
    with failing_cleanly(module):
        result, reached = run_module(module)
    if not reached:
        params = module.params
        left = "; ".join(
            monitor_admin.format_not_done(answer, params["state"], params["wait_until"])
            for answer in result["servers"]
            if not monitor_admin.is_done(answer, params["state"], params["wait_until"])
        )
        module.fail_json(
            msg="not %s within wait_timeout (%g s): %s"
            % (params["state"], round(params["wait_timeout"], 1), left),
            **result,
        )
    module.exit_json(
        msg="%s, waited %g s: %s"
        % (
            module.params["state"],
            result["waited"],
            monitor_admin.format_done(
                result["servers"], module.params["state"], module.params["wait_until"]
            ),
        ),
        **result,
    )


if __name__ == "__main__":
    main()
