"""runtime/tasks.py: a task that swallows a cancel() still ends."""

from __future__ import annotations

import asyncio

from haecs_monitor.runtime import tasks


def test_a_task_that_survives_its_first_cancel_is_cancelled_again(monkeypatch) -> None:
    monkeypatch.setattr(tasks, "RECANCEL_SECONDS", 0.01)
    cancels: list[int] = []

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels.append(1)
                if len(cancels) == 3:
                    raise

    async def main() -> bool:
        task = asyncio.get_running_loop().create_task(stubborn())
        await asyncio.sleep(0)
        await asyncio.wait_for(tasks.cancel_and_wait([task]), 5)
        return task.cancelled()

    assert asyncio.run(main()) is True
    assert len(cancels) == 3


def test_ended_tasks_and_none_at_all_return_at_once() -> None:
    async def main() -> None:
        done = asyncio.get_running_loop().create_task(asyncio.sleep(0))
        await done
        await asyncio.wait_for(tasks.cancel_and_wait([done]), 1)
        await asyncio.wait_for(tasks.cancel_and_wait([]), 1)

    asyncio.run(main())
