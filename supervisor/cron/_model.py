"""The values the cron scheduler passes around, and the executor protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "OUTCOMES",
    "CronRun",
    "RunExecutor",
    "RunRecord",
    "RunResult",
]

# ok: run() returned; error: it raised or its process died; timeout: it ran
# past its ``timeout`` and was killed; killed: replaced, or its task stopped.
OUTCOMES = ("ok", "error", "timeout", "killed")


@dataclass(frozen=True, slots=True)
class CronRun:
    """One execution request handed to a :class:`RunExecutor`."""

    run_id: str
    task: str
    scheduled_at: float  # Unix seconds the run was due (before jitter)
    trigger: str  # schedule | manual | catch_up
    timeout: float | None = None  # the scheduler enforces it; given for information
    missed: int = 0  # catch_up: how many missed runs this one stands for


@dataclass(frozen=True, slots=True)
class RunResult:
    """What an executor reports for a run it completed."""

    outcome: str = "ok"  # one of OUTCOMES
    error: str | None = None  # error text, a traceback where there is one


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One row of the run history; an unfinished run has ``outcome is None``."""

    run_id: str
    task: str
    scheduled_at: float
    started_at: float
    finished_at: float | None
    duration: float | None
    outcome: str | None
    error: str | None
    trigger: str


class RunExecutor(Protocol):
    """Runs one execution of a cron task somewhere (in-process, or in a child actor).

    The scheduler decides *when*; the executor only runs. ``execute`` is
    cancelled to kill a run (timeout, ``overlap = "replace"``, task stopped):
    it must then stop the execution (kill the process, for a child actor) and
    let the cancellation propagate. An exception from ``execute`` is recorded
    as outcome ``error`` with its traceback.
    """

    def is_ready(self) -> bool:
        """True when a run could start at once (e.g. the actor process is up)."""

    async def wait_ready(self) -> None:
        """Return once :meth:`is_ready` is true (the actor finished restarting)."""

    async def execute(self, run: CronRun) -> RunResult:
        """Run once and report the outcome; cancellation means kill it."""
