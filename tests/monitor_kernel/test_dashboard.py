"""The dashboard in a real browser (Debian's chromium, headless, in the test
kernel) against a real monitor: it loads without console errors, a killed
server shows down, a drain click with the token drains it in the kernel, a
click without the token is refused and changes nothing.  The screenshot and
`haecsctl status` at that moment go to $HAECS_KERNEL_EXPORT (dashboard.png,
haecsctl-status.txt: what the README shows)."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from cdp import Browser
from conftest import Lab, http_service, record, rs_address, wait_for
from test_monitor import MonitorFactory, _tcp_listener, config_with

pytestmark = pytest.mark.kernel

# What the page shows, read from its DOM: server id -> [health, admin, weight].
ROWS = """JSON.stringify(Array.from(document.querySelectorAll("#rows tr:not(.svc)")).map(
  function (tr) { return Array.from(tr.cells).slice(0, 4).map(function (td) { return td.textContent; }); }))"""


def rows(browser: Browser) -> dict[str, list[str]]:
    return {row[0]: row[1:] for row in json.loads(browser.evaluate(ROWS))}


def click(browser: Browser, action: str, server: str) -> None:
    browser.evaluate(
        'document.querySelector(\'button[data-action="%s"][data-server="%s"]\').click()'
        % (action, server)
    )


def test_dashboard_in_chromium(lab: Lab, monitor_factory: MonitorFactory, tmp_path: Any) -> None:
    for n in (1, 2):
        lab.start(n)
    token, port, listen = _tcp_listener(tmp_path)
    monitor = monitor_factory(config_with(str(tmp_path), http_service((1, 2)), listen=listen))
    wait_for(lambda: len(lab.weights()) == 2, 20, "both servers in")
    one, two = "%s:80" % rs_address(1), "%s:80" % rs_address(2)
    origin = "http://127.0.0.1:%d" % port
    browser = Browser(str(tmp_path / "profile"), str(tmp_path / "chromium.log"))
    try:
        browser.open()
        # The token goes where the page keeps it (this tab's sessionStorage)
        # before the page's own script runs, as if typed at its prompt.
        browser.send(
            "Page.addScriptToEvaluateOnNewDocument",
            source="sessionStorage.setItem('haecs-token', %s)" % json.dumps(token),
        )
        browser.navigate(origin + "/")
        took = wait_for(
            lambda: [r[0] for r in rows(browser).values()] == ["up", "up"], 60, "page shows both up"
        )
        record("dashboard: page shows both servers up", "%.1f s after navigation" % took)
        assert browser.console_errors() == []

        lab.kill(2)
        took = wait_for(lambda: rows(browser).get(two, [""])[0] == "down", 30, "rs2 shown down")
        record("dashboard: killed server shown down", "%.1f s (refresh every 2 s)" % took)

        click(browser, "drain", one)
        wait_for(lambda: lab.weights().get(rs_address(1)) == 0, 15, "rs1 drained in the kernel")
        wait_for(lambda: rows(browser)[one][1] == "drain", 15, "page shows rs1 drained")
        assert browser.console_errors() == []
        export = os.environ.get("HAECS_KERNEL_EXPORT")
        if export:
            browser.screenshot(os.path.join(export, "dashboard.png"))
            status = monitor.ctl("status")
            assert status.returncode == 0, status.stderr
            with open(os.path.join(export, "haecsctl-status.txt"), "w") as handle:
                handle.write(status.stdout)

        # Without the token: refused, said on the page, nothing changed.
        browser.dialog_answer = (False, "")  # the next 401 of the refresh asks again: no
        browser.evaluate("sessionStorage.removeItem('haecs-token')")
        click(browser, "enable", one)
        wait_for(
            lambda: "refused" in browser.evaluate("document.getElementById('action').textContent"),
            15,
            "refusal shown",
        )
        # Nothing changed: rs1 is still drained. Its health may flap on a
        # loaded machine (its check times out after 0.25 s), which takes its
        # entry out of the kernel and back, but never above weight 0.
        assert monitor.server(1)["admin"] == "drain"
        assert lab.weights().get(rs_address(1), 0) == 0
    finally:
        browser.close()
