"""What the monitor remembers across restarts: the operator's admin states
(drain / disable), the services it manages and the real servers leaving
the configuration, kept in the state file.

The file's path is read once, at start: `global.state_file` is a
restart-only setting (a reload says so).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import ServiceKey
from haecs_monitor.core import ids
from haecs_monitor.core.desired import ENABLED
from haecs_monitor.runtime import statefile
from haecs_monitor.runtime.events import EventLog

ADMIN_ACTIONS = ("drain", "disable", "enable")


class MonitorState:
    def __init__(self, path: str, log: EventLog) -> None:
        self.path = path
        self.log = log
        # (service id, server id) -> "drain" | "disable"; enabled is absent
        self.admin: dict[tuple[str, str], str] = {}
        self._saved_managed: list[str] = []
        # the leaving real servers the file held at start (Leaving.restore)
        self.saved_leaving: list[statefile.SavedLeaver] = []

    def load(self) -> None:
        """Read the file; an unreadable one is logged and taken as empty."""
        try:
            saved = statefile.load(self.path)
        except statefile.StateFileError as error:
            self.log.warning("state_file_unreadable", reason=str(error))
            saved = statefile.SavedState()
        self.admin.clear()
        self.admin.update(
            ((service, server), state)
            for service, servers in saved.admin.items()
            for server, state in servers.items()
        )
        self._saved_managed = saved.managed
        self.saved_leaving = saved.leaving
        if self.admin:
            self.log.info("admin_states_loaded", path=self.path, count=len(self.admin))

    def admin_state(self, service_id: str, server_id: str) -> str:
        return self.admin.get((service_id, server_id), ENABLED)

    def set_admin(self, service_id: str, server_id: str, action: str) -> tuple[str, str]:
        """Apply ACTION (one of ADMIN_ACTIONS) in memory; (before, after)."""
        key = (service_id, server_id)
        before = self.admin.get(key, ENABLED)
        after = ENABLED if action == "enable" else action
        if after == ENABLED:
            self.admin.pop(key, None)
        else:
            self.admin[key] = after
        return before, after

    def managed_gone(self, configured: Iterable[ServiceKey]) -> set[ServiceKey]:
        """Services the previous run managed that the config no longer has."""
        keep = set(configured)
        gone = set()
        for text in self._saved_managed:
            key = ids.parse_service_id(text)
            if key is not None and key not in keep:
                gone.add(key)
        return gone

    def save(
        self, managed: Iterable[ServiceKey], leaving: Iterable[statefile.SavedLeaver] = ()
    ) -> Optional[str]:
        """Write the admin states, MANAGED and LEAVING; the error's text, logged, or None."""
        admin: dict[str, dict[str, str]] = {}
        for (service, server), state in sorted(self.admin.items()):
            admin.setdefault(service, {})[server] = state
        managed_ids = [ids.service_id(key) for key in managed]
        try:
            statefile.save(self.path, statefile.SavedState(admin, managed_ids, list(leaving)))
        except statefile.StateFileError as error:
            self.log.error("state_file_write_failed", reason=str(error))
            return str(error)
        return None
