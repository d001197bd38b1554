"""One injectable monotonic clock for all timing logic.

Heartbeat deadlines, backoff, restart intensity, stop escalation and cron
schedules read time only through a :class:`Clock`, so tests drive them with a
fake clock: exactly and without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import anyio
import sniffio

__all__ = ["Clock", "MonotonicClock"]


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale."""

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now() >= deadline``."""

    def wall(self) -> float:
        """Unix time, for calendar schedules and timestamps only, never durations."""


class MonotonicClock:
    """The event loop's own clock (``anyio.current_time``).

    ``now()`` runs several times per heartbeat, so the backend's clock function
    is looked up once, on first use, instead of through anyio's dispatch.
    """

    def __init__(self) -> None:
        self._now: Callable[[], float] | None = None

    def now(self) -> float:
        if self._now is None:
            self._now = _backend_clock()
        return self._now()

    async def sleep_until(self, deadline: float) -> None:
        await anyio.sleep_until(deadline)

    def wall(self) -> float:
        return time.time()


def _backend_clock() -> Callable[[], float]:
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.current_time
    import asyncio

    return asyncio.get_running_loop().time
