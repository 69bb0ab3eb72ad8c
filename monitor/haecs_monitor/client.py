"""A minimal HTTP client for the control socket (haecsctl and tests)."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any, Optional


class ClientError(Exception):
    """The monitor cannot be reached, or answered something unreadable."""


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ClientError("the monitor's answer is not JSON") from None


def request(
    method: str,
    path: str,
    socket_path: Optional[str] = None,
    address: Optional[tuple[str, int]] = None,
    token: Optional[str] = None,
    body: Optional[Any] = None,
    timeout: float = 10.0,
) -> Reply:
    """Send one request to a unix socket (or TCP address) and read the reply."""
    payload = b"" if body is None else json.dumps(body).encode("utf-8")
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: haecs-monitor", "Connection: close"]
    if token:
        lines.append("Authorization: Bearer %s" % token)
    if body is not None:
        lines.append("Content-Type: application/json")
    lines.append("Content-Length: %d" % len(payload))
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
    target = socket_path if socket_path is not None else "%s:%s" % (address or ("", 0))
    try:
        if socket_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(socket_path)
        else:
            assert address is not None
            sock = socket.create_connection(address, timeout)
    except FileNotFoundError:
        raise ClientError("no control socket at %s: is the monitor running?" % target) from None
    except PermissionError:
        raise ClientError(
            "permission denied on %s: the control socket is for root only" % target
        ) from None
    except OSError as error:
        raise ClientError("cannot connect to %s: %s" % (target, error.strerror or error)) from None
    try:
        with sock:
            sock.sendall(data)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except OSError as error:
        raise ClientError(
            "connection to %s failed: %s" % (target, error.strerror or error)
        ) from None
    return parse_reply(b"".join(chunks))


def parse_reply(raw: bytes) -> Reply:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ClientError("incomplete answer from the monitor")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ClientError("malformed answer from the monitor")
    headers = {}
    for line in lines[1:]:
        name, _unused, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(int(parts[1]), headers, body)
