"""Heartbeat deadline bookkeeping for one running actor (pure, explicit times)."""

from __future__ import annotations

__all__ = ["HeartbeatDeadline"]


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

    @property
    def deadline(self) -> float:
        return self.last_beat + self.timeout

    def expired(self, now: float) -> bool:
        return now >= self.deadline

    def age(self, now: float) -> float:
        return now - self.last_beat
