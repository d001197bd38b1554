"""Many deadlines, one sleeping task.

trio implements every sleep as a cancel-scope deadline; expiring one costs
tens of microseconds, and a task woken that way still has to be scheduled.
When 100 cron tasks fall due in the same second, paying that 100 times, and
then spawning a task per run, is what made the last one 10 ms late. A
:class:`Timer` keeps the deadlines in a heap, sleeps once until the earliest,
and calls each due callback synchronously: the callbacks only decide and hand
work to tasks that are already waiting.

It reads time only through an injected :class:`~supervisor.core._clock.Clock`, so it
runs on the tests' fake clock too.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

import anyio
from anyio.abc import TaskStatus

from ._clock import Clock

__all__ = ["Alarm", "Timer"]


class Alarm:
    """One pending callback; :meth:`cancel` it if it is no longer wanted."""

    __slots__ = ("_callback", "_seq", "deadline")

    def __init__(self, deadline: float, seq: int, callback: Callable[[], object]) -> None:
        self.deadline = deadline
        self._seq = seq
        self._callback: Callable[[], object] | None = callback

    def __lt__(self, other: Alarm) -> bool:  # heap order: deadline, then arming order
        return (self.deadline, self._seq) < (other.deadline, other._seq)

    @property
    def pending(self) -> bool:
        return self._callback is not None

    def cancel(self) -> None:
        self._callback = None  # left in the heap; skipped when it comes up


class Timer:
    """Calls synchronous callbacks at their deadlines, from the one task in :meth:`run`."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._heap: list[Alarm] = []
        self._seq = itertools.count()
        self._sleep: anyio.CancelScope | None = None  # set while run() sleeps

    def call_at(self, deadline: float, callback: Callable[[], object]) -> Alarm:
        """Call ``callback()`` once the clock reaches ``deadline``.

        A callback runs inside :meth:`run`: it must not block, and what it raises
        ends the timer (and so its owner), as it would have ended a task of its own.
        """
        alarm = Alarm(deadline, next(self._seq), callback)
        heapq.heappush(self._heap, alarm)
        if self._heap[0] is alarm and self._sleep is not None:
            self._sleep.cancel()  # sleeping past this one: wake up and sleep again, shorter
        return alarm

    @property
    def next_deadline(self) -> float | None:
        self._drop_cancelled()
        return self._heap[0].deadline if self._heap else None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Fire alarms as they fall due, until cancelled."""
        task_status.started()
        heap = self._heap
        while True:
            deadline = self.next_deadline
            if deadline is not None and deadline <= self._clock.now():
                await anyio.lowlevel.checkpoint()
            else:
                with anyio.CancelScope() as self._sleep:
                    if deadline is None:
                        await anyio.sleep_forever()
                    else:
                        await self._clock.sleep_until(deadline)
                self._sleep = None
            now = self._clock.now()
            # Callbacks may arm new alarms; one already due fires in this pass too.
            while heap and heap[0].deadline <= now:
                alarm = heapq.heappop(heap)
                callback, alarm._callback = alarm._callback, None
                if callback is not None:
                    callback()

    def _drop_cancelled(self) -> None:
        heap = self._heap
        while heap and heap[0]._callback is None:
            heapq.heappop(heap)
