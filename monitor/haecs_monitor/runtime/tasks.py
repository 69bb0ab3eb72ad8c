"""Ending asyncio tasks for certain.

On Python before 3.12, ``asyncio.wait_for`` (and the timeout inside it) returns
the inner result and drops a ``cancel()`` that lands in the same loop step as
the inner awaitable finishing.  A task cancelled once may then run on, and
awaiting it hangs the shutdown.  The tasks that must end are cancelled again
until they have, and their loops also look at a stop flag of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

RECANCEL_SECONDS = 0.5


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel every task, again each `RECANCEL_SECONDS` while one still runs,
    until all have ended.  Their results and exceptions are not looked at."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=RECANCEL_SECONDS)
