# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Set real servers' admin state through a running HAECS monitor's API, and
wait for the kernel to follow: what ``haecsctl drain --wait`` and
``haecsctl enable`` do, for several servers in one call.

The verdicts are the monitor's own (``GET /servers/{service}/{server}``
answers ``drained`` and ``idle`` from a read of the kernel at request time,
haecs_monitor/control/connections.py); this file only asks, polls and words
what is left.  Every server is read before anything is set, so an unknown
one fails the call before any change.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import quote

from .ipvs.errors import HaecsError

DRAINED = "drained"
ENABLED = "enabled"
DISABLED = "disabled"
#: the monitor's admin state for each module state
ADMIN_STATE = {DRAINED: "drain", ENABLED: "enabled", DISABLED: "disable"}
#: the API's action for each module state
ACTION = {DRAINED: "drain", ENABLED: "enable", DISABLED: "disable"}
UNTIL_ACTIVE = "active"
UNTIL_ALL = "all"
#: the verdict of GET /servers/... that each `until` waits for
VERDICT = {UNTIL_ACTIVE: "drained", UNTIL_ALL: "idle"}


class MonitorError(HaecsError):
    """The monitor cannot be reached, or answered an error (its HTTP status)."""

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status

    def result(self) -> Dict[str, Any]:
        fields = super().result()
        if self.status is not None:
            fields["status"] = self.status
        return fields


@dataclass
class Reply:
    status: int
    data: Any


Send = Callable[[str, str], Reply]


def server_path(service: str, server: str, action: str = "") -> str:
    """/servers/SERVICE/SERVER[/ACTION], each part quoted (as haecsctl does)."""
    path = "/servers/%s/%s" % (quote(service, safe=":*"), quote(server, safe=":"))
    return path + "/" + action if action else path


def _answer(send: Send, method: str, path: str, server: str) -> Mapping[str, Any]:
    reply = send(method, path)
    data = reply.data
    if reply.status != 200:
        error = data.get("error") if isinstance(data, dict) else None
        raise MonitorError(
            "%s: %s" % (server, error or "the monitor answered HTTP %d" % reply.status),
            reply.status,
        )
    if not isinstance(data, dict):
        raise MonitorError("%s: the monitor's answer is not a JSON object" % server)
    return data


def read(send: Send, service: str, server: str) -> Mapping[str, Any]:
    """The server as the kernel holds it now, per service (the monitor's answer)."""
    return _answer(send, "GET", server_path(service, server), server)


# ------------------------------------------------------------------ verdicts


def entries(answer: Mapping[str, Any]) -> List[Mapping[str, Any]]:
    services = answer.get("services")
    return (
        [entry for entry in services if isinstance(entry, dict)]
        if isinstance(services, list)
        else []
    )


def admin_changes(answer: Mapping[str, Any], state: str) -> List[Dict[str, Any]]:
    """Per service of the answer whose admin state is not STATE's: what would change."""
    wanted = ADMIN_STATE[state]
    return [
        {
            "service": entry.get("service"),
            "server": answer.get("server"),
            "admin": wanted,
            "was": entry.get("admin"),
        }
        for entry in entries(answer)
        if entry.get("admin") != wanted
    ]


def _back(entry: Mapping[str, Any]) -> bool:
    """In the kernel with its weight (a configured weight of 0 stays 0)."""
    if not entry.get("in_kernel"):
        return False
    weight = entry.get("weight") or 0
    configured = entry.get("configured_weight") or 0
    return weight > 0 or configured == 0


def is_done(answer: Mapping[str, Any], state: str, until: str) -> bool:
    """Whether the kernel holds the server as STATE wants it in every service."""
    if state == DRAINED:
        return bool(answer.get(VERDICT[until]))
    if state == ENABLED:
        return all(_back(entry) for entry in entries(answer))
    return not any(entry.get("in_kernel") for entry in entries(answer))


def _count(answer: Mapping[str, Any], name: str) -> int:
    value = answer.get(name)
    return value if isinstance(value, int) else 0


def format_left(answer: Mapping[str, Any]) -> str:
    """'1 active, 0 inactive connections[, 2 persistence templates] left'
    (the words of haecsctl drain --wait)."""
    if not any(entry.get("in_kernel") for entry in entries(answer)):
        return "not in the kernel's table"
    text = "%d active, %d inactive connections" % (
        _count(answer, "active_connections"),
        _count(answer, "inactive_connections"),
    )
    if any(entry.get("persistent") for entry in entries(answer)):
        templates = _count(answer, "persistence_templates")
        text += ", %d persistence template%s" % (templates, "" if templates == 1 else "s")
        if templates:
            text += " (still sending their clients' new connections to it)"
    return text + " left"


def format_not_done(answer: Mapping[str, Any], state: str, until: str) -> str:
    """What keeps one server from STATE, for a timeout's message."""
    server = answer.get("server", "?")
    if state == DRAINED:
        busy = [
            entry.get("service", "?") for entry in entries(answer) if not entry.get(VERDICT[until])
        ]
        return "%s: %s%s" % (
            server,
            format_left(answer),
            " (in %s)" % ", ".join(busy) if busy else "",
        )
    parts = []
    for entry in entries(answer):
        if state == ENABLED and not _back(entry):
            where = (
                "weight %s" % entry.get("weight")
                if entry.get("in_kernel")
                else "not in the kernel's table"
            )
            parts.append(
                "%s in %s: %s (admin %s)"
                % (server, entry.get("service", "?"), where, entry.get("admin"))
            )
        elif state == DISABLED and entry.get("in_kernel"):
            parts.append(
                "%s in %s: still in the kernel's table" % (server, entry.get("service", "?"))
            )
    return "; ".join(parts)


def format_done(answers: Sequence[Mapping[str, Any]], state: str, until: str) -> str:
    """One line per call: each server and what the kernel holds now."""
    if state == DRAINED:
        return "; ".join(
            "%s: %s" % (answer.get("server", "?"), format_left(answer)) for answer in answers
        )
    if state == ENABLED:
        return "; ".join(
            "%s weight %s"
            % (
                answer.get("server", "?"),
                "/".join(str(entry.get("weight")) for entry in entries(answer)),
            )
            for answer in answers
        )
    return "; ".join(
        "%s: out of the kernel's table" % answer.get("server", "?") for answer in answers
    )


# ---------------------------------------------------------------------- the call


@dataclass
class Outcome:
    """What one call did and saw."""

    answers: List[Mapping[str, Any]]
    admin_changes: List[Dict[str, Any]]
    operations: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    waited: float = 0.0
    done: bool = True


def set_admin(
    send: Send,
    service: str,
    servers: Sequence[str],
    state: str,
    check_mode: bool,
) -> Outcome:
    """Read every server, then (not in check mode) set STATE on each.

    A server the monitor does not know fails the call before any change.
    """
    before = [read(send, service, server) for server in servers]
    changes = [change for answer in before for change in admin_changes(answer, state)]
    outcome = Outcome(answers=before, admin_changes=changes)
    if check_mode:
        return outcome
    for server in servers:
        answer = _answer(send, "POST", server_path(service, server, ACTION[state]), server)
        outcome.operations.extend(str(line) for line in answer.get("operations") or [])
        if answer.get("kernel_error"):
            raise MonitorError(
                "%s: the monitor set its admin state %s but the kernel refused: %s"
                % (server, ADMIN_STATE[state], answer["kernel_error"])
            )
        if answer.get("state_file_error"):
            outcome.warnings.append("%s: %s" % (server, answer["state_file_error"]))
    return outcome


def wait(
    send: Send,
    service: str,
    servers: Sequence[str],
    state: str,
    until: str,
    timeout: float,
    interval: float,
    clock: Optional[Callable[[], float]] = None,
    sleep: Optional[Callable[[float], None]] = None,
) -> Tuple[bool, List[Mapping[str, Any]], float]:
    """Poll every server not yet done until all are or TIMEOUT seconds have
    passed (the first poll at once, the last at the timeout).  Returns
    (done, the last answers, seconds waited)."""
    clock = clock or time.monotonic
    sleep = sleep or time.sleep
    started = clock()
    last: Dict[str, Mapping[str, Any]] = {}
    pending = list(servers)
    while True:
        for server in list(pending):
            last[server] = read(send, service, server)
            if is_done(last[server], state, until):
                pending.remove(server)
        waited = clock() - started
        answers = [last[server] for server in servers]
        if not pending or waited >= timeout:
            return not pending, answers, waited
        sleep(min(interval, timeout - waited))
