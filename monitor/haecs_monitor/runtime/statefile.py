"""The state file: admin states (drain / disable), the managed services and
the real servers leaving the configuration.

Written atomically (a temporary file in the same folder, fsync, rename,
fsync of the folder) with mode 0600, and read back on start, so a drained
server stays drained across restarts, a service dropped from the config
while the monitor was stopped is still removed from the kernel, and a real
server that was leaving (weight 0 until its connections end) goes on
leaving, with the deadline it had, instead of being deleted at once.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field

from haecs_monitor.errors import HaecsError

VERSION = 1


class StateFileError(HaecsError):
    """The state file exists but cannot be read or written."""


@dataclass(frozen=True)
class SavedLeaver:
    service: str  # service id
    server: str  # server id
    until: float  # its drain_timeout, as wall-clock time (seconds since the epoch)


@dataclass
class SavedState:
    # service id -> server id -> "drain" | "disable"
    admin: dict[str, dict[str, str]] = field(default_factory=dict)
    # ids of the services the monitor managed (to remove them once dropped)
    managed: list[str] = field(default_factory=list)
    # real servers leaving the configuration (drained, removed when done)
    leaving: list[SavedLeaver] = field(default_factory=list)

    def to_json(self) -> str:
        leaving = [
            {"service": item.service, "server": item.server, "until": round(item.until, 3)}
            for item in sorted(self.leaving, key=lambda item: (item.service, item.server))
        ]
        return json.dumps(
            {
                "version": VERSION,
                "admin": self.admin,
                "managed": sorted(self.managed),
                "leaving": leaving,
            },
            indent=1,
            sort_keys=True,
        )


def load(path: str) -> SavedState:
    """The saved state; an empty one when the file does not exist."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return SavedState()
    except (OSError, ValueError) as error:
        raise StateFileError("cannot read state file %s: %s" % (path, error)) from None
    if not isinstance(data, dict):
        raise StateFileError("state file %s: not a JSON object" % path)
    admin: dict[str, dict[str, str]] = {}
    raw_admin = data.get("admin", {})
    if isinstance(raw_admin, dict):
        for service, servers in raw_admin.items():
            if isinstance(servers, dict):
                kept = {str(k): str(v) for k, v in servers.items() if v in ("drain", "disable")}
                if kept:
                    admin[str(service)] = kept
    raw_managed = data.get("managed", [])
    managed = [str(item) for item in raw_managed] if isinstance(raw_managed, list) else []
    return SavedState(admin, managed, _leaving(data.get("leaving", [])))


def _leaving(raw: object) -> list[SavedLeaver]:
    """The well-formed entries of "leaving"; others are ignored, as in "admin"."""
    leaving = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        service, server, until = item.get("service"), item.get("server"), item.get("until")
        if (
            isinstance(service, str)
            and isinstance(server, str)
            and isinstance(until, (int, float))
            and not isinstance(until, bool)
        ):
            leaving.append(SavedLeaver(service, server, float(until)))
    return leaving


def save(path: str, state: SavedState) -> None:
    """Replace the file atomically; StateFileError when that fails."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=folder)
    except OSError as error:
        raise StateFileError("cannot write state file %s: %s" % (path, error)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(state.to_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        _fsync_folder(folder)
    except OSError as error:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise StateFileError("cannot write state file %s: %s" % (path, error)) from None


def _fsync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
