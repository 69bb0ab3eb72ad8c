"""haecs-sync: the IPVS connection sync daemons of a director, switched by
keepalived as its VRRP state changes (haecs_monitor/kernel/sync.py).

keepalived runs the command of its `notify` setting with TYPE NAME STATE
PRIORITY appended, and discards the command's output, so every run is
logged (syslog, and --log FILE when given) and the exit status is only for
people running it by hand:

    haecs-sync notify --interface back --sync-id 51 INSTANCE haecs MASTER 150
    haecs-sync show

Exit status: 0 done; 1 the kernel refused (the earlier daemons are kept);
2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import syslog
import time
from collections.abc import Sequence
from typing import Optional

from haecs_monitor.errors import HaecsError

LOCK = "/run/haecs/sync.lock"
MAX_INTERFACE = 15  # IFNAMSIZ - 1


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="haecs-sync",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = top.add_subparsers(dest="command", required=True)
    notify = commands.add_parser(
        "notify", help="keepalived's notify: run the daemons of the new VRRP state"
    )
    notify.add_argument("--interface", required=True, help="the sync daemons' interface")
    notify.add_argument(
        "--sync-id", type=int, default=0, help="0-255, the same on both directors (default 0)"
    )
    notify.add_argument("--log", help="also append each run to this file")
    notify.add_argument("--lock", default=LOCK, help="serialises runs (default %(default)s)")
    notify.add_argument(
        "event", nargs="+", metavar="TYPE NAME STATE [PRIORITY]", help="as keepalived appends"
    )
    commands.add_parser("show", help="the sync daemons the kernel runs now")
    return top


def problem(args: argparse.Namespace) -> Optional[str]:
    """What is wrong with the notify arguments, or None."""
    from haecs_monitor.kernel.sync import WANTED

    if not args.interface or len(args.interface) > MAX_INTERFACE or "/" in args.interface:
        return "--interface: must be an interface name (1 to 15 characters), got %r" % (
            args.interface,
        )
    if not 0 <= args.sync_id <= 255:
        return "--sync-id: must be from 0 to 255, got %d" % args.sync_id
    if len(args.event) < 3:
        return "expected TYPE NAME STATE [PRIORITY] (what keepalived appends), got %s" % (
            " ".join(args.event) or "nothing"
        )
    if args.event[2] not in WANTED:
        return "STATE: must be one of %s, got %r" % (", ".join(WANTED), args.event[2])
    return None


def record(args: argparse.Namespace, level: int, text: str) -> None:
    syslog.openlog("haecs-sync", syslog.LOG_PID, syslog.LOG_DAEMON)
    syslog.syslog(level, text)
    if getattr(args, "log", None):
        try:
            with open(args.log, "a", encoding="utf-8") as out:
                out.write("%s haecs-sync[%d] %s\n" % (time.strftime("%FT%T"), os.getpid(), text))
        except OSError as error:
            syslog.syslog(syslog.LOG_ERR, "cannot write %s: %s" % (args.log, error))
    print(text, file=sys.stderr if level <= syslog.LOG_ERR else sys.stdout)


def notify(args: argparse.Namespace) -> int:
    from haecs_monitor.kernel.sync import describe, switch

    kind, name, state = args.event[:3]
    event = "%s %s %s" % (kind, name, state)
    os.makedirs(os.path.dirname(args.lock) or ".", exist_ok=True)
    try:
        done = switch(state, args.interface, args.sync_id, args.lock)
    except (HaecsError, OSError) as error:
        record(args, syslog.LOG_ERR, "%s: sync daemons not changed: %s" % (event, error))
        return 1
    changes = "; ".join(op.ipvsadm_line() for op in done.operations) or "no change"
    record(
        args,
        syslog.LOG_INFO,
        "%s: sync daemons %s (was %s): %s"
        % (event, describe(done.after), describe(done.before), changes),
    )
    return 0


def show() -> int:
    from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.config import read_daemons
    from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.engine import IPVS
    from haecs_monitor.kernel.sync import describe

    try:
        with IPVS() as ipvs:
            print(describe(read_daemons(ipvs.socket)))
    except (HaecsError, OSError) as error:
        print("haecs-sync: cannot read the sync daemons: %s" % error, file=sys.stderr)
        return 1
    return 0


def sync_main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "show":
        return show()
    wrong = problem(args)
    if wrong is not None:
        record(args, syslog.LOG_ERR, "refused: %s" % wrong)
        return 2
    return notify(args)
