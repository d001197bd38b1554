"""CronManager: the origin document's facade over per-task schedulers.

``register_task(name, task)``, ``unregister_task``, ``get_task``,
``list_tasks`` and async ``start_task``, ``stop_task``, ``start_all_tasks``,
``stop_all_tasks`` keep the origin's names; ``trigger`` and ``history`` are new.
Schedulers run in the manager's task group, so the manager is entered first::

    async with CronManager(state_dir=".actorsup") as cron:
        cron.register_task("cleanup", CleanupTask(paths=["logs"]))
        await cron.start_all_tasks()
        ...

A supervisor that owns a task group uses ``await tg.start(cron.serve)`` instead.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import structlog
from anyio.abc import TaskGroup, TaskStatus

from ..config import CronSpec
from ..core._clock import Clock, MonotonicClock
from ..core._timer import Timer
from ..exceptions import UnknownActor
from ._errors import CronError, InvalidCronTask
from ._executor import InProcessExecutor
from ._history import HistoryStore
from ._model import RunExecutor, RunRecord
from ._scheduler import CronScheduler

if TYPE_CHECKING:
    from actors import CronTask

__all__ = ["CronManager", "spec_for_task"]

def spec_for_task(name: str, task: CronTask, **options: Any) -> CronSpec:
    """A :class:`CronSpec` from a CronTask's interval/schedule/timezone plus ``options``."""
    timing: dict[str, Any] = {"timezone": task.timezone}
    if task.schedule is not None:
        timing["schedule"] = task.schedule
    else:
        timing["interval"] = float(task.get_interval())
    cls = type(task)
    try:
        return CronSpec(
            name=name, target=f"{cls.__module__}:{cls.__qualname__}", **{**timing, **options}
        )
    except TypeError as exc:
        raise InvalidCronTask(name, f"{exc} (options are the [cron.NAME] config keys)") from None


@dataclass(eq=False)
class _Registered:
    task: CronTask | None
    scheduler: CronScheduler
    scope: anyio.CancelScope | None = None
    stopped: anyio.Event | None = None
    resume: bool = False  # stopped by stop_task: the next start skips what it missed


class CronManager:
    """Registers cron tasks and runs each one's scheduler in a task group."""

    def __init__(
        self,
        *,
        state_dir: str | Path | None = None,
        clock: Clock | None = None,
        history: HistoryStore | None = None,
        rng: random.Random | None = None,
        wall_check: float = 60.0,
    ) -> None:
        """``state_dir`` holds ``cron-history.sqlite3``; None keeps history in memory."""
        self._state_dir = Path(state_dir) if state_dir is not None else None
        self._clock: Clock = clock or MonotonicClock()
        self._history = history
        self._owns_history = history is None
        self._rng = rng or random.Random()
        self._wall_check = wall_check
        self._tasks: dict[str, _Registered] = {}
        # One timer for every task: a second's 100 due runs cost one wake-up.
        self._timer = Timer(self._clock)
        self._tg: TaskGroup | None = None
        self._outer: TaskGroup | None = None

    # --- lifetime ----------------------------------------------------------------
    @property
    def history_store(self) -> HistoryStore:
        if self._history is None:
            self._history = (
                HistoryStore.in_dir(self._state_dir) if self._state_dir else HistoryStore(None)
            )
        return self._history

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Host the schedulers until cancelled; then every task is stopped."""
        store = self.history_store
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(store.run_writer)
                tg.start_soon(self._timer.run)
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._tg = None
            if self._owns_history:
                store.close()
                self._history = None

    async def __aenter__(self) -> CronManager:
        outer = anyio.create_task_group()
        await outer.__aenter__()
        try:
            await outer.start(self.serve)
        except BaseException as exc:
            outer.cancel_scope.cancel()
            await outer.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._outer = outer
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        outer, self._outer = self._outer, None
        assert outer is not None
        outer.cancel_scope.cancel()
        return await outer.__aexit__(exc_type, exc, tb)

    # --- registry ----------------------------------------------------------------
    def register_task(
        self,
        name: str,
        task: CronTask | None = None,
        *,
        spec: CronSpec | None = None,
        executor: RunExecutor | None = None,
        **options: Any,
    ) -> CronSpec:
        """Add a task; it starts with :meth:`start_task` or :meth:`start_all_tasks`.

        ``task`` (a CronTask) runs in this process unless an ``executor`` is
        given; a config task passes its ``spec`` and a child-process executor.
        ``options`` override spec keys (``overlap="queue"``, ``timeout=30``, ...).
        """
        if name in self._tasks:
            raise CronError(f"cron task {name!r} is already registered; unregister_task() it first")
        if spec is None:
            if task is None:
                raise InvalidCronTask(name, "give a CronTask, or a spec and an executor")
            spec = spec_for_task(name, task, **options)
        elif options:
            try:
                spec = msgspec.structs.replace(spec, **options)
            except TypeError as exc:
                raise InvalidCronTask(name, str(exc)) from None
        if spec.name != name:
            spec = msgspec.structs.replace(spec, name=name)
        if executor is None:
            if task is None:
                raise InvalidCronTask(name, "a spec without a CronTask needs an executor")
            executor = InProcessExecutor(task)
        if task is not None:
            task._bind(name, structlog.get_logger(actor=name))
        scheduler = CronScheduler(
            spec, executor, clock=self._clock, history=self.history_store, rng=self._rng,
            wall_check=self._wall_check, timer=self._timer,
        )
        self._tasks[name] = _Registered(task, scheduler)
        return spec

    def unregister_task(self, name: str) -> None:
        """Remove a task; a started one is stopped (its run in progress is killed)."""
        entry = self._get(name)
        if entry.scope is not None:
            entry.scope.cancel()
        del self._tasks[name]

    def get_task(self, name: str) -> CronTask | None:
        """The registered CronTask object (None for an unknown name or a config task)."""
        entry = self._tasks.get(name)
        return entry.task if entry is not None else None

    def list_tasks(self) -> list[str]:
        return list(self._tasks)

    def scheduler(self, name: str) -> CronScheduler:
        return self._get(name).scheduler

    def _get(self, name: str) -> _Registered:
        try:
            return self._tasks[name]
        except KeyError:
            raise UnknownActor(name) from None

    # --- start / stop ------------------------------------------------------------
    async def start_task(self, name: str) -> None:
        """Start scheduling ``name``; returns once its first due time is set."""
        entry = self._get(name)
        if entry.scope is not None:
            return
        if self._tg is None:
            raise CronError(
                "the CronManager is not running; use `async with CronManager() as cron:` "
                "or `await task_group.start(cron.serve)`"
            )
        await self._tg.start(self._host, entry, name=f"cron {name}")

    async def _host(self, entry: _Registered, *, task_status: TaskStatus[None]) -> None:
        entry.stopped = anyio.Event()
        try:
            with anyio.CancelScope() as scope:
                entry.scope = scope
                await entry.scheduler.run(fresh=entry.resume, task_status=task_status)
        finally:
            entry.scope = None
            entry.stopped.set()

    def pause_task(self, name: str) -> None:
        """Begin stopping ``name``: no more due times, triggers refused; a run in progress
        goes on (so its process can be stopped gracefully before :meth:`stop_task`)."""
        entry = self._get(name)
        if entry.scope is not None:
            entry.scheduler.pause()

    async def stop_task(self, name: str) -> None:
        """Stop scheduling ``name``; a run in progress is killed and recorded as such.

        Started again, it schedules from then on: the due times it was stopped
        through are not misfires.
        """
        entry = self._get(name)
        if entry.scope is None or entry.stopped is None:
            return
        entry.resume = True
        entry.scope.cancel()
        await entry.stopped.wait()

    async def start_all_tasks(self) -> None:
        for name in list(self._tasks):
            await self.start_task(name)

    async def stop_all_tasks(self) -> None:
        for name in list(self._tasks):
            entry = self._tasks[name]
            if entry.scope is not None:
                entry.scope.cancel()
        for name in list(self._tasks):
            await self.stop_task(name)

    def is_started(self, name: str) -> bool:
        entry = self._get(name)
        return entry.scope is not None and entry.scheduler.started

    # --- runs --------------------------------------------------------------------
    async def trigger(self, name: str) -> str:
        """Run ``name`` now (under its overlap policy); return the run_id."""
        return await self._get(name).scheduler.trigger()

    async def wait_run(self, name: str, run_id: str) -> RunRecord | None:
        """Wait for a run to end; its history record."""
        return await self._get(name).scheduler.wait_run(run_id)

    def history(self, name: str, limit: int | None = None) -> list[RunRecord]:
        """Recorded runs of ``name``, newest first (also of earlier supervisor runs)."""
        self._get(name)
        return self.history_store.history(name, limit)

    def describe(self, name: str) -> dict[str, Any]:
        """One row for ``actorsup cron list``."""
        entry = self._get(name)
        sched = entry.scheduler
        last = sched.last_record
        if last is None:
            rows = self.history_store.history(name, 1)
            last = rows[0] if rows else None
        next_due = sched.next_due
        return {
            "name": name,
            "schedule": sched.describe_schedule(),
            "started": self.is_started(name),
            "running": sched.running_run is not None,
            "run_id": sched.running_run,
            "next_run_at": _iso(next_due),
            "next_run_in": None if next_due is None else round(next_due - self._clock.wall(), 3),
            "last_outcome": last.outcome if last else None,
            "last_run_at": _iso(last.started_at) if last else None,
            "last_duration": last.duration if last else None,
        }

    def describe_all(self) -> list[dict[str, Any]]:
        return [self.describe(name) for name in self._tasks]


def _iso(wall: float | None) -> str | None:
    if wall is None:
        return None
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="seconds")
