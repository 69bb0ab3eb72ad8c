"""Console entry points: ``haecs-monitor`` (the daemon) and ``haecsctl`` (its control).

Errors are one clear line on stderr and a non-zero exit status; no traceback
reaches the user.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional

from haecs_monitor.control import drain_wait

DEFAULT_NAME = "default"
SOCKET_TEMPLATE = "/run/haecs/monitor-%s.sock"

# ------------------------------------------------------------ haecs-monitor


def monitor_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="haecs-monitor",
        description="Health-check real servers and keep the IPVS table of the configured services in step.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate CONFIG, print the errors or a summary, and exit",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="least level logged",
    )
    parser.add_argument("--log-format", choices=("json", "text"), help="override global.log_format")
    parser.add_argument("config", metavar="CONFIG", help="the monitor's YAML configuration")
    return parser


def check_summary(config: Any) -> str:
    services = config.services
    servers = sum(len(service.real_servers) for service in services)
    checks = sum(len(rs.checks) for service in services for rs in service.real_servers)
    unique = len(config.unique_checks())
    return "config OK: %d services, %d real servers, %d checks (%d unique)" % (
        len(services),
        servers,
        checks,
        unique,
    )


def monitor_main(argv: Optional[Sequence[str]] = None) -> int:
    args = monitor_parser().parse_args(argv)
    try:
        from haecs_monitor.config.forked import load_config_in_child
        from haecs_monitor.config.load import ConfigError, load_config
        from haecs_monitor.config.sections import SectionMemory
    except ImportError as error:
        print("haecs-monitor: missing Python library: %s" % error, file=sys.stderr)
        return 2
    sections = SectionMemory()  # a reload reads again only the sections that changed
    try:
        # The daemon keeps only the loaded model, not what loading it took.
        if args.check:
            config = load_config(args.config, sections)
        else:
            config = load_config_in_child(args.config, sections)
    except ConfigError as error:
        for message in error.errors:
            print(message, file=sys.stdout if args.check else sys.stderr)
        if not args.check:
            print(
                "haecs-monitor: %s is invalid (%d errors): not started"
                % (args.config, len(error.errors)),
                file=sys.stderr,
            )
        return 1
    if args.check:
        print(check_summary(config))
        return 0
    from haecs_monitor.runtime.daemon import run_daemon

    return run_daemon(
        os.path.abspath(args.config),
        config,
        log_level=args.log_level,
        log_format=args.log_format,
        sections=sections,
    )


# ------------------------------------------------------------------ haecsctl


CTL_EPILOG = """\
Where: the unix socket by default (root only); --url (or $HAECS_URL) for the
TCP listener, with the token read from --token-file, $HAECS_TOKEN_FILE or
$HAECS_TOKEN (never from the command line, where ps would show it).

Exit status: 0 done; 1 the monitor answered with an error or refused
(reload rejected, unknown server, 4xx/5xx); 2 bad usage, or the monitor
cannot be reached; 3 check-now: a check is not up; 4 drain --wait: the
timeout passed with connections left; 130 interrupted.

`haecsctl drain --help` explains drain --wait.
"""


def ctl_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="haecsctl",
        description="Query and steer a running HAECS monitor.",
        epilog=CTL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--socket",
        metavar="PATH",
        help="control socket (default: $HAECS_SOCKET, else %s)" % (SOCKET_TEMPLATE % "NAME"),
    )
    parser.add_argument(
        "--name", default=DEFAULT_NAME, help="monitor instance name (default: default)"
    )
    parser.add_argument(
        "--url", metavar="URL", help="the TCP listener, http(s)://HOST:PORT (default: $HAECS_URL)"
    )
    parser.add_argument(
        "--token-file",
        metavar="PATH",
        help="file holding the listener's token (default: $HAECS_TOKEN_FILE, else $HAECS_TOKEN)",
    )
    parser.add_argument(
        "--cacert", metavar="PATH", help="CA certificate(s) to verify an https:// listener with"
    )
    parser.add_argument("--json", action="store_true", help="print the monitor's JSON answer as is")
    parser.add_argument(
        "--query",
        metavar="EXPR",
        help="print only what the JMESPath expression EXPR selects from the JSON answer "
        "(implies --json), e.g. \"services[].servers[?health=='down'].id[]\"",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for an answer (default 30)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    commands.add_parser("status", help="services, servers, health, weights and checks")
    events = commands.add_parser("events", help="recent events, oldest first")
    events.add_argument("--limit", type=int, default=50, help="how many (default 50, 0 for all)")
    events.add_argument(
        "--since", type=int, default=0, help="only events after this sequence number"
    )
    watch = commands.add_parser("watch", help="print events as they happen, until Ctrl-C")
    watch.add_argument(
        "--interval", type=float, default=1.0, help="seconds between polls (default 1)"
    )
    watch.add_argument(
        "--for", dest="duration", type=float, metavar="SECONDS", help="stop after SECONDS"
    )
    for action, text in (
        ("drain", "weight 0: no new connections, existing ones finish (persistence still applies)"),
        ("disable", "take the server out of the table"),
        ("enable", "back to what health decides"),
        ("check-now", "run the server's checks at once and print the results (not counted)"),
    ):
        sub = commands.add_parser(action, help=text)
        sub.add_argument(
            "target",
            nargs="+",
            metavar="[SERVICE] SERVER",
            help="e.g. tcp:10.0.0.1:80 10.0.2.1:80; SERVER alone means every service that has it",
        )
        if action == "drain":
            drain_wait.add_arguments(sub)
    commands.add_parser("reload", help="reread the config (like SIGHUP); a bad config is rejected")
    commands.add_parser("metrics", help="Prometheus metrics")
    return parser


def _socket_path(args: argparse.Namespace) -> str:
    if args.socket:
        return str(args.socket)
    return os.environ.get("HAECS_SOCKET") or SOCKET_TEMPLATE % args.name


def _token(args: argparse.Namespace, client: Any) -> Optional[str]:
    path = args.token_file or os.environ.get("HAECS_TOKEN_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as error:
            raise client.ClientError(
                "cannot read the token file %s: %s" % (path, error.strerror or error)
            ) from None
        if not token:
            raise client.ClientError("the token file %s is empty" % path)
        return token
    return os.environ.get("HAECS_TOKEN") or None


Send = Callable[[str, str], Any]


def _sender(args: argparse.Namespace, client: Any) -> Send:
    """How to reach the monitor: send(method, path) -> client.Reply."""
    url = args.url or os.environ.get("HAECS_URL")
    if not url:
        path = _socket_path(args)
        return lambda method, target: client.request(
            method, target, socket_path=path, timeout=args.timeout
        )
    if args.socket:
        raise client.ClientError("--socket and --url name two monitors: give one")
    listener = client.Listener.from_url(url, args.cacert)
    token = _token(args, client)
    if token is None:
        raise client.ClientError(
            "%s needs the listener's token: --token-file, $HAECS_TOKEN_FILE or $HAECS_TOKEN" % url
        )
    if listener.tls is None and not listener.loopback:
        print(
            "haecsctl: warning: %s is plain http: the token crosses the network in clear text"
            % url,
            file=sys.stderr,
        )
    address = (listener.host, listener.port)
    return lambda method, target: client.request(
        method, target, address=address, token=token, timeout=args.timeout, tls=listener.tls
    )


def _compile_query(expression: str) -> Any:
    """A compiled JMESPath expression; ClientError-free: ValueError with the reason."""
    try:
        import jmespath
        from jmespath.exceptions import JMESPathError
    except ImportError:
        raise ValueError(
            "--query needs the jmespath library (Debian: python3-jmespath; PyPI: jmespath)"
        ) from None
    try:
        return jmespath.compile(expression)
    except JMESPathError as error:
        raise ValueError(
            "--query %r is not a JMESPath expression: %s" % (expression, error)
        ) from None


def ctl_main(argv: Optional[Sequence[str]] = None) -> int:
    args = ctl_parser().parse_args(argv)
    from haecs_monitor.control import client

    if args.query is not None:
        if args.command in ("metrics", "watch"):
            print(
                "haecsctl: --query applies to JSON answers, not to %s" % args.command,
                file=sys.stderr,
            )
            return 2
        try:
            args.query = _compile_query(args.query)
        except ValueError as error:
            print("haecsctl: %s" % error, file=sys.stderr)
            return 2
        args.json = True
    try:
        return _ctl(args, _sender(args, client))
    except client.ClientError as error:
        print("haecsctl: %s" % error, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def _ctl(args: argparse.Namespace, send: Send) -> int:
    command = args.command
    if command == "watch":
        return _watch(args, send)
    if command in ("drain", "disable", "enable", "check-now"):
        if len(args.target) > 2:
            print("haecsctl: %s takes [SERVICE] SERVER" % command, file=sys.stderr)
            return 2
        service, server = args.target if len(args.target) == 2 else ("*", args.target[0])
        if command == "drain":
            problem = drain_wait.options_problem(args)
            if problem:
                print("haecsctl: drain %s" % problem, file=sys.stderr)
                return 2
            if args.wait:
                return drain_wait.drain_and_wait(args, send, service, server)
        action = "check" if command == "check-now" else command
        reply = send("POST", drain_wait.server_path(service, server, action))
    elif command == "reload":
        reply = send("POST", "/reload")
    elif command == "events":
        reply = send("GET", "/events?since=%d&limit=%d" % (args.since, args.limit))
    else:
        reply = send("GET", "/" + command)
    if command == "metrics":
        sys.stdout.write(reply.body.decode("utf-8", "replace"))
        return 0 if reply.status == 200 else 1
    data = reply.json()
    failed = reply.status != 200
    if command == "check-now" and not failed and not data.get("ok"):
        code = 3
    else:
        code = 1 if failed or (command == "reload" and not data.get("ok")) else 0
    if args.json:
        if args.query is not None:
            data = args.query.search(data)
        print(json.dumps(data, indent=2))
        return code
    if failed and command != "reload":
        print("haecsctl: %s" % data.get("error", "HTTP %d" % reply.status), file=sys.stderr)
        return 1
    if command == "status":
        print(format_status(data))
    elif command == "events":
        for line in format_events(data.get("events", [])):
            print(line)
    elif command == "reload":
        return _print_reload(data)
    elif command == "check-now":
        rows = [["CHECK", "RESULT", "SECONDS", "DETAIL"]]
        rows += [
            [c["check"], c["result"], "%.3f" % c["seconds"], c["detail"]] for c in data["checks"]
        ]
        print("%s in %s" % (data["server"], ", ".join(data["services"])))
        for line in table(rows):
            print(line)
    else:
        for change in data.get("changed", []):
            print("%s %s: %s" % (change["service"], change["server"], change["admin"]))
    return code


def _watch(args: argparse.Namespace, send: Send) -> int:
    """Poll /events and print the new ones; --for bounds it (for scripts)."""
    import time

    if args.interval <= 0:
        print("haecsctl: --interval must be above 0", file=sys.stderr)
        return 2
    reply = send("GET", "/events?limit=1")
    if reply.status != 200:
        print("haecsctl: %s" % reply.json().get("error", "HTTP %d" % reply.status), file=sys.stderr)
        return 1
    last = max((int(e["seq"]) for e in reply.json().get("events", [])), default=0)
    stop_at = None if args.duration is None else time.monotonic() + args.duration
    if not args.json:
        print("watching for events after #%d (Ctrl-C to stop)" % last, flush=True)
    while stop_at is None or time.monotonic() < stop_at:
        time.sleep(
            args.interval
            if stop_at is None
            else min(args.interval, max(0.0, stop_at - time.monotonic()))
        )
        reply = send("GET", "/events?since=%d" % last)
        if reply.status != 200:
            print("haecsctl: HTTP %d" % reply.status, file=sys.stderr)
            return 1
        events = reply.json().get("events", [])
        for event in events:
            last = max(last, int(event["seq"]))
            print(json.dumps(event) if args.json else format_events([event])[0], flush=True)
    return 0


def _print_reload(data: Mapping[str, Any]) -> int:
    if not data.get("ok"):
        print("reload rejected, the running configuration is kept:", file=sys.stderr)
        for message in data.get("errors", []):
            print("  %s" % message, file=sys.stderr)
        return 1
    print(data.get("summary", "reload OK"))
    return 0


# ----------------------------------------------------------------- formatting


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns, two spaces apart, no trailing blanks."""
    widths = [
        max(len(row[i]) for row in rows if i < len(row))
        for i in range(max(len(row) for row in rows))
    ]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return lines


def _age(seconds: Optional[float]) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return "%.1fs ago" % seconds
    return "%dm ago" % (seconds // 60)


def format_status(status: Mapping[str, Any]) -> str:
    loop = status.get("loop", {})
    kernel = status.get("kernel", {})
    servers = [rs for svc in status.get("services", []) for rs in svc.get("servers", [])]
    up = sum(1 for rs in servers if rs.get("health") == "up")
    head = (
        "monitor %s: %d services, %d real servers (%d up), loop lag %.1f ms (max %.1f ms), last reconcile %s"
        % (
            status.get("name", "?"),
            len(status.get("services", [])),
            len(servers),
            up,
            1000 * float(loop.get("lag_seconds", 0.0)),
            1000 * float(loop.get("max_lag_seconds", 0.0)),
            _age(kernel.get("last_reconcile_age_seconds")),
        )
    )
    lines = [head]
    if kernel.get("last_error"):
        lines.append("kernel error: %s" % kernel["last_error"])
    rows: list[list[str]] = [["SERVICE", "SERVER", "STATE", "ADMIN", "WEIGHT", "CHECKS"]]
    notes: list[str] = []
    for svc in status.get("services", []):
        if svc.get("below_quorum"):
            notes.append(
                "! %s is below quorum: healthy weight %d, needs %d%s"
                % (
                    svc["id"],
                    svc.get("healthy_weight", 0),
                    svc.get("threshold", 0),
                    "; sorry server in" if svc.get("sorry_active") else "",
                )
            )
        label = svc["id"]
        for rs in svc.get("servers", []):
            weight = "%s/%s" % (
                rs["weight"] if rs.get("in_table") else "-",
                rs.get("configured_weight", "?"),
            )
            checks = "; ".join(
                "%s %s%s%s"
                % (
                    c.get("name", "?"),
                    "up" if c.get("up") else "down",
                    " (%s)" % c["detail"] if c.get("detail") else "",
                    _history(c),
                )
                for c in rs.get("checks", [])
            )
            state = rs.get("health", "?")
            if rs.get("reason") not in (None, "up", "down", "drained", "disabled", state):
                state = "%s, %s" % (state, rs["reason"])
            rows.append([label, rs["id"], state, rs.get("admin", "?"), weight, checks or "-"])
            label = ""
        for sorry in svc.get("sorry_servers", []):
            in_table = sorry.get("in_table")
            weight = "%s/%s" % (sorry["weight"] if in_table else "-", sorry["weight"])
            rows.append(
                [
                    label,
                    sorry["id"],
                    "sorry, in" if in_table else "sorry, standby",
                    "-",
                    weight,
                    "-",
                ]
            )
            label = ""
        if label:
            rows.append([label, "-", "-", "-", "-", "-"])
    for leaver in status.get("leaving", []):
        rows.append(
            [
                leaver["service"],
                leaver["server"],
                "leaving",
                "-",
                "0",
                "removed once drained, at the latest in %.0fs" % leaver["seconds_left"],
            ]
        )
    lines += table(rows) + notes
    return "\n".join(lines)


def _history(check: Mapping[str, Any]) -> str:
    """' [++--- since 12.3s]': the last results (oldest first) and the state's age."""
    parts = []
    if check.get("history"):
        parts.append(str(check["history"]))
    since = check.get("state_since_seconds")
    if since is not None:
        parts.append("since %s" % _age(since).replace(" ago", ""))
    return " [%s]" % " ".join(parts) if parts else ""


def format_events(events: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = []
    for event in events:
        extra = " ".join(
            "%s=%s"
            % (key, value if isinstance(value, str) and " " not in value else json.dumps(value))
            for key, value in event.items()
            if key not in ("ts", "level", "event", "seq")
        )
        lines.append(
            "%s %-7s %s %s"
            % (event.get("ts", ""), str(event.get("level", "")).upper(), event.get("event"), extra)
        )
    return [line.rstrip() for line in lines]
