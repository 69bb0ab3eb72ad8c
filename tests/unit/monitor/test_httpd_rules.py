"""The HTTP server's request rules (RFC 9112), on a real unix socket, and a
hypothesis run of the head parser over arbitrary bytes."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from haecs_monitor.config.load import ConfigError, parse_config
from haecs_monitor.control import dashboard
from haecs_monitor.control.api import ApiError, tls_context
from haecs_monitor.control.httpd import BadRequest, Request, Response, Server, parse_head
from hypothesis import given, settings
from hypothesis import strategies as st


async def _echo(request: Request) -> Response:
    return Response.json({"method": request.method, "length": len(request.body)})


def exchange(tmp_path: Any, data: bytes, head_timeout: float = 2.0) -> bytes:
    """Send `data` to a fresh server, return all it answers."""
    path = str(tmp_path / "h.sock")

    async def main() -> bytes:
        server = Server(_echo, head_timeout=head_timeout)
        await server.serve_unix(path)
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(None, _talk, path, data)
        await server.close()
        return answer

    return asyncio.run(main())


def _talk(path: str, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize(
    ("request_bytes", "status", "says"),
    [
        # A Unicode digit is not a Content-Length (str.isdigit() says it is).
        ("POST / HTTP/1.1\r\nContent-Length: \u00b2\r\n\r\n".encode("latin-1"), 400, b"ASCII"),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400, b"once"),
        (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, b"ASCII"),
        (b"POST / HTTP/1.1\r\nContent-Length: 1_0\r\n\r\n", 400, b"ASCII"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, b"once"),
        # A bare LF is refused at once, not waited on until a timeout.
        (b"GET / HTTP/1.1\nHost: a\n\n", 400, b"CRLF"),
        (b"GET / HTTP/1.1\r\nHost: a\n\r\n", 400, b"CRLF"),
        (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400, b"CR"),
        (b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400, b"folding"),
        (b"GET / HTTP/1.1\r\nBad Name: a\r\n\r\n", 400, b"header"),
        (b"GET / HTTP/1.1\r\nX\x00: a\r\n\r\n", 400, b"header"),
        (b"GET / HTTP/2.0\r\n\r\n", 505, b"HTTP/1.1"),
        (b"GET / HTTX/1.1\r\n\r\n", 400, b"version"),
        (b"G(T / HTTP/1.1\r\n\r\n", 400, b"method"),
        (b"GET http://x/ HTTP/1.1\r\n\r\n", 400, b"path"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501, b"Content-Length"),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431, b"too large"),
    ],
)
def test_bad_requests_get_a_4xx_at_once(
    tmp_path: Any, request_bytes: bytes, status: int, says: bytes
) -> None:
    answer = exchange(tmp_path, request_bytes)
    assert status_of(answer) == status, answer
    assert says in answer, answer


def test_good_request_with_body_and_a_leading_empty_line(tmp_path: Any) -> None:
    answer = exchange(tmp_path, b"\r\nPOST /x HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc")
    assert status_of(answer) == 200 and b'"length": 3' in answer


def test_head_gets_the_get_headers_without_a_body(tmp_path: Any) -> None:
    get = exchange(tmp_path, b"GET / HTTP/1.1\r\n\r\n")
    head = exchange(tmp_path, b"HEAD / HTTP/1.1\r\n\r\n")
    _get_head, _unused, get_body = get.partition(b"\r\n\r\n")
    head_head, _unused, head_body = head.partition(b"\r\n\r\n")
    assert head_body == b"" and get_body
    length = [line for line in head_head.split(b"\r\n") if line.startswith(b"Content-Length")]
    # The echo handler saw HEAD (not GET): compare the length it would send.
    assert length and int(length[0].split(b":")[1]) == len(get_body.replace(b"GET", b"HEAD"))


def test_every_answer_has_the_security_headers(tmp_path: Any) -> None:
    answer = exchange(tmp_path, b"GET / HTTP/1.1\r\n\r\n")
    for header in (
        b"X-Content-Type-Options: nosniff",
        b"X-Frame-Options: DENY",
        b"Referrer-Policy: no-referrer",
    ):
        assert header in answer


def test_the_dashboard_policy_allows_only_its_own_inline_code() -> None:
    policy = dashboard.CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and policy.count("'sha256-") == 2


def test_a_slow_head_gets_408(tmp_path: Any) -> None:
    answer = exchange(tmp_path, b"GET / HTTP/1.1\r\n", head_timeout=0.3)
    assert status_of(answer) == 408
    # The head timeout answered, not the whole-request one (10 s).
    assert b"request head not received within 0.3s" in answer


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_the_head_parser_takes_any_bytes(head: bytes) -> None:
    """Only BadRequest or a parsed head, whatever the bytes."""
    try:
        method, target, headers = parse_head(head)
    except BadRequest as error:
        assert 400 <= error.status < 600
        return
    assert target.startswith("/") and method
    assert all(name == name.lower() for name in headers)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,15}", fullmatch=True),
            st.from_regex(r"[ -~]{0,30}", fullmatch=True),
        ),
        max_size=8,
    )
)
def test_well_formed_heads_parse_back(fields: list[tuple[str, str]]) -> None:
    lines = ["GET /status?x=1 HTTP/1.1"] + ["%s: %s" % field for field in fields]
    seen = {}
    duplicate_single = False
    for name, _value in fields:
        key = name.lower()
        if key in seen and key in ("content-length", "host", "authorization", "content-type"):
            duplicate_single = True
        seen[key] = True
    try:
        method, target, headers = parse_head("\r\n".join(lines).encode("latin-1"))
    except BadRequest:
        assert duplicate_single
        return
    assert (method, target) == ("GET", "/status?x=1")
    for name, _value in fields:
        assert name.lower() in headers
    if fields:
        assert headers[fields[-1][0].lower()] == fields[-1][1].strip(" \t")


def test_tls_needs_both_files() -> None:
    for given_key in ("tls_cert", "tls_key"):
        listen = {"address": "127.0.0.1", "port": 9180, "token_file": "/t", given_key: "/x.pem"}
        with pytest.raises(ConfigError) as raised:
            parse_config({"global": {"listen": listen}, "services": []})
        other = "tls_key" if given_key == "tls_cert" else "tls_cert"
        assert "global.listen.%s: is required when %s is given" % (other, given_key) in str(
            raised.value
        )


def test_tls_listener_serves_https(tmp_path: Any) -> None:
    import ssl
    import urllib.request

    from checkhelp import self_signed_cert

    cert, key = self_signed_cert(tmp_path)
    with pytest.raises(ApiError, match="cannot load the TLS certificate"):
        tls_context(cert, str(tmp_path / "missing.pem"))

    async def main() -> tuple[int, bytes, str]:
        server = Server(_echo)
        await server.serve_tcp("127.0.0.1", 0, tls_context(cert, key))
        port = server.sockets()[0].getsockname()[1]
        client = ssl.create_default_context(cafile=cert)

        def fetch() -> tuple[int, bytes, str]:
            with urllib.request.urlopen(
                "https://127.0.0.1:%d/" % port, context=client, timeout=10
            ) as reply:
                return reply.status, reply.read(), reply.headers["X-Frame-Options"]

        result = await asyncio.get_running_loop().run_in_executor(None, fetch)
        await server.close()
        return result

    status, body, frame = asyncio.run(main())
    assert status == 200 and b'"method": "GET"' in body and frame == "DENY"
