"""What the monitor shows: the /status document and the /metrics families."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Optional, Protocol

from haecs_monitor.checks.registry import CHECK_TYPES
from haecs_monitor.config.model import CheckKey, CheckSpec, MonitorConfig
from haecs_monitor.control import metrics
from haecs_monitor.core import ids
from haecs_monitor.core.desired import ENABLED

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from haecs_monitor.control.api import Api
    from haecs_monitor.core.desired import Desired
    from haecs_monitor.core.health import HealthBoard
    from haecs_monitor.kernel.actuator import Actuator
    from haecs_monitor.runtime.leaving import Leaving
    from haecs_monitor.runtime.looplag import LoopLag
    from haecs_monitor.runtime.notify import Notifier


class MonitorView(Protocol):
    """What the report reads of a running monitor: the daemon satisfies it
    (mypy checks that), tests hand in their own; the report never imports
    the daemon."""

    config: MonitorConfig
    config_path: str
    started_at: float
    clock: Callable[[], float]
    wall: Callable[[], float]
    board: Optional[HealthBoard]
    last_desired: Optional[Desired]
    actuator: Actuator
    looplag: LoopLag
    notifier: Notifier
    api: Api
    check_names: CheckNames
    reloads: Counter[str]
    last_error: Optional[str]
    last_reconcile: Optional[float]
    last_apply: Optional[float]
    leaving: Leaving

    # held by the daemon's parts (state, scheduler): read-only here
    @property
    def admin(self) -> dict[tuple[str, str], str]: ...

    @property
    def check_durations(self) -> dict[str, metrics.Histogram]: ...  # by check type


class CheckNames:
    """A short unique name per unique check: 'http 10.0.2.1:80 /health'.

    A name is made when asked for; only those that needed a number to be
    unique ('... #2': checks that differ in what the name does not show)
    are kept.  (A name kept for every check was about 100 B a check.)
    """

    __slots__ = ("_numbered",)

    def __init__(self, config: Optional[MonitorConfig] = None) -> None:
        self._numbered: dict[CheckKey, str] = {}
        if config is None:
            return
        used: Counter[str] = Counter()
        for key, spec in config.unique_checks().items():
            name = _describe(spec)
            used[name] += 1
            if used[name] > 1:
                self._numbered[key] = "%s #%d" % (name, used[name])

    def of(self, spec: CheckSpec) -> str:
        return self._numbered.get(spec.dedup_key) or _describe(spec)


def _describe(spec: CheckSpec) -> str:
    return ("%s %s" % (spec.describe(), CHECK_TYPES[spec.type].detail(spec))).rstrip()


def _age(now: float, then: Optional[float]) -> Optional[float]:
    return None if then is None else round(max(0.0, now - then), 3)


def status(monitor: MonitorView) -> dict[str, Any]:
    board = monitor.board
    wall = monitor.wall()
    mono = monitor.clock()
    lag = monitor.looplag
    actuator = monitor.actuator
    desired = monitor.last_desired
    document: dict[str, Any] = {
        "name": monitor.config.settings.name,
        "pid": _pid(),
        "config": monitor.config_path,
        "uptime_seconds": round(wall - monitor.started_at, 3),
        "loop": {
            "lag_seconds": round(lag.last, 6),
            "max_lag_seconds": round(lag.max, 6),
            "recent_max_lag_seconds": round(lag.recent_max, 6),
            "stalls_total": lag.stalls_total,
            "stall_threshold_seconds": lag.warn_after,
        },
        "kernel": {
            "operations_total": sum(actuator.operations_total.values()),
            "operations": dict(actuator.operations_total),
            "drift_total": actuator.drift_total,
            "reconciles_total": actuator.reconciles_total,
            "errors_total": actuator.errors_total,
            "last_error": monitor.last_error,
            "last_reconcile_age_seconds": _age(wall, monitor.last_reconcile),
            "last_change_age_seconds": _age(wall, monitor.last_apply),
            "reconcile_interval_seconds": monitor.config.settings.reconcile_interval,
        },
        "checks": {
            "configured": sum(
                len(rs.checks) for s in monitor.config.services for rs in s.real_servers
            ),
            "unique": len(board.checks) if board else 0,
        },
        "notify": {
            "sent_total": monitor.notifier.sent_total,
            "failed_total": monitor.notifier.failed_total,
            "dropped_total": monitor.notifier.dropped_total,
        },
        "reloads": dict(monitor.reloads),
        "services": [],
        # Real servers a reload dropped, at weight 0 until drained or out of time.
        "leaving": [
            {
                "service": ids.service_id(ref.service),
                "server": ids.server_id(*ref.key),
                "seconds_left": round(max(0.0, leaver.deadline - mono), 1),
            }
            for ref, leaver in sorted(
                monitor.leaving.servers.items(), key=lambda item: item[1].deadline
            )
        ],
    }
    if board is None:
        return document
    for service in monitor.config.services:
        service_id = ids.service_id(service.key)
        outcome = desired.services.get(service.key) if desired is not None else None
        entry: dict[str, Any] = {
            "id": service_id,
            "service": str(service.key),
            "scheduler": service.service.scheduler,
            "on_failure": service.on_failure,
            "slow_start": service.slow_start,
            "below_quorum": bool(outcome and outcome.below_quorum),
            "sorry_active": bool(outcome and outcome.sorry_active),
            "healthy_weight": outcome.healthy_weight if outcome else 0,
            "total_weight": outcome.total_weight if outcome else 0,
            "threshold": outcome.threshold if outcome else 0,
            "servers": [],
            "sorry_servers": [],
        }
        healths = board.servers.of_service(service.key)
        for real_server in service.real_servers:
            health = healths[real_server.key]
            server_id = ids.server_id(*real_server.key)
            placed = outcome.servers.get(real_server.key) if outcome else None
            entry["servers"].append(
                {
                    "id": server_id,
                    "address": real_server.server.address,
                    "port": real_server.server.port,
                    "health": health.state,
                    "health_reason": health.reason(),
                    "reason": placed.reason if placed else None,
                    "admin": monitor.admin.get((service_id, server_id), ENABLED),
                    "in_table": bool(placed and placed.in_table),
                    "weight": placed.weight if placed else 0,
                    "configured_weight": real_server.server.weight,
                    "health_weight": health.weight_at(mono),
                    "ramping": health.ramping(mono),
                    "checks": [_check(monitor, check.spec, mono) for check in health.checks],
                }
            )
        for sorry in service.sorry_servers:
            placed = outcome.servers.get(sorry.key) if outcome else None
            entry["sorry_servers"].append(
                {
                    "id": ids.server_id(*sorry.key),
                    "in_table": bool(placed and placed.in_table),
                    "weight": sorry.weight,
                }
            )
        document["services"].append(entry)
    return document


def _check(monitor: MonitorView, spec: CheckSpec, now: float) -> dict[str, Any]:
    assert monitor.board is not None
    key = spec.dedup_key
    health = monitor.board.checks[key]
    duration = health.last_duration
    return {
        "name": monitor.check_names.of(spec),
        "type": spec.type,
        "up": health.up,
        "confirmed": health.confirmed,
        "detail": health.detail,
        "successes": health.successes,
        "failures": health.failures,
        "rise": spec.timing.rise,
        "fall": spec.timing.fall,
        "dynamic_weight": health.weight,
        "history": health.history,
        "state_since_seconds": _age(now, health.changed_at),
        "unknowns": health.unknowns,
        "last_unknown": health.last_unknown or None,
        "last_checked_age_seconds": _age(now, health.last_checked),
        "last_duration_seconds": None if duration is None else round(duration, 6),
    }


def _pid() -> int:
    import os

    return os.getpid()


def metrics_text(monitor: MonitorView) -> str:
    return metrics.render(families(monitor))


def families(monitor: MonitorView) -> list[metrics.Family]:
    document = status(monitor)
    up = metrics.Family(
        "haecs_server_up", "gauge", "1 when the real server's checks say up, else 0"
    )
    weight = metrics.Family(
        "haecs_server_weight",
        "gauge",
        "Weight of the real server in the IPVS table (0 when absent)",
    )
    in_table = metrics.Family(
        "haecs_server_in_table", "gauge", "1 when the real server is in the IPVS table"
    )
    admin = metrics.Family(
        "haecs_server_admin_state",
        "gauge",
        "Always 1; the state label is the admin state (enabled, drain, disable)",
    )
    quorum = metrics.Family(
        "haecs_service_below_quorum", "gauge", "1 while the service is below its quorum"
    )
    for service in document["services"]:
        quorum.add(1 if service["below_quorum"] else 0, service=service["id"])
        service_label = metrics.label_text({"service": service["id"]})
        for server in service["servers"]:
            labels = "%s,%s" % (service_label, metrics.label_text({"server": server["id"]}))
            up.add_labels(1 if server["health"] == "up" else 0, labels)
            weight.add_labels(server["weight"] if server["in_table"] else 0, labels)
            in_table.add_labels(1 if server["in_table"] else 0, labels)
            admin.add_labels(1, '%s,state="%s"' % (labels, server["admin"]))
    duration = metrics.Family(
        "haecs_check_duration_seconds", "histogram", "Duration of health checks, by check type"
    )
    for check_type, histogram in sorted(monitor.check_durations.items()):
        histogram.add_to(duration, type=check_type)
    last_duration = metrics.Family(
        "haecs_check_last_duration_seconds", "gauge", "Duration of the check's last run"
    )
    checks = metrics.Family("haecs_checks_total", "counter", "Health checks run, by result")
    specs = monitor.board.checks.values() if monitor.board else ()
    for health in specs:
        labels = metrics.label_text(
            {"check": monitor.check_names.of(health.spec), "type": health.spec.type}
        )
        if health.last_duration is not None:
            last_duration.add_labels(round(health.last_duration, 6), labels)
        checks.add_labels(health.ups, labels + ',result="up"')
        checks.add_labels(health.downs, labels + ',result="down"')
        checks.add_labels(health.unknowns, labels + ',result="unknown"')
    refused = metrics.Family(
        "haecs_api_connections_refused_total",
        "counter",
        "API connections refused because the listener was at its connection cap",
    )
    for listener in ("unix", "tcp"):
        refused.add(monitor.api.refused_connections.get(listener, 0), listener=listener)
    changes = metrics.Family("haecs_state_changes_total", "counter", "Real server state changes")
    # Counted by each server's health (no strings kept per server); named here.
    servers = monitor.board.servers.values() if monitor.board is not None else ()
    named = sorted(
        (ids.service_id(server.service), ids.server_id(*server.key), state, count)
        for server in servers
        for state, count in (("down", server.went_down), ("up", server.went_up))
        if count
    )
    for service_id, server_id, state, count in named:
        changes.add(count, service=service_id, server=server_id, state=state)
    lag = metrics.Family(
        "haecs_loop_lag_seconds", "gauge", "How late the event loop woke up last time"
    )
    lag.add(monitor.looplag.last)
    lag_max = metrics.Family(
        "haecs_loop_lag_max_seconds", "gauge", "Worst event loop lag since start"
    )
    lag_max.add(monitor.looplag.max)
    stalls = metrics.Family(
        "haecs_loop_stalls_total", "counter", "Event loop stalls longer than the warning threshold"
    )
    stalls.add(monitor.looplag.stalls_total)
    operations = metrics.Family(
        "haecs_kernel_operations_total", "counter", "IPVS changes sent to the kernel, by kind"
    )
    for kind in (
        "add_service",
        "set_service",
        "delete_service",
        "add_real_server",
        "set_real_server",
        "delete_real_server",
    ):
        operations.add(monitor.actuator.operations_total[kind], op=kind)
    drift = metrics.Family(
        "haecs_reconcile_drift_total",
        "counter",
        "Managed entries found changed outside the monitor",
    )
    drift.add(monitor.actuator.drift_total)
    reconciles = metrics.Family(
        "haecs_reconciles_total", "counter", "Full reconciles (kernel reads)"
    )
    reconciles.add(monitor.actuator.reconciles_total)
    errors = metrics.Family(
        "haecs_kernel_errors_total", "counter", "Kernel reads or changes that failed"
    )
    errors.add(monitor.actuator.errors_total)
    reloads = metrics.Family(
        "haecs_config_reloads_total", "counter", "Configuration reloads, by result"
    )
    for outcome in ("accepted", "rejected", "failed"):
        reloads.add(monitor.reloads[outcome], result=outcome)
    notify = metrics.Family(
        "haecs_notify_failures_total", "counter", "Notify commands that failed or timed out"
    )
    notify.add(monitor.notifier.failed_total)
    return [
        up,
        weight,
        in_table,
        admin,
        quorum,
        duration,
        last_duration,
        checks,
        refused,
        changes,
        lag,
        lag_max,
        stalls,
        operations,
        drift,
        reconciles,
        errors,
        reloads,
        notify,
    ]
