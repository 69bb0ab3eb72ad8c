"""The IPVS connection sync daemons that follow a director's VRRP state.

keepalived decides which director of a pair is master (VRRP); the kernel's
sync daemons carry connection state from the master to the backup, so that
connections established through the old master survive a failover.  The
master runs the master daemon (it sends), every other director the backup
daemon (it receives):

    MASTER          -> the master daemon only
    BACKUP, FAULT   -> the backup daemon only (a faulty director receives,
                       ready to take over with warm state once it recovers)
    STOP            -> no daemon (keepalived is stopping)

The daemons are changed with the collection's own engine
(`ipvs.config`: read, plan with purge, apply all or nothing), the same
calls as the `haecs.lvs.ipvs_config` module; never by running ipvsadm.
"""

from __future__ import annotations

import fcntl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Optional

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.config import (
    BACKUP,
    MASTER,
    DaemonOperation,
    SyncDaemon,
    apply_daemons,
    plan_daemons,
    read_daemons,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.engine import IPVS

# keepalived's notify states and the daemon states each one wants.
WANTED: dict[str, tuple[str, ...]] = {
    "MASTER": (MASTER,),
    "BACKUP": (BACKUP,),
    "FAULT": (BACKUP,),
    "STOP": (),
}


@dataclass(frozen=True)
class Switch:
    """What one switch found and did."""

    before: tuple[SyncDaemon, ...]
    operations: tuple[DaemonOperation, ...]
    after: tuple[SyncDaemon, ...]


def wanted_daemons(vrrp_state: str, interface: str, sync_id: int) -> list[SyncDaemon]:
    """The daemons a director in `vrrp_state` runs (ValueError if unknown)."""
    if vrrp_state not in WANTED:
        raise ValueError("unknown VRRP state %r (expected %s)" % (vrrp_state, ", ".join(WANTED)))
    return [
        SyncDaemon(state=state, interface=interface, sync_id=sync_id)
        for state in WANTED[vrrp_state]
    ]


def switch(
    vrrp_state: str,
    interface: str,
    sync_id: int,
    lock_path: str,
    ipvs_factory: Optional[Callable[[], IPVS]] = None,
) -> Switch:
    """Make the kernel run exactly the daemons of `vrrp_state`.

    Serialised with a lock file: keepalived may start the next notify
    before the previous one has finished (a fast MASTER -> BACKUP -> MASTER).
    """
    desired = wanted_daemons(vrrp_state, interface, sync_id)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with (ipvs_factory or IPVS)() as ipvs:
            before = read_daemons(ipvs.socket)
            operations = plan_daemons(before, desired, purge=True)
            apply_daemons(ipvs.socket, operations)
            after = read_daemons(ipvs.socket) if operations else before
    return Switch(tuple(before), tuple(operations), tuple(after))


def describe(daemons: Sequence[SyncDaemon]) -> str:
    """'master on back (sync id 51)', or 'none'."""
    return (
        ", ".join("%s on %s (sync id %d)" % (d.state, d.interface, d.sync_id) for d in daemons)
        or "none"
    )
