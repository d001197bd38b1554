"""Notice when the supervisor itself did not run, so actors are not blamed for it; sweep beat rounds.

After a SIGSTOP, a stalled event loop or a suspended VM, every heartbeat
deadline has passed although the actors kept beating (their beats wait in the
channel). A small ticker compares when it woke with when it meant to; any
deadline judge may also ask first. A gap beyond the tolerance moves every
registered deadline by the gap and logs ``supervisor.stalled``.

Children beat on a grid of CLOCK_MONOTONIC shared by every process
(``actors._runtime.beat_delay``), and write their beats into their rings
without ringing the doorbell (``Init.lazy_beats``). One sweeper task wakes
shortly after each grid point and reads every parked ring: a round of 1,000
beats costs one wake-up, not 1,000 (each a task switch and two syscalls). A
beat that misses its round is read in the next one, or at its deadline, and
dates itself (``Beat.at``), so a late read never moves a deadline.

The heartbeat deadlines are judged here too (:meth:`LoopWatch.expiry`): one
task sleeps until the earliest, and each wake-up checks every deadline due by
then, instead of a sleep per actor (in trio a sleep is a cancel scope: tens
of microseconds to arm and expire, 1,000 times every timeout).
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus

from ..core._clock import Clock
from ._heartbeat import HeartbeatDeadline

__all__ = ["LoopWatch"]

log = structlog.get_logger()

_LAG = 0.05  # of an interval, after its grid point: the round's beats have been written by then
_MAX_LAG = 0.02


class LoopWatch:
    def __init__(self, clock: Clock, *, tick: float = 0.2, tolerance: float = 0.3) -> None:
        self.clock = clock
        self.tick = tick
        self.tolerance = tolerance
        self._last = clock.now()
        self._deadlines: set[HeartbeatDeadline] = set()
        self._rounds: dict[float, dict[object, Callable[[], None]]] = {}  # interval -> key -> sweep
        self.stalls = 0
        self.sweeping = False  # run() sweeps rounds (children may beat lazily) and judges deadlines
        self._expiries: list[list[Any]] = []  # heap of [deadline, seq, HeartbeatDeadline, Event]
        self._seq = itertools.count()
        self._sleep: anyio.CancelScope | None = None  # while the expiry task sleeps

    def add(self, deadline: HeartbeatDeadline) -> None:
        self._deadlines.add(deadline)

    def discard(self, deadline: HeartbeatDeadline) -> None:
        self._deadlines.discard(deadline)

    def add_sweep(self, key: object, interval: float, sweep: Callable[[], None]) -> None:
        """Call ``sweep()`` once each beat round of ``interval`` (it must not block)."""
        self._rounds.setdefault(interval, {})[key] = sweep

    def discard_sweep(self, key: object) -> None:
        for interval, sweeps in list(self._rounds.items()):
            if sweeps.pop(key, None) is not None and not sweeps:
                del self._rounds[interval]

    async def expiry(self, beats: HeartbeatDeadline) -> float:
        """Return once ``beats`` has missed its deadline (only while :meth:`run` runs); the last beat's age then."""
        entry: list[Any] = [beats.deadline, next(self._seq), beats, anyio.Event()]
        self._push(entry)
        try:
            await entry[3].wait()
        finally:
            entry[2] = None  # cancelled: skipped when it comes up
        return beats.age(self.clock.now())

    def _push(self, entry: list[Any]) -> None:
        heapq.heappush(self._expiries, entry)
        if self._expiries[0] is entry and self._sleep is not None:
            self._sleep.cancel()  # it sleeps past this one: wake up and sleep again, shorter

    async def _judge(self) -> None:
        heap = self._expiries
        while True:
            with anyio.CancelScope() as self._sleep:
                if heap:
                    await self.clock.sleep_until(heap[0][0])
                else:
                    await anyio.sleep_forever()
            self._sleep = None
            now = self.clock.now()
            while heap and heap[0][0] <= now:
                entry = heapq.heappop(heap)
                beats = entry[2]
                if beats is None:
                    continue
                if beats.expired(now):
                    entry[2] = None
                    entry[3].set()
                else:  # it beat meanwhile: judge it again at its new deadline
                    entry[0] = beats.deadline
                    heapq.heappush(heap, entry)

    def observe(self, now: float) -> float:
        """Note that the loop runs at ``now``; the stall gap found (0.0 if none)."""
        gap = now - self._last - self.tick
        self._last = max(self._last, now)
        if gap <= self.tolerance:
            return 0.0
        self.stalls += 1
        log.warning("supervisor.stalled", gap=round(gap, 3), deadlines_extended=len(self._deadlines))
        for deadline in self._deadlines:
            deadline.extend(gap)
        return gap

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._last = self.clock.now()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._sweep_rounds)
            tg.start_soon(self._judge)
            self.sweeping = True
            task_status.started()
            try:
                while True:
                    await self.clock.sleep_until(self._last + self.tick)
                    self.observe(self.clock.now())
            finally:
                self.sweeping = False

    async def _sweep_rounds(self) -> None:
        due: dict[float, float] = {}  # interval -> when its next round is swept (this clock)
        offset = self.clock.now() - time.monotonic()  # this clock's distance from CLOCK_MONOTONIC, the grid's
        while True:
            now = self.clock.now()
            for interval in self._rounds.keys() - due.keys():
                due[interval] = now + interval - (now - offset) % interval + min(_LAG * interval, _MAX_LAG)
            for interval in due.keys() - self._rounds.keys():
                del due[interval]
            # A new interval is noticed within a tick.
            await self.clock.sleep_until(min([*due.values(), now + self.tick]))
            now = self.clock.now()
            for interval, at in list(due.items()):
                if at <= now:
                    del due[interval]
                    for sweep in list(self._rounds.get(interval, {}).values()):
                        sweep()
