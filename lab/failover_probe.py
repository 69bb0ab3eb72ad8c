"""The failover test's client (lab/failover.yml), in the client's namespace.

    python3 failover_probe.py VIP STOP_FILE

Two things at once until STOP_FILE exists, then one JSON line:
- a loop of new connections to http://VIP/ (one request each, every 0.1 s;
  each one is a thread of the real server in the test kernel's one CPU):
  answered and failed requests, and the outage as the clients saw it: from
  the start of the first failed request to the start of the first one
  answered after the last failure (a failed request waits up to its 1 s
  timeout, so counting from failure to failure would leave out up to one
  timeout and one pause);
- one long-lived keep-alive connection opened at the start, a request on it
  every 100 ms: whether it still works after the failover (the sync daemon
  carried its entry to the new master) and stays on the same real server.
Times are in seconds after the probe started (when a connection broke,
when the outage began) so that a failure can be placed among the steps.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import threading
import time
import urllib.request

VIP, STOP = sys.argv[1], sys.argv[2]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
result: dict[str, dict[str, object]] = {}
STARTED = time.monotonic()


def stopped() -> bool:
    return os.path.exists(STOP)


def loop() -> None:
    ok = failed = 0
    first = recovered = None  # start of the first failed / of the answered one after the last
    while not stopped():
        began = time.monotonic()
        try:
            with opener.open("http://%s/" % VIP, timeout=1) as answer:
                answer.read()
            ok += 1
            if first is not None and recovered is None:
                recovered = began
        except OSError:
            failed += 1
            first = first if first is not None else began
            recovered = None
        time.sleep(0.1)
    if first is None:
        outage = 0.0
    else:  # not answered again before the end: the outage lasted until then
        outage = (recovered if recovered is not None else time.monotonic()) - first
    result["loop"] = {
        "ok": ok,
        "failed": failed,
        "outage_seconds": round(outage, 2),
        "outage_began_at_seconds": round(first - STARTED, 1) if first is not None else None,
        "probe_seconds": round(time.monotonic() - STARTED, 1),
    }


def long_lived() -> None:
    connection = http.client.HTTPConnection(VIP, 80, timeout=10)
    answers: dict[str, int] = {}
    failed = 0
    error = ""
    broke_at = None  # seconds after the probe started
    while not stopped():
        try:
            connection.request("GET", "/")
            name = connection.getresponse().read().decode().strip()
            answers[name] = answers.get(name, 0) + 1
        except (OSError, http.client.HTTPException) as problem:
            failed += 1
            error = "%s: %s" % (type(problem).__name__, problem)
            broke_at = round(time.monotonic() - STARTED, 1)
            break  # a broken connection stays broken: that is the finding
        time.sleep(0.1)
    result["long_lived"] = {
        "answers": answers,
        "failed": failed,
        "error": error,
        "broke_at_seconds": broke_at,
    }


threads = [threading.Thread(target=loop), threading.Thread(target=long_lived)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps(result))
