"""A real server for the monitor's kernel tests: HTTP on one port.

    python3 backend.py ADDRESS PORT NAME MODE_FILE

Each request reads MODE_FILE (missing: ok):
  ok    200 "ok NAME"
  fail  500
  hang  accept, read, never answer
  flap  alternate 200 and 500, one per request
"""

from __future__ import annotations

import http.server
import itertools
import socketserver
import sys
import time

ADDRESS, PORT, NAME, MODE_FILE = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
_flap = itertools.cycle((200, 500))


def mode() -> str:
    try:
        with open(MODE_FILE) as handle:
            return handle.read().strip() or "ok"
    except OSError:
        return "ok"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        current = mode()
        if current == "hang":
            time.sleep(3600)
            return
        status = 200 if current == "ok" else 500
        if current == "flap":
            status = next(_flap)
        body = ("ok %s\n" % NAME if status == 200 else "failing %s\n" % NAME).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


Server((ADDRESS, PORT), Handler).serve_forever()
