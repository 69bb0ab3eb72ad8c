"""The lab's demo web service: answers GET with the real server's name.

    python3 demo_server.py NAME [PORT]
"""

import http.server
import sys

NAME = sys.argv[1].encode() + b"\n"
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 8080


class Answer(http.server.BaseHTTPRequestHandler):
    # Keep-alive: a client may send many requests on one connection (the
    # failover test's long-lived connection).
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        self.send_response(200)
        self.send_header("Content-Length", str(len(NAME)))
        self.end_headers()
        self.wfile.write(NAME)

    def log_message(self, *args: object) -> None:
        pass


http.server.ThreadingHTTPServer.allow_reuse_address = True
http.server.ThreadingHTTPServer(("0.0.0.0", PORT), Answer).serve_forever()
