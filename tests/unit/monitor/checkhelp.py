"""Helpers for the check tests: specs and tiny local servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Coroutine
from typing import Any, Callable, TypeVar

from haecs_monitor.checks import CHECKS, CheckResult
from haecs_monitor.config.model import CheckSpec, CheckTiming, ParamValue

T = TypeVar("T")


def spec(
    check_type: str,
    port: int = 0,
    timeout: float = 1.0,
    address: str = "127.0.0.1",
    **params: ParamValue,
) -> CheckSpec:
    return CheckSpec(
        type=check_type,
        timing=CheckTiming(timeout * 2, timeout, 2, 3, 0.5, 5.0, 0.0),
        address=address,
        port=port,
        params=tuple(sorted(params.items())),
    )


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def probe(check: CheckSpec) -> CheckResult:
    return run(CHECKS[check.type](check, check.address, check.port))


def free_port() -> int:
    """A port with nothing listening on it (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def with_server(handler: Handler, body: Callable[[int], Awaitable[T]]) -> T:
    """Run `body(port)` while a stream server with `handler` listens on 127.0.0.1."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await body(port)
    finally:
        server.close()


def serve(handler: Handler, check: Callable[[int], CheckSpec]) -> CheckResult:
    async def body(port: int) -> CheckResult:
        made = check(port)
        return await CHECKS[made.type](made, made.address, made.port)

    return run(with_server(handler, body))


def self_signed_cert(folder: Any) -> tuple[str, str]:
    """A throwaway certificate for 127.0.0.1 and its key: (cert.pem, key.pem) in folder."""
    import subprocess

    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key
