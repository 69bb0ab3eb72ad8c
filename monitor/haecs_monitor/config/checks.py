"""The `checks:` and `check_defaults:` parts of the configuration.

A check is read once where it is written (a service's `checks` or a real
server's) into a `CheckTemplate`: its type options validated and normalised,
its own timing keys kept aside.  Each real server then resolves the template
into a `CheckSpec`: timing from the cascade global -> service -> real server
-> the check itself, and the target (the real server unless the check names
another address/port).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Optional

import dns.exception
import dns.name
import dns.rdatatype

from haecs_monitor.config.model import TIMING_KEYS, CheckSpec, CheckTiming, Params, ParamValue
from haecs_monitor.config.reader import (
    Problems,
    Reader,
    as_list,
    as_mapping,
    item,
    join,
    parse_address,
    shown,
)

CHECK_TYPES = ("tcp", "http", "https", "smtp", "dns", "script")

_HTTP_KEYS = ("path", "host", "method", "expect_status", "body_regex", "body_sha256", "max_bytes")
_TLS_KEYS = ("verify_tls", "sni", "ca_file", "client_cert", "client_key")
TYPE_KEYS: Mapping[str, tuple[str, ...]] = {
    "tcp": (),
    "http": _HTTP_KEYS,
    "https": _HTTP_KEYS + _TLS_KEYS,
    "smtp": ("helo",),
    "dns": ("query", "qtype", "protocol", "expect"),
    "script": ("command", "env", "user"),
}
COMMON_KEYS = ("type", *TIMING_KEYS, "address", "port")

HTTP_METHODS = ("GET", "HEAD")
DEFAULT_EXPECT_STATUS = ((200, 399),)
DEFAULT_MAX_BYTES = 65536
MAX_MAX_BYTES = 16 * 1024 * 1024
MAX_SECONDS = 86400.0
MAX_COUNT = 1000

# Header values and the request path go on the wire verbatim: no spaces or
# control characters (no header injection through the config).
_TOKEN = re.compile(r"[\x21-\x7e]+")
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})?")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STATUS_RANGE = re.compile(r"\s*([0-9]{3})\s*(?:-\s*([0-9]{3})\s*)?")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class CheckTemplate:
    """A check as written, validated; not yet bound to a real server."""

    type: str
    path: str  # where it is written, for error messages
    timing: Mapping[str, float]  # the check's own timing keys
    address: Optional[str]  # target override
    port: Optional[int]
    params: Params


def parse_timing(reader: Reader) -> dict[str, float]:
    """The timing keys set in one mapping (check_defaults or a check)."""
    found: dict[str, float] = {}
    for name in ("interval", "timeout", "fast_interval", "down_interval"):
        value = reader.number(name, 0.0, MAX_SECONDS, above_low=True)
        if value is not None:
            found[name] = value
    for name in ("rise", "fall"):
        count = reader.integer(name, 1, MAX_COUNT)
        if count is not None:
            found[name] = count
    jitter = reader.number("jitter", 0.0, 0.9)
    if jitter is not None:
        found["jitter"] = jitter
    return found


def timing_rule(timing: CheckTiming) -> Optional[str]:
    """The relation between timing values that must hold, or None when it does."""
    if timing.timeout >= timing.interval:
        return "must be less than interval (%g), got %g" % (timing.interval, timing.timeout)
    return None


def apply_timing(parent: CheckTiming, overrides: Mapping[str, float]) -> CheckTiming:
    values = dict(overrides)
    for name in ("rise", "fall"):
        if name in values:
            values[name] = int(values[name])
    return replace(parent, **values)  # type: ignore[arg-type]


def parse_check_defaults(
    raw: object, path: str, parent: CheckTiming, parent_ok: bool, problems: Problems
) -> tuple[CheckTiming, bool]:
    """A `check_defaults` mapping on top of `parent`; the flag says whether the
    result is consistent (a conflict is reported where it first appears)."""
    if raw is None:
        return parent, parent_ok
    data = as_mapping(raw, path, problems)
    if data is None:
        return parent, parent_ok
    reader = Reader(data, path, problems)
    reader.reject_unknown(TIMING_KEYS, "check_defaults")
    timing = apply_timing(parent, parse_timing(reader))
    rule = timing_rule(timing)
    if rule is None:
        return timing, True
    if parent_ok:
        problems.add(join(path, "timeout"), rule)
    return timing, False


def parse_check(
    raw: object, path: str, script_user: str, problems: Problems
) -> Optional[CheckTemplate]:
    data = as_mapping(raw, path, problems)
    if data is None:
        return None
    reader = Reader(data, path, problems)
    if not reader.require("type"):
        reader.reject_unknown(COMMON_KEYS)
        return None
    check_type = reader.choice("type", CHECK_TYPES)
    if check_type is None:
        return None
    before = len(problems.messages)
    reader.reject_unknown(COMMON_KEYS + TYPE_KEYS[check_type], "a %s check" % check_type)
    timing = parse_timing(reader)
    address = reader.address("address")
    port = reader.integer("port", 1, 65535)
    params = _PARSERS[check_type](reader, script_user)
    if len(problems.messages) > before:
        return None
    return CheckTemplate(check_type, path, timing, address, port, tuple(sorted(params.items())))


def resolve_check(
    template: CheckTemplate,
    defaults: CheckTiming,
    defaults_ok: bool,
    target: tuple[str, int],
    problems: Problems,
) -> Optional[CheckSpec]:
    """The template bound to one real server (`target` is its address and port)."""
    timing = apply_timing(defaults, template.timing)
    rule = timing_rule(timing)
    if rule is not None:
        if defaults_ok or template.timing.keys() & {"interval", "timeout"}:
            problems.add(join(template.path, "timeout"), rule)
        return None
    address = template.address or target[0]
    port = template.port if template.port is not None else target[1]
    if port == 0 and template.type != "script":
        problems.add(
            join(template.path, "port"),
            "is required: the real server's port is 0 (a fwmark or all-ports service)",
        )
        return None
    return CheckSpec(
        type=template.type,
        interval=timing.interval,
        timeout=timing.timeout,
        rise=timing.rise,
        fall=timing.fall,
        fast_interval=timing.fast_interval,
        down_interval=timing.down_interval,
        jitter=timing.jitter,
        address=address,
        port=port,
        params=template.params,
    )


# ---------------------------------------------------------------- type options


def _tcp(reader: Reader, script_user: str) -> dict[str, ParamValue]:
    return {}


def _http(reader: Reader, script_user: str) -> dict[str, ParamValue]:
    params: dict[str, ParamValue] = {
        "path": "/",
        "method": "GET",
        "expect_status": DEFAULT_EXPECT_STATUS,
        "max_bytes": DEFAULT_MAX_BYTES,
    }
    path = reader.text("path", _TOKEN, "must be a URL path without spaces or control characters")
    if path is not None:
        if path.startswith("/"):
            params["path"] = path
        else:
            reader.fail("path", "must start with /, got %s" % shown(path))
    host = reader.text("host", _TOKEN, "must be a host name (optionally :port) without spaces")
    if host is not None:
        params["host"] = host
    method = reader.choice("method", HTTP_METHODS)
    if method is not None:
        params["method"] = method
    statuses = _expect_status(reader)
    if statuses is not None:
        params["expect_status"] = statuses
    regex = reader.text("body_regex")
    if regex is not None:
        try:
            re.compile(regex)
            params["body_regex"] = regex
        except (re.error, OverflowError, RecursionError, ValueError) as error:
            reader.fail("body_regex", "is not a valid regular expression: %s" % error)
    digest = reader.text("body_sha256", _SHA256, "must be 64 hexadecimal digits")
    if digest is not None:
        params["body_sha256"] = digest.lower()
    max_bytes = reader.integer("max_bytes", 1, MAX_MAX_BYTES)
    if max_bytes is not None:
        params["max_bytes"] = max_bytes
    if params["method"] == "HEAD":
        for name in ("body_regex", "body_sha256"):
            if reader.has(name):
                reader.fail(name, "needs method GET (a HEAD response has no body)")
    return params


def _https(reader: Reader, script_user: str) -> dict[str, ParamValue]:
    params = _http(reader, script_user)
    verify = reader.flag("verify_tls")
    params["verify_tls"] = True if verify is None else verify
    sni = reader.text("sni", _HOSTNAME, "must be a host name")
    if sni is not None:
        params["sni"] = sni
    for name in ("ca_file", "client_cert", "client_key"):
        value = reader.path_option(name)
        if value is not None:
            params[name] = value
    if reader.has("client_key") and not reader.has("client_cert"):
        reader.fail("client_key", "needs client_cert")
    if reader.has("ca_file") and verify is False:
        reader.fail("ca_file", "has no effect with verify_tls false")
    return params


def _expect_status(reader: Reader) -> Optional[tuple[ParamValue, ...]]:
    raw = reader.data.get("expect_status")
    if raw is None:
        return None
    if isinstance(raw, (int, str)) and not isinstance(raw, bool):
        raw = [raw]
    entries = as_list(raw, reader.at("expect_status"), reader.problems)
    if entries is None:
        return None
    if not entries:
        reader.fail("expect_status", "must list at least one status code or range")
        return None
    ranges: list[ParamValue] = []
    for index, entry in enumerate(entries):
        low_high = _status_range(entry)
        if low_high is None:
            reader.problems.add(
                item(reader.at("expect_status"), index),
                'must be a status code (100-599) or a range such as "200-299", got %s'
                % shown(entry),
            )
            continue
        ranges.append(low_high)
    return tuple(ranges)


def _status_range(entry: object) -> Optional[tuple[int, int]]:
    if isinstance(entry, int) and not isinstance(entry, bool):
        low = high = entry
    elif isinstance(entry, str):
        match = _STATUS_RANGE.fullmatch(entry)
        if match is None:
            return None
        low = int(match.group(1))
        high = int(match.group(2) or match.group(1))
    else:
        return None
    if not 100 <= low <= high <= 599:
        return None
    return (low, high)


def _smtp(reader: Reader, script_user: str) -> dict[str, ParamValue]:
    params: dict[str, ParamValue] = {}
    helo = reader.text("helo", _HOSTNAME, "must be a host name")
    if helo is not None:
        params["helo"] = helo
    return params


def _dns(reader: Reader, script_user: str) -> dict[str, ParamValue]:
    params: dict[str, ParamValue] = {"qtype": "A", "protocol": "udp"}
    if reader.require("query"):
        query = reader.text("query")
        if query is not None:
            try:
                params["query"] = dns.name.from_text(query).to_text()
            except (dns.exception.DNSException, ValueError, UnicodeError) as error:
                reader.fail("query", "is not a valid DNS name: %s" % error)
    qtype_text = reader.text("qtype")
    if qtype_text is not None:
        try:
            params["qtype"] = dns.rdatatype.to_text(dns.rdatatype.from_text(qtype_text.upper()))
        except (dns.exception.DNSException, ValueError, UnicodeError):
            reader.fail(
                "qtype", "is not a DNS record type (A, AAAA, MX, ...), got %s" % shown(qtype_text)
            )
    protocol = reader.choice("protocol", ("udp", "tcp"))
    if protocol is not None:
        params["protocol"] = protocol
    expect = _expect_answers(reader, str(params["qtype"]))
    if expect is not None:
        params["expect"] = expect
    return params


def _expect_answers(reader: Reader, qtype: str) -> Optional[tuple[ParamValue, ...]]:
    raw = reader.data.get("expect")
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = [raw]
    entries = as_list(raw, reader.at("expect"), reader.problems)
    if entries is None:
        return None
    answers: list[str] = []
    for index, entry in enumerate(entries):
        path = item(reader.at("expect"), index)
        if not isinstance(entry, str) or not entry.strip():
            reader.problems.add(path, "must be a non-empty string, got %s" % shown(entry))
            continue
        if qtype in ("A", "AAAA"):
            address = parse_address(entry, path, reader.problems, allow_unspecified=True)
            if address is not None:
                answers.append(address)
        else:
            answers.append(normalize_answer(entry))
    if not answers:
        reader.fail("expect", "must list at least one answer (omit it to accept any answer)")
        return None
    return tuple(sorted(set(answers)))


def normalize_answer(text: str) -> str:
    """How answers are compared: case-insensitive, without the final dot."""
    return " ".join(text.split()).lower().rstrip(".")


def _script(reader: Reader, script_user: str) -> dict[str, ParamValue]:
    params: dict[str, ParamValue] = {"user": script_user}
    if reader.require("command"):
        command = reader.command("command")
        if command is not None:
            params["command"] = command
    env = _environment(reader)
    if env:
        params["env"] = env
    user = reader.text("user", _USER, "must be a user name")
    if user is not None:
        params["user"] = user
    return params


def _environment(reader: Reader) -> tuple[ParamValue, ...]:
    data = reader.mapping("env")
    if data is None:
        return ()
    pairs: list[ParamValue] = []
    for name, value in sorted(data.items()):
        path = join(reader.at("env"), name)
        if not _ENV_NAME.fullmatch(name):
            reader.problems.add(path, "is not a valid environment variable name")
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            # never show the value: it may be a secret
            reader.problems.add(path, "must be a string (or a number)")
            continue
        try:
            text = value if isinstance(value, str) else str(value)
        except ValueError:  # an integer too long to print
            reader.problems.add(path, "must be a string (or a number)")
            continue
        if "\0" in text:
            reader.problems.add(path, "must not contain a NUL character")
            continue
        pairs.append((name, text))
    return tuple(pairs)


_PARSERS = {
    "tcp": _tcp,
    "http": _http,
    "https": _https,
    "smtp": _smtp,
    "dns": _dns,
    "script": _script,
}
