"""Make the kernel hold the desired table of the managed services, and only those.

The actuator plans with the shared engine (`ipvs_plan.plan`) against the
kernel's table restricted to the services this monitor manages, so a service
it does not manage is never read into a plan, changed or deleted.

Two ways to apply:

- `reconcile(desired)` reads the kernel (one dump), reports every managed
  entry that differs from what the monitor last left there as *drift* (an
  entry deleted or edited by hand), and repairs it;
- `update(desired)` plans against what the monitor last left in the kernel,
  without a read: the cheap path after a health change.  If the kernel
  refuses (it was changed behind our back), it falls back to a reconcile.

The first reconcile after start adopts what is there: nothing is flushed,
only what differs is added or edited.  Every operation sent is counted, so a
reload that changes nothing provably costs zero kernel operations.

Blocking (netlink); the daemon calls it from one worker thread.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Optional, Protocol

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs import plan as ipvs_plan
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.engine import ApplyResult, IPVSError
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    ServiceKey,
    Table,
    VirtualService,
)


class Engine(Protocol):
    """What the actuator needs from `ipvs.engine.IPVS` (tests pass a fake)."""

    def read(self, with_stats: bool = False, services_only: bool = False) -> Table: ...

    def read_each(
        self, with_stats: bool = False, only: Optional[Collection[ServiceKey]] = None
    ) -> Iterator[VirtualService]: ...

    def apply(self, operations: list[ipvs_plan.Operation]) -> ApplyResult: ...


@dataclass(frozen=True)
class Drift:
    """A managed entry the kernel holds differently from what we left there."""

    service: ServiceKey
    server: Optional[tuple[str, int]]  # None: the service itself
    kind: str  # missing | changed | unexpected
    expected: str  # ipvsadm line we left (empty when unexpected)
    found: str  # ipvsadm line in the kernel (empty when missing)


@dataclass
class Outcome:
    """What one apply did."""

    operations: list[ipvs_plan.Operation] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)
    read_kernel: bool = False
    adopted: bool = False  # first reconcile: entries already right were kept
    adopted_entries: int = 0
    error: Optional[str] = None

    @property
    def changed(self) -> bool:
        return bool(self.operations)


def restrict(table: Mapping[ServiceKey, VirtualService], keys: Iterable[ServiceKey]) -> Table:
    """The part of `table` about `keys` (copied: callers may change it)."""
    return {key: _copy(table[key]) for key in keys if key in table}


def _copy(entry: VirtualService) -> VirtualService:
    return VirtualService(entry.service, dict(entry.real_servers))


def find_drift(
    expected: Mapping[ServiceKey, VirtualService], found: Mapping[ServiceKey, VirtualService]
) -> list[Drift]:
    """Entries of `expected` that `found` lacks, holds differently or has extra."""
    drift: list[Drift] = []
    for key, want in expected.items():
        have = found.get(key)
        if have is None:
            drift.append(Drift(key, None, "missing", want.service.ipvsadm_line(), ""))
            continue
        if have.service != want.service:
            drift.append(
                Drift(
                    key, None, "changed", want.service.ipvsadm_line(), have.service.ipvsadm_line()
                )
            )
        for server_key, server in want.real_servers.items():
            other = have.real_servers.get(server_key)
            if other is None:
                drift.append(Drift(key, server_key, "missing", server.ipvsadm_line(key), ""))
            elif not other.same_as(server):
                drift.append(
                    Drift(
                        key,
                        server_key,
                        "changed",
                        server.ipvsadm_line(key),
                        other.ipvsadm_line(key),
                    )
                )
        for server_key, other in have.real_servers.items():
            if server_key not in want.real_servers:
                drift.append(Drift(key, server_key, "unexpected", "", other.ipvsadm_line(key)))
    return drift


class Actuator:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # What we last left in the kernel (managed services only); None until
        # the first reconcile, so that one adopts instead of reporting drift.
        self._known: Optional[Table] = None
        # After a refused change, trust nothing but a fresh read.
        self._dirty = False
        self.operations_total: Counter[str] = Counter()
        self.drift_total = 0
        self.reconciles_total = 0
        self.errors_total = 0

    @property
    def known(self) -> Optional[Table]:
        return self._known

    def reconcile(self, desired: Table, remove: Iterable[ServiceKey] = ()) -> Outcome:
        """Read the kernel, report drift, apply what differs (and delete `remove`).

        The kernel is read one service at a time (`read_each`), and each
        entry read is compared at once and then let go: only the operations
        it needs are kept (and the entries to delete).  Reading the whole
        table first kept 8 MB of the RSS for good at 30,000 real servers,
        every few seconds.  Drift and operations are the same as a diff of
        the whole table: `plan` plans each service on its own."""
        self.reconciles_total += 1
        remove = [key for key in remove if key not in desired]
        outcome = Outcome(read_kernel=True, adopted=self._known is None)
        known = self._known
        planned: dict[ServiceKey, list[ipvs_plan.Operation]] = {}
        drift: dict[ServiceKey, list[Drift]] = {}
        leaving: Table = {}  # the entries of `remove` found
        try:
            for entry in self._engine.read_each(only=[*desired, *remove]):
                key = entry.key
                if known is not None and key in known:
                    drift[key] = find_drift({key: known[key]}, {key: entry})
                want = desired.get(key)
                if want is None:
                    leaving[key] = entry
                    continue
                if known is None:
                    outcome.adopted_entries += _count_same({key: entry}, {key: want})
                planned[key] = ipvs_plan.plan({key: entry}, {key: want}, purge_real_servers=True)
        except (IPVSError, OSError) as error:
            return self._failed(outcome, "cannot read the IPVS table: %s" % error)
        if known is not None:
            for key, entry in known.items():
                found = drift.get(key)
                outcome.drift.extend(found if found is not None else find_drift({key: entry}, {}))
            self.drift_total += len(outcome.drift)
        operations: list[ipvs_plan.Operation] = []
        for key, want in desired.items():
            found_ops = planned.get(key)
            operations.extend(
                found_ops if found_ops is not None else ipvs_plan.plan({}, {key: want})
            )
        operations = ipvs_plan.order(operations + ipvs_plan.plan_removal(leaving, remove))
        return self._send(outcome, operations, desired)

    def update(
        self,
        desired: Table,
        remove: Iterable[ServiceKey] = (),
        services: Optional[Collection[ServiceKey]] = None,
    ) -> Outcome:
        """Apply against what we last left in the kernel; reconcile when unsure.

        `services`: the only entries of `desired` that may differ from the
        last apply's (None: any).  When `desired` has the same services as
        the last apply, only those are planned: one server's transition is
        then planned in its own service, not over the whole table."""
        if self._known is None or self._dirty:
            return self.reconcile(desired, remove)
        remove = [key for key in remove if key not in desired]
        planned = desired
        part = False
        if services is not None and desired.keys() == self._known.keys():
            part = True
            planned = {key: desired[key] for key in services if key in desired}
        current = restrict(self._known, list(planned) + remove)
        outcome = self._apply(Outcome(), current, planned, remove, count_error=False, part=part)
        if outcome.error is None:
            return outcome
        # Refused: the kernel is not what we left there (changed by hand).
        return self.reconcile(desired, remove)

    def remove_all(self, keys: Iterable[ServiceKey]) -> Outcome:
        """Delete the given (managed) services from the kernel (on_exit: remove)."""
        outcome = Outcome(read_kernel=True)
        try:
            kernel = self._engine.read()
        except (IPVSError, OSError) as error:
            return self._failed(outcome, "cannot read the IPVS table: %s" % error)
        operations = ipvs_plan.plan_removal(kernel, list(keys))
        return self._send(outcome, operations, {})

    def _apply(
        self,
        outcome: Outcome,
        current: Table,
        desired: Table,
        remove: list[ServiceKey],
        count_error: bool = True,
        part: bool = False,
    ) -> Outcome:
        operations = ipvs_plan.plan(current, desired, purge_real_servers=True)
        operations = ipvs_plan.order(operations + ipvs_plan.plan_removal(current, remove))
        return self._send(outcome, operations, desired, count_error, part)

    def _send(
        self,
        outcome: Outcome,
        operations: list[ipvs_plan.Operation],
        desired: Table,
        count_error: bool = True,
        part: bool = False,
    ) -> Outcome:
        """Send `operations`; then the kernel holds `desired` (or, with `part`,
        what we knew with `desired`'s entries replaced)."""
        if operations:
            try:
                self._engine.apply(operations)
            except (IPVSError, OSError) as error:
                # All or nothing: the engine undid what it had done.
                self._dirty = True
                if count_error:
                    return self._failed(outcome, str(error))
                outcome.error = str(error)
                return outcome
            for op in operations:
                self.operations_total[op.kind] += 1
        outcome.operations = operations
        self._dirty = False
        known = {key: _copy(entry) for key, entry in desired.items()}
        if part and self._known is not None:
            self._known.update(known)
        else:
            self._known = known
        return outcome

    def _failed(self, outcome: Outcome, message: str) -> Outcome:
        self.errors_total += 1
        outcome.error = message
        return outcome


def _count_same(current: Table, desired: Table) -> int:
    same = 0
    for key, want in desired.items():
        have = current.get(key)
        if have is None:
            continue
        if have.service == want.service:
            same += 1
        same += sum(
            1
            for server_key, server in want.real_servers.items()
            if server_key in have.real_servers and have.real_servers[server_key].same_as(server)
        )
    return same
