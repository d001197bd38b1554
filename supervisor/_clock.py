"""One injectable monotonic clock for all timing logic.

Heartbeat deadlines, backoff, restart intensity, stop escalation and cron
schedules read time only through a :class:`Clock`, so tests drive them with a
fake clock: exactly and without sleeping.
"""

from __future__ import annotations

from typing import Protocol

import time

import anyio

__all__ = ["Clock", "MonotonicClock"]


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale."""

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now() >= deadline``."""

    def wall(self) -> float:
        """Unix time, for calendar schedules and timestamps only, never durations."""


class MonotonicClock:
    """The event loop's own clock (``anyio.current_time``)."""

    def now(self) -> float:
        return anyio.current_time()

    async def sleep_until(self, deadline: float) -> None:
        await anyio.sleep_until(deadline)

    def wall(self) -> float:
        return time.time()
