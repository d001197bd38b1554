"""Notice when the supervisor itself did not run, so actors are not blamed for it.

After a SIGSTOP, a stalled event loop or a suspended VM, every heartbeat
deadline has passed although the actors kept beating (their beats wait in the
channel). A small ticker compares when it woke with when it meant to; any
deadline judge may also ask first. A gap beyond the tolerance moves every
registered deadline by the gap and logs ``supervisor.stalled`` once.
"""

from __future__ import annotations

import anyio
import structlog
from anyio.abc import TaskStatus

from ..core._clock import Clock
from ._heartbeat import HeartbeatDeadline

__all__ = ["LoopWatch"]

log = structlog.get_logger()


class LoopWatch:
    def __init__(self, clock: Clock, *, tick: float = 0.2, tolerance: float = 0.3) -> None:
        self.clock = clock
        self.tick = tick
        self.tolerance = tolerance
        self._last = clock.now()
        self._deadlines: set[HeartbeatDeadline] = set()
        self.stalls = 0

    def add(self, deadline: HeartbeatDeadline) -> None:
        self._deadlines.add(deadline)

    def discard(self, deadline: HeartbeatDeadline) -> None:
        self._deadlines.discard(deadline)

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
        task_status.started()
        while True:
            await self.clock.sleep_until(self._last + self.tick)
            self.observe(self.clock.now())
