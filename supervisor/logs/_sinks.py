"""Sink protocol, the shared buffered-writer base, and the stdout sink."""

from __future__ import annotations

import sys
from typing import BinaryIO, Protocol

import anyio
import structlog
from anyio.abc import TaskStatus

from ..config import SinkSpec
from ._record import LogRecord

__all__ = ["FLUSH_INTERVAL", "Sink", "StdoutSink"]

log = structlog.get_logger("actorsup.logs")

FLUSH_INTERVAL = 0.05  # seconds a written line may sit in a userspace buffer


class Sink(Protocol):
    spec: SinkSpec

    def write(self, record: LogRecord) -> None:
        """Accept one record without blocking the event loop for long; never raise."""

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        """Background delivery; runs until cancelled."""

    async def aclose(self) -> None:
        """Flush what is buffered and release resources."""


def describe(spec: SinkSpec) -> str:
    """A short name for a sink in diagnostics: ``file:logs/a.jsonl``, ``tcp:h:5140``."""
    if spec.path is not None:
        return f"{spec.type}:{spec.path}"
    if spec.address is not None:
        return f"{spec.type}:{spec.address[0]}:{spec.address[1]}"
    return spec.type


class _BufferedSink:
    """Writes into a userspace buffer; a background task flushes it soon after.

    Batching the ``write`` syscalls is what makes 300,000 events/s possible;
    the flush delay is bounded by :data:`FLUSH_INTERVAL`.
    """

    def __init__(self, spec: SinkSpec) -> None:
        self.spec = spec
        self.name = describe(spec)
        self._dirty = False
        self._wake: anyio.Event | None = None

    def _mark_dirty(self) -> None:
        if not self._dirty:
            self._dirty = True
            if self._wake is not None:
                self._wake.set()

    def flush(self) -> None:
        """Write the userspace buffer out now."""
        self._dirty = False

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._wake = anyio.Event()
        task_status.started()
        while True:
            if not self._dirty:
                await self._wake.wait()
            self._wake = anyio.Event()
            await anyio.sleep(FLUSH_INTERVAL)
            self.flush()

    async def aclose(self) -> None:
        self.flush()


class StdoutSink(_BufferedSink):
    """JSON lines on the supervisor's stdout (the default sink)."""

    def __init__(self, spec: SinkSpec, stream: BinaryIO | None = None) -> None:
        super().__init__(spec)
        self._stream = stream if stream is not None else sys.stdout.buffer
        self._broken = False

    def write(self, record: LogRecord) -> None:
        if self._broken:
            return
        try:
            self._stream.write(record.line + b"\n")
        except (OSError, ValueError) as exc:
            self._fail(exc)
            return
        self._mark_dirty()

    def write_many(self, level: int, actor: str | None, pieces: list[bytes]) -> None:
        """Pieces of JSON lines (each line ends in a newline), written and flushed at once."""
        if self._broken:
            return
        try:
            self._stream.writelines(pieces)
        except (OSError, ValueError) as exc:
            self._fail(exc)
            return
        self.flush()

    def flush(self) -> None:
        super().flush()
        if self._broken:
            return
        try:
            self._stream.flush()
        except (OSError, ValueError) as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        self._broken = True  # a closed stdout (EPIPE) stays closed
        log.error("logs.sink_error", sink=self.name, error=str(exc),
                  hint="stdout is closed; configure a file or network sink in [[logs.sinks]]")
