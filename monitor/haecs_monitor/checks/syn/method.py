"""Which way the tcp check probes, per event loop and address family.

"syn" when the family's raw socket could be opened (`SynProber`), else
"connect" (`checks.tcp`'s connect check), with the reason.  Chosen once per
family at the first check (or `describe()` at start): a monitor without
CAP_NET_RAW (unit tests, an unprivileged run) falls back, and says so.

HAECS_MONITOR_TCP_CHECK=connect (or =syn) in the environment forces one
method: "syn" then fails the check (unknown, never down) when the raw
socket cannot be opened, rather than falling back.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from dataclasses import dataclass
from typing import Optional

from haecs_monitor.checks.base import os_reason
from haecs_monitor.checks.syn.prober import SynProber

ENVIRONMENT = "HAECS_MONITOR_TCP_CHECK"
METHODS = ("auto", "syn", "connect")
FAMILIES = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}

# Errors that say "not now" rather than "never": retried at the next check.
_PASSING = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


@dataclass
class Choice:
    method: str  # "syn" or "connect"
    reason: str = ""
    prober: Optional[SynProber] = None


# by loop; a closed loop's probers are closed when the next loop first asks
_choices: dict[asyncio.AbstractEventLoop, dict[int, Choice]] = {}


def wanted() -> str:
    value = os.environ.get(ENVIRONMENT, "auto").strip().lower() or "auto"
    return value if value in METHODS else "auto"


def choose(loop: asyncio.AbstractEventLoop, family: int) -> Choice:
    """The method of FAMILY on LOOP, opening the prober on first use."""
    by_family = _choices.get(loop)
    if by_family is None:
        for old in [old for old in _choices if old.is_closed()]:
            close(old)
        by_family = _choices[loop] = {}
    choice = by_family.get(family)
    if choice is not None:
        return choice
    mode = wanted()
    if mode == "connect":
        choice = Choice("connect", "%s=connect" % ENVIRONMENT)
    else:
        try:
            choice = Choice("syn", prober=SynProber.open(family, loop))
        except OSError as error:
            reason = "raw socket: %s" % os_reason(error)
            if error.errno in _PASSING or mode == "syn":
                return Choice("unavailable" if mode == "syn" else "connect", reason)
            choice = Choice("connect", reason)
    by_family[family] = choice
    return choice


def describe(loop: asyncio.AbstractEventLoop) -> dict[str, str]:
    """{"ipv4": "syn", "ipv6": "connect (raw socket: Operation not permitted)"}."""
    result = {}
    for name, family in FAMILIES.items():
        choice = choose(loop, family)
        result[name] = choice.method + (" (%s)" % choice.reason if choice.reason else "")
    return result


def close(loop: asyncio.AbstractEventLoop) -> None:
    """Close LOOP's probers (before the loop closes)."""
    for choice in (_choices.pop(loop, None) or {}).values():
        if choice.prober is not None:
            choice.prober.close()
