"""The lab's demo services: answer with the real server's name.

    python3 demo_server.py NAME [PORT [dns]]

HTTP GET on PORT (8080 unless given), over IPv4 and IPv6; with `dns`, also a
DNS server on UDP port 53 that answers any TXT question with NAME (dnspython,
which the directors' monitor uses too).
"""

import http.server
import socket
import sys
import threading

NAME = sys.argv[1].encode() + b"\n"
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 8080
WITH_DNS = len(sys.argv) > 3 and sys.argv[3] == "dns"


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


class DualStack(http.server.ThreadingHTTPServer):
    # One socket for both families: IPv4 clients arrive as ::ffff:a.b.c.d.
    address_family = socket.AF_INET6
    allow_reuse_address = True

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def serve_dns() -> None:
    import dns.message
    import dns.rdatatype
    import dns.rrset

    name = NAME.decode().strip()
    server = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    server.bind(("::", 53))
    while True:
        wire, client = server.recvfrom(512)
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # a demo: ignore what is not a query
            continue
        reply = dns.message.make_response(query)
        for question in query.question:
            if question.rdtype == dns.rdatatype.TXT:
                reply.answer.append(
                    dns.rrset.from_text(question.name, 5, "IN", "TXT", '"%s"' % name)
                )
        server.sendto(reply.to_wire(), client)


if WITH_DNS:
    threading.Thread(target=serve_dns, daemon=True).start()
DualStack(("::", PORT), Answer).serve_forever()
