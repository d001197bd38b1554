"""The log router: enrich every event, then fan it out to the sinks.

Supervisor-side events arrive as structlog event dicts; child events arrive as
JSON bytes already rendered by the child, and are enriched by splicing the
supervisor's keys in front, so the hot path never parses a child event.
A child's raw stdout/stderr lines arrive a chunk at a time (:meth:`LogRouter.emit_lines`)
and are rendered by :func:`~supervisor.logs._render.render_lines` (C when built):
no dict, no object per line.
The chunk then travels as one block (a list of pieces of JSON lines) to the
ring buffer and to every sink that has ``write_many(level, actor, pieces)``.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import anyio
import msgspec

from ..config import SinkSpec
from ._follow import Follower
from ._record import LogRecord
from ._render import render_lines
from ._sinks import Sink
from ._time import iso_utc

if TYPE_CHECKING:
    from ._build import SinkPlan

__all__ = ["LogRouter"]

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50, "exception": 40}
_json = msgspec.json.Encoder()
# emit_lines renders a chunk in pieces of about this many bytes: a bytes object
# above glibc's mmap threshold (128 KiB) is mapped afresh each time, and its
# page faults cost more than the rendering itself.
_PIECE = 48 * 1024


class ChildEvent(Protocol):
    """A Log frame as the router needs it (read-only: frames are frozen)."""

    @property
    def level(self) -> int: ...

    @property
    def body(self) -> bytes: ...


class _Block(NamedTuple):
    """``size`` records of one level and actor, as pieces of JSON lines (each line ends in a newline)."""

    level: int
    actor: str | None
    pieces: list[bytes]
    size: int

    def records(self) -> list[LogRecord]:
        level, actor = self.level, self.actor
        return [LogRecord(level, actor, line) for piece in self.pieces for line in piece.split(b"\n")[:-1]]


def _write_many(sink: Sink, block: _Block) -> None:
    write_many = getattr(sink, "write_many", None)
    if write_many is not None:
        write_many(block.level, block.actor, block.pieces)
    else:
        for record in block.records():
            sink.write(record)


class LogRouter:
    def __init__(self, sinks: Iterable[Sink] = (), *, ring_size: int = 1000, host: str | None = None) -> None:
        self.sinks = list(sinks)
        self.host = host or socket.gethostname()
        self._seq = 0  # the last one handed out
        self._id_prefix = f"{os.getpid():x}-{os.urandom(4).hex()}-"
        # The newest records, some of them still packed in blocks; trimmed to
        # ring_size records once it holds twice as many.
        self._ring: deque[LogRecord | _Block] = deque()
        self._ring_size = ring_size
        self._ring_count = 0
        self._followers: list[Follower] = []
        self._dispatching = False
        self._pending: deque[LogRecord | _Block] = deque()
        self._crashed: set[int] = set()
        self._line_parts: dict[tuple[str, str, str, int, int], tuple[bytes, bytes, bytes, bytes]] = {}
        self._tg: anyio.abc.TaskGroup | None = None  # while run() runs: where sinks run
        self._hosted: dict[int, tuple[anyio.CancelScope, anyio.Event]] = {}

    def _stamp(self) -> tuple[int, str]:
        self._seq = seq = self._seq + 1
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
        seq, _ = self._stamp()
        own_pid = body.startswith(_OWN_PID)
        line = self._child_head(actor, None if own_pid else pid, restarts) % (seq, seq) + _after_head(body)
        self._dispatch(LogRecord(level, actor, line))

    def _child_head(self, actor: str, pid: int | None, restarts: int) -> bytes:
        """'{"seq":%d,"id":"<prefix>%d","host":..,"actor":..,"pid":..,"restarts":..' as a %-template.

        Without ``pid`` when the event carries its own (a process the actor forked).
        """
        fields: dict[str, object] = {"host": self.host, "actor": actor, "pid": pid, "restarts": restarts}
        if pid is None:
            del fields["pid"]
        return b'{"seq":%d,"id":"' + self._id_prefix.encode().replace(b"%", b"%%") + b'%d",' + (
            _json.encode(fields)[1:-1].replace(b"%", b"%%")
        )

    def emit_child_many(
        self, events: Sequence[ChildEvent], *, actor: str, pid: int, restarts: int
    ) -> None:
        """Route the events of one channel read (``.level`` and ``.body`` each) as blocks.

        The same records :meth:`emit_child` makes, byte for byte; a run of
        events of one level travels as one block, so a file sink writes a
        whole read with one syscall instead of buffering event by event.
        """
        if len(events) == 1:
            event = events[0]
            self.emit_child(event.level, event.body, actor=actor, pid=pid, restarts=restarts)
            return
        head = self._child_head(actor, pid, restarts)
        seq = self._seq
        start = 0
        while start < len(events):
            level = events[start].level
            lines: list[bytes] = []
            append = lines.append
            for event in events[start:]:
                if event.level != level:
                    break
                seq += 1
                own = event.body.startswith(_OWN_PID)  # from a fork: keep its pid
                line_head = self._child_head(actor, None, restarts) if own else head
                append(line_head % (seq, seq) + _after_head(event.body))
            start += len(lines)
            lines.append(b"")  # every line, the last one too, ends in a newline
            self._seq = seq
            self._dispatch(_Block(level, actor, [b"\n".join(lines)], len(lines) - 1))
            seq = self._seq  # a sink may have logged meanwhile (logs.dropped)

    def emit_lines(
        self, level: str, stream: str, timestamp: str, lines: bytes | memoryview, *, actor: str, pid: int,
        restarts: int,
    ) -> bool:
        """Route one event per line of a child's raw output, all stamped ``timestamp``.

        ``lines`` holds complete lines, each ending in ``b"\\n"``. The events
        are those :meth:`emit` makes from ``{"timestamp", "level", "event",
        "stream", "actor", "pid", "restarts"}``, byte for byte. Returns False,
        routing nothing, if a line needs the per-line path (see
        :func:`~supervisor.logs._render.render_lines`): the caller then routes
        the chunk line by line.
        """
        if not lines:
            return True
        key = (level, stream, actor, pid, restarts)
        parts = self._line_parts.get(key)
        if parts is None:
            parts = self._line_parts[key] = self._new_line_parts(*key)
        mid, event_head, event_tail, tail = parts
        rendered = render_lines(
            lines, self._seq + 1, b'{"seq":', mid, event_head + timestamp.encode() + event_tail, tail, _PIECE
        )
        if rendered is None:
            return False
        count, pieces = rendered
        if count:
            self._seq += count
            self._dispatch(_Block(_LEVELS.get(level, 20), actor, pieces, count))
        return True

    def _new_line_parts(
        self, level: str, stream: str, actor: str, pid: int, restarts: int
    ) -> tuple[bytes, bytes, bytes, bytes]:
        """The constant parts of emit_lines' template; the timestamp goes between the second and third."""
        if len(self._line_parts) >= 64:  # keyed by pid and restarts: old ones are dead
            self._line_parts.clear()
        return (
            b',"id":"' + self._id_prefix.encode(),
            b'","host":' + _json.encode(self.host) + b',"timestamp":"',
            b'","level":"' + level.encode() + b'","event":"',
            b'","stream":"' + stream.encode() + b'","actor":' + _json.encode(actor)
            + b',"pid":%d,"restarts":%d}\n' % (pid, restarts),
        )

    def _dispatch(self, record: LogRecord | _Block) -> None:
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

    def _route(self, record: LogRecord | _Block) -> None:
        if isinstance(record, _Block):
            self._route_block(record)
            return
        self._ring.append(record)
        self._ring_count += 1
        if self._ring_count > 2 * self._ring_size:
            self._trim_ring()
        for sink in self.sinks:
            if not _accepts(sink.spec, record.level, record.actor):
                continue
            try:
                sink.write(record)
            except Exception as exc:  # a sink must never take the supervisor down
                self._sink_crashed(sink, exc)
        for follower in self._followers:
            follower.offer(record)

    def _route_block(self, block: _Block) -> None:
        self._ring.append(block)
        self._ring_count += block.size
        if self._ring_count > 2 * self._ring_size:
            self._trim_ring()
        for sink in self.sinks:
            if not _accepts(sink.spec, block.level, block.actor):
                continue
            try:
                _write_many(sink, block)
            except Exception as exc:  # a sink must never take the supervisor down
                self._sink_crashed(sink, exc)
        if self._followers:
            records = block.records()
            for follower in self._followers:
                for record in records:
                    follower.offer(record)

    def _trim_ring(self) -> None:
        ring, keep = self._ring, self._ring_size
        while ring:
            first = ring[0]
            count = first.size if isinstance(first, _Block) else 1
            if self._ring_count - count < keep:
                return
            ring.popleft()
            self._ring_count -= count

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
        kept: list[LogRecord] = []
        for item in self._ring:
            if isinstance(item, _Block):
                kept.extend(item.records())
            else:
                kept.append(item)
        records = [r for r in kept[-self._ring_size :] if actor is None or r.actor == actor]
        return records if n is None else records[-n:]

    @asynccontextmanager
    async def follow(self, buffer: int = 10000, actor: str | None = None) -> AsyncIterator[Any]:
        """New records (of ``actor`` only, if given); a ``logs.skipped`` line counts any dropped."""
        send, receive = anyio.create_memory_object_stream[LogRecord](buffer)
        follower = Follower(send, actor)
        self._followers.append(follower)
        try:
            async with send, receive:
                yield receive
        finally:
            self._followers.remove(follower)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run every sink's background delivery until cancelled (sinks swapped in later too)."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for sink in self.sinks:
                    await tg.start(self._host, sink)
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._tg = None

    async def _host(self, sink: Sink, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """One sink's run, in a scope of its own so that :meth:`replace_sinks` can end it."""
        done = anyio.Event()
        with anyio.CancelScope() as scope:
            self._hosted[id(sink)] = (scope, done)
            try:
                await sink.run(task_status=task_status)
            finally:
                del self._hosted[id(sink)]
                done.set()

    async def replace_sinks(self, plan: SinkPlan) -> None:
        """Apply a reload's :class:`~supervisor.logs._build.SinkPlan` without losing an event.

        The new sinks start first; then one synchronous step swaps the list (and the
        kept sinks' filters), so every event goes either to the old sinks or to the
        new ones; then the old ones stop and close, writing out what they buffered.
        """
        if self._tg is not None:
            for sink in plan.added:
                await self._tg.start(self._host, sink)
        for sink, spec in plan.refiltered:
            sink.spec = spec
        self.sinks = list(plan.sinks)
        with anyio.CancelScope(shield=True):
            for sink in plan.removed:
                hosted = self._hosted.get(id(sink))
                if hosted is not None:
                    hosted[0].cancel()
                    await hosted[1].wait()
                await sink.aclose()
                self._crashed.discard(id(sink))

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


_OWN_PID = b'{"pid":'  # a child's event that names its own process (see actors/_channel.py)


def _after_head(body: bytes) -> bytes:
    """A child's JSON object without its opening brace, ready to follow the stamped keys."""
    rest = body[1:].lstrip()
    return b"," + rest if rest != b"}" else b"}"


def _accepts(spec: SinkSpec, level: int, actor: str | None) -> bool:
    """The sink's ``level`` and ``actors`` filters."""
    return level >= spec.level and (spec.actors is None or actor in spec.actors)
