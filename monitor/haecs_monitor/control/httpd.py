"""A small HTTP/1.1 server on asyncio streams (no dependency).

Just enough for a control API: one request per connection (the response
says ``Connection: close``), a bounded header block, a bounded body given by
Content-Length (no chunked uploads).  The handler is a coroutine taking a
`Request` and returning a `Response`.

Parsing follows RFC 9112 strictly and answers what it will not take with a
4xx at once: lines end in CRLF (a bare LF is refused, not waited on), the
method and header names are tokens, no obsolete line folding, one
Content-Length of ASCII digits only, no Transfer-Encoding, HTTP/1.0 or 1.1.
Why our own and not aiohttp: a director gets the monitor with the
distribution's Python and no extra package for its control plane; the API
needs one request per connection, and the rules above fit in this file
(a hypothesis test feeds the parser arbitrary bytes).
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, unquote, urlsplit

from haecs_monitor.errors import HaecsError

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
READ_TIMEOUT = 10.0  # the whole request
HEAD_TIMEOUT = 5.0  # the request head: a slow or idle client is cut off here
# Connections served at once per listener; more are answered 503 and closed
# soon, so a flood of idle connections cannot take the descriptors the
# health checks need.
MAX_CONNECTIONS = 64
# A refused client's request is usually unread when the 503 goes out, and a
# close with unread data answers with a reset, which can reach the client
# before it has read the 503.  So a refused connection is read and dropped
# until the client's end of file, for at most this long (nginx's lingering
# close), up to MAX_CONNECTIONS at once per listener; beyond that it is
# closed at once.
LINGER_SECONDS = 1.0

REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    413: "Payload Too Large",
    414: "URI Too Long",
    422: "Unprocessable Entity",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

# RFC 9110 5.6.2: token = 1*tchar
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_DIGITS = re.compile(r"[0-9]+\Z")
# Field values: visible ASCII and Latin-1, spaces and tabs; no CR, LF or NUL.
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*\Z")
# Headers a request may carry once only (RFC 9110/9112).
_SINGLE = frozenset({"content-length", "host", "authorization", "content-type"})
# Sent with every answer; the dashboard adds its Content-Security-Policy.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class BadRequest(HaecsError):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


@dataclass
class Request:
    method: str
    target: str
    path: str  # decoded path
    segments: list[str]  # decoded path segments, empty ones dropped
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    transport: str = "unix"  # unix | tcp

    def query_value(self, name: str, default: Optional[str] = None) -> Optional[str]:
        values = self.query.get(name)
        return values[-1] if values else default


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Response:
        text = json.dumps(data, indent=1, sort_keys=False, default=str) + "\n"
        return cls(status, text.encode("utf-8"))

    @classmethod
    def error(
        cls, status: int, message: str, headers: Optional[Mapping[str, str]] = None
    ) -> Response:
        response = cls.json({"error": message, "status": status}, status)
        response.headers.update(headers or {})
        return response

    @classmethod
    def text(
        cls, text: str, content_type: str = "text/plain; charset=utf-8", status: int = 200
    ) -> Response:
        return cls(status, text.encode("utf-8"), content_type)

    def encode(self, head_only: bool = False) -> bytes:
        """The response; `head_only` for HEAD: the same head, no body."""
        head = ["HTTP/1.1 %d %s" % (self.status, REASONS.get(self.status, "Unknown"))]
        headers = {
            "Content-Type": self.content_type,
            "Content-Length": str(len(self.body)),
            "Cache-Control": "no-store",
            "Connection": "close",
            **SECURITY_HEADERS,
        }
        headers.update(self.headers)
        head += ["%s: %s" % item for item in headers.items()]
        encoded = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        return encoded if head_only else encoded + self.body


Handler = Callable[[Request], Awaitable[Response]]


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """Request line and headers of a request head (CRLF lines, without the blank line)."""
    text = head.decode("latin-1")  # decodes any byte
    lines = text.split("\r\n")
    if any("\n" in line or "\r" in line for line in lines):
        raise BadRequest(400, "lines must end with CRLF (a bare CR or LF is not accepted)")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    if not _TOKEN.match(method) or not method.isalpha() or not method.isupper():
        raise BadRequest(400, "malformed method")  # every method we know is upper-case letters
    if not re.match(r"HTTP/[0-9]\.[0-9]\Z", version):
        raise BadRequest(400, "malformed HTTP version")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest(505, "only HTTP/1.1 and HTTP/1.0 are served")
    if not target.startswith("/") or not _FIELD_VALUE.match(target) or "\t" in target:
        raise BadRequest(400, "the request target must be a path")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":
            raise BadRequest(400, "obsolete line folding is not accepted")
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.match(name):
            raise BadRequest(400, "malformed header line")
        if not _FIELD_VALUE.match(value):
            raise BadRequest(400, "header %s has a control character in its value" % name)
        key = name.lower()
        if key in headers and key in _SINGLE:
            raise BadRequest(400, "header %s given more than once" % name)
        headers[key] = value.strip(" \t")
    return method, target, headers


def build_request(
    method: str, target: str, headers: dict[str, str], body: bytes, transport: str
) -> Request:
    split = urlsplit(target)
    segments = [unquote(part) for part in split.path.split("/") if part]
    return Request(
        method=method,
        target=target,
        path=unquote(split.path),
        segments=segments,
        query=parse_qs(split.query),
        headers=headers,
        body=body,
        transport=transport,
    )


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """The request head up to its blank line (excluded), read line by line
    so that a bare LF is refused at once rather than waited on."""
    lines: list[bytes] = []
    size = 0
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise BadRequest(431, "request head too large") from None
        except asyncio.IncompleteReadError:
            raise BadRequest(400, "incomplete request") from None
        size += len(line)
        if size > MAX_HEAD:
            raise BadRequest(431, "request head too large")
        if not line.endswith(b"\r\n"):
            raise BadRequest(400, "lines must end with CRLF (a bare LF is not accepted)")
        if line == b"\r\n":
            if not lines:
                continue  # RFC 9112 2.2: an empty line before the request line is ignored
            return b"".join(lines)[:-2]
        lines.append(line)


async def read_request(
    reader: asyncio.StreamReader, transport: str, head_timeout: float = HEAD_TIMEOUT
) -> Request:
    try:
        head = await asyncio.wait_for(read_head(reader), head_timeout)
    except asyncio.TimeoutError:
        raise BadRequest(408, "request head not received within %gs" % head_timeout) from None
    method, target, headers = parse_head(head)
    if "transfer-encoding" in headers:
        raise BadRequest(501, "transfer-encoding is not supported; send Content-Length")
    body = b""
    length_text = headers.get("content-length")
    if length_text is not None:
        if not _DIGITS.match(length_text):
            raise BadRequest(400, "Content-Length must be ASCII digits")
        length = int(length_text)
        if length > MAX_BODY:
            raise BadRequest(413, "body larger than %d bytes" % MAX_BODY)
        try:
            body = await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            raise BadRequest(400, "incomplete body") from None
    return build_request(method, target, headers, body, transport)


def query_integer(request: Request, name: str, default: int, low: int = 0) -> int:
    """An ASCII-digit query parameter >= low; BadRequest naming it otherwise."""
    text = request.query_value(name)
    if text is None or text == "":
        return default
    if not _DIGITS.match(text) or int(text) < low:
        raise BadRequest(400, "%s must be an integer of at least %d, got %r" % (name, low, text))
    return int(text)


class Server:
    """Serve `handler` on a unix socket path or a TCP address."""

    def __init__(
        self,
        handler: Handler,
        on_error: Optional[Callable[[str], None]] = None,
        max_connections: int = MAX_CONNECTIONS,
        head_timeout: float = HEAD_TIMEOUT,
    ) -> None:
        self._handler = handler
        self._on_error = on_error
        self._servers: list[asyncio.base_events.Server] = []
        self.max_connections = max_connections
        self.head_timeout = head_timeout
        self.active: dict[str, int] = {}  # connections being served, by listener
        self.refused: dict[str, int] = {}  # connections refused for the cap, by listener
        self.lingering: dict[str, int] = {}  # refused ones read until their end, by listener

    @property
    def descriptors(self) -> int:
        """Connections a listener holds at most: served and lingering."""
        return 2 * self.max_connections

    async def serve_unix(self, path: str) -> None:
        server = await asyncio.start_unix_server(
            lambda r, w: self._connection(r, w, "unix"), path=path, limit=MAX_HEAD
        )
        self._servers.append(server)

    async def serve_tcp(self, host: str, port: int, tls: Optional[ssl.SSLContext] = None) -> None:
        server = await asyncio.start_server(
            lambda r, w: self._connection(r, w, "tcp"),
            host,
            port,
            limit=MAX_HEAD,
            ssl=tls,
            ssl_handshake_timeout=HEAD_TIMEOUT if tls else None,
        )
        self._servers.append(server)

    def sockets(self) -> list[Any]:
        return [sock for server in self._servers for sock in server.sockets]

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 2.0)
            except asyncio.TimeoutError:
                pass
        self._servers = []

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, transport: str
    ) -> None:
        if self.active.get(transport, 0) >= self.max_connections:
            self.refused[transport] = self.refused.get(transport, 0) + 1
            await self._refuse(reader, writer, transport)
            return
        self.active[transport] = self.active.get(transport, 0) + 1
        try:
            await self._serve(reader, writer, transport)
        finally:
            self.active[transport] -= 1

    async def _refuse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, transport: str
    ) -> None:
        writer.write(Response.error(503, "too many connections; try again").encode())
        if self.lingering.get(transport, 0) >= self.max_connections:
            writer.close()
            return
        self.lingering[transport] = self.lingering.get(transport, 0) + 1
        try:
            if writer.can_write_eof():
                writer.write_eof()
            await asyncio.wait_for(_read_to_end(reader), LINGER_SECONDS)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            pass
        finally:
            self.lingering[transport] -= 1
            writer.close()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, transport: str
    ) -> None:
        request: Optional[Request] = None
        try:
            try:
                request = await asyncio.wait_for(
                    read_request(reader, transport, self.head_timeout), READ_TIMEOUT
                )
            except BadRequest as error:
                response = Response.error(error.status, str(error))
            except asyncio.TimeoutError:
                response = Response.error(408, "request not received within %gs" % READ_TIMEOUT)
            else:
                try:
                    response = await self._handler(request)
                except BadRequest as error:
                    response = Response.error(error.status, str(error))
                except Exception as error:
                    if self._on_error is not None:
                        self._on_error("%s: %s" % (type(error).__name__, error))
                    response = Response.error(500, "internal error (see the monitor's log)")
            head_only = request is not None and request.method == "HEAD"
            writer.write(response.encode(head_only))
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass


async def _read_to_end(reader: asyncio.StreamReader) -> None:
    """Read and drop what the client sends, until its end of file."""
    while await reader.read(MAX_HEAD):
        pass
