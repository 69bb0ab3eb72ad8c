"""The control interface: HTTP/1.1 + JSON on a unix socket (and optionally TCP).

Routes::

    GET  /                                   dashboard (HTML, no data in it)
    GET  /status                             services, servers, health, weights, admin, checks, loop lag
    GET  /events?since=SEQ&limit=N           recent events, oldest first
    GET  /metrics                            Prometheus text format
    GET  /servers/{service}/{server}         the real server in the kernel now: weight, connections, drained
    GET  /openapi.json                       this API's OpenAPI 3.1 document (no token needed)
    POST /servers/{service}/{server}/drain   weight 0, entry kept
    POST /servers/{service}/{server}/disable entry removed
    POST /servers/{service}/{server}/enable  back to health's verdict
    POST /servers/{service}/{server}/check   run its checks now; the results (not counted)
    POST /reload                             like SIGHUP: validate, then apply the difference

`{service}` may be ``*`` for every service that has that server.

The unix socket is created under umask 077 and chmod 0600 (root only) and
removed on exit.  The TCP listener answers only requests with
``Authorization: Bearer <token>`` (compared in constant time); the token is
never logged.  Only the dashboard page itself, which holds no data, is served
without it, so a browser can load it and then send the token.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import os
import socket
import ssl
import stat
from collections.abc import Mapping
from typing import Any, Optional, Protocol

from haecs_monitor.config.model import MonitorConfig
from haecs_monitor.control import connections, dashboard, metrics
from haecs_monitor.control.httpd import Request, Response, Server, query_integer
from haecs_monitor.errors import Ambiguous, HaecsError, NotFound

ADMIN_ACTIONS = ("drain", "disable", "enable")


class ApiError(HaecsError):
    """The control socket or the TCP listener cannot be set up."""


class Controller(Protocol):
    """What the API needs from the daemon."""

    config: MonitorConfig  # the running configuration: which servers exist

    @property
    def admin(self) -> dict[tuple[str, str], str]:
        """(service id, server id) -> drain | disable; enabled is absent."""

    def status(self) -> Mapping[str, Any]: ...

    def events(self, since: int, limit: Optional[int]) -> list[Mapping[str, Any]]: ...

    def metrics_text(self) -> str: ...

    async def set_admin(self, service: str, server: str, action: str) -> Mapping[str, Any]:
        """Raises NotFound (unknown service/server) or Ambiguous."""

    async def reload(self) -> Mapping[str, Any]: ...

    async def check_now(self, service: str, server: str) -> Mapping[str, Any]:
        """Raises NotFound (unknown service/server) or Ambiguous."""

    def api_error(self, message: str) -> None: ...


def read_token(path: str) -> str:
    """The API token from `path`; ApiError when missing or empty."""
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except OSError as error:
        raise ApiError("cannot read token_file %s: %s" % (path, error.strerror or error)) from None
    if not token:
        raise ApiError(
            "token_file %s is empty: refusing to start a TCP listener without a token" % path
        )
    if len(token) < 16:
        raise ApiError("token_file %s holds a token shorter than 16 characters" % path)
    return token


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context from PEM files (TLS 1.2 at least); ApiError naming them."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        raise ApiError(
            "cannot load the TLS certificate %s with key %s: %s"
            % (cert, key, getattr(error, "strerror", None) or error)
        ) from None
    return context


_OPENAPI = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi.json")


@functools.lru_cache(maxsize=1)
def openapi_document() -> bytes:
    """The API's OpenAPI 3.1 document (shipped beside this file)."""
    with open(_OPENAPI, "rb") as handle:
        return handle.read()


class Api:
    def __init__(
        self, controller: Controller, read_kernel: connections.KernelRead = connections.read_kernel
    ) -> None:
        self._controller = controller
        # How GET /servers/{service}/{server} reads the kernel (tests pass a fake).
        self.read_kernel = read_kernel
        self._server = Server(self.handle, on_error=controller.api_error)
        self.descriptors = self._server.descriptors
        self._token: Optional[bytes] = None
        self._socket_path: Optional[str] = None

    @property
    def refused_connections(self) -> dict[str, int]:
        """Connections refused because a listener was at its cap, by listener."""
        return dict(self._server.refused)

    # ------------------------------------------------------------ listeners

    async def start_unix(self, path: str) -> None:
        """Listen on `path`, mode 0600; refuse if a live monitor holds it."""
        folder = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(folder, mode=0o755, exist_ok=True)
        except OSError as error:
            raise ApiError("cannot create %s: %s" % (folder, error.strerror or error)) from None
        _remove_stale_socket(path)
        old_umask = os.umask(0o077)
        try:
            await self._server.serve_unix(path)
        except OSError as error:
            raise ApiError("cannot listen on %s: %s" % (path, error.strerror or error)) from None
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        self._socket_path = path

    async def start_tcp(
        self,
        host: str,
        port: int,
        token_file: str,
        tls_cert: Optional[str] = None,
        tls_key: Optional[str] = None,
    ) -> None:
        self._token = read_token(token_file).encode("utf-8")
        tls = tls_context(tls_cert, tls_key) if tls_cert and tls_key else None
        try:
            await self._server.serve_tcp(host, port, tls)
        except OSError as error:
            raise ApiError(
                "cannot listen on %s:%d: %s" % (host, port, error.strerror or error)
            ) from None

    def tcp_ports(self) -> list[int]:
        return [
            sock.getsockname()[1]
            for sock in self._server.sockets()
            if sock.family != socket.AF_UNIX
        ]

    async def close(self) -> None:
        await self._server.close()
        if self._socket_path is not None:
            try:
                os.unlink(self._socket_path)
            except OSError:
                pass
            self._socket_path = None

    # ------------------------------------------------------------- routing

    def authorized(self, request: Request) -> bool:
        if request.transport == "unix":
            return True  # the socket's mode is the access control
        if self._token is None:
            return False
        scheme, _unused, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credentials:
            return False
        return hmac.compare_digest(credentials.strip().encode("utf-8"), self._token)

    async def handle(self, request: Request) -> Response:
        segments = request.segments
        if not segments:
            wrong = self._only(request, "GET")
            if wrong:
                return wrong
            page = Response.text(dashboard.PAGE, "text/html; charset=utf-8")
            page.headers["Content-Security-Policy"] = dashboard.CONTENT_SECURITY_POLICY
            return page
        if segments == ["openapi.json"]:  # the contract holds no data: no token
            return self._only(request, "GET") or Response(200, openapi_document())
        if not self.authorized(request):
            return Response.error(
                401, "missing or wrong bearer token", {"WWW-Authenticate": 'Bearer realm="haecs"'}
            )
        if segments == ["status"]:
            return self._only(request, "GET") or Response.json(self._controller.status())
        if segments == ["events"]:
            return self._only(request, "GET") or self._events(request)
        if segments == ["metrics"]:
            return self._only(request, "GET") or Response.text(
                self._controller.metrics_text(), metrics.CONTENT_TYPE
            )
        if segments == ["reload"]:
            wrong = self._only(request, "POST")
            if wrong:
                return wrong
            result = await self._controller.reload()
            return Response.json(result, 200 if result.get("ok") else 422)
        if len(segments) == 3 and segments[0] == "servers":
            return self._only(request, "GET") or await self._server_now(segments[1], segments[2])
        if (
            len(segments) == 4
            and segments[0] == "servers"
            and segments[3]
            in (
                *ADMIN_ACTIONS,
                "check",
            )
        ):
            wrong = self._only(request, "POST")
            if wrong:
                return wrong
            try:
                if segments[3] == "check":
                    result = await self._controller.check_now(segments[1], segments[2])
                else:
                    result = await self._controller.set_admin(segments[1], segments[2], segments[3])
            except NotFound as error:
                return Response.error(404, str(error))
            except Ambiguous as error:
                return Response.error(409, str(error))
            return Response.json(result)
        return Response.error(404, "no such endpoint: %s" % request.path)

    @staticmethod
    def _only(request: Request, method: str) -> Optional[Response]:
        allowed = (method, "HEAD") if method == "GET" else (method,)
        if request.method in allowed:
            return None
        return Response.error(
            405, "use %s for %s" % (method, request.path), {"Allow": ", ".join(allowed)}
        )

    async def _server_now(self, service: str, server: str) -> Response:
        """The real server as the kernel holds it now (read in a worker thread)."""
        controller = self._controller
        loop = asyncio.get_running_loop()
        try:
            report = await loop.run_in_executor(
                None,
                connections.server_report,
                controller.config,
                dict(controller.admin),
                service,
                server,
                self.read_kernel,
            )
        except NotFound as error:
            return Response.error(404, str(error))
        except Ambiguous as error:
            return Response.error(409, str(error))
        except connections.KernelUnreadable as error:
            return Response.error(503, str(error))
        return Response.json(report)

    def _events(self, request: Request) -> Response:
        since = query_integer(request, "since", 0)
        limit = query_integer(request, "limit", 0)  # 0: all
        return Response.json({"events": self._controller.events(since, limit or None)})


def _remove_stale_socket(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as error:
        raise ApiError("cannot inspect %s: %s" % (path, error.strerror or error)) from None
    if not stat.S_ISSOCK(mode):
        raise ApiError("%s exists and is not a socket: refusing to replace it" % path)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        # Nobody listens: a socket left behind by a monitor that died.
        os.unlink(path)
        return
    finally:
        probe.close()
    raise ApiError("another monitor is listening on %s" % path)
