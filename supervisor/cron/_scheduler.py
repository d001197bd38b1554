"""The per-task cron scheduler: when each run starts, and what happens to it.

One :class:`CronScheduler` owns one task's timing: fixed-rate or calendar due
times, jitter, the overlap policy, the per-run timeout, misfires and catch-up.
It reads time only through an injected :class:`~supervisor.core._clock.Clock`, and
hands each execution to a :class:`~supervisor.cron.RunExecutor`, so tests
drive it on a fake clock with a fake executor, exactly and without sleeping.

Outcomes: ``ok`` and ``error`` come from the executor; ``timeout`` and
``killed`` are the scheduler's own, when it cancels a run.
"""

from __future__ import annotations

import dataclasses
import random
import traceback
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus

from ..config import CronSpec, check_spec
from ..core._clock import Clock, MonotonicClock
from ..core._timer import Alarm, Timer
from ..exceptions import ConfigError
from ._errors import InvalidCronTask, TaskBusy, TaskNotRunning
from ._expr import CronSchedule
from ._history import HistoryStore
from ._model import CronRun, RunExecutor, RunRecord, RunResult
from ._timeline import CalendarTimeline, Due, IntervalTimeline, Timeline

__all__ = ["CronScheduler", "validate_spec"]

log = structlog.get_logger()

# A long outage of an every-second schedule must not walk millions of due times.
_MAX_COUNTED_MISSES = 10_000
# Wall-derived deadlines carry float rounding of Unix times (~0.2 us).
_TOLERANCE = 1e-6
# run_ids: 48 random bits, seeded once from the OS (uuid4 reads urandom per call).
_run_ids = random.Random()


def validate_spec(spec: CronSpec) -> CronSchedule | None:
    """Check a spec with the config's checks; return its parsed schedule, if it has one."""
    try:
        check_spec(spec)
    except ConfigError as exc:
        raise InvalidCronTask(spec.name, f"{exc.path}: {exc.problem}" if exc.path else exc.problem) from None
    return None if spec.schedule is None else CronSchedule(spec.schedule, spec.timezone)


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")


class _Entry:
    """One run from dispatch to its end."""

    __slots__ = ("done", "eligible", "planned", "reason", "record", "run", "scope", "started")

    def __init__(self, run: CronRun, planned: float) -> None:
        self.run = run
        self.planned = planned  # monotonic time it should have started
        self.eligible = planned  # when overlap allowed it to start (queue, replace)
        self.started = False
        self.scope: anyio.CancelScope | None = None
        self.reason: str | None = None  # why the scheduler cancels it: timeout | killed
        self.done = anyio.Event()
        self.record: RunRecord | None = None

    def kill(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        if self.scope is not None:
            self.scope.cancel()


class CronScheduler:
    """Runs one cron task on its schedule until cancelled."""

    def __init__(
        self,
        spec: CronSpec,
        executor: RunExecutor,
        *,
        clock: Clock | None = None,
        history: HistoryStore | None = None,
        rng: random.Random | None = None,
        wall_check: float = 60.0,
        timer: Timer | None = None,
    ) -> None:
        """``timer``: shared with other schedulers (a CronManager's); else one of its own."""
        self.spec = spec
        self.name = spec.name
        self._schedule = validate_spec(spec)
        self._executor = executor
        self._clock: Clock = clock or MonotonicClock()
        self._history = history
        self._rng = rng or random.Random()
        # Calendar schedules re-read the wall clock at least this often (clock steps).
        self._wall_check = wall_check
        self._timer = timer
        self._alarm: Alarm | None = None  # the wake-up for the next due time
        self._due: Due | None = None
        self._delay = 0.0  # jitter of the next due time
        self._tg: TaskGroup | None = None
        self._timeline: Timeline | None = None
        self._go = anyio.Event()  # the runner has an entry to run
        self._next_entry: _Entry | None = None
        self._active: _Entry | None = None
        self._waiting: _Entry | None = None
        self._live: dict[str, _Entry] = {}
        self._start_wall = 0.0
        self._paused = False  # stopping: no due times, no trigger, no queued run
        self.next_due: float | None = None  # Unix time of the next due run, once started
        self.last_record: RunRecord | None = None

    # --- public ------------------------------------------------------------------
    @property
    def started(self) -> bool:
        """Scheduling: running and not being stopped."""
        return self._tg is not None and not self._paused

    @property
    def running_run(self) -> str | None:
        """The run_id of the execution in progress, if any."""
        return self._active.run.run_id if self._active is not None else None

    def describe_schedule(self) -> str:
        if self._schedule is not None:
            zone = f" ({self.spec.timezone})" if self.spec.timezone else ""
            return f"{self._schedule.expr}{zone}"
        return f"every {self.spec.interval:g}s"

    async def run(
        self, *, fresh: bool = False, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Schedule runs until cancelled; a run in progress is then killed and recorded.

        ``fresh``: start from now, not from the last due time on record (a task the
        user stopped missed nothing while it was stopped: no misfire, no catch-up).

        Due times fire as :class:`~supervisor.core._timer.Timer` callbacks, which decide
        synchronously; this task is the runner, executing one run at a time (every
        overlap policy keeps at most one run going). A due run therefore costs one
        wake-up, not a sleeping task's timeout plus a new task.
        """
        last_due = self._history.last_due(self.name) if self._history and not fresh else None
        self._paused = False
        self._start_wall = self._clock.wall()
        if self._schedule is not None:
            self._timeline = CalendarTimeline(self._schedule, self._clock, last_due)
        else:
            assert self.spec.interval is not None
            self._timeline = IntervalTimeline(self.spec.interval, self._clock, last_due)
        own_timer = self._timer is None
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                if self._timer is None:
                    self._timer = Timer(self._clock)
                    tg.start_soon(self._timer.run)
                self._arm(self._timeline.first())
                task_status.started()
                await self._run_entries()
        finally:
            if self._alarm is not None:
                self._alarm.cancel()
            self._alarm = self._next_entry = None
            if own_timer:
                self._timer = None
            self._tg = None
            self.next_due = None

    async def trigger(self) -> str:
        """Start a run now, under the overlap policy; return its run_id.

        Raises :class:`TaskBusy` when ``overlap = "skip"`` and a run is in progress.
        """
        if self._tg is None or self._paused:
            raise TaskNotRunning(self.name)
        run = self._new_run(self._clock.wall(), "manual")
        active = self._active
        if active is not None and (self.spec.overlap == "skip" or not active.started):
            raise TaskBusy(self.name, active.run.run_id, self.spec.overlap)
        self._dispatch(run, self._clock.now())
        return run.run_id

    def pause(self) -> None:
        """Stopping: no more due times or triggers; a run in progress goes on until it is stopped."""
        self._paused = True
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None
        self.next_due = None

    async def wait_run(self, run_id: str) -> RunRecord | None:
        """Wait for run ``run_id`` to end and return its record (None if unknown)."""
        entry = self._live.get(run_id)
        if entry is not None:
            await entry.done.wait()
            return entry.record
        if self.last_record is not None and self.last_record.run_id == run_id:
            return self.last_record
        if self._history is not None:
            return next((r for r in self._history.history(self.name) if r.run_id == run_id), None)
        return None

    # --- timing ------------------------------------------------------------------
    def _arm(self, due: Due) -> None:
        """Set the alarm for ``due`` (plus its jitter)."""
        self._due = due
        self._delay = self._jitter(due)
        self.next_due = due.scheduled_at
        self._set_alarm()

    def _set_alarm(self) -> None:
        timeline, due = self._timeline, self._due
        assert timeline is not None and due is not None and self._timer is not None
        target = timeline.deadline(due) + self._delay
        if timeline.follows_wall:  # re-read the calendar now and then (clock steps)
            target = min(target, self._clock.now() + self._wall_check)
        self._alarm = self._timer.call_at(target, self._on_alarm)

    def _on_alarm(self) -> None:
        timeline, due = self._timeline, self._due
        assert timeline is not None and due is not None
        if timeline.deadline(due) + self._delay - self._clock.now() > _TOLERANCE:
            self._set_alarm()  # a wall-clock re-check, or the calendar moved
            return
        self._arm(self._handle(due, self._delay))

    def _handle(self, due: Due, delay: float) -> Due:
        """``due`` has come: start it (or record why not); return the next due time."""
        timeline = self._timeline
        assert timeline is not None
        late = timeline.overdue(due)
        count, last = timeline.count_passed(due, _MAX_COUNTED_MISSES)
        following = timeline.next(last) if count < _MAX_COUNTED_MISSES else timeline.after_now()
        grace = self.spec.misfire_grace
        now = self._clock.now()
        if count == 1 and late - delay <= grace:
            self._dispatch(self._new_run(due.scheduled_at, "schedule"), now - (late - delay))
        else:
            last_late = timeline.overdue(last)
            on_time = last if count > 1 and last_late <= grace else None
            missed = count - (1 if on_time is not None else 0)
            reason = "supervisor_down" if due.scheduled_at < self._start_wall else "late"
            log.warning(
                "cron.misfire", actor=self.name, reason=reason, missed=missed,
                scheduled_at=_iso(due.scheduled_at), lateness=round(late, 6),
                misfire_grace=grace, catch_up=self.spec.catch_up,
            )
            if on_time is not None:  # this run stands for the missed ones too
                self._dispatch(self._new_run(on_time.scheduled_at, "schedule"), now - last_late)
            elif self.spec.catch_up:
                self._dispatch(self._new_run(last.scheduled_at, "catch_up", missed), now)
        if self._history is not None:
            self._history.set_last_due(self.name, last.scheduled_at)
        return following

    def _jitter(self, due: Due) -> float:
        if not self.spec.jitter:
            return 0.0
        assert self._timeline is not None
        # Never past the next due time, so runs keep their order and rate.
        gap = self._timeline.next(due).scheduled_at - due.scheduled_at
        return self._rng.random() * min(self.spec.jitter, gap)

    # --- overlap -----------------------------------------------------------------
    def _new_run(self, scheduled_at: float, trigger: str, missed: int = 0) -> CronRun:
        return CronRun(
            run_id=f"{_run_ids.getrandbits(48):012x}", task=self.name, scheduled_at=scheduled_at,
            trigger=trigger, timeout=self.spec.timeout, missed=missed,
        )

    def _dispatch(self, run: CronRun, planned: float) -> None:
        entry = _Entry(run, planned)
        active = self._active
        if active is None:
            self._start(entry)
            return
        if not active.started:
            # The executor is not ready yet, so this run could not start either.
            log.warning(
                "cron.misfire", actor=self.name, reason="not_ready", missed=1,
                scheduled_at=_iso(run.scheduled_at), catch_up=self.spec.catch_up,
                coalesced_into=active.run.run_id if self.spec.catch_up else None,
            )
            return
        overlap = self.spec.overlap
        if overlap == "skip":
            self._skipped(run, "overlap", active)
            return
        if self._waiting is not None:
            if overlap == "queue":  # one waiting run is enough to keep the rate
                self._skipped(run, "queue_full", active)
                return
            self._skipped(self._waiting.run, "replaced", active)
        self._waiting = entry
        self._live[run.run_id] = entry
        if overlap == "replace":
            active.kill("killed")

    def _skipped(self, run: CronRun, reason: str, active: _Entry) -> None:
        log.warning(
            "cron.run.skipped", actor=self.name, reason=reason, run_id=run.run_id,
            scheduled_at=_iso(run.scheduled_at), running=active.run.run_id,
            overlap=self.spec.overlap,
        )
        entry = self._live.pop(run.run_id, None)
        if entry is not None:
            entry.done.set()

    def _start(self, entry: _Entry) -> None:
        self._active = entry
        self._live[entry.run.run_id] = entry
        self._next_entry = entry
        self._go.set()

    async def _run_entries(self) -> None:
        """The runner: run each started entry, one at a time, until cancelled."""
        while True:
            entry, self._next_entry = self._next_entry, None
            if entry is None:
                self._go = anyio.Event()
                await self._go.wait()
                continue
            await self._run_entry(entry)

    async def _run_entry(self, entry: _Entry) -> None:
        stopping = True
        try:
            if await self._become_ready(entry):
                await self._execute(entry)
            stopping = False
        finally:
            self._active = None
            self._live.pop(entry.run.run_id, None)
            entry.done.set()
            waiting, self._waiting = self._waiting, None
            if waiting is not None and not stopping and not self._paused:
                waiting.eligible = self._clock.now()
                self._start(waiting)
            elif waiting is not None:  # never runs: whoever waits for it hears so
                self._live.pop(waiting.run.run_id, None)
                waiting.done.set()

    async def _become_ready(self, entry: _Entry) -> bool:
        if self._executor.is_ready():
            return True
        deadline = max(entry.planned, entry.eligible) + self.spec.misfire_grace
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._cancel_at, scope, deadline)
                await self._executor.wait_ready()
                tg.cancel_scope.cancel()
        if not scope.cancelled_caught:
            return True
        log.warning(
            "cron.misfire", actor=self.name, reason="not_ready", missed=1 + entry.run.missed,
            scheduled_at=_iso(entry.run.scheduled_at), misfire_grace=self.spec.misfire_grace,
            catch_up=self.spec.catch_up,
        )
        if not self.spec.catch_up:
            return False
        await self._executor.wait_ready()
        entry.run = dataclasses.replace(entry.run, trigger="catch_up")
        return True

    async def _cancel_at(self, scope: anyio.CancelScope, deadline: float) -> None:
        await self._clock.sleep_until(deadline)
        scope.cancel()

    # --- one execution -----------------------------------------------------------
    async def _execute(self, entry: _Entry) -> None:
        run = entry.run
        entry.started = True
        started = self._clock.now()
        started_wall = self._clock.wall()
        log.info(
            "cron.run.started", actor=self.name, run_id=run.run_id, trigger=run.trigger,
            scheduled_at=_iso(run.scheduled_at), lateness=round(started - entry.planned, 6),
        )
        if self._history is not None:
            self._history.record_started(
                run.run_id, self.name, run.scheduled_at, started_wall, run.trigger
            )
        result: RunResult | None = None
        finished = False
        expiry = None
        try:
            with anyio.CancelScope() as scope:
                entry.scope = scope
                if entry.reason is not None:
                    scope.cancel()
                if run.timeout is not None:
                    assert self._timer is not None
                    expiry = self._timer.call_at(started + run.timeout, lambda: entry.kill("timeout"))
                result = await self._call_executor(run)
            finished = True
        finally:
            if expiry is not None:
                expiry.cancel()
            error: str | None
            if not finished:
                outcome, error = "killed", "the task was stopped during the run"
            elif entry.reason is not None and (result is None or scope.cancel_called):
                outcome, error = entry.reason, self._kill_text(entry.reason)
            else:
                assert result is not None
                outcome, error = result.outcome, result.error
            self._finish(entry, started, started_wall, outcome, error)

    async def _call_executor(self, run: CronRun) -> RunResult:
        try:
            return await self._executor.execute(run)
        except Exception:
            return RunResult("error", traceback.format_exc())

    def _kill_text(self, reason: str) -> str:
        if reason == "timeout":
            return f"killed after timeout={self.spec.timeout:g}s"
        return 'killed to start a newer run (overlap = "replace")'

    def _finish(
        self, entry: _Entry, started: float, started_wall: float, outcome: str, error: str | None
    ) -> None:
        run = entry.run
        duration = self._clock.now() - started
        record = RunRecord(
            run.run_id, self.name, run.scheduled_at, started_wall, started_wall + duration,
            duration, outcome, error, run.trigger,
        )
        entry.record = self.last_record = record
        fields: dict[str, Any] = dict(
            actor=self.name, run_id=run.run_id, outcome=outcome, duration=round(duration, 6),
            scheduled_at=_iso(run.scheduled_at), trigger=run.trigger,
        )
        if error:
            lines = error.strip().splitlines()
            fields["error"] = lines[-1] if lines else error
            if len(lines) > 1:
                fields["traceback"] = error
        if outcome == "ok":
            log.info("cron.run.finished", **fields)
        else:
            log.error("cron.run.finished", **fields)
        if self._history is not None:
            self._history.record_finished(
                run.run_id, self.name, record.finished_at or started_wall, duration,
                outcome, error, self.spec.history_limit,
            )
