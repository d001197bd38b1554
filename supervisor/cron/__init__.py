"""Cron tasks: per-task schedulers, run history, and the CronManager facade.

The scheduler decides when runs start (fixed rate or cron expression, jitter,
overlap, timeout, misfire and catch-up); a :class:`RunExecutor` runs them,
in-process (:class:`InProcessExecutor`) or in a child actor process.
"""

from ._errors import CronError as CronError
from ._errors import InvalidCronTask as InvalidCronTask
from ._errors import TaskBusy as TaskBusy
from ._errors import TaskNotRunning as TaskNotRunning
from ._executor import InProcessExecutor as InProcessExecutor
from ._history import HISTORY_FILE as HISTORY_FILE
from ._history import HistoryStore as HistoryStore
from ._manager import CronManager as CronManager
from ._manager import spec_for_task as spec_for_task
from ._model import OUTCOMES as OUTCOMES
from ._model import CronRun as CronRun
from ._model import RunExecutor as RunExecutor
from ._model import RunRecord as RunRecord
from ._model import RunResult as RunResult
from ._scheduler import CronScheduler as CronScheduler
from ._scheduler import validate_spec as validate_spec

__all__ = [
    "HISTORY_FILE",
    "OUTCOMES",
    "CronError",
    "CronManager",
    "CronRun",
    "CronScheduler",
    "HistoryStore",
    "InProcessExecutor",
    "InvalidCronTask",
    "RunExecutor",
    "RunRecord",
    "RunResult",
    "TaskBusy",
    "TaskNotRunning",
    "spec_for_task",
    "validate_spec",
]
