"""The monitor process: checks -> health -> desired table -> kernel, on asyncio.

One task per unique check (identical checks of several services run once,
`MonitorConfig.unique_checks`), each waiting the jittered delay health asks
for.  Every server transition, weight change or admin change wakes the
applier, which coalesces what arrived together, computes the desired entries
of the services concerned (the others are kept from the last table) and
applies the difference without reading the kernel; every
`reconcile_interval` it reads the kernel (one dump) and repairs drift.  All
kernel work runs in one worker thread, in order.

Signals: SIGHUP reloads (validate first: a bad config is rejected, the old
one keeps running; a good one keeps the state of unchanged checks and
applies only the difference); SIGTERM/SIGINT stop (the table is kept unless
``on_exit: remove``).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import ServiceKey, Table
from haecs_monitor.checks.base import CheckResult
from haecs_monitor.checks.syn import method as tcp_method
from haecs_monitor.config.load import ConfigError, MonitorConfig, load_config
from haecs_monitor.config.model import CheckKey, CheckSpec, ServiceConfig
from haecs_monitor.config.sections import SectionMemory, checks_unchanged
from haecs_monitor.control import report
from haecs_monitor.control.api import Api, ApiError
from haecs_monitor.control.metrics import Histogram
from haecs_monitor.core import desired as desired_mod
from haecs_monitor.core import ids
from haecs_monitor.core.health import (
    CheckTransition,
    HealthBoard,
    ServerHealth,
    ServerRef,
    ServerTable,
    Transition,
    WeightChange,
)
from haecs_monitor.errors import NotFound
from haecs_monitor.kernel.actuator import Actuator, Engine, Outcome
from haecs_monitor.runtime import fdlimit, gcfreeze, memtrim, sdnotify
from haecs_monitor.runtime.events import EventLog
from haecs_monitor.runtime.leaving import POLL_SECONDS as LEAVING_POLL_SECONDS
from haecs_monitor.runtime.leaving import Leaving
from haecs_monitor.runtime.looplag import LoopLag
from haecs_monitor.runtime.notify import Notification, Notifier
from haecs_monitor.runtime.scheduler import CheckScheduler
from haecs_monitor.runtime.state import ADMIN_ACTIONS, MonitorState
from haecs_monitor.runtime.tasks import cancel_and_wait
from haecs_monitor.sharedfloat import SharedFloat

# A change goes to the kernel at once unless another came less than
# BURST_SECONDS before it: then the changes of the burst are gathered
# COALESCE_SECONDS at a time into one apply.  A server that failed is never
# kept waiting: its change ends the gathering (each millisecond it stays in
# the table, new connections go to it).  What arrives during an apply goes
# in the next.
COALESCE_SECONDS = 0.02
BURST_SECONDS = 0.1
# How long the desired table is computed before the event loop gets a turn
# (at 30,000 real servers the whole table took about 0.25 s natively, 1 s in
# UML, in one stretch). Time, not a count: where the loop is busy, every turn
# between slices lengthens the apply; 20 ms kept the loop's worst lag near
# 0.15 s natively at 30,000, 50 ms let it reach 0.34 s.
DESIRED_SLICE_SECONDS = 0.02
# A reconcile reads the whole IPVS table: at 30,000 real servers about 0.15 s
# natively, seconds in a slow guest.  The next one waits at least this many
# times as long as the last took, so reconciles never take more than a tenth
# of the monitor's time (nor keep the kernel lock and the CPU from checks).
RECONCILE_SPACING = 10.0
APPLY_WAIT_SECONDS = 30.0  # how long an API call waits for its change to reach the kernel
# Results this close together are recorded at one time (the earliest): at a
# thousand results a second, ten share one float.  The result time is what
# the status shows and where a slow start's ramp begins; no check is
# scheduled from it.
RESULT_TIME_GRAIN = 0.01


class Monitor:
    def __init__(
        self,
        config_path: str,
        config: MonitorConfig,
        engine: Engine,
        log: EventLog,
        # The event loop's clock as well (asyncio's loop.time() is
        # time.monotonic()): the SYN driver's results come with loop times.
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        log_format: Optional[str] = None,
        sections: Optional[SectionMemory] = None,
    ) -> None:
        self.config_path = config_path
        # What the last load made of each service section (config/sections.py);
        # None when `config` was not loaded with one: the first reload reads all.
        self.sections = sections if sections is not None else SectionMemory()
        self._log_format_override = log_format
        self.check_names = report.CheckNames()
        self.config = config
        self.log = log
        self.clock = clock
        self.wall = wall
        self.rand = rand
        self.actuator = Actuator(engine)
        self._engine = engine
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="haecs-ipvs")
        self.board: Optional[HealthBoard] = None
        self.state = MonitorState(config.settings.state_file, log)
        self.scheduler = CheckScheduler(log, clock, self._observe)
        self._result_times = SharedFloat(RESULT_TIME_GRAIN)
        self.below_quorum: frozenset[ServiceKey] = frozenset()
        self.last_desired: Optional[desired_mod.Desired] = None
        self.started_at = wall()
        self.started_mono = clock()
        self.notifier = Notifier(log)
        self.systemd = sdnotify.Notifier()
        self.looplag = LoopLag(log, on_tick=self.systemd.feed_watchdog)
        self._systemd_status = ""
        self.api = Api(self)
        # metrics (the per-check ones are the scheduler's)
        self.reloads: Counter[str] = Counter()
        self.last_error: Optional[str] = None
        self.last_reconcile: Optional[float] = None
        self.last_apply: Optional[float] = None
        # coordination
        self._wake = asyncio.Event()
        self._hurry = asyncio.Event()  # a server failed: its change is not gathered
        self._reconcile_now = False
        # The services whose desired entry the next apply computes again (a
        # server of theirs changed state, or a reload changed them); None:
        # every service.  The others keep their entry of the last table.
        self._recompute: Optional[set[ServiceKey]] = None
        # Whether last_desired holds the entries as computed: a leaving
        # server is added into its service's entry (leaving.add_to).
        self._desired_reusable = False
        # The services whose entry the last computation made (the others are
        # the table's before it); None: all of them.
        self._recomputed: Optional[set[ServiceKey]] = None
        self._computed_at = 0.0  # the clock when the desired table was last computed
        self._waiters: list[asyncio.Future[Outcome]] = []
        self._pending_remove: set[ServiceKey] = set()
        # Real servers a reload dropped, drained before they go (leaving.py).
        self.leaving = Leaving()
        # Services not in the kernel yet, kept out of it until they have
        # something to serve (see _hold_new_services).
        self._held: set[ServiceKey] = set()
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        # Held while the desired table is computed (in slices, the loop running
        # between them) and while a reload switches configuration: a table is
        # computed from one configuration and one health board throughout.
        self._model_lock = asyncio.Lock()
        self._applier: Optional[asyncio.Task[None]] = None
        self._background: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT, stop.  Returns the exit status."""
        settings = self.config.settings
        self._configure(self.config)
        try:
            await self.api.start_unix(settings.control_socket)
            if settings.listen is not None:
                await self.api.start_tcp(
                    settings.listen.address,
                    settings.listen.port,
                    settings.listen.token_file,
                    settings.listen.tls_cert,
                    settings.listen.tls_key,
                )
        except ApiError as error:
            self.log.error("fatal", reason=str(error))
            await self.api.close()
            return 1
        board = await self._adopt()
        if board is None:
            await self.api.close()
            return 1
        self.board = board
        self._pending_remove |= (
            self.state.managed_gone(s.key for s in self.config.services)
            - self.config.static_services
            - self.leaving.services()
        )
        self._ensure_descriptors()
        self.log.info(
            "started",
            pid=os.getpid(),
            config=self.config_path,
            services=len(self.config.services),
            real_servers=len(self.board.servers),
            checks=len(self.board.checks),
            control_socket=settings.control_socket,
            listen=("%s:%d" % (settings.listen.address, settings.listen.port))
            if settings.listen
            else None,
        )
        loop = asyncio.get_running_loop()
        if any(health.spec.type == "tcp" for health in self.board.checks.values()):
            # "syn" (raw-socket SYN probes) or "connect", per family, and why
            self.log.info("tcp_check_method", **tcp_method.describe(loop))
        for signum, handler in (
            (signal.SIGTERM, self.stop),
            (signal.SIGINT, self.stop),
            (signal.SIGHUP, self._sighup),
        ):
            loop.add_signal_handler(signum, handler)
        self.notifier.start()
        self.looplag.start()
        # The first apply adopts the kernel's table: only what differs changes.
        first = await self._apply(full=True)
        self._log_adoption(first)
        self._save_state()
        gcfreeze.freeze_long_lived(full_collection=True)
        self.systemd.ready(self.summary())
        self._applier = loop.create_task(self._apply_loop(), name="applier")
        self.scheduler.sync(self.board)
        memtrim.release_free_memory()  # what building all this freed
        await self._stop.wait()
        return await self._shutdown()

    def stop(self) -> None:
        self._stop.set()

    def _sighup(self) -> None:
        self._spawn(self.reload(source="SIGHUP"))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _shutdown(self) -> int:
        self.log.info("stopping", on_exit=self.config.settings.on_exit)
        self.systemd.stopping()
        await self.scheduler.stop()
        tcp_method.close(asyncio.get_running_loop())
        if self._applier is not None:
            await cancel_and_wait([self._applier])
        status = 0
        if self.config.settings.on_exit == "remove":
            keys = [service.key for service in self.config.services]
            outcome = await self._in_ipvs_thread(self.actuator.remove_all, keys)
            self._count_outcome(outcome)
            if outcome.error:
                self.log.error("exit_remove_failed", reason=outcome.error)
                status = 1
            else:
                self.log.info(
                    "table_removed", services=len(keys), operations=len(outcome.operations)
                )
        else:
            self.log.info("table_kept", services=len(self.config.services))
        await self.api.close()
        await self.notifier.stop()
        await self.looplag.stop()
        self._executor.shutdown(wait=True)
        self.log.info("stopped", status=status)
        return status

    async def _in_ipvs_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    # ------------------------------------------------------------- settings

    def _configure(self, config: MonitorConfig, names_hold: bool = False) -> None:
        settings = config.settings
        self.log.set_format(self._log_format_override or settings.log_format)
        if settings.notify is not None:
            self.notifier.configure(settings.notify.command, settings.notify.timeout)
        else:
            self.notifier.configure((), 10.0)
        if not names_hold:
            self.check_names = report.CheckNames(config)

    def _new_probes(self, config: MonitorConfig) -> bool:
        """Whether `config` has a check whose probe the running one lacks."""
        assert self.board is not None
        running = {service.key: service for service in self.config.services}
        specs = [
            spec
            for service in config.services
            if running.get(service.key) is not service
            for real_server in service.real_servers
            for spec in real_server.checks
        ]
        checks = self.board.checks
        unknown = [spec for spec in specs if spec.dedup_key not in checks]
        if not unknown:  # (most reloads: the probe keys of all checks are not needed)
            return False
        known = {health.spec.probe_key for health in checks.values()}
        return any(spec.probe_key not in known for spec in unknown)

    async def _adopt(self) -> Optional[HealthBoard]:
        """The health board of the start, from the kernel's table: its
        servers start up, leaving servers resume, new services are held.
        None (logged) when the table cannot be read.

        Not in run(): its locals, the table and the set of present servers,
        would live as long as that coroutine, the daemon's life (at 30,000
        real servers about 250 and 125 B per real server).
        """
        try:
            self.state.load()
            kernel = await self._in_ipvs_thread(self._engine.read)
        except Exception as error:
            self.log.error("fatal", reason="cannot read the IPVS table: %s" % error)
            return None
        now = self.clock()
        self._restore_leaving(kernel, now)
        present = self._present(kernel)
        self._hold_new_services([service.key for service in self.config.services], kernel)
        return HealthBoard(self.config, now, present, self.rand)

    def _present(self, kernel: Table) -> set[ServerRef]:
        """Configured servers the kernel holds and serves now (the health prior).

        A server at weight 0 is not serving (inhibited or dynamic weight 0)
        unless it is drained or configured at weight 0.
        """
        present: set[ServerRef] = set()
        for service in self.config.services:
            entry = kernel.get(service.key)
            if entry is None:
                continue
            service_id = ids.service_id(service.key)
            for real_server in service.real_servers:
                found = entry.real_servers.get(real_server.key)
                if found is None:
                    continue
                server_id = ids.server_id(*real_server.key)
                drained = self.state.admin_state(service_id, server_id) == desired_mod.DRAIN
                if found.weight > 0 or drained or real_server.server.weight == 0:
                    present.add(ServerRef(service.key, *real_server.key))
        return present

    # ---------------------------------------------------------- state file

    @property
    def admin(self) -> dict[tuple[str, str], str]:
        return self.state.admin

    def _save_state(self) -> Optional[str]:
        managed = {service.key for service in self.config.services}
        # A service whose servers are all leaving is still the monitor's:
        # removed after them, or at the next start if they are gone by then.
        managed |= self._pending_remove | self.leaving.services()
        return self.state.save(
            sorted(managed, key=str), self.leaving.saved(self.clock(), self.wall())
        )

    def _restore_leaving(self, kernel: Table, now: float) -> None:
        """The real servers the previous run was draining go on leaving (the
        state file has them), unless the configuration holds them again."""
        configured = {service.key: service for service in self.config.services}
        restored = self.leaving.restore(
            self.state.saved_leaving, kernel, configured, now, self.wall()
        )
        for ref in restored:
            seconds = max(0.0, self.leaving.servers[ref].deadline - now)
            self._log_leaving(ref, "still leaving after a restart", seconds)

    def _log_leaving(self, ref: ServerRef, why: str, seconds: float) -> None:
        self.log.info(
            "server_leaving",
            service=ids.service_id(ref.service),
            server=ids.server_id(*ref.key),
            reason="%s: weight 0, removed when its established connections have finished "
            "(at most %gs)" % (why, seconds),
        )

    def _ensure_descriptors(self) -> None:
        """Raise the descriptor limit to what the checks and listeners need."""
        assert self.board is not None
        listeners = 1 + (self.config.settings.listen is not None)
        limit = fdlimit.ensure(
            fdlimit.needed(len(self.board.checks), listeners * self.api.descriptors)
        )
        fields = {"needed": limit.needed, "soft": limit.soft, "hard": limit.hard}
        if limit.enough:
            self.log.debug("fd_limit", **fields)
        else:
            self.log.warning(
                "fd_limit_low",
                reason="the hard RLIMIT_NOFILE is below what the checks may need: checks that "
                "find no descriptor count as unknown (raise LimitNOFILE=)",
                **fields,
            )

    # --------------------------------------------------------------- checks

    def _result_time(self, when: float) -> float:
        """WHEN, the clock's reading as a check's result came, as it is
        recorded.  Results that come within RESULT_TIME_GRAIN of each other
        share one float: each check keeps the time of its last result, and a
        float of its own was 24 B per check."""
        return self._result_times.share(when)

    @property
    def check_durations(self) -> dict[str, Histogram]:
        return self.scheduler.durations

    def _observe(
        self, key: CheckKey, spec: CheckSpec, result: CheckResult, duration: float, when: float
    ) -> None:
        assert self.board is not None
        if key not in self.board.checks:
            return  # a reload dropped it while it ran
        self.scheduler.record(spec.type, duration)
        if result.unknown:
            health = self.board.checks[key]
            if health.unknown_streak == 0:  # once per run of unknown results
                self.log.warning(
                    "check_unknown", check=self.check_names.of(spec), reason=result.detail
                )
        if self.log.wants("debug"):
            self.log.debug(
                "check_result",
                check=self.check_names.of(spec),
                up=result.up,
                detail=result.detail,
                duration_seconds=round(duration, 4),
            )
        changed_services: set[ServiceKey] = set()  # the held ones are computed anyway
        failed = False
        for event in self.board.record(key, result, self._result_time(when), duration):
            if isinstance(event, CheckTransition):
                self.log.info(
                    "check_%s" % event.new,
                    check=self.check_names.of(spec),
                    state=event.new,
                    reason=event.reason,
                    history=self.board.checks[key].history,
                )
            elif isinstance(event, Transition):
                self._server_transition(event)
                changed_services.add(event.server.service)
                failed = failed or event.new == "down"
            elif isinstance(event, WeightChange):
                self.log.info(
                    "weight_changed",
                    service=ids.service_id(event.server.service),
                    server=ids.server_id(event.server.address, event.server.port),
                    old=event.old,
                    new=event.new,
                    reason=event.reason,
                )
                changed_services.add(event.server.service)
        # A held service may be created once every check has a result, which
        # need not be a transition (a server that starts down and stays down).
        if changed_services or (self._held and not result.unknown):
            self._request_apply(services=changed_services, urgent=failed)

    def _server_transition(self, event: Transition) -> None:
        service = ids.service_id(event.server.service)
        server = ids.server_id(event.server.address, event.server.port)
        level = "warning" if event.new == "down" else "info"
        self.log.emit(
            level,
            "server_%s" % event.new,
            {"service": service, "server": server, "state": event.new, "reason": event.reason},
        )
        self.notifier.notify(
            Notification("server_%s" % event.new, service, server, event.new, event.reason)
        )

    # -------------------------------------------------------------- applier

    def _request_apply(
        self,
        reconcile: bool = False,
        services: Optional[Iterable[ServiceKey]] = None,
        urgent: bool = False,
    ) -> asyncio.Future[Outcome]:
        """Wake the applier; the future resolves when the change is in the kernel.

        `services`: the only services whose desired entry changed (None: any
        may have).  At 30,000 real servers the whole table costs about 0.5 s
        natively; one server's transition needs its own service's entry.
        `urgent`: a server failed; its change is not gathered with a burst."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        if reconcile:
            self._reconcile_now = True
        if services is None:
            self._recompute = None
        elif self._recompute is not None:
            self._recompute.update(services)
        if urgent:
            self._hurry.set()
        self._wake.set()
        return future

    async def _apply_loop(self) -> None:
        interval = self.config.settings.reconcile_interval
        next_reconcile = self.clock() + interval
        woken_at = -BURST_SECONDS  # when a change last woke the applier
        stretch = 0.0  # RECONCILE_SPACING times the last reconcile's duration
        while not self._stop.is_set():
            interval = self.config.settings.reconcile_interval
            next_reconcile = min(next_reconcile, self.clock() + max(interval, stretch))
            deadline = next_reconcile
            ramp, ramping_services = self._next_ramp_step()
            if ramp is not None:
                deadline = min(deadline, ramp)
            if self.leaving:
                deadline = min(deadline, self.clock() + LEAVING_POLL_SECONDS)
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, deadline - self.clock()))
                if self.clock() - woken_at < BURST_SECONDS:
                    await self._gather_burst()
                woken_at = self.clock()
            except asyncio.TimeoutError:
                pass
            self._hurry.clear()
            if self._recompute is not None:
                self._recompute |= ramping_services  # weights that follow the clock
            self._wake.clear()
            full = self._reconcile_now or self.clock() >= next_reconcile
            self._reconcile_now = False
            started = self.clock()
            await self._apply(full)
            if full:
                stretch = RECONCILE_SPACING * (self.clock() - started)
                next_reconcile = self.clock() + max(interval, stretch)

    async def _gather_burst(self) -> None:
        """Let more of a burst's changes come, COALESCE_SECONDS at most, and
        not at all once a server has failed."""
        if self._hurry.is_set():
            return
        try:
            await asyncio.wait_for(self._hurry.wait(), COALESCE_SECONDS)
        except asyncio.TimeoutError:
            pass

    def _next_ramp_step(self) -> tuple[Optional[float], set[ServiceKey]]:
        """When the next slow-start weight is due, and the services whose
        weights were ramping when the desired table was last computed: one
        whose ramp has ended since is due at once (its full weight)."""
        if self.board is None:
            return None, set()
        now = self.clock()
        ramping = self.board.ramping(since=min(now, self._computed_at))
        steps = [self.board.servers[ref].next_weight_change(now, 0.25) for ref in ramping]
        due = [now if step is None else step for step in steps]  # None: the ramp has ended
        return min(due, default=None), {ref.service for ref in ramping}

    async def _apply(self, full: bool) -> Outcome:
        """Compute the desired table and bring the kernel to it."""
        waiters, self._waiters = self._waiters, []
        # A reconcile reads the kernel to repair drift; the desired table does
        # not change by itself: what changes it asks for its services.
        only, self._recompute = self._recompute, set()
        if self.leaving:
            await self._finish_leaving()
        result = await self.compute_desired(only)
        remove = sorted(self._pending_remove, key=str)
        try:
            if full:
                outcome: Outcome = await self._in_ipvs_thread(
                    self.actuator.reconcile, result.table, remove
                )
            else:
                outcome = await self._in_ipvs_thread(
                    self.actuator.update, result.table, remove, self._recomputed
                )
        except Exception as error:
            outcome = Outcome(error="%s: %s" % (type(error).__name__, error))
            self.log.error("apply_crashed", reason=outcome.error, where=_where(error))
        self._after_apply(outcome, result, remove)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(outcome)
        return outcome

    async def _finish_leaving(self) -> None:
        """Remove the leaving servers that are drained or out of time."""
        try:
            kernel: Table = await self._in_ipvs_thread(self._engine.read)
        except Exception as error:
            # A local fault: they stay (at weight 0) until the kernel can be read.
            self.log.warning("drain_unreadable", reason="cannot read the IPVS table: %s" % error)
            return
        configured = {service.key for service in self.config.services}
        finished = self.leaving.finished(kernel, self.clock())
        for ref, reason in finished:
            self.log.info(
                "server_left",
                service=ids.service_id(ref.service),
                server=ids.server_id(*ref.key),
                reason=reason,
            )
            if ref.service not in configured and ref.service not in self.leaving.services():
                self._pending_remove.add(ref.service)
        if finished:
            self._save_state()

    def _hold_new_services(self, candidates: Iterable[ServiceKey], kernel: Table) -> None:
        """Keep a service that the kernel does not hold yet out of it until a
        real server of it is up, or every one has been checked and found down.

        Created at once, the VIP would exist and refuse every connection
        until the first servers had risen (one to two seconds); keepalived
        avoids that by taking real servers as alive at start (unless
        `alpha`), which sends traffic to dead ones until their checks fail.
        """
        held = {key for key in candidates if key not in kernel}
        self._held |= held
        for key in sorted(held, key=str):
            self.log.info(
                "service_held",
                service=ids.service_id(key),
                reason="not created until a real server is up or all are checked",
            )

    def _release_held(self, service: ServiceConfig) -> bool:
        """True (and logged) when a held service may now be created."""
        assert self.board is not None
        servers = self.board.servers.of_service(service.key)
        healths = [servers[rs.key] for rs in service.real_servers]
        up = [health for health in healths if health.up]
        if up:
            reason = "real server %s is up" % ids.server_id(up[0].ref.address, up[0].ref.port)
        elif all(_settled_down(health) for health in healths):
            reason = "every real server checked, none up"
        else:
            return False
        self._held.discard(service.key)
        self.log.info("service_released", service=ids.service_id(service.key), reason=reason)
        return True

    async def compute_desired(
        self, only: Optional[Collection[ServiceKey]] = None
    ) -> desired_mod.Desired:
        """The desired table from the configuration and the health board, in
        slices of about DESIRED_SLICE_SECONDS with the event loop running
        checks between them.  A server that changes state meanwhile wakes the
        applier again, so the next apply carries it.

        `only`: compute these services' entries (and the held ones') and keep
        the others of the last table; None computes every entry."""
        async with self._model_lock:
            assert self.board is not None
            config, servers = self.config, self.board.servers
            now = self.clock()
            previous = self.last_desired if self._desired_reusable else None
            services: Iterable[ServiceConfig] = config.services
            recomputed: Optional[set[ServiceKey]] = None
            if only is not None and previous is not None and not self.leaving:
                recomputed = set(only) | self._held
                services = [
                    service
                    for service in config.services
                    if service.key in recomputed or service.key not in previous.services
                ]
                recomputed.update(service.key for service in services)
            table: Table = {}
            outcomes: dict[ServiceKey, desired_mod.ServiceOutcome] = {}
            inputs: list[desired_mod.ServiceInput] = []

            def add_slice() -> None:
                part = desired_mod.compute(inputs, self.below_quorum)
                table.update(part.table)
                outcomes.update(part.services)
                inputs.clear()

            slice_started = time.monotonic()
            for service in services:
                if service.key in self._held and not self._release_held(service):
                    continue
                inputs.append(self._desired_input(service, servers, now))
                if time.monotonic() - slice_started >= DESIRED_SLICE_SECONDS:
                    add_slice()
                    await asyncio.sleep(0)
                    slice_started = time.monotonic()
            add_slice()
            result = desired_mod.Desired(table, outcomes)
            if previous is not None and recomputed is not None:
                result = desired_mod.merged(
                    previous, result, (service.key for service in config.services), recomputed
                )
            self._desired_reusable = not self.leaving
            self._recomputed = recomputed
            self._computed_at = now
            self.leaving.add_to(result.table)
            self._quorum_events(result)
            self.last_desired = result
            return result

    def _desired_input(
        self, service: ServiceConfig, servers: ServerTable, now: float
    ) -> desired_mod.ServiceInput:
        service_id = ids.service_id(service.key)
        healths = servers.of_service(service.key)
        inputs = []
        for real_server in service.real_servers:
            health = healths[real_server.key]
            admin = self.state.admin_state(service_id, ids.server_id(*real_server.key))
            inputs.append(
                desired_mod.ServerInput(real_server.server, health.up, health.weight_at(now), admin)
            )
        quorum = None
        if service.quorum is not None:
            q = service.quorum
            quorum = desired_mod.Quorum(q.min_healthy_weight, q.min_healthy_fraction, q.hysteresis)
        return desired_mod.ServiceInput(
            service.service, tuple(inputs), service.on_failure, quorum, service.sorry_servers
        )

    def _quorum_events(self, result: desired_mod.Desired) -> None:
        new = result.below_quorum()
        if self.last_desired is None:
            # The first computation sets the state; servers not checked yet
            # are no news (a service starting below quorum says so in status).
            self.below_quorum = new
            return
        with_sorry = {service.key for service in self.config.services if service.sorry_servers}
        for key in sorted(new ^ self.below_quorum, key=str):
            outcome = result.services.get(key)
            if outcome is None:
                continue
            service = ids.service_id(key)
            lost = key in new
            reason = "healthy weight %d, %s %d" % (
                outcome.healthy_weight,
                "needs" if lost else "reached",
                outcome.threshold,
            )
            if key in with_sorry:
                reason += "; sorry server in" if lost else "; sorry server out"
            event = "quorum_lost" if lost else "quorum_regained"
            self.log.emit(
                "warning" if lost else "info", event, {"service": service, "reason": reason}
            )
            self.notifier.notify(
                Notification(event, service, "", "below_quorum" if lost else "ok", reason)
            )
        self.below_quorum = new

    def _after_apply(
        self, outcome: Outcome, result: desired_mod.Desired, remove: list[ServiceKey]
    ) -> None:
        now = self.wall()
        if outcome.read_kernel:
            self.last_reconcile = now
        for drift in outcome.drift:
            self.log.warning(
                "drift",
                service=ids.service_id(drift.service),
                server=ids.server_id(*drift.server) if drift.server else None,
                kind=drift.kind,
                expected=drift.expected or None,
                found=drift.found or None,
                reason="changed outside the monitor; repaired"
                if outcome.error is None
                else "changed outside the monitor",
            )
        if outcome.error is not None:
            self.last_error = outcome.error
            self.log.error("apply_failed", reason=outcome.error, reconcile=outcome.read_kernel)
            self._update_systemd_status()
            return
        self.last_error = None
        if remove:
            self._pending_remove -= set(remove)
            for key in remove:
                self.log.info(
                    "service_removed",
                    service=ids.service_id(key),
                    reason="no longer in the configuration",
                )
            self._save_state()
        self._update_systemd_status()
        if outcome.operations:
            self.last_apply = now
            self.log.info(
                "table_changed",
                operations=len(outcome.operations),
                reconcile=outcome.read_kernel,
                changes=[op.ipvsadm_line() for op in outcome.operations[:50]],
            )

    def summary(self) -> str:
        """One line for systemd's STATUS=: services, servers up, kernel state."""
        if self.board is None:
            return "starting"
        text = "%d services, %d/%d real servers up" % (
            len(self.config.services),
            self.board.up_count(),
            len(self.board.servers),
        )
        if self.last_error:
            text += "; kernel: %s" % self.last_error
        return text

    def _update_systemd_status(self) -> None:
        text = self.summary()
        if text != self._systemd_status:
            self._systemd_status = text
            self.systemd.status(text)

    def _count_outcome(self, outcome: Outcome) -> None:
        if outcome.operations:
            self.last_apply = self.wall()

    def _log_adoption(self, outcome: Outcome) -> None:
        self.log.info(
            "table_adopted",
            kept=outcome.adopted_entries,
            operations=len(outcome.operations),
            reason="existing entries kept; only differences applied",
        )

    # ---------------------------------------------------------------- admin

    async def set_admin(self, service: str, server: str, action: str) -> Mapping[str, Any]:
        if self.board is None:
            raise NotFound("the monitor is still starting; try again")
        if action not in ADMIN_ACTIONS:
            raise NotFound("unknown action %s" % action)
        targets, server_id = self._resolve(service, server)
        changed = []
        for service_id in targets:
            before, after = self.state.set_admin(service_id, server_id, action)
            changed.append(
                {"service": service_id, "server": server_id, "admin": after, "was": before}
            )
            if before != after:
                self.log.info(
                    "admin_%s" % action,
                    service=service_id,
                    server=server_id,
                    state=after,
                    was=before,
                )
                self.notifier.notify(
                    Notification(
                        "admin_%s" % action, service_id, server_id, after, "set by operator"
                    )
                )
        state_error = self._save_state()
        outcome = await self._wait(self._request_apply())
        answer: dict[str, Any] = {
            "ok": outcome is not None and outcome.error is None,
            "changed": changed,
        }
        if outcome is not None:
            answer["operations"] = [op.ipvsadm_line() for op in outcome.operations]
            if outcome.error:
                answer["kernel_error"] = outcome.error
        else:
            answer["kernel_error"] = "the kernel was not updated within %gs" % APPLY_WAIT_SECONDS
        if state_error:
            answer["state_file_error"] = state_error
        return answer

    def _resolve(self, service: str, server: str) -> tuple[list[str], str]:
        pools = {
            ids.service_id(s.key): {ids.server_id(*rs.key) for rs in s.real_servers}
            for s in self.config.services
        }
        return ids.resolve(service, server, pools)

    async def check_now(self, service: str, server: str) -> Mapping[str, Any]:
        """Run SERVER's checks at once and return their results.

        For the operator's eyes only: the results do not count towards rise
        or fall (the scheduled checks keep deciding), so a check-now can never
        take a server out of the table or put it back.
        """
        if self.board is None:
            raise NotFound("the monitor is still starting; try again")
        targets, server_id = self._resolve(service, server)
        refs = [
            ref
            for ref in self.board.servers
            if ids.service_id(ref.service) in targets
            and ids.server_id(ref.address, ref.port) == server_id
        ]
        specs = {
            health.spec.dedup_key: health.spec
            for ref in refs
            for health in self.board.servers[ref].checks
        }

        async def one(spec: CheckSpec) -> dict[str, Any]:
            started = self.clock()
            result = await self.scheduler.run(spec)
            return {
                "check": self.check_names.of(spec),
                "result": result.outcome,
                "detail": result.detail,
                "seconds": round(self.clock() - started, 4),
            }

        results = await asyncio.gather(*(one(spec) for spec in specs.values()))
        return {
            "ok": all(result["result"] == "up" for result in results),
            "server": server_id,
            "services": targets,
            "checks": list(results),
        }

    async def _wait(self, future: asyncio.Future[Outcome]) -> Optional[Outcome]:
        try:
            return await asyncio.wait_for(asyncio.shield(future), APPLY_WAIT_SECONDS)
        except asyncio.TimeoutError:
            return None

    # --------------------------------------------------------------- reload

    async def reload(self, source: str = "api") -> Mapping[str, Any]:
        if self.board is None:
            return {"ok": False, "errors": ["the monitor is still starting; try again"]}
        async with self._reload_lock:
            self.systemd.reloading()
            try:
                return await self._reload(source)
            finally:
                self.systemd.ready(self.summary())

    async def _reload(self, source: str) -> Mapping[str, Any]:
        assert self.board is not None
        self.log.info("reload_requested", source=source, config=self.config_path)
        self.looplag.open_window()
        loop = asyncio.get_running_loop()
        started = self.clock()
        try:
            config: MonitorConfig = await loop.run_in_executor(
                None, load_config, self.config_path, self.sections
            )
        except ConfigError as error:
            self.reloads["rejected"] += 1
            self.log.error(
                "config_rejected",
                config=self.config_path,
                errors=error.errors,
                reason="%d error(s); the running configuration is kept" % len(error.errors),
            )
            return {"ok": False, "errors": error.errors}
        if config is self.config:
            return self._unchanged(started)
        warnings = self._restart_only_changes(config)
        # The kernel is the prior of checks that are new; when every check
        # carries its state over, there is nothing to read.  Only a service
        # the load did not take over as it was (sections.py) can bring one.
        kernel: Table = {}
        if self._new_probes(config):
            try:
                kernel = await self._in_ipvs_thread(self._engine.read)
            except Exception as error:
                self.reloads["failed"] += 1
                message = "cannot read the IPVS table: %s" % error
                self.log.error("reload_failed", reason=message)
                return {"ok": False, "errors": [message]}
        # Not in the middle of a desired table's computation (compute_desired).
        await self._model_lock.acquire()
        try:
            old_keys = {service.key: service for service in self.config.services}
            names_hold = checks_unchanged(self.config, config)
            old_static = self.config.static_services
            self.config = config
            self._configure(config, names_hold)
            new_keys = {service.key: service for service in config.services}
            self._hand_over(
                ({key for key in old_keys if key not in new_keys} | self.leaving.services())
                & config.static_services
            )
            owned = {key: old_keys[key] for key in old_keys if key not in config.static_services}
            leavers = self.leaving.start(
                self.actuator.known, owned, new_keys, config.settings.drain_timeout, self.clock()
            )
            for ref in leavers:
                self._log_leaving(
                    ref, "no longer in the configuration", config.settings.drain_timeout
                )
            if leavers:
                self._save_state()  # a restart goes on draining them
            events = self.board.reload(config, self.clock(), self._present(kernel))
            self._held &= set(new_keys)
            self._hold_new_services(set(new_keys) - set(old_keys), kernel)
            self._pending_remove |= set(owned) - set(new_keys) - self.leaving.services()
            self._pending_remove -= set(new_keys) | config.static_services
            self._ensure_descriptors()
            self.scheduler.sync(self.board)
            for event in events:
                if isinstance(event, Transition):
                    self._server_transition(event)
            checks_started, checks_stopped = self.board.reload_counts
            checks_total = len(self.board.checks)
            parsed = self.clock()
            # A service new to the monitor may already be in the kernel (adopted
            # from another owner): plan it against a fresh read, not against what
            # the monitor last left there.
            changed = {
                key
                for key in new_keys.keys() & old_keys.keys()
                if new_keys[key] is not old_keys[key] and new_keys[key] != old_keys[key]
            }
            # The same services, some of them edited: only their entries change.
            edited: Optional[set[ServiceKey]] = None
            if (
                new_keys.keys() == old_keys.keys()
                and not leavers
                and config.static_services == old_static
            ):
                edited = set(changed)
                edited.update(
                    event.server.service
                    for event in events
                    if isinstance(event, (Transition, WeightChange))
                )
            # Every service taken over as it was, no server changing state: the
            # desired table is the one in the kernel, and planning 30,000 entries
            # to find nothing would hold the loop for nothing.
            same_table = (
                edited is not None
                and all(new_keys[key] is service for key, service in old_keys.items())
                and not events
            )
        finally:
            self._model_lock.release()
        outcome = (
            Outcome()
            if same_table
            else await self._wait(
                self._request_apply(reconcile=bool(set(new_keys) - set(old_keys)), services=edited)
            )
        )
        done = self.clock()
        gcfreeze.freeze_long_lived()
        # What the load freed, off the loop: the call holds no GIL but may
        # take the test kernel milliseconds.
        loop.run_in_executor(None, memtrim.release_free_memory)
        self.reloads["accepted"] += 1
        added = len(set(new_keys) - set(old_keys))
        removed = len(set(old_keys) - set(new_keys))
        operations = len(outcome.operations) if outcome is not None else 0
        summary = (
            "reload OK: %d services (%d added, %d removed, %d changed), checks %d kept, %d started, %d stopped, "
            "%d kernel operations"
            % (
                len(new_keys),
                added,
                removed,
                len(changed),
                checks_total - checks_started,
                checks_started,
                checks_stopped,
                operations,
            )
        )
        loop_lag = round(self.looplag.close_window(), 3)
        self.log.info(
            "config_reloaded",
            config=self.config_path,
            reason=summary,
            warnings=warnings or None,
            load_seconds=round(parsed - started, 3),
            apply_seconds=round(done - parsed, 3),
            loop_lag_seconds=loop_lag,
        )
        answer: dict[str, Any] = {
            "ok": True,
            "summary": summary,
            "operations": operations,
            "warnings": warnings,
            "loop_lag_seconds": loop_lag,
        }
        if outcome is None or outcome.error:
            answer["kernel_error"] = (
                outcome.error if outcome is not None else "kernel not updated in time"
            )
        return answer

    def _unchanged(self, started: float) -> Mapping[str, Any]:
        """The file is the one running, byte for byte: nothing to do."""
        self.reloads["accepted"] += 1
        summary = "reload OK: %d services, the file is unchanged, 0 kernel operations" % len(
            self.config.services
        )
        loop_lag = round(self.looplag.close_window(), 3)
        self.log.info(
            "config_reloaded",
            config=self.config_path,
            reason=summary,
            load_seconds=round(self.clock() - started, 3),
            apply_seconds=0.0,
            loop_lag_seconds=loop_lag,
        )
        return {
            "ok": True,
            "summary": summary,
            "operations": 0,
            "warnings": [],
            "loop_lag_seconds": loop_lag,
        }

    def _hand_over(self, keys: set[ServiceKey]) -> None:
        """Hand services over to their static owner: left in the kernel as
        they are (a leaving one keeps its drained weights until the owner
        sets them), no longer checked, repaired, drained or deleted."""
        for key in sorted(keys, key=str):
            self.leaving.forget(key)
            self.log.info(
                "service_handed_over",
                service=ids.service_id(key),
                reason="now a static service (static_services): left in the kernel as it is "
                "for its other owner",
            )
        if keys:
            self._save_state()  # no longer managed: a restart must not delete it

    def _restart_only_changes(self, config: MonitorConfig) -> list[str]:
        old, new = self.config.settings, config.settings
        warnings = []
        for name in ("name", "control_socket", "listen", "state_file"):
            if getattr(old, name) != getattr(new, name):
                warnings.append("global.%s changed: takes effect on restart" % name)
        return warnings

    # ------------------------------------------------------------ reporting

    def status(self) -> Mapping[str, Any]:
        return report.status(self)

    def events(self, since: int, limit: Optional[int]) -> list[Mapping[str, Any]]:
        return list(self.log.history(since, limit))

    def metrics_text(self) -> str:
        return report.metrics_text(self)

    def api_error(self, message: str) -> None:
        self.log.error("api_error", reason=message)


def _settled_down(server: ServerHealth) -> bool:
    """Down, and not on its way up: a check of it has failed last."""
    return not server.up and any(
        check.confirmed and not check.up and check.successes == 0 for check in server.checks
    )


def _where(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return "%s:%d" % (os.path.basename(last.filename), last.lineno or 0)


def _fatal(log: EventLog, reason: str, **fields: Any) -> None:
    log.error("fatal", reason=reason, **fields)
    if log.log_format == "json" and sys.stderr.isatty():
        print("haecs-monitor: %s" % reason, file=sys.stderr)


def run_daemon(
    config_path: str,
    config: MonitorConfig,
    log_level: str = "info",
    log_format: Optional[str] = None,
    sections: Optional[SectionMemory] = None,
) -> int:
    """Open the kernel's IPVS, run the monitor until it stops; the exit status."""
    from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.engine import IPVS, IPVSError

    log = EventLog(sys.stderr, log_format or config.settings.log_format, log_level)
    try:
        engine = IPVS()
    except (IPVSError, OSError) as error:
        _fatal(log, str(error))
        return 1

    async def main() -> int:
        monitor = Monitor(
            config_path, config, engine, log, log_format=log_format, sections=sections
        )
        return await monitor.run()

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        log.error("fatal", reason="%s: %s" % (type(error).__name__, error), where=_where(error))
        return 1
    finally:
        engine.close()
