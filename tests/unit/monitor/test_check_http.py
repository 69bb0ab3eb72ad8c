"""The http/https check against tiny asyncio servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import ssl
import subprocess
from typing import Any, Optional

import pytest
from checkhelp import free_port, probe, run, serve, spec
from haecs_monitor.checks import CHECKS, CheckResult
from haecs_monitor.checks.http import _host_name, _status_expected

OK_BODY = b"status: ok\n"


def responder(raw: bytes, seen: Optional[list[bytes]] = None) -> Any:
    """A handler that reads the request head and answers `raw` verbatim."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if seen is not None:
            seen.append(head)
        writer.write(raw)
        await writer.drain()
        writer.close()

    return handle


def response(status: str = "200 OK", body: bytes = OK_BODY, headers: str = "") -> bytes:
    head = "HTTP/1.1 %s\r\nContent-Length: %d\r\n%s\r\n" % (status, len(body), headers)
    return head.encode() + body


def http(port: int, **params: Any) -> Any:
    params.setdefault("path", "/")
    params.setdefault("method", "GET")
    params.setdefault("expect_status", ((200, 399),))
    params.setdefault("max_bytes", 65536)
    return spec("http", port, **params)


def test_status_in_range_is_up_and_request_is_well_formed() -> None:
    seen: list[bytes] = []
    result = serve(responder(response(), seen), lambda port: http(port, path="/health"))
    assert result.up and result.detail == "status 200"
    request = seen[0].decode()
    assert request.startswith("GET /health HTTP/1.1\r\n")
    assert "\r\nHost: 127.0.0.1:" in request
    assert "\r\nConnection: close\r\n" in request


def test_host_header_option() -> None:
    seen: list[bytes] = []
    serve(responder(response(), seen), lambda port: http(port, host="www.example.org"))
    assert b"\r\nHost: www.example.org\r\n" in seen[0]


def test_status_out_of_range_is_down() -> None:
    result = serve(responder(response("503 Service Unavailable")), http)
    assert not result.up and result.detail == "status 503 Service Unavailable"


def test_status_ranges() -> None:
    check = http(80, expect_status=((200, 204), (301, 301)))
    assert _status_expected(check, 204) and _status_expected(check, 301)
    assert not _status_expected(check, 302) and not _status_expected(check, 500)


def test_body_regex() -> None:
    assert serve(responder(response()), lambda port: http(port, body_regex="status: ok")).up
    result = serve(
        responder(response(body=b"status: degraded")),
        lambda port: http(port, body_regex="^status: ok"),
    )
    assert not result.up and "does not match" in result.detail


def test_body_digest() -> None:
    digest = hashlib.sha256(OK_BODY).hexdigest()
    assert serve(responder(response()), lambda port: http(port, body_sha256=digest)).up
    result = serve(responder(response(body=b"other")), lambda port: http(port, body_sha256=digest))
    assert not result.up and "sha256" in result.detail


def test_body_digest_of_a_too_large_body_is_down() -> None:
    body = b"x" * 100
    digest = hashlib.sha256(body).hexdigest()
    result = serve(
        responder(response(body=body)), lambda port: http(port, body_sha256=digest, max_bytes=10)
    )
    assert not result.up and "larger than max_bytes" in result.detail


def test_regex_sees_only_max_bytes() -> None:
    body = b"a" * 50 + b"needle"
    assert not serve(
        responder(response(body=body)), lambda port: http(port, body_regex="needle", max_bytes=40)
    ).up
    assert serve(
        responder(response(body=body)), lambda port: http(port, body_regex="needle", max_bytes=100)
    ).up


def test_chunked_body() -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nstat\r\n7;x=1\r\nus: ok\n\r\n0\r\n\r\n"
    digest = hashlib.sha256(OK_BODY).hexdigest()
    assert serve(responder(raw), lambda port: http(port, body_sha256=digest)).up
    truncated = serve(responder(raw), lambda port: http(port, body_sha256=digest, max_bytes=5))
    assert not truncated.up
    bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    result = serve(responder(bad), lambda port: http(port, body_regex="x"))
    assert not result.up and "bad chunk size" in result.detail


def test_body_until_close() -> None:
    raw = b"HTTP/1.0 200 OK\r\n\r\n" + OK_BODY
    assert serve(responder(raw), lambda port: http(port, body_regex="ok$")).up
    digest = hashlib.sha256(OK_BODY).hexdigest()
    assert serve(responder(raw), lambda port: http(port, body_sha256=digest)).up
    assert serve(
        responder(raw), lambda port: http(port, body_sha256=digest, max_bytes=len(OK_BODY))
    ).up
    assert not serve(responder(raw), lambda port: http(port, body_sha256=digest, max_bytes=4)).up


def test_bad_content_length() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\nx"
    result = serve(responder(raw), lambda port: http(port, body_regex="x"))
    assert not result.up and "Content-Length" in result.detail


def test_not_http_is_down() -> None:
    result = serve(responder(b"SSH-2.0-OpenSSH\r\n"), http)
    assert not result.up and result.detail.startswith("bad response: not an HTTP status line")


def test_early_close_is_down() -> None:
    result = serve(responder(b"HTTP/1.1 200 OK\r\nContent-"), http)
    assert not result.up and result.detail.startswith("bad response")


def test_huge_head_is_down() -> None:
    raw = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 40000 + b"\r\n\r\n"
    result = serve(responder(raw), http)
    assert not result.up and result.detail.startswith("bad response")
    many = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n" * 2000 + b"\r\n"
    assert not serve(responder(many), http).up


def test_server_that_never_answers_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    result = serve(silent, lambda port: spec("http", port, timeout=0.3, path="/", method="GET"))
    assert not result.up and result.detail == "timed out after 0.3s"


def test_connection_refused() -> None:
    result = probe(http(free_port()))
    assert not result.up and result.detail == "connect: Connection refused"


def test_head_method() -> None:
    seen: list[bytes] = []
    assert serve(
        responder(b"HTTP/1.1 204 No Content\r\n\r\n", seen), lambda port: http(port, method="HEAD")
    ).up
    assert seen[0].startswith(b"HEAD / HTTP/1.1\r\n")


def test_host_name_of_host_option() -> None:
    assert _host_name("example.org:8080") == "example.org"
    assert _host_name("[2001:db8::1]:443") == "2001:db8::1"
    assert _host_name("example.org") == "example.org"
    assert _host_name(None) is None


# ---------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: Any) -> tuple[str, str]:
    """A self-signed certificate for localhost / 127.0.0.1 (made with openssl)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = os.path.join(str(folder), "cert.pem"), os.path.join(str(folder), "key.pem")
    command = [
        openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=localhost", "-keyout", key, "-out", cert,
        "-addext", "subjectAltName=DNS:localhost,DNS:www.example.test,IP:127.0.0.1",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip("openssl req failed: %s" % done.stderr.decode(errors="replace")[-200:])
    return cert, key


def serve_tls(
    certificate: tuple[str, str], check: Any, raw: bytes = b"", client_ca: Optional[str] = None
) -> CheckResult:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    names: list[Optional[str]] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment,func-returns-value]
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)

    async def body() -> CheckResult:
        server = await asyncio.start_server(
            responder(raw or response()), "127.0.0.1", 0, ssl=context
        )
        port = server.sockets[0].getsockname()[1]
        try:
            made = check(port)
            return await CHECKS[made.type](made, made.address, made.port)
        finally:
            server.close()

    result = run(body())
    serve_tls.names = names  # type: ignore[attr-defined]
    return result


def https(port: int, **params: Any) -> Any:
    params.setdefault("verify_tls", True)
    params.setdefault("expect_status", ((200, 399),))
    return spec("https", port, **params)


def test_https_verified_with_ca_file(certificate: tuple[str, str]) -> None:
    result = serve_tls(certificate, lambda port: https(port, ca_file=certificate[0]))
    assert result.up, result.detail


def test_https_unknown_ca_is_down(certificate: tuple[str, str]) -> None:
    result = serve_tls(certificate, https)
    assert not result.up and result.detail.startswith("TLS: certificate verify failed")


def test_https_without_verification(certificate: tuple[str, str]) -> None:
    result = serve_tls(certificate, lambda port: https(port, verify_tls=False, body_regex="ok"))
    assert result.up, result.detail


def test_https_sni_and_hostname_check(certificate: tuple[str, str]) -> None:
    ok = serve_tls(
        certificate, lambda port: https(port, ca_file=certificate[0], sni="www.example.test")
    )
    assert ok.up, ok.detail
    assert serve_tls.names == ["www.example.test"]  # type: ignore[attr-defined]
    wrong = serve_tls(
        certificate, lambda port: https(port, ca_file=certificate[0], sni="other.example.test")
    )
    assert not wrong.up and "certificate verify failed" in wrong.detail
    via_host = serve_tls(
        certificate, lambda port: https(port, ca_file=certificate[0], host="localhost:8443")
    )
    assert via_host.up and serve_tls.names == ["localhost"]  # type: ignore[attr-defined]


def test_https_client_certificate(certificate: tuple[str, str]) -> None:
    cert, key = certificate

    def check(port: int) -> Any:
        return https(port, ca_file=cert, client_cert=cert, client_key=key)

    assert serve_tls(certificate, check, client_ca=cert).up
    without = serve_tls(certificate, lambda port: https(port, ca_file=cert), client_ca=cert)
    assert not without.up


def test_https_against_plain_http_is_down() -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)  # the ClientHello
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        writer.close()

    result = serve(plain, lambda port: https(port, verify_tls=False))
    assert not result.up and result.detail.startswith(("TLS", "connect", "bad response"))


def test_https_bad_ca_file_is_down(tmp_path: Any) -> None:
    result = probe(https(free_port(), ca_file=os.path.join(str(tmp_path), "missing.pem")))
    assert not result.up and result.detail.startswith("TLS setup")
