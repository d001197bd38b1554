"""Restart policy: which exits restart, how long to wait, when to give up.

Pure functions on explicit values (attempts, times), consulted only by
:func:`~supervisor.lifecycle._machine.decide`, so tests drive them exactly.
"""

from __future__ import annotations

__all__ = ["backoff_delay", "intensity_allows", "should_restart"]


def should_restart(restart: str, abnormal: bool) -> bool:
    """Erlang/OTP semantics: permanent always, transient on abnormal exit, temporary never."""
    if restart == "permanent":
        return True
    if restart == "transient":
        return abnormal
    return False


def backoff_delay(attempt: int, initial: float, maximum: float, jitter: float) -> float:
    """Exponential delay with "equal jitter": attempt n (1-based) waits in [d/2, d], d = initial * 2**(n-1).

    ``d`` is capped at ``maximum``; ``jitter`` in [0, 1) picks the point in the range.
    """
    ceiling: float = min(maximum, initial * 2.0 ** min(attempt - 1, 62))
    return ceiling * (0.5 + 0.5 * jitter)


def intensity_allows(
    times: tuple[float, ...], now: float, max_restarts: int, window: float
) -> tuple[bool, tuple[float, ...]]:
    """OTP restart intensity: record a restart at ``now``; (allowed, the times still in the window).

    More than ``max_restarts`` restarts within ``window`` seconds is too many.
    """
    kept = tuple(t for t in (*times, now) if t > now - window)
    return len(kept) <= max_restarts, kept
