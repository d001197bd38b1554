"""Sink protocol, the shared buffered-writer base, and the stdout sink."""

from __future__ import annotations

import errno
import json
import os
from collections import deque
from typing import Protocol

import anyio
import structlog
from anyio.abc import TaskStatus

from ..config import SinkSpec
from ._record import LogRecord
from ._writer import PyThreadWriter

__all__ = ["CLOSE_TIMEOUT", "FLUSH_INTERVAL", "STDOUT_LIMIT", "Sink", "StdoutSink"]

log = structlog.get_logger("actorsup.logs")

FLUSH_INTERVAL = 0.05  # seconds a written line may sit in a userspace buffer
STDOUT_LIMIT = 4 << 20  # bytes waiting for stdout's reader before lines are dropped
CLOSE_TIMEOUT = 2.0  # seconds a shutdown waits for stdout's reader


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
    """JSON lines on the supervisor's stdout (the default sink), written by a thread of its own.

    Whoever reads stdout may pause, or stop for good: the writer thread then
    waits in ``write``, never the event loop. Up to :data:`STDOUT_LIMIT` bytes
    wait for it; past that, lines are dropped and counted exactly, and
    ``logs.dropped`` reports them once the reader has caught up. That report
    is never dropped itself (it carries the count). The thread is a Python
    daemon thread: at exit one stuck on a reader that never returns is left
    behind, where a C thread would have to be joined.
    """

    def __init__(self, spec: SinkSpec, fd: int = 1) -> None:
        super().__init__(spec)
        self._fd = fd
        # Room above STDOUT_LIMIT for the reports, which are queued even past it: submit never waits.
        self._writer = PyThreadWriter(limit=2 * STDOUT_LIMIT)
        self._buffer: list[bytes] = []
        self._batches: deque[tuple[int, int]] = deque()  # (bytes, lines) of each batch handed over
        self._handed = 0  # bytes of the batches in _batches
        self._dropped = 0
        self._reports = 0  # logs.dropped reports of this sink on their way through the router
        self._report_marks = (b'"event":"logs.dropped"', b'"sink":' + json.dumps(self.name).encode())
        self._broken = False
        self._closed = False

    def write(self, record: LogRecord) -> None:
        if self._broken or self._closed:
            return
        line = record.line + b"\n"
        if self._reports and all(mark in line for mark in self._report_marks):
            self._reports -= 1
            self._hand_over(force=[line])
            return
        self._buffer.append(line)
        self._mark_dirty()

    def write_many(self, level: int, actor: str | None, pieces: list[bytes]) -> None:
        """Pieces of JSON lines (each line ends in a newline), handed to the writer at once."""
        if self._broken or self._closed:
            return
        self._buffer.extend(pieces)
        self.flush()

    def flush(self) -> None:
        super().flush()
        if self._broken or self._closed:
            return
        self._hand_over()
        if self._dropped:
            if self._writer.pending <= STDOUT_LIMIT // 2:  # the reader caught up
                self._report_dropped("stdout is not read fast enough")
            else:
                self._mark_dirty()  # look again after the flush interval

    def _hand_over(self, force: list[bytes] | None = None) -> None:
        """The buffered lines if there is room for them (else they are counted), then ``force`` in any case."""
        for code, lost in self._writer.take_failures():
            if code not in (errno.EAGAIN, errno.EINTR):
                self._broken = True  # a closed stdout (EPIPE) stays closed
                log.error("logs.sink_error", sink=self.name, error=os.strerror(code),
                          hint="stdout is closed; configure a file or network sink in [[logs.sinks]]")
                return
            self._dropped += lost  # another process made stdout non-blocking
        if self._buffer:
            pieces, self._buffer = self._buffer, []
            size = sum(map(len, pieces))
            pending = self._writer.pending
            if pending and pending + size > STDOUT_LIMIT:
                self._dropped += sum(piece.count(b"\n") for piece in pieces)
                self._mark_dirty()
            else:
                self._submit(pieces, size)
        if force:
            self._submit(force, sum(map(len, force)))

    def _submit(self, pieces: list[bytes], size: int) -> None:
        written = self._handed - self._writer.pending  # bytes of earlier batches done: forget those
        while self._batches and written >= self._batches[0][0]:
            written -= self._batches[0][0]
            self._handed -= self._batches.popleft()[0]
        self._writer.submit(self._fd, pieces)
        self._batches.append((size, sum(piece.count(b"\n") for piece in pieces)))
        self._handed += size

    def _report_dropped(self, reason: str) -> None:
        count, self._dropped = self._dropped, 0
        self._reports += 1
        log.warning("logs.dropped", sink=self.name, count=count, reason=reason)

    async def aclose(self) -> None:
        """Write what waits, for at most :data:`CLOSE_TIMEOUT` seconds of a reader that does not read."""
        if self._closed:
            return
        self._hand_over()
        drained = await anyio.to_thread.run_sync(self._writer.drain, CLOSE_TIMEOUT)
        if self._dropped and not self._broken:
            self._report_dropped("stdout is not read fast enough")
        self._hand_over()
        self._closed = True
        if not await anyio.to_thread.run_sync(self._writer.close, CLOSE_TIMEOUT if drained else 0.1):
            left = self._handed - self._writer.pending  # bytes of the batches written before the stall
            for size, lines in self._batches:
                if left < size:
                    self._dropped += lines
                left -= size
            log.warning("logs.dropped", sink=self.name, count=self._dropped,
                        reason="stdout was not read at shutdown; counted: the lines not known to be written")
            self._dropped = 0
