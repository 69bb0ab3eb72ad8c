"""Test doubles shared by the monitor's unit tests."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Optional

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs import plan as ipvs_plan
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.engine import ApplyResult, IPVSError
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    ServiceKey,
    Table,
    VirtualService,
)


class FakeEngine:
    def __init__(self, table: Table | None = None) -> None:
        self.table: Table = table or {}
        self.reads = 0
        self.applied: list[list[ipvs_plan.Operation]] = []
        self.refuse = False

    def read(self, with_stats: bool = False, services_only: bool = False) -> Table:
        self.reads += 1
        return {k: VirtualService(v.service, dict(v.real_servers)) for k, v in self.table.items()}

    def read_each(
        self, with_stats: bool = False, only: Optional[Collection[ServiceKey]] = None
    ) -> Iterator[VirtualService]:
        self.reads += 1
        for key, entry in list(self.table.items()):
            if only is None or key in only:
                yield VirtualService(entry.service, dict(entry.real_servers))

    def apply(self, operations: list[ipvs_plan.Operation]) -> ApplyResult:
        if self.refuse:
            raise IPVSError("kernel refused `x`: File exists", rolled_back=True)
        try:
            self.table = ipvs_plan.simulate(self.table, operations)
        except KeyError as error:
            raise IPVSError("kernel refused: %s" % error, rolled_back=True) from None
        self.applied.append(list(operations))
        return ApplyResult(list(operations), 1)
