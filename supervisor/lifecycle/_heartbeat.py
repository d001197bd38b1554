"""Heartbeat deadline bookkeeping for one running actor (pure, explicit times)."""

from __future__ import annotations

from ..core._clock import Clock

__all__ = ["HeartbeatDeadline", "wait_for_expiry"]


class HeartbeatDeadline:
    def __init__(self, timeout: float, now: float) -> None:
        if timeout <= 0:
            raise ValueError(f"heartbeat timeout must be > 0 (got {timeout})")
        self.timeout = timeout
        self.last_beat = now
        self.beats = 0

    def beat(self, now: float) -> None:
        self.last_beat = max(self.last_beat, now)
        self.beats += 1

    def extend(self, gap: float) -> None:
        """Move the deadline by ``gap`` (the supervisor was not running for that long)."""
        self.last_beat += gap

    @property
    def deadline(self) -> float:
        return self.last_beat + self.timeout

    def expired(self, now: float) -> bool:
        return now >= self.deadline

    def age(self, now: float) -> float:
        return now - self.last_beat


async def wait_for_expiry(beats: HeartbeatDeadline, clock: Clock) -> float:
    """Sleep until ``beats`` misses its deadline; return the last beat's age then.

    It sleeps to the exact deadline rather than polling on a tick, so a hang
    is seen at ``last_beat + timeout``, and every beat that arrives meanwhile
    simply moves the next wake-up.
    """
    while True:
        await clock.sleep_until(beats.deadline)
        now = clock.now()
        if beats.expired(now):
            return beats.age(now)
