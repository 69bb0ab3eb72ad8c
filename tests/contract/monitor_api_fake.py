"""A stand-in for the monitor's admin API (GET and POST /servers/SERVICE/SERVER),
answered from admin states and kernel entries kept in memory, as the monitor
answers them; and a unix-socket HTTP server that serves one, for the tests
that run the module or drain.yml through a real socket.  The monitor's own API
is tested in tests/unit/monitor; drain.yml against running monitors in the lab.
"""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
import urllib.parse
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Mapping, Tuple

from ansible_collections.haecs.lvs.plugins.module_utils.monitor_admin import Reply


class FakeMonitor:
    """Admin states and kernel entries per (service, server), answered as the API does."""

    def __init__(self, servers: Mapping[str, List[str]]) -> None:
        self.admin: Dict[Tuple[str, str], str] = {}
        self.kernel: Dict[Tuple[str, str], Dict[str, Any]] = {}
        for server, services in servers.items():
            for service in services:
                self.admin[service, server] = "enabled"
                self.kernel[service, server] = {"weight": 1, "active": 0, "inactive": 0}
        self.requests: List[Tuple[str, str]] = []
        # After a drain: how many more reads see this many active connections.
        self.active_for_reads: Dict[str, int] = {}

    def services_of(self, server: str) -> List[str]:
        return [service for (service, name) in self.admin if name == server]

    def answer(self, server: str) -> Dict[str, Any]:
        entries = []
        for service in self.services_of(server):
            found = self.kernel.get((service, server))
            active = found["active"] if found else None
            if found and self.active_for_reads.get(server, 0) > 0:
                active = 1
            entry = {
                "service": service,
                "admin": self.admin[service, server],
                "in_kernel": found is not None,
                "weight": found["weight"] if found else None,
                "configured_weight": 1,
                "persistent": False,
                "active_connections": active,
                "inactive_connections": found["inactive"] if found else None,
                "persistence_templates": 0 if found else None,
            }
            entry["drained"] = found is None or (found["weight"] == 0 and not active)
            entry["idle"] = entry["drained"] and (found is None or found["inactive"] == 0)
            entries.append(entry)
        if self.active_for_reads.get(server, 0) > 0:
            self.active_for_reads[server] -= 1
        return {
            "server": server,
            "active_connections": sum(e["active_connections"] or 0 for e in entries),
            "inactive_connections": sum(e["inactive_connections"] or 0 for e in entries),
            "persistence_templates": 0,
            "drained": all(e["drained"] for e in entries),
            "idle": all(e["idle"] for e in entries),
            "services": entries,
        }

    def send(self, method: str, path: str) -> Reply:
        self.requests.append((method, path))
        parts = path.split("/")
        server = urllib.parse.unquote(parts[3])
        if not self.services_of(server):
            return Reply(404, {"error": "no real server %s in any service" % server})
        if method == "GET":
            return Reply(200, self.answer(server))
        action = parts[4]
        admin = {"drain": "drain", "enable": "enabled", "disable": "disable"}[action]
        changed, operations = [], []
        for service in self.services_of(server):
            changed.append(
                {
                    "service": service,
                    "server": server,
                    "admin": admin,
                    "was": self.admin[service, server],
                }
            )
            self.admin[service, server] = admin
            if admin == "disable":
                self.kernel.pop((service, server), None)
            else:
                entry = self.kernel.setdefault(
                    (service, server), {"weight": 1, "active": 0, "inactive": 0}
                )
                weight = 0 if admin == "drain" else 1
                if entry["weight"] != weight:
                    operations.append("-e -t %s -r %s -m -w %d" % (service[4:], server, weight))
                entry["weight"] = weight
        return Reply(200, {"ok": True, "changed": changed, "operations": operations})


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> Tuple[Any, Any]:
        request, _address = super().get_request()
        return request, ("local", 0)


@contextmanager
def serving(path: str, answer: Callable[[str, str], Reply]) -> Iterator[str]:
    """Serve answer(method, path) as JSON over HTTP on the unix socket PATH."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def reply(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            reply = answer(self.command, self.path)
            body = json.dumps(reply.data).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = reply
        do_POST = reply

        def log_message(self, *args: Any) -> None:
            pass

    server = _UnixServer(path, Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        server.shutdown()
        server.server_close()
