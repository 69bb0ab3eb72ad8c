"""Send HTTP requests to a VIP in a loop; print one JSON line of counts at the end.

    python3 client_loop.py URL SECONDS [STOP_FILE [PAUSE]]

Stops after SECONDS or as soon as STOP_FILE exists ("" for none). PAUSE:
seconds between two requests (0.02 unless given). A dns://ADDRESS:PORT/NAME
URL asks a TXT question for NAME over UDP instead (dnspython), each from a
new source port; the answer's text counts as the server's name.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.parse
import urllib.request


def ask_http(url: str) -> str:
    with urllib.request.urlopen(url, timeout=3) as answer:
        return str(answer.read().decode().strip())


def ask_dns(url: str) -> str:
    import dns.message
    import dns.query
    import dns.rdatatype

    where = urllib.parse.urlsplit(url)
    query = dns.message.make_query(where.path.lstrip("/") or ".", "TXT")
    reply = dns.query.udp(query, str(where.hostname), port=where.port or 53, timeout=3)
    texts = [
        b"".join(rdata.strings).decode()
        for rrset in reply.answer
        if rrset.rdtype == dns.rdatatype.TXT
        for rdata in rrset
    ]
    if not texts:
        raise ValueError("no TXT answer (rcode %d)" % reply.rcode())
    return texts[0]


url, seconds = sys.argv[1], float(sys.argv[2])
stop_file = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None
pause = float(sys.argv[4]) if len(sys.argv) > 4 else 0.02
ok = failed = 0
errors: dict[str, int] = {}
servers: dict[str, int] = {}
end = time.monotonic() + seconds
while time.monotonic() < end and not (stop_file and os.path.exists(stop_file)):
    try:
        body = ask_dns(url) if url.startswith("dns://") else ask_http(url)
        ok += 1
        servers[body] = servers.get(body, 0) + 1
    except Exception as error:
        failed += 1
        errors[type(error).__name__ + ": " + str(error)[:80]] = (
            errors.get(type(error).__name__, 0) + 1
        )
    time.sleep(pause)
print(json.dumps({"ok": ok, "failed": failed, "errors": errors, "servers": servers}))
