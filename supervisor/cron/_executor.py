"""Run a :class:`actors.CronTask` in the supervisor's own process (no crash isolation)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._model import CronRun, RunResult

if TYPE_CHECKING:
    from actors import CronTask

__all__ = ["InProcessExecutor"]


class InProcessExecutor:
    """Awaits ``task.run()`` in the scheduler's task group.

    Used for CronTask objects registered from Python. A run that blocks the
    event loop or crashes the interpreter takes the supervisor with it: config
    tasks get a child-process executor instead.
    """

    def __init__(self, task: CronTask) -> None:
        self.task = task

    def is_ready(self) -> bool:
        return True

    async def wait_ready(self) -> None:
        return None

    async def execute(self, run: CronRun) -> RunResult:
        # _execute() keeps task.is_running() truthful, also when cancelled.
        await self.task._execute()
        return RunResult("ok")
