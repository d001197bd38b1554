"""`actorsup run --log-format console`: stdout's log lines as coloured, aligned human text.

It is the stdout sink with one more step: each JSON line is rendered by
structlog's ConsoleRenderer (tracebacks as text) before it is written, so
buffering, flushing and a closed stdout behave exactly as for JSON lines.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import structlog

from ..control._exception import exception_text
from ..logs import LogRecord
from ..logs._sinks import StdoutSink

__all__ = ["ConsoleSink", "wants_console"]

_HIDDEN = ("seq", "id", "host")  # for machines: the JSON sinks keep them


def wants_console(log_format: str) -> bool:
    """``console``, or ``auto`` with stdout at a terminal."""
    return log_format == "console" or (log_format == "auto" and sys.stdout.isatty())


class ConsoleSink(StdoutSink):
    def __init__(self, *args: Any, colors: bool = True, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._render = structlog.dev.ConsoleRenderer(colors=colors, pad_event=30)

    def _text(self, line: bytes) -> bytes:
        try:
            event = json.loads(line)
        except ValueError:
            return line.rstrip(b"\n")
        if not isinstance(event, dict):
            return line.rstrip(b"\n")
        for key in _HIDDEN:
            event.pop(key, None)
        if "exception" in event:
            event["exception"] = exception_text(event["exception"]) or ""
        level = str(event.get("level", "info"))
        return str(self._render(None, level, event)).encode("utf-8", "replace")

    def write(self, record: LogRecord) -> None:
        super().write(record._replace(line=self._text(record.line)))

    def write_many(self, level: int, actor: str | None, pieces: list[bytes]) -> None:
        text = b"".join(pieces)
        lines = [self._text(line) + b"\n" for line in text.split(b"\n") if line]
        super().write_many(level, actor, lines)
