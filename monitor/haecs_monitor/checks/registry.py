"""Every check type, registered in one place."""

from __future__ import annotations

from collections.abc import Mapping

from haecs_monitor.checks import dns, http, script, smtp, tcp
from haecs_monitor.checks.base import CheckType

CHECK_TYPES: Mapping[str, CheckType] = {
    check_type.name: check_type
    for check_type in (tcp.TCP, http.HTTP, http.HTTPS, smtp.SMTP, dns.DNS, script.SCRIPT)
}
