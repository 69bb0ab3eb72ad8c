"""HTTP and HTTPS check: one GET (or HEAD), judged by status and optionally body.

A deliberately small HTTP/1.1 client on asyncio streams: `Connection: close`,
a bounded head, a body read only when a body rule needs it and never more
than `max_bytes` (Content-Length, chunked, or until the server closes).
The whole exchange, TLS handshake included, keeps to the check's timeout.

Options (read by `_http` below): path, host, method, expect_status
(ranges), body_regex, body_sha256, max_bytes; https adds verify_tls, sni,
ca_file, client_cert, client_key.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import ssl
from functools import lru_cache
from typing import Optional

from haecs_monitor.checks.base import CheckResult, CheckType, down, os_error, timed_out, up, within
from haecs_monitor.config.model import CheckSpec, ParamValue
from haecs_monitor.config.reader import HOSTNAME, Reader, as_list, item, shown
from haecs_monitor.errors import HaecsError

MAX_HEAD_BYTES = 32 * 1024
USER_AGENT = "haecs-monitor"


class ProtocolProblem(HaecsError):
    """The server's answer is not HTTP we can read."""


async def check(spec: CheckSpec, address: str, port: int) -> CheckResult:
    try:
        context = tls_context(spec) if spec.type == "https" else None
    except (OSError, ssl.SSLError, ValueError) as error:
        return down("TLS setup: %s" % error)
    started = asyncio.get_running_loop().time()
    try:
        return await within(_exchange(spec, address, port, context), spec.timing.timeout)
    except asyncio.TimeoutError:
        return timed_out(spec, started)
    except ssl.SSLCertVerificationError as error:
        return down("TLS: certificate verify failed: %s" % (error.verify_message or error.reason))
    except ssl.SSLError as error:
        return down("TLS: %s" % (error.reason or error))
    except OSError as error:
        return os_error("connect", error)
    except (
        ProtocolProblem,
        asyncio.IncompleteReadError,
        asyncio.LimitOverrunError,
        ValueError,
    ) as error:
        return down("bad response: %s" % (str(error) or error.__class__.__name__))


async def _exchange(
    spec: CheckSpec, address: str, port: int, context: Optional[ssl.SSLContext]
) -> CheckResult:
    server_hostname = None
    if context is not None:
        server_hostname = spec.text("sni") or _host_name(spec.text("host")) or address
    reader, writer = await asyncio.open_connection(
        address, port, ssl=context, server_hostname=server_hostname, limit=MAX_HEAD_BYTES
    )
    try:
        writer.write(_request(spec, address, port))
        await writer.drain()
        status, reason, headers = await _read_head(reader)
        if not _status_expected(spec, status):
            return down("status %d %s" % (status, reason))
        if spec.text("body_regex") is None and spec.text("body_sha256") is None:
            return up("status %d" % status)
        body, complete = await _read_body(
            reader, headers, spec.integer("max_bytes", DEFAULT_MAX_BYTES)
        )
        return _judge_body(spec, status, body, complete)
    finally:
        writer.transport.abort()


def _host_name(host: Optional[str]) -> Optional[str]:
    """The name part of a Host option ('example.org:8080' -> 'example.org')."""
    if host is None:
        return None
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _request(spec: CheckSpec, address: str, port: int) -> bytes:
    host = spec.text("host")
    if host is None:
        default_port = 443 if spec.type == "https" else 80
        host = "[%s]" % address if ":" in address else address
        if port != default_port:
            host = "%s:%d" % (host, port)
    lines = [
        "%s %s HTTP/1.1" % (spec.text("method") or "GET", spec.text("path") or "/"),
        "Host: %s" % host,
        "User-Agent: %s" % USER_AGENT,
        "Accept: */*",
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, str, dict[str, str]]:
    status_line = (await reader.readuntil(b"\n")).decode("latin-1").strip()
    parts = status_line.split(" ", 2)
    if (
        len(parts) < 2
        or not parts[0].startswith("HTTP/")
        or not (parts[1].isdigit() and len(parts[1]) == 3)
    ):
        raise ProtocolProblem("not an HTTP status line: %r" % status_line[:80])
    headers: dict[str, str] = {}
    size = len(status_line)
    while True:
        line = (await reader.readuntil(b"\n")).decode("latin-1")
        size += len(line)
        if size > MAX_HEAD_BYTES:
            raise ProtocolProblem("response head larger than %d bytes" % MAX_HEAD_BYTES)
        if line in ("\r\n", "\n"):
            break
        name, _unused, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers


def _status_expected(spec: CheckSpec, status: int) -> bool:
    ranges = spec.param("expect_status", DEFAULT_EXPECT_STATUS)
    if not isinstance(ranges, tuple):
        return False
    for entry in ranges:
        if isinstance(entry, tuple) and len(entry) == 2:
            low, high = entry
            if isinstance(low, int) and isinstance(high, int) and low <= status <= high:
                return True
    return False


async def _read_body(
    reader: asyncio.StreamReader, headers: dict[str, str], limit: int
) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, and whether that is all of it."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader, limit)
    length_text = headers.get("content-length")
    if length_text is not None:
        if not length_text.isdigit():
            raise ProtocolProblem("bad Content-Length: %r" % length_text[:40])
        length = int(length_text)
        body = await reader.readexactly(min(length, limit))
        return body, length <= limit
    body = await reader.read(limit)
    if len(body) < limit:
        return body + await _read_rest(reader, limit - len(body)), True
    return body, await reader.read(1) == b""


async def _read_rest(reader: asyncio.StreamReader, limit: int) -> bytes:
    chunks = []
    while limit > 0:
        chunk = await reader.read(limit)
        if not chunk:
            break
        chunks.append(chunk)
        limit -= len(chunk)
    return b"".join(chunks)


async def _read_chunked(reader: asyncio.StreamReader, limit: int) -> tuple[bytes, bool]:
    body = bytearray()
    while True:
        size_line = (await reader.readuntil(b"\n")).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise ProtocolProblem("bad chunk size: %r" % size_line[:40]) from None
        if size == 0:
            return bytes(body), True
        if len(body) + size > limit:
            body += await reader.readexactly(limit - len(body))
            return bytes(body), False
        body += await reader.readexactly(size)
        await reader.readuntil(b"\n")


def _judge_body(spec: CheckSpec, status: int, body: bytes, complete: bool) -> CheckResult:
    digest = spec.text("body_sha256")
    if digest is not None:
        if not complete:
            return down("body larger than max_bytes (%d): cannot check its digest" % len(body))
        actual = hashlib.sha256(body).hexdigest()
        if actual != digest:
            return down("status %d, body sha256 %s... differs" % (status, actual[:12]))
    pattern = spec.text("body_regex")
    if pattern is not None and re.search(pattern, body.decode("utf-8", "replace")) is None:
        return down("status %d, body does not match %r" % (status, pattern[:60]))
    return up("status %d, body ok" % status)


def tls_context(spec: CheckSpec) -> ssl.SSLContext:
    """A TLS client context for the spec's options (cached: building one is costly)."""
    files = [spec.text(name) for name in ("ca_file", "client_cert", "client_key")]
    stamps = tuple(_mtime(path) for path in files)
    return _cached_context(spec.flag("verify_tls", True), files[0], files[1], files[2], stamps)


def _mtime(path: Optional[str]) -> float:
    if path is None:
        return 0.0
    try:
        return os.stat(path).st_mtime
    except OSError:
        return -1.0


@lru_cache(maxsize=64)
def _cached_context(
    verify: bool,
    ca_file: Optional[str],
    client_cert: Optional[str],
    client_key: Optional[str],
    stamps: tuple[float, ...],
) -> ssl.SSLContext:
    # `stamps` (file modification times) is part of the cache key: a renewed
    # certificate or CA file gives a fresh context.
    context = ssl.create_default_context(cafile=ca_file) if verify else ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client_cert is not None:
        context.load_cert_chain(client_cert, client_key)
    return context


# ---------------------------------------------------------------- options


_HTTP_KEYS = ("path", "host", "method", "expect_status", "body_regex", "body_sha256", "max_bytes")


_TLS_KEYS = ("verify_tls", "sni", "ca_file", "client_cert", "client_key")


HTTP_METHODS = ("GET", "HEAD")


DEFAULT_EXPECT_STATUS = ((200, 399),)


DEFAULT_MAX_BYTES = 65536


MAX_MAX_BYTES = 16 * 1024 * 1024


_TOKEN = re.compile(r"[\x21-\x7e]+")


_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


_STATUS_RANGE = re.compile(r"\s*([0-9]{3})\s*(?:-\s*([0-9]{3})\s*)?")


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
    sni = reader.text("sni", HOSTNAME, "must be a host name")
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


def _detail(spec: CheckSpec) -> str:
    return spec.text("path") or "/"


HTTP = CheckType("http", _HTTP_KEYS, _http, check, _detail)
HTTPS = CheckType("https", _HTTP_KEYS + _TLS_KEYS, _https, check, _detail)
