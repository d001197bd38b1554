"""A fake :class:`supervisor.core._clock.Clock` that works on every anyio backend.

Time moves only when a test calls :meth:`FakeClock.advance`; sleepers whose
deadline has passed are woken, in deadline order, and the test then waits
with ``anyio.wait_all_tasks_blocked()`` for them to settle.
"""

from __future__ import annotations

import heapq
import itertools

import anyio


class FakeClock:
    def __init__(self, start: float = 1000.0, wall_offset: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_offset - start
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._ids = itertools.count()

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    def set_wall(self, wall: float) -> None:
        """Move the calendar without moving the monotonic clock (a clock step)."""
        self._wall_offset = wall - self._now

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        entry = (deadline, next(self._ids), event)
        heapq.heappush(self._sleepers, entry)
        try:
            await event.wait()
        finally:
            if not event.is_set():  # cancelled: the deadline no longer counts
                self._sleepers.remove(entry)
                heapq.heapify(self._sleepers)

    @property
    def next_deadline(self) -> float | None:
        return self._sleepers[0][0] if self._sleepers else None

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper due on the way, in order."""
        target = self._now + seconds
        await self._settle()  # time moves only once every runnable task is blocked
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, event = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            event.set()
            await self._settle()
        self._now = target
        await self._settle()

    async def _settle(self) -> None:
        """Wait until every woken task is blocked again (subclasses may do it faster)."""
        await anyio.wait_all_tasks_blocked()

    async def run_until_idle(self, limit: float = 10_000.0) -> None:
        """Advance to each next deadline until no sleeper is left (or ``limit``)."""
        end = self._now + limit
        while self._sleepers and self._sleepers[0][0] <= end:
            await self.advance(self._sleepers[0][0] - self._now)
