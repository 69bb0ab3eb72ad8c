"""``haecsctl drain SERVICE SERVER --wait``: drain, then poll the monitor's
``GET /servers/{service}/{server}`` until the real server's connections
are gone, or a timeout passes.

The numbers and the ``drained`` / ``idle`` verdicts are the monitor's, read
from the kernel at each request (control/connections.py); this file only
polls, shows progress and picks the exit status.  Progress is one line: on
a terminal it is rewritten in place, otherwise a line is printed when the
numbers change and every PLAIN_EVERY_SECONDS.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional, TextIO
from urllib.parse import quote

from haecs_monitor.errors import HaecsError

EXIT_TIMEOUT = 4  # the timeout passed with connections left
DEFAULT_TIMEOUT = 300.0
DEFAULT_INTERVAL = 1.0
PLAIN_EVERY_SECONDS = 10.0
UNTIL_ACTIVE = "active"
UNTIL_ALL = "all"
# The verdict of GET /servers/... that each --until waits for.
VERDICT = {UNTIL_ACTIVE: "drained", UNTIL_ALL: "idle"}

WAIT_HELP = "after the drain, wait until the server's connections are gone (see --until)"
TIMEOUT_HELP = (
    "with --wait: give up after SECONDS, exit status %d (default %g; 0: look once). "
    "haecsctl --timeout, before the command, bounds each request instead"
    % (EXIT_TIMEOUT, DEFAULT_TIMEOUT)
)
INTERVAL_HELP = "with --wait: seconds between two reads of the counters (default %g)" % (
    DEFAULT_INTERVAL
)
UNTIL_HELP = (
    "with --wait: 'active' (the default) waits until no connection is established "
    "(ipvsadm's ActiveConn 0), the rule of ipvs_table's drain_timeout. The kernel counts "
    "as inactive the TCP connections not established (closing ones: FIN_WAIT, TIME_WAIT, "
    "which only wait for their timer) and every UDP flow. 'all' waits until no entry is "
    "left, inactive ones included (kube-proxy's rule; by default a TIME_WAIT entry lasts "
    "2 minutes and a UDP flow 5 minutes after its last packet). Persistence templates are "
    "shown, not waited for: while one lives, its client's new connections still reach the "
    "drained server"
)
DRAIN_EPILOG = (
    """\
With --wait, haecsctl polls the monitor (GET /servers/SERVICE/SERVER, read from
the kernel each time) and shows active and inactive connections left,
persistence templates (persistent services) and the seconds waited; it exits
0 once the server is drained, %d when --timeout passed first (it says what
was left), 1 when the monitor answered an error, 2 when it cannot be reached.
With --json it prints the server's last state as JSON instead.
"""
    % EXIT_TIMEOUT
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--wait, --timeout, --until and --interval on the drain command."""
    parser.add_argument("--wait", action="store_true", help=WAIT_HELP)
    parser.add_argument(
        "--timeout", dest="wait_timeout", type=float, metavar="SECONDS", help=TIMEOUT_HELP
    )
    parser.add_argument(
        "--interval", dest="wait_interval", type=float, metavar="SECONDS", help=INTERVAL_HELP
    )
    parser.add_argument("--until", choices=tuple(VERDICT), help=UNTIL_HELP)
    parser.epilog = DRAIN_EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def options_problem(args: argparse.Namespace) -> Optional[str]:
    """What is wrong with the wait options, or None (then their defaults are filled in)."""
    given = [
        option
        for option, value in (
            ("--timeout", args.wait_timeout),
            ("--interval", args.wait_interval),
            ("--until", args.until),
        )
        if value is not None
    ]
    if given and not args.wait:
        return "%s only go%s with --wait" % (" and ".join(given), "es" if len(given) == 1 else "")
    _fill_defaults(args)
    if not math.isfinite(args.wait_timeout) or args.wait_timeout < 0:
        return "--timeout must be 0 or more seconds, got %g" % args.wait_timeout
    if not math.isfinite(args.wait_interval) or args.wait_interval <= 0:
        return "--interval must be above 0 seconds, got %g" % args.wait_interval
    return None


def _fill_defaults(args: argparse.Namespace) -> None:
    if args.wait_timeout is None:
        args.wait_timeout = DEFAULT_TIMEOUT
    if args.wait_interval is None:
        args.wait_interval = DEFAULT_INTERVAL
    if args.until is None:
        args.until = UNTIL_ACTIVE


def server_path(service: str, server: str, action: str = "") -> str:
    """/servers/SERVICE/SERVER[/ACTION], each part quoted."""
    path = "/servers/%s/%s" % (quote(service, safe=":*"), quote(server, safe=":"))
    return path + "/" + action if action else path


# ------------------------------------------------------------------ formatting


def is_done(answer: Mapping[str, Any], until: str) -> bool:
    return bool(answer.get(VERDICT[until]))


def _persistent(answer: Mapping[str, Any]) -> bool:
    return any(entry.get("persistent") for entry in answer.get("services", []))


def _in_kernel(answer: Mapping[str, Any]) -> bool:
    return any(entry.get("in_kernel") for entry in answer.get("services", []))


def format_left(answer: Mapping[str, Any]) -> str:
    """'1 active, 0 inactive connections[, 2 persistence templates] left'."""
    if not _in_kernel(answer):
        return "not in the kernel's table: no new connection, its connections are not counted"
    text = "%d active, %d inactive connections" % (
        _count(answer, "active_connections"),
        _count(answer, "inactive_connections"),
    )
    if _persistent(answer):
        templates = _count(answer, "persistence_templates")
        text += ", %d persistence template%s" % (templates, "" if templates == 1 else "s")
    return text + " left"


def _count(answer: Mapping[str, Any], name: str) -> int:
    value = answer.get(name)
    return value if isinstance(value, int) else 0


def _still_weighted(answer: Mapping[str, Any]) -> str:
    """'; weight 3 in tcp:10.0.0.1:80: still takes new connections' or ''."""
    weighted = [
        "%s in %s" % (entry["weight"], entry.get("service", "?"))
        for entry in answer.get("services", [])
        if entry.get("weight")
    ]
    if not weighted:
        return ""
    return "; weight %s: still takes new connections" % ", ".join(weighted)


def format_state(answer: Mapping[str, Any]) -> str:
    """The progress line without the time: changes only when the kernel's numbers do."""
    return "%s: %s%s" % (answer.get("server", "?"), format_left(answer), _still_weighted(answer))


def seconds(value: float) -> str:
    """'12s', '0.2s': a tenth of a second at most."""
    return "%gs" % round(value, 1)


def format_progress(answer: Mapping[str, Any], waited: float) -> str:
    return "%s; waited %s" % (format_state(answer), seconds(waited))


def format_done(answer: Mapping[str, Any], until: str, waited: float) -> str:
    rule = "no established connection" if until == UNTIL_ACTIVE else "no connection"
    text = "%s is drained (%s): %s; waited %s" % (
        answer.get("server", "?"),
        rule,
        format_left(answer),
        seconds(waited),
    )
    if answer.get("persistence_templates"):
        text += "; its persistence templates still send their clients' new connections to it"
    return text


def format_timeout(answer: Mapping[str, Any], until: str, waited: float) -> str:
    busy = [
        entry.get("service", "?")
        for entry in answer.get("services", [])
        if not entry.get(VERDICT[until], False)
    ]
    return "timed out after %s waiting for %s to drain: %s%s%s" % (
        seconds(waited),
        answer.get("server", "?"),
        format_left(answer),
        " (in %s)" % ", ".join(busy) if busy else "",
        _still_weighted(answer),
    )


# -------------------------------------------------------------------- progress


class ProgressLine:
    """One line of progress: rewritten on a terminal; elsewhere printed when
    the numbers change, and every PLAIN_EVERY_SECONDS while they do not."""

    def __init__(
        self, stream: TextIO, terminal: Optional[bool] = None, quiet: bool = False
    ) -> None:
        self.stream = stream
        self.terminal = stream.isatty() if terminal is None else terminal
        self.quiet = quiet
        self._last_state: Optional[str] = None
        self._last_printed = 0.0
        self._open = False  # a rewritten line waits for its newline

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def show(self, answer: Mapping[str, Any], waited: float) -> None:
        if self.quiet:
            return
        state = format_state(answer)
        line = format_progress(answer, waited)
        if self.terminal:
            self.stream.write("\r%s\x1b[K" % line)
            self._open = True
        elif state != self._last_state or waited - self._last_printed >= PLAIN_EVERY_SECONDS:
            self.stream.write(line + "\n")
            self._last_printed = waited
        self._last_state = state
        self.stream.flush()

    def close(self) -> None:
        """End a rewritten line, so what follows starts on a line of its own."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


# ------------------------------------------------------------------------ wait


class WaitError(HaecsError):
    """The monitor answered an error while we polled (its message)."""


Poll = Callable[[], Mapping[str, Any]]


@dataclass
class Waited:
    drained: bool
    answer: Mapping[str, Any]
    seconds: float


def wait_for_drain(
    poll: Poll,
    until: str,
    timeout: float,
    interval: float,
    progress: ProgressLine,
    clock: Optional[Callable[[], float]] = None,
    sleep: Optional[Callable[[float], None]] = None,
) -> Waited:
    """Poll until the answer's verdict for UNTIL holds or TIMEOUT seconds
    have passed (the first poll is at once, the last at the timeout)."""
    clock = clock or time.monotonic
    sleep = sleep or time.sleep
    started = clock()
    while True:
        answer = poll()
        waited = clock() - started
        progress.show(answer, waited)
        if is_done(answer, until):
            return Waited(True, answer, waited)
        if waited >= timeout:
            return Waited(False, answer, waited)
        sleep(min(interval, timeout - waited))


def poller(send: Callable[[str, str], Any], service: str, server: str) -> Poll:
    """GET the server's state; WaitError with the monitor's message on an error."""
    path = server_path(service, server)

    def poll() -> Mapping[str, Any]:
        reply = send("GET", path)
        data = reply.json()
        if reply.status != 200:
            message = data.get("error") if isinstance(data, dict) else None
            message = message or "HTTP %d" % reply.status
            if message.startswith("no such endpoint"):
                message += " (a monitor older than drain --wait: restart it on this version)"
            raise WaitError(message)
        if not isinstance(data, dict):
            raise WaitError("the monitor's answer is not a JSON object")
        return data

    return poll


# ------------------------------------------------------------------- the command


def drain_and_wait(
    args: argparse.Namespace,
    send: Callable[[str, str], Any],
    service: str,
    server: str,
    out: Optional[TextIO] = None,
    err: Optional[TextIO] = None,
    clock: Optional[Callable[[], float]] = None,
    sleep: Optional[Callable[[float], None]] = None,
) -> int:
    """POST the drain, then wait; the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    reply = send("POST", server_path(service, server, "drain"))
    data = reply.json()
    if reply.status != 200:
        print("haecsctl: %s" % data.get("error", "HTTP %d" % reply.status), file=err)
        return 1
    if not args.json:
        for change in data.get("changed", []):
            print("%s %s: %s" % (change["service"], change["server"], change["admin"]), file=out)
    if data.get("kernel_error"):
        print("haecsctl: warning: %s" % data["kernel_error"], file=err)
    try:
        with ProgressLine(out, quiet=args.json) as progress:
            waited = wait_for_drain(
                poller(send, service, server),
                args.until,
                args.wait_timeout,
                args.wait_interval,
                progress,
                clock,
                sleep,
            )
    except WaitError as error:
        print("haecsctl: %s" % error, file=err)
        return 1
    return _report(args, waited, out, err)


def _report(args: argparse.Namespace, waited: Waited, out: TextIO, err: TextIO) -> int:
    code = 0 if waited.drained else EXIT_TIMEOUT
    if args.json:
        data: Any = waited.answer
        if args.query is not None:
            data = args.query.search(data)
        print(json.dumps(data, indent=2), file=out)
    elif waited.drained:
        print(format_done(waited.answer, args.until, waited.seconds), file=out)
    else:
        print("haecsctl: %s" % format_timeout(waited.answer, args.until, waited.seconds), file=err)
    return code
