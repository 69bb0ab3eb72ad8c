"""The systemd template unit passes `systemd-analyze verify` (when systemd-analyze exists)."""

from __future__ import annotations

import os
import pathlib
from typing import Any

from unit_files import needs_systemd_analyze, verify

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
UNIT = os.path.join(ROOT, "monitor", "systemd", "haecs-monitor@.service")
WRAPPER = os.path.join(ROOT, "monitor", "bin", "haecs-monitor")


def test_unit_has_the_agreed_shape() -> None:
    text = pathlib.Path(UNIT).read_text()
    for line in (
        "ExecStartPre=/usr/sbin/haecs-monitor --check /etc/haecs/monitor-%i.yml",
        "ExecStart=/usr/sbin/haecs-monitor /etc/haecs/monitor-%i.yml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_SETUID CAP_SETGID CAP_KILL CAP_SYS_MODULE",
        "NoNewPrivileges=yes",
        "LimitNOFILE=1024:524288",
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30s",
    ):
        assert line in text.splitlines(), line


@needs_systemd_analyze
def test_unit_verifies(tmp_path: Any) -> None:
    # verify wants the executables to exist: point them at the checkout's wrapper.
    text = pathlib.Path(UNIT).read_text().replace("/usr/sbin/haecs-monitor", WRAPPER)
    instance = tmp_path / "haecs-monitor@lab.service"
    instance.write_text(text)
    verify(str(instance))
