"""A minimal HTTP client for the control socket or the TCP listener (haecsctl, tests)."""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import urlsplit

from haecs_monitor.errors import HaecsError


class ClientError(HaecsError):
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


@dataclass(frozen=True)
class Listener:
    """A monitor's TCP listener, from a URL: http(s)://HOST:PORT."""

    host: str
    port: int
    tls: Optional[ssl.SSLContext]

    @classmethod
    def from_url(cls, url: str, cafile: Optional[str] = None) -> Listener:
        """ClientError naming the problem for anything but http(s)://HOST:PORT[/]."""
        try:
            split = urlsplit(url)
            port = split.port
        except ValueError as error:
            raise ClientError("--url %s: %s" % (url, error)) from None
        if split.scheme not in ("http", "https") or not split.hostname:
            raise ClientError("--url %s: must be http://HOST:PORT or https://HOST:PORT" % url)
        if split.path not in ("", "/") or split.query or split.username:
            raise ClientError("--url %s: give only scheme, host and port" % url)
        tls = None
        if split.scheme == "https":
            try:
                tls = ssl.create_default_context(cafile=cafile)
            except (OSError, ssl.SSLError) as error:
                raise ClientError("--cacert %s: %s" % (cafile, error)) from None
        elif cafile:
            raise ClientError("--cacert is for https:// URLs")
        return cls(split.hostname, port or (443 if tls else 80), tls)

    @property
    def loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"


def request(
    method: str,
    path: str,
    socket_path: Optional[str] = None,
    address: Optional[tuple[str, int]] = None,
    token: Optional[str] = None,
    body: Optional[Any] = None,
    timeout: float = 10.0,
    tls: Optional[ssl.SSLContext] = None,
) -> Reply:
    """Send one request to a unix socket (or TCP address, over TLS when `tls`
    is given; the certificate is verified against the address's host name)."""
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
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=address[0])
    except ssl.SSLCertVerificationError as error:
        raise ClientError(
            "TLS: the certificate of %s is not trusted: %s (--cacert names the CA)"
            % (target, error.verify_message or error.reason)
        ) from None
    except ssl.SSLError as error:
        raise ClientError("TLS with %s failed: %s" % (target, error.reason or error)) from None
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
