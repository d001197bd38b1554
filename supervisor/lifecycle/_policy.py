"""Restart policy: which exits restart, how long to wait, when to give up.

Pure logic on explicit times, so tests drive it exactly.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable

__all__ = ["Backoff", "RestartIntensity", "should_restart"]


def should_restart(restart: str, abnormal: bool) -> bool:
    """Erlang/OTP semantics: permanent always, transient on abnormal exit, temporary never."""
    if restart == "permanent":
        return True
    if restart == "transient":
        return abnormal
    return False


class Backoff:
    """Exponential delay with "equal jitter": attempt n waits in [d/2, d], d = initial * 2**(n-1).

    The attempt counter resets once the actor has run for ``reset_after``
    seconds, so one crash after a long stable run restarts quickly again.
    """

    def __init__(
        self,
        initial: float,
        maximum: float,
        reset_after: float,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if initial < 0 or maximum < initial:
            raise ValueError(f"need 0 <= initial <= maximum (got {initial}, {maximum})")
        self.initial = initial
        self.maximum = maximum
        self.reset_after = reset_after
        self.attempt = 0
        self._rng = rng

    def next_delay(self, ran_for: float) -> float:
        if ran_for >= self.reset_after:
            self.attempt = 0
        self.attempt += 1
        ceiling = min(self.maximum, self.initial * 2 ** min(self.attempt - 1, 62))
        return ceiling * (0.5 + 0.5 * self._rng())


class RestartIntensity:
    """OTP restart intensity: more than ``max_restarts`` within ``window`` s is too many."""

    def __init__(self, max_restarts: int, window: float) -> None:
        self.max_restarts = max_restarts
        self.window = window
        self._times: deque[float] = deque()

    def allow(self, now: float) -> bool:
        """Record a restart at ``now``; False once the intensity is exceeded."""
        self._times.append(now)
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        return len(self._times) <= self.max_restarts

    def reset(self) -> None:
        self._times.clear()

    @property
    def recent(self) -> int:
        return len(self._times)
