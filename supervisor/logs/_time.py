"""Fast ISO 8601 UTC timestamps: the per-second prefix is cached."""

from __future__ import annotations

import time
from datetime import UTC, datetime

__all__ = ["iso_utc"]

_cache: tuple[int, str] = (-1, "")


def iso_utc(ts: float | None = None) -> str:
    """``2026-11-26T21:37:58.123456Z`` for ``ts`` (default: now)."""
    global _cache
    if ts is None:
        ts = time.time()
    sec = int(ts)
    if _cache[0] != sec:
        stamp = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _cache = (sec, stamp)
    return f"{_cache[1]}.{int((ts - sec) * 1_000_000):06d}Z"
