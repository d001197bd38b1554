"""The log router: enrich every event, then fan it out to the sinks.

Supervisor-side events arrive as structlog event dicts; child events arrive as
JSON bytes already rendered by the child, and are enriched by splicing the
supervisor's keys in front, so the hot path never parses a child event.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import msgspec

from ._record import LogRecord
from ._sinks import Sink
from ._time import iso_utc

__all__ = ["LogRouter"]

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50, "exception": 40}
_json = msgspec.json.Encoder()


class LogRouter:
    def __init__(self, sinks: Iterable[Sink] = (), *, ring_size: int = 1000, host: str | None = None) -> None:
        self.sinks = list(sinks)
        self.host = host or socket.gethostname()
        self._seq = itertools.count(1)
        self._id_prefix = f"{os.getpid():x}-{os.urandom(4).hex()}-"
        self._ring: deque[LogRecord] = deque(maxlen=ring_size)
        self._followers: list[Any] = []
        self._dispatching = False
        self._pending: deque[LogRecord] = deque()
        self._crashed: set[int] = set()

    def _stamp(self) -> tuple[int, str]:
        seq = next(self._seq)
        return seq, f"{self._id_prefix}{seq}"

    def emit(self, event: dict[str, Any]) -> None:
        """Route one supervisor-side event dict (already timestamped)."""
        seq, event_id = self._stamp()
        event = {"seq": seq, "id": event_id, "host": self.host, **event}
        level = _LEVELS.get(str(event.get("level", "info")), 20)
        self._dispatch(LogRecord(level, event.get("actor"), _json.encode(event)))

    def emit_child(
        self, level: int, body: bytes, *, actor: str, pid: int, restarts: int
    ) -> None:
        """Route one event rendered by a child (a JSON object as bytes)."""
        seq, event_id = self._stamp()
        head = _json.encode(
            {"seq": seq, "id": event_id, "host": self.host, "actor": actor, "pid": pid, "restarts": restarts}
        )
        rest = body[1:].lstrip()
        line = head[:-1] + (b"," + rest if rest != b"}" else b"}")
        self._dispatch(LogRecord(level, actor, line))

    def _dispatch(self, record: LogRecord) -> None:
        # A sink may log (logs.dropped, logs.sink_error) from inside write():
        # that event is queued and routed after the current one, never nested.
        if self._dispatching:
            self._pending.append(record)
            return
        self._dispatching = True
        try:
            while True:
                self._route(record)
                if not self._pending:
                    return
                record = self._pending.popleft()
        finally:
            self._dispatching = False

    def _route(self, record: LogRecord) -> None:
        self._ring.append(record)
        for sink in self.sinks:
            spec = sink.spec
            if record.level < spec.level:
                continue
            if spec.actors is not None and record.actor not in spec.actors:
                continue
            try:
                sink.write(record)
            except Exception as exc:  # a sink must never take the supervisor down
                self._sink_crashed(sink, exc)
        for send in self._followers:
            try:
                send.send_nowait(record)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

    def _sink_crashed(self, sink: Sink, exc: Exception) -> None:
        if id(sink) in self._crashed:
            return
        self._crashed.add(id(sink))
        self.emit({
            "timestamp": iso_utc(), "level": "error", "event": "logs.sink_error",
            "sink": getattr(sink, "name", type(sink).__name__), "error": repr(exc),
            "hint": "this is a bug in the sink; its events may be lost, please report it",
        })

    def tail(self, n: int | None = None, actor: str | None = None) -> list[LogRecord]:
        records = [r for r in self._ring if actor is None or r.actor == actor]
        return records if n is None else records[-n:]

    @asynccontextmanager
    async def follow(self, buffer: int = 10000) -> AsyncIterator[Any]:
        send, receive = anyio.create_memory_object_stream[LogRecord](buffer)
        self._followers.append(send)
        try:
            async with send, receive:
                yield receive
        finally:
            self._followers.remove(send)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run every sink's background delivery until cancelled."""
        async with anyio.create_task_group() as tg:
            for sink in self.sinks:
                await tg.start(sink.run)
            task_status.started()

    def reopen(self) -> None:
        """SIGHUP: file sinks reopen their files (after an external logrotate)."""
        for sink in self.sinks:
            reopen = getattr(sink, "reopen", None)
            if reopen is not None:
                reopen()

    async def aclose(self) -> None:
        for sink in self.sinks:
            with anyio.CancelScope(shield=True):
                await sink.aclose()
