"""The smtp check against a tiny asyncio SMTP server."""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from checkhelp import free_port, probe, serve, spec


def smtp_server(
    banner: bytes = b"220 mx.test ESMTP ready\r\n",
    ehlo: bytes = b"250-mx.test\r\n250-SIZE 1000\r\n250 HELP\r\n",
    seen: Optional[list[bytes]] = None,
) -> Any:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(banner)
        await writer.drain()
        line = await reader.readline()
        if seen is not None:
            seen.append(line)
        writer.write(ehlo)
        await writer.drain()
        quit_line = await reader.readline()
        if seen is not None:
            seen.append(quit_line)
        writer.write(b"221 bye\r\n")
        writer.close()

    return handle


def test_banner_and_ehlo_ok_is_up() -> None:
    seen: list[bytes] = []
    result = serve(smtp_server(seen=seen), lambda port: spec("smtp", port, helo="director.test"))
    assert result.up and result.detail == "banner 220, EHLO 250"
    assert seen == [b"EHLO director.test\r\n", b"QUIT\r\n"]


def test_default_helo_is_the_host_name() -> None:
    import socket

    seen: list[bytes] = []
    assert serve(smtp_server(seen=seen), lambda port: spec("smtp", port)).up
    assert seen[0] == ("EHLO %s\r\n" % socket.gethostname()).encode()


def test_busy_banner_is_down() -> None:
    result = serve(smtp_server(banner=b"421 too busy\r\n"), lambda port: spec("smtp", port))
    assert not result.up and result.detail == "banner 421 too busy"


def test_ehlo_refused_is_down() -> None:
    result = serve(
        smtp_server(ehlo=b"502 command not implemented\r\n"), lambda port: spec("smtp", port)
    )
    assert not result.up and result.detail.startswith("EHLO answered 502")


def test_multiline_banner() -> None:
    banner = b"220-mx.test first\r\n220-second\r\n220 ready\r\n"
    assert serve(smtp_server(banner=banner), lambda port: spec("smtp", port)).up


def test_garbage_is_down() -> None:
    result = serve(smtp_server(banner=b"hello there\r\n"), lambda port: spec("smtp", port))
    assert not result.up and result.detail.startswith("bad reply: not an SMTP reply")


def test_silent_server_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    result = serve(silent, lambda port: spec("smtp", port, timeout=0.3))
    assert not result.up and result.detail == "timed out after 0.3s"


def test_closed_port_is_down() -> None:
    result = probe(spec("smtp", free_port()))
    assert not result.up and result.detail == "connect: Connection refused"


def test_endless_reply_is_down() -> None:
    result = serve(smtp_server(banner=b"220-more\r\n" * 200), lambda port: spec("smtp", port))
    assert not result.up and "longer than" in result.detail
