"""The unit that flows from the router to the sinks."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["LogRecord"]


class LogRecord(NamedTuple):
    level: int  # stdlib numeric level, for sink filters
    actor: str | None  # for sink actor filters; None for the supervisor's own events
    line: bytes  # one complete JSON object, without the trailing newline
