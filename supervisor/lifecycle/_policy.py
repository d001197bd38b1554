"""Restart policy: which exits restart, how long to wait, when to give up.

Pure logic on explicit times, so tests drive it exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff", "RestartIntensity", "backoff_delay", "intensity_allows", "should_restart"]


def should_restart(restart: str, abnormal: bool) -> bool:
    """Erlang/OTP semantics: permanent always, transient on abnormal exit, temporary never."""
    if restart == "permanent":
        return True
    if restart == "transient":
        return abnormal
    return False


def backoff_delay(attempt: int, initial: float, maximum: float, jitter: float) -> float:
    """Attempt ``attempt`` (1-based) waits in [d/2, d], d = initial * 2**(attempt-1), capped."""
    ceiling: float = min(maximum, initial * 2.0 ** min(attempt - 1, 62))
    return ceiling * (0.5 + 0.5 * jitter)


def intensity_allows(
    times: tuple[float, ...], now: float, max_restarts: int, window: float
) -> tuple[bool, tuple[float, ...]]:
    """Record a restart at ``now`` in ``times``: (still allowed, the times left in the window)."""
    kept = tuple(t for t in (*times, now) if t > now - window)
    return len(kept) <= max_restarts, kept


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
        return backoff_delay(self.attempt, self.initial, self.maximum, self._rng())


class RestartIntensity:
    """OTP restart intensity: more than ``max_restarts`` within ``window`` s is too many."""

    def __init__(self, max_restarts: int, window: float) -> None:
        self.max_restarts = max_restarts
        self.window = window
        self._times: tuple[float, ...] = ()

    def allow(self, now: float) -> bool:
        """Record a restart at ``now``; False once the intensity is exceeded."""
        allowed, self._times = intensity_allows(self._times, now, self.max_restarts, self.window)
        return allowed

    def reset(self) -> None:
        self._times = ()

    @property
    def recent(self) -> int:
        return len(self._times)
