"""Sink protocol and the stdout sink."""

from __future__ import annotations

import sys
from typing import BinaryIO, Protocol

from anyio.abc import TaskStatus

from ..config import SinkSpec
from ._record import LogRecord

__all__ = ["Sink", "StdoutSink"]


class Sink(Protocol):
    spec: SinkSpec

    def write(self, record: LogRecord) -> None:
        """Accept one record without blocking the event loop for long; never raise."""

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        """Background delivery (network sinks); returns once closed."""

    async def aclose(self) -> None:
        """Flush what is buffered and release resources."""


class StdoutSink:
    def __init__(self, spec: SinkSpec, stream: BinaryIO | None = None) -> None:
        self.spec = spec
        self._stream = stream if stream is not None else sys.stdout.buffer

    def write(self, record: LogRecord) -> None:
        self._stream.write(record.line + b"\n")
        self._stream.flush()

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        task_status.started()

    async def aclose(self) -> None:
        self._stream.flush()
