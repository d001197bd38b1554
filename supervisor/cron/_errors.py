"""Errors of the cron subsystem; all are :class:`~supervisor.exceptions.SupervisorError`."""

from __future__ import annotations

from typing import Any

from ..exceptions import SupervisorError

__all__ = ["CronError", "InvalidCronTask", "TaskBusy", "TaskNotRunning"]


class CronError(SupervisorError):
    """Base class of cron errors."""


class InvalidCronTask(CronError, ValueError):
    """A cron task's settings are inconsistent or out of range."""

    def __init__(self, task: str, problem: str) -> None:
        self.task = task
        self.problem = problem
        super().__init__(f"cron task {task!r}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable despite the custom __init__
        return (type(self), (self.task, self.problem))


class TaskNotRunning(CronError):
    """The task is registered but its scheduler is not started."""

    def __init__(self, task: str) -> None:
        self.task = task
        super().__init__(f"cron task {task!r} is not started; call start_task({task!r}) first")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task,))


class TaskBusy(CronError):
    """A manual trigger was refused by the task's overlap policy."""

    def __init__(self, task: str, running: str, overlap: str) -> None:
        self.task = task
        self.running = running
        self.overlap = overlap
        super().__init__(
            f"cron task {task!r} is still running run {running} and its overlap policy is "
            f"{overlap!r}; trigger it again once that run finishes, or set overlap = "
            '"queue" or "replace"'
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task, self.running, self.overlap))
