"""Fakes shared by the cron tests (this module holds no tests itself).

:class:`QuickClock` is tests/fakeclock.py's FakeClock with a faster settle
step: anyio's ``wait_all_tasks_blocked`` polls every 0.1 s on asyncio, which
would make 10,000 simulated runs take half an hour there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import sniffio
import trio.testing
from fakeclock import FakeClock

from supervisor.config import CronSpec
from supervisor.cron import CronRun, CronScheduler, HistoryStore, RunResult


async def settle() -> None:
    """Return once every other task is blocked (no sleeping on asyncio)."""
    if sniffio.current_async_library() == "trio":
        await trio.testing.wait_all_tasks_blocked()
        return
    me = asyncio.current_task()
    await asyncio.sleep(0)
    while True:
        for task in asyncio.all_tasks():
            waiter = getattr(task, "_fut_waiter", None)
            if task is not me and (waiter is None or waiter.done()):
                await asyncio.sleep(0)
                break
        else:
            return


class QuickClock(FakeClock):
    async def _settle(self) -> None:
        await settle()

    async def advance_to(self, when: float) -> None:
        await self.advance(when - self._now)


def wall_at(text: str, zone: str) -> float:
    """Unix time of a local ``YYYY-MM-DD HH:MM`` in ``zone``."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def local(wall: float, zone: str) -> str:
    return datetime.fromtimestamp(wall, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S%z")


class FakeExecutor:
    """Records each run; a run lasts ``duration`` seconds of the fake clock."""

    def __init__(
        self, clock: FakeClock, duration: float | Callable[[CronRun], float] = 0.0,
        fail: str | None = None,
    ) -> None:
        self.clock = clock
        self.duration = duration
        self.fail = fail
        self.starts: list[float] = []
        self.runs: list[CronRun] = []
        self.ended: list[str] = []
        self._ready = True
        self._ready_event: anyio.Event | None = None

    def set_ready(self, ready: bool) -> None:
        self._ready = ready
        if ready and self._ready_event is not None:
            self._ready_event.set()
            self._ready_event = None

    def is_ready(self) -> bool:
        return self._ready

    async def wait_ready(self) -> None:
        if not self._ready:
            if self._ready_event is None:
                self._ready_event = anyio.Event()
            await self._ready_event.wait()

    async def execute(self, run: CronRun) -> RunResult:
        self.starts.append(self.clock.now())
        self.runs.append(run)
        duration = self.duration(run) if callable(self.duration) else self.duration
        if duration:
            await self.clock.sleep_until(self.clock.now() + duration)
        if self.fail:
            raise RuntimeError(self.fail)
        self.ended.append(run.run_id)
        return RunResult("ok")


def make_spec(name: str = "job", **fields: Any) -> CronSpec:
    if "schedule" not in fields:
        fields.setdefault("interval", 10.0)
    return CronSpec(name=name, target="actors.builtin:HeartbeatTask", **fields)


@asynccontextmanager
async def running(
    spec: CronSpec, executor: Any, clock: FakeClock, history: HistoryStore | None = None,
    **kwargs: Any,
) -> AsyncIterator[CronScheduler]:
    """A started scheduler, stopped (cancelled) on exit."""
    scheduler = CronScheduler(spec, executor, clock=clock, history=history, **kwargs)
    async with anyio.create_task_group() as tg:
        await tg.start(scheduler.run)
        await settle()  # let it act on due times already past (after a restart)
        yield scheduler
        tg.cancel_scope.cancel()


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]
