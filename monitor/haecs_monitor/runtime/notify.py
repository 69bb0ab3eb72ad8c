"""Run the operator's notify command on every state change.

The command is an argument list (never a shell string); the event is passed
in HAECS_* environment variables.  Notifications run one at a time, in the
order of the events, each with a timeout; a slow or failing command is
logged and never delays health checking.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

from haecs_monitor.runtime.events import EventLog
from haecs_monitor.runtime.tasks import cancel_and_wait

QUEUE_LIMIT = 1000
OUTPUT_LIMIT = 2000


@dataclass(frozen=True)
class Notification:
    event: str  # e.g. server_down, server_up, quorum_lost
    service: str = ""
    server: str = ""
    state: str = ""
    reason: str = ""

    def environment(self) -> dict[str, str]:
        return {
            "HAECS_EVENT": self.event,
            "HAECS_SERVICE": self.service,
            "HAECS_SERVER": self.server,
            "HAECS_STATE": self.state,
            "HAECS_REASON": self.reason,
        }


class Notifier:
    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._command: tuple[str, ...] = ()
        self._timeout = 10.0
        self._queue: asyncio.Queue[Notification] = asyncio.Queue()
        self._task: Optional[asyncio.Task[None]] = None
        self.sent_total = 0
        self.failed_total = 0
        self.dropped_total = 0

    def configure(self, command: Sequence[str], timeout: float) -> None:
        self._command = tuple(command)
        self._timeout = timeout

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._worker(), name="notify")

    async def stop(self, grace: float = 2.0) -> None:
        """Let queued notifications finish for up to `grace` seconds."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), grace)
        except asyncio.TimeoutError:
            pass
        await cancel_and_wait([self._task])
        self._task = None

    def notify(self, notification: Notification) -> None:
        if not self._command:
            return
        if self._queue.qsize() >= QUEUE_LIMIT:
            self.dropped_total += 1
            self._log.warning(
                "notify_dropped",
                reason="queue full (%d pending)" % QUEUE_LIMIT,
                **_fields(notification),
            )
            return
        self._queue.put_nowait(notification)

    async def _worker(self) -> None:
        while True:
            notification = await self._queue.get()
            try:
                await self.run(notification)
            finally:
                self._queue.task_done()

    async def run(self, notification: Notification) -> bool:
        command = self._command
        if not command:
            return True
        env = dict(os.environ)
        env.update(notification.environment())
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as error:
            self.failed_total += 1
            self._log.error(
                "notify_failed", command=command[0], reason=str(error), **_fields(notification)
            )
            return False
        try:
            output, _unused = await asyncio.wait_for(process.communicate(), self._timeout)
        except asyncio.TimeoutError:
            _kill(process)
            await process.wait()
            self.failed_total += 1
            self._log.error(
                "notify_failed",
                command=command[0],
                reason="timed out after %gs" % self._timeout,
                **_fields(notification),
            )
            return False
        text = output.decode("utf-8", "replace")[:OUTPUT_LIMIT].strip()
        if process.returncode != 0:
            self.failed_total += 1
            self._log.error(
                "notify_failed",
                command=command[0],
                reason="exit status %s" % process.returncode,
                output=text or None,
                **_fields(notification),
            )
            return False
        self.sent_total += 1
        self._log.debug(
            "notify_sent", command=command[0], output=text or None, **_fields(notification)
        )
        return True


def _kill(process: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(process.pid, 9)
    except (ProcessLookupError, PermissionError):
        try:
            process.kill()
        except ProcessLookupError:
            pass


def _fields(notification: Notification) -> Mapping[str, str]:
    return {
        "notify_event": notification.event,
        "service": notification.service,
        "server": notification.server,
    }
