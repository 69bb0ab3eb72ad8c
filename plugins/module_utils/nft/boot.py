# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Firewall marks at boot: the nft JSON batch that makes the table hold
exactly the given rules, whatever was there (`nft -j -f FILE` in a boot
unit), planned by the same planner as haecs.lvs.fwmark, so the module finds
nothing to change after a boot."""

from __future__ import annotations

from typing import Any

from .model import DEFAULT_TABLE, Json, TableState
from .params import parse_desired
from .plan import plan


def boot_batch(rules: Any, table: Any = DEFAULT_TABLE) -> Json:
    """The batch for RULES in TABLE (the prerouting chain, as the module with
    purge=true): the table is added and deleted first, so the batch can be
    loaded again and leaves the same table."""
    desired = parse_desired(rules, table=table, purge=True)
    fresh = plan(TableState(table=desired.table), desired)
    reference = {"table": {"family": desired.table.family, "name": desired.table.name}}
    return {"nftables": [{"add": reference}, {"delete": reference}, *fresh.commands]}
