"""Enough file descriptors for the checks, whatever the service manager gave.

systemd starts a service with a soft RLIMIT_NOFILE of 1,024 unless told
otherwise; a monitor with a thousand checks in flight and an API listener
needs more.  Like keepalived, the monitor raises its own soft limit (up to the
hard limit) from what its configuration needs.  A check that still finds no
descriptor is an unknown result, not a down server (checks.base.LOCAL_FAULTS).
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

# Descriptors the monitor needs besides its checks: the interpreter, logs,
# the netlink socket, the state file, listeners.
BASE_DESCRIPTORS = 128
# At most this many at once per check in flight: a socket, or a script's pipes
# and process handle.
PER_CHECK = 4


@dataclass(frozen=True)
class FdLimit:
    needed: int
    soft: int
    hard: int

    @property
    def enough(self) -> bool:
        return self.soft >= self.needed


def needed(checks: int, api_connections: int) -> int:
    """Descriptors for `checks` concurrent checks and `api_connections` clients."""
    return BASE_DESCRIPTORS + PER_CHECK * checks + api_connections


def ensure(want: int) -> FdLimit:
    """Raise the soft RLIMIT_NOFILE to `want` (never lower it, never above hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):
            pass
    return FdLimit(want, soft, hard)
