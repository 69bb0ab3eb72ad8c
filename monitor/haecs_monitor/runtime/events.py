"""Structured log lines and the recent-event history.

Every record is an *event* with a name and fields (service, server, state,
reason, ...).  It is written to stderr as one JSON object per line (or as
``key=value`` text) and, from level info up, kept in a ring buffer that
`GET /events` and `haecsctl events` show.

Never pass a secret as a field: every field is written as given.
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Optional, TextIO

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
FORMATS = ("json", "text")


def iso_time(ts: float) -> str:
    """UTC time with milliseconds: 2024-05-01T12:00:00.123Z."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
    return "%s.%03dZ" % (whole, int((ts % 1) * 1000))


class EventLog:
    def __init__(
        self,
        stream: Optional[TextIO] = None,
        log_format: str = "json",
        level: str = "info",
        history: int = 1000,
        clock: Any = time.time,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self.log_format = log_format if log_format in FORMATS else "json"
        self._threshold = LEVELS.get(level, 20)
        self._history: deque[dict[str, Any]] = deque(maxlen=history)
        self._clock = clock
        self._seq = 0

    def set_format(self, log_format: str) -> None:
        if log_format in FORMATS:
            self.log_format = log_format

    def set_level(self, level: str) -> None:
        self._threshold = LEVELS.get(level, self._threshold)

    def wants(self, level: str) -> bool:
        """Whether an event at `level` is kept: for a caller whose fields cost
        something to make."""
        number = LEVELS.get(level, 20)
        return number >= self._threshold or number >= LEVELS["info"]

    def debug(self, event: str, **fields: Any) -> None:
        self.emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self.emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self.emit("error", event, fields)

    def emit(self, level: str, event: str, fields: Mapping[str, Any]) -> None:
        number = LEVELS.get(level, 20)
        if number < self._threshold and number < LEVELS["info"]:
            return
        self._seq += 1
        record: dict[str, Any] = {"ts": iso_time(self._clock()), "level": level, "event": event}
        record.update((key, value) for key, value in fields.items() if value is not None)
        if number >= LEVELS["info"]:
            self._history.append(dict(record, seq=self._seq))
        if number >= self._threshold:
            self._write(record)

    def _write(self, record: Mapping[str, Any]) -> None:
        if self.log_format == "json":
            line = json.dumps(record, default=str, separators=(",", ":"))
        else:
            extra = " ".join(
                "%s=%s" % (key, _text(value))
                for key, value in record.items()
                if key not in ("ts", "level", "event")
            )
            line = "%s %-7s %s %s" % (
                record["ts"],
                str(record["level"]).upper(),
                record["event"],
                extra,
            )
        try:
            self._stream.write(line.rstrip() + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass  # a closed stderr must not stop the monitor

    def history(self, since: int = 0, limit: Optional[int] = None) -> list[dict[str, Any]]:
        """Recent events (oldest first) with seq greater than `since`; the
        last `limit` of them (None or 0: all)."""
        events = [event for event in self._history if event["seq"] > since]
        return events[-limit:] if limit else events


def _text(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value) if (" " in value or not value or '"' in value) else value
    return json.dumps(value, default=str, separators=(",", ":"))
