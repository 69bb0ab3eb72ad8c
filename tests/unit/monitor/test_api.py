"""The control API over a real unix socket and a real TCP listener (no kernel needed)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from collections.abc import Iterator, Mapping
from typing import Any, Optional

import pytest
from haecs_monitor.control import client
from haecs_monitor.control.api import Api, ApiError, read_token
from haecs_monitor.control.httpd import BadRequest, parse_head
from haecs_monitor.errors import Ambiguous, NotFound

TOKEN = "s3cret-token-0123456789"


class FakeController:
    def __init__(self) -> None:
        self.admin: list[tuple[str, str, str]] = []
        self.reloads = 0
        self.errors: list[str] = []
        self.later_events = 0  # events appended after the first five

    def status(self) -> Mapping[str, Any]:
        return {"name": "test", "services": []}

    def events(self, since: int, limit: Optional[int]) -> list[Mapping[str, Any]]:
        count = 5 + self.later_events
        events = [{"seq": n, "event": "e%d" % n} for n in range(1, count + 1) if n > since]
        return events[-limit:] if limit else events

    async def check_now(self, service: str, server: str) -> Mapping[str, Any]:
        if server == "10.0.2.9:80":
            raise NotFound("no service has real server 10.0.2.9:80")
        up = server == "10.0.2.1:80"
        return {
            "ok": up,
            "server": server,
            "services": ["tcp:10.0.0.1:80"],
            "checks": [
                {
                    "check": "tcp %s" % server,
                    "result": "up" if up else "down",
                    "detail": "connected" if up else "connect: Connection refused",
                    "seconds": 0.001,
                }
            ],
        }

    def metrics_text(self) -> str:
        return "# HELP haecs_up x\n# TYPE haecs_up gauge\nhaecs_up 1\n"

    async def set_admin(self, service: str, server: str, action: str) -> Mapping[str, Any]:
        if service == "nope":
            raise NotFound("no service named nope")
        if service == "ambiguous":
            raise Ambiguous("10.0.0.1:80 names several services")
        if service == "bug":
            raise KeyError("a bug, not an unknown service")
        self.admin.append((service, server, action))
        return {"ok": True, "changed": [{"service": service, "server": server, "admin": action}]}

    async def reload(self) -> Mapping[str, Any]:
        self.reloads += 1
        return {
            "ok": self.reloads == 1,
            "errors": [] if self.reloads == 1 else ["services[0].port: bad"],
        }

    def api_error(self, message: str) -> None:
        self.errors.append(message)


class Running:
    """An Api served by an event loop in a background thread."""

    def __init__(
        self, tmp: str, token_file: Optional[str], tls: Optional[tuple[str, str]] = None
    ) -> None:
        import threading

        self.controller = FakeController()
        self.socket_path = os.path.join(tmp, "run", "monitor.sock")
        self.loop = asyncio.new_event_loop()
        self.api = Api(self.controller)
        self.port = 0
        ready = threading.Event()

        async def start() -> None:
            await self.api.start_unix(self.socket_path)
            if token_file is not None:
                await self.api.start_tcp("127.0.0.1", 0, token_file, *(tls or ()))
                self.port = self.api.tcp_ports()[0]

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.api.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def get(self, path: str, method: str = "GET") -> client.Reply:
        return client.request(method, path, socket_path=self.socket_path)

    def tcp(self, path: str, token: Optional[str] = None, method: str = "GET") -> client.Reply:
        return client.request(method, path, address=("127.0.0.1", self.port), token=token)


@pytest.fixture
def token_file(tmp_path: Any) -> str:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return str(path)


@pytest.fixture
def running(tmp_path: Any, token_file: str) -> Iterator[Running]:
    server = Running(str(tmp_path), token_file)
    yield server
    server.stop()


def test_socket_is_mode_0600_and_removed_on_close(tmp_path: Any) -> None:
    server = Running(str(tmp_path), None)
    mode = os.stat(server.socket_path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    server.stop()
    assert not os.path.exists(server.socket_path)


def test_status_events_metrics(running: Running) -> None:
    reply = running.get("/status")
    assert reply.status == 200 and reply.json() == {"name": "test", "services": []}
    assert reply.headers["content-type"] == "application/json"
    assert [e["seq"] for e in running.get("/events?since=3").json()["events"]] == [4, 5]
    assert [e["seq"] for e in running.get("/events?limit=2").json()["events"]] == [4, 5]
    assert running.get("/events?since=x").status == 400
    assert [e["seq"] for e in running.get("/events?limit=0").json()["events"]] == [1, 2, 3, 4, 5]
    for bad in ("limit=-1", "limit=%D9%A3", "since=-2", "limit=1.5"):
        reply = running.get("/events?" + bad)
        assert reply.status == 400 and b"must be an integer of at least 0" in reply.body, bad
    metrics = running.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert b"haecs_up 1" in metrics.body


def test_dashboard_is_self_contained_html(running: Running) -> None:
    reply = running.get("/")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/html")
    page = reply.body.decode()
    assert "<table" in page and "fetch(" in page
    # No external assets: no http(s) URLs, no src= or link href to elsewhere.
    assert "http://" not in page and "https://" not in page and "src=" not in page


def test_admin_actions_and_errors(running: Running) -> None:
    reply = client.request(
        "POST", "/servers/tcp:10.0.0.1:80/10.0.2.1:80/drain", socket_path=running.socket_path
    )
    assert reply.status == 200 and reply.json()["ok"]
    # Percent-encoded IPv6 brackets are decoded.
    client.request(
        "POST",
        "/servers/tcp:%5B2001:db8::1%5D:80/%5B2001:db8::2%5D:80/enable",
        socket_path=running.socket_path,
    )
    assert running.controller.admin == [
        ("tcp:10.0.0.1:80", "10.0.2.1:80", "drain"),
        ("tcp:[2001:db8::1]:80", "[2001:db8::2]:80", "enable"),
    ]
    assert (
        client.request(
            "POST", "/servers/nope/10.0.2.1:80/drain", socket_path=running.socket_path
        ).status
        == 404
    )
    assert (
        client.request("POST", "/servers/ambiguous/x/drain", socket_path=running.socket_path).status
        == 409
    )
    # A built-in KeyError is a bug, never "not found".
    assert (
        client.request("POST", "/servers/bug/x/drain", socket_path=running.socket_path).status
        == 500
    )
    assert running.get("/servers/tcp:10.0.0.1:80/10.0.2.1:80/drain").status == 405
    assert (
        client.request("POST", "/servers/a/b/explode", socket_path=running.socket_path).status
        == 404
    )


def test_reload_reports_rejection(running: Running) -> None:
    first = client.request("POST", "/reload", socket_path=running.socket_path)
    assert first.status == 200 and first.json()["ok"]
    second = client.request("POST", "/reload", socket_path=running.socket_path)
    assert second.status == 422 and second.json()["errors"] == ["services[0].port: bad"]
    assert running.get("/reload").status == 405


def test_unknown_path_and_bad_requests(running: Running) -> None:
    assert running.get("/nothing").status == 404
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(running.socket_path)
    sock.sendall(b"garbage\r\n\r\n")
    answer = sock.recv(4096)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 400 ")


def test_tcp_requires_the_token(running: Running) -> None:
    assert running.tcp("/status").status == 401
    assert running.tcp("/status", token="wrong").status == 401
    assert running.tcp("/metrics", token=TOKEN[:-1]).status == 401
    assert running.tcp("/reload", token="wrong", method="POST").status == 401
    assert running.controller.reloads == 0
    ok = running.tcp("/status", token=TOKEN)
    assert ok.status == 200 and ok.json()["name"] == "test"
    # The page (no data in it) loads without a token, so a browser can ask for it.
    assert running.tcp("/").status == 200


def test_tcp_listener_refuses_to_start_without_a_token(tmp_path: Any) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ApiError, match="empty"):
        read_token(str(empty))
    with pytest.raises(ApiError, match="cannot read"):
        read_token(str(tmp_path / "missing"))
    short = tmp_path / "short"
    short.write_text("abc")
    with pytest.raises(ApiError, match="shorter"):
        read_token(str(short))


def test_a_live_socket_is_not_stolen(tmp_path: Any) -> None:
    first = Running(str(tmp_path), None)
    try:
        loop = asyncio.new_event_loop()
        with pytest.raises(ApiError, match="another monitor"):
            loop.run_until_complete(Api(FakeController()).start_unix(first.socket_path))
        loop.close()
    finally:
        first.stop()


def test_a_stale_socket_is_replaced(tmp_path: Any) -> None:
    path = str(tmp_path / "stale.sock")
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)
    dead.close()
    loop = asyncio.new_event_loop()
    api = Api(FakeController())
    loop.run_until_complete(api.start_unix(path))
    loop.run_until_complete(api.close())
    loop.close()


def test_a_regular_file_is_never_replaced(tmp_path: Any) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    loop = asyncio.new_event_loop()
    with pytest.raises(ApiError, match="not a socket"):
        loop.run_until_complete(Api(FakeController()).start_unix(str(path)))
    loop.close()
    assert path.read_text() == "x"


def test_parse_head() -> None:
    method, target, headers = parse_head(
        b"GET /status?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer t"
    )
    assert (method, target, headers) == (
        "GET",
        "/status?x=1",
        {"host": "a", "authorization": "Bearer t"},
    )
    for bad in (
        b"GET /status",
        b"get / HTTP/1.1",
        b"GET status HTTP/1.1",
        b"GET / HTTP/1.1\r\nbad header",
    ):
        with pytest.raises(BadRequest):
            parse_head(bad)


def test_client_reports_a_missing_socket(tmp_path: Any) -> None:
    with pytest.raises(client.ClientError, match="is the monitor running"):
        client.request("GET", "/status", socket_path=str(tmp_path / "none.sock"))


def test_haecsctl_against_the_api(running: Running, capsys: Any) -> None:
    from haecs_monitor.control import cli

    socket_args = ["--socket", running.socket_path]
    assert cli.ctl_main([*socket_args, "status"]) == 0
    assert capsys.readouterr().out.startswith("monitor test: 0 services")
    assert cli.ctl_main([*socket_args, "--json", "status"]) == 0
    assert json.loads(capsys.readouterr().out) == {"name": "test", "services": []}
    assert cli.ctl_main([*socket_args, "events", "--limit", "2"]) == 0
    assert [line.split()[-1] for line in capsys.readouterr().out.splitlines()] == ["e4", "e5"]
    assert cli.ctl_main([*socket_args, "drain", "10.0.2.1:80"]) == 0
    assert capsys.readouterr().out == "* 10.0.2.1:80: drain\n"
    assert running.controller.admin[-1] == ("*", "10.0.2.1:80", "drain")
    assert cli.ctl_main([*socket_args, "enable", "[2001:db8::1]:80", "[2001:db8::2]:80"]) == 0
    assert running.controller.admin[-1] == ("[2001:db8::1]:80", "[2001:db8::2]:80", "enable")
    capsys.readouterr()
    assert cli.ctl_main([*socket_args, "drain", "nope", "10.0.2.1:80"]) == 1
    assert capsys.readouterr().err == "haecsctl: no service named nope\n"
    assert cli.ctl_main([*socket_args, "reload"]) == 0
    assert cli.ctl_main([*socket_args, "reload"]) == 1
    err = capsys.readouterr().err
    assert "reload rejected" in err and "services[0].port: bad" in err
    assert cli.ctl_main([*socket_args, "metrics"]) == 0
    assert "haecs_up 1" in capsys.readouterr().out


def test_haecsctl_over_tcp_with_a_token(
    running: Running, token_file: str, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from haecs_monitor.control import cli

    url = ["--url", "http://127.0.0.1:%d" % running.port]
    assert cli.ctl_main([*url, "--token-file", token_file, "status"]) == 0
    assert capsys.readouterr().out.startswith("monitor test: 0 services")
    monkeypatch.setenv("HAECS_TOKEN", TOKEN)
    assert cli.ctl_main([*url, "events", "--limit", "0"]) == 0  # 0: all
    assert len(capsys.readouterr().out.splitlines()) == 5
    monkeypatch.setenv("HAECS_TOKEN", "wrong-token-0123456789")
    assert cli.ctl_main([*url, "status"]) == 1
    assert "missing or wrong bearer token" in capsys.readouterr().err
    monkeypatch.delenv("HAECS_TOKEN")
    monkeypatch.setenv("HAECS_URL", url[1])
    assert cli.ctl_main(["status"]) == 2
    assert "needs the listener's token" in capsys.readouterr().err
    monkeypatch.setenv("HAECS_TOKEN_FILE", token_file)
    assert cli.ctl_main(["--json", "status"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "test"
    for bad, says in (
        (["--url", "ftp://x:1", "status"], "must be http://HOST:PORT or https://HOST:PORT"),
        (["--url", "http://x:99999", "status"], "Port out of range"),
        (["--url", "http://h:1/status", "status"], "give only scheme, host and port"),
        (["--socket", "/x", "--url", url[1], "status"], "--socket and --url"),
        (["--url", url[1], "--cacert", "/x.pem", "status"], "--cacert is for https"),
        (["--token-file", "/nonexistent", "status"], "cannot read the token file /nonexistent"),
    ):
        assert cli.ctl_main(bad) == 2, bad
        assert says in capsys.readouterr().err, bad


def test_haecsctl_check_now_and_watch(running: Running, capsys: Any) -> None:
    import threading

    from haecs_monitor.control import cli

    socket_args = ["--socket", running.socket_path]
    assert cli.ctl_main([*socket_args, "check-now", "10.0.2.1:80"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "10.0.2.1:80 in tcp:10.0.0.1:80"
    assert out[1].split() == ["CHECK", "RESULT", "SECONDS", "DETAIL"]
    assert out[2].split()[:4] == ["tcp", "10.0.2.1:80", "up", "0.001"]
    assert cli.ctl_main([*socket_args, "check-now", "tcp:10.0.0.1:80", "10.0.2.2:80"]) == 3
    assert "Connection refused" in capsys.readouterr().out
    assert cli.ctl_main([*socket_args, "--json", "check-now", "10.0.2.2:80"]) == 3
    assert json.loads(capsys.readouterr().out)["ok"] is False
    assert cli.ctl_main([*socket_args, "check-now", "10.0.2.9:80"]) == 1
    assert "no service has real server" in capsys.readouterr().err
    # watch prints only what happens after it started
    threading.Timer(0.5, lambda: setattr(running.controller, "later_events", 2)).start()
    assert cli.ctl_main([*socket_args, "watch", "--interval", "0.1", "--for", "1.5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "watching for events after #5 (Ctrl-C to stop)"
    assert [line.split()[-1] for line in lines[1:]] == ["e6", "e7"]
    assert cli.ctl_main([*socket_args, "watch", "--interval", "0"]) == 2


def test_haecsctl_verifies_tls(tmp_path: Any, token_file: str, capsys: Any) -> None:
    from checkhelp import self_signed_cert
    from haecs_monitor.control import cli

    cert, key = self_signed_cert(tmp_path)
    server = Running(str(tmp_path), token_file, tls=(cert, key))
    try:
        url = ["--url", "https://127.0.0.1:%d" % server.port, "--token-file", token_file]
        assert cli.ctl_main([*url, "--cacert", cert, "status"]) == 0
        assert capsys.readouterr().out.startswith("monitor test")
        assert cli.ctl_main([*url, "status"]) == 2
        assert "is not trusted" in capsys.readouterr().err
    finally:
        server.stop()


def test_haecsctl_query(running: Running, capsys: Any) -> None:
    from haecs_monitor.control import cli

    socket_args = ["--socket", running.socket_path]
    assert cli.ctl_main([*socket_args, "--query", "events[-1].event", "events"]) == 0
    assert json.loads(capsys.readouterr().out) == "e5"
    assert cli.ctl_main([*socket_args, "--query", "name", "status"]) == 0
    assert json.loads(capsys.readouterr().out) == "test"
    query = "checks[?result=='down'].detail"
    assert cli.ctl_main([*socket_args, "--query", query, "check-now", "10.0.2.2:80"]) == 3
    assert json.loads(capsys.readouterr().out) == ["connect: Connection refused"]
    assert cli.ctl_main([*socket_args, "--query", "services[", "status"]) == 2
    assert "--query 'services[' is not a JMESPath expression" in capsys.readouterr().err
    assert cli.ctl_main([*socket_args, "--query", "x", "metrics"]) == 2
    assert "not to metrics" in capsys.readouterr().err
