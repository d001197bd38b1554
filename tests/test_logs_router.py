"""LogRouter: enrichment, filters, reentrancy, sink isolation; network sink edge cases."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest
import structlog
from anyio.abc import TaskStatus

from supervisor.config import SinkSpec
from supervisor.logs import (
    FileSink,
    LineAssembler,
    LogRecord,
    LogRouter,
    StdoutSink,
    TcpSink,
    build_sinks,
    configure_supervisor_logging,
)
from supervisor.logs._framing import syslog_framer


class _Memory:
    def __init__(self, **spec: Any) -> None:
        self.spec = SinkSpec(type="stdout", **spec)
        self.lines: list[dict[str, Any]] = []

    def write(self, record: LogRecord) -> None:
        self.lines.append(json.loads(record.line))

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    async def aclose(self) -> None:
        pass


class _Broken(_Memory):
    def write(self, record: LogRecord) -> None:
        raise RuntimeError("bug")


class _Blocks(_Memory):
    """A sink with write_many: records each block it gets."""

    def __init__(self, **spec: Any) -> None:
        super().__init__(**spec)
        self.blocks: list[tuple[int, str | None, bytes]] = []

    def write_many(self, level: int, actor: str | None, pieces: list[bytes]) -> None:
        assert all(piece.endswith(b"\n") for piece in pieces)
        self.blocks.append((level, actor, b"".join(pieces)))
        self.lines.extend(json.loads(line) for piece in pieces for line in piece.splitlines())


_KEYS = {"seq", "id", "host", "timestamp", "level", "event", "stream", "actor", "pid", "restarts"}
# Quotes, backslashes, tabs, "%", unicode, junk bytes, CR, controls, a traceback, a partial last line.
_NASTY = [
    b'plain\nwith "quotes" and \\back\\slashes\\\n',
    b"tab\there %d %s %% 100%\n\n",
    b"unicode \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \xe2\x80\xa8 del\x7f\n",
    b"junk \xff\xfe\n\xc3\ncrlf\r\nnul\x00 esc\x1b[0m\n",
    b'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: "v"\\\n',
    b"after\nno newline at the end",
]


class TestRouter:
    def test_child_event_spliced(self) -> None:
        """A child's JSON body gets seq, id, host, actor, pid, restarts in front, unparsed."""
        sink = _Memory()
        router = LogRouter([sink], host="h1")
        router.emit_child(20, b'{"timestamp":"t","level":"info","event":"x","k":1}', actor="a", pid=7, restarts=2)
        router.emit_child(20, b"{}", actor="a", pid=7, restarts=2)
        first, second = sink.lines
        assert list(first)[:6] == ["seq", "id", "host", "actor", "pid", "restarts"]
        assert first["host"] == "h1" and first["pid"] == 7 and first["k"] == 1
        assert second["seq"] == first["seq"] + 1 and second["id"] != first["id"]

    def test_ids_unique_across_routers(self) -> None:
        """Two routers (two supervisor runs) never hand out the same event id."""
        a, b = _Memory(), _Memory()
        LogRouter([a]).emit({"event": "x"})
        LogRouter([b]).emit({"event": "x"})
        assert a.lines[0]["seq"] == b.lines[0]["seq"] and a.lines[0]["id"] != b.lines[0]["id"]

    def test_level_filter(self) -> None:
        """A sink with level warning gets only warning and above."""
        sink = _Memory(level=30)
        router = LogRouter([sink])
        for level in ("debug", "info", "warning", "error"):
            router.emit({"event": level, "level": level})
        router.emit_child(20, b'{"event":"ci"}', actor="a", pid=1, restarts=0)
        router.emit_child(40, b'{"event":"ce"}', actor="a", pid=1, restarts=0)
        assert [e["event"] for e in sink.lines] == ["warning", "error", "ce"]

    def test_actor_filter(self) -> None:
        """A sink with an actors filter gets only those actors' events (not the supervisor's)."""
        sink, everything = _Memory(actors=frozenset({"a"})), _Memory()
        router = LogRouter([sink, everything])
        router.emit({"event": "sup"})
        router.emit({"event": "for a", "actor": "a"})
        router.emit_child(20, b'{"event":"from a"}', actor="a", pid=1, restarts=0)
        router.emit_child(20, b'{"event":"from b"}', actor="b", pid=1, restarts=0)
        assert [e["event"] for e in sink.lines] == ["for a", "from a"]
        assert len(everything.lines) == 4

    def test_sink_logging_is_not_nested(self) -> None:
        """An event logged by a sink while writing is routed after the current one."""
        configured = _Memory()
        router = LogRouter([configured])
        configure_supervisor_logging(router)

        class Chatty(_Memory):
            def write(self, record: LogRecord) -> None:
                super().write(record)
                if len(self.lines) == 1:
                    structlog.get_logger().warning("logs.dropped", count=1)

        chatty = Chatty()
        router.sinks.append(chatty)
        structlog.get_logger().info("first")
        assert [e["event"] for e in chatty.lines] == ["first", "logs.dropped"]
        assert [e["event"] for e in configured.lines] == ["first", "logs.dropped"]

    def test_broken_sink_isolated(self) -> None:
        """A sink that raises is reported once and the other sinks still get every event."""
        good = _Memory()
        router = LogRouter([_Broken(), good])
        router.emit({"event": "a"})
        router.emit({"event": "b"})
        assert [e["event"] for e in good.lines] == ["a", "logs.sink_error", "b"]

    def test_tail(self) -> None:
        """tail() returns the last n records, optionally of one actor."""
        router = LogRouter([], ring_size=3)
        for i in range(5):
            router.emit({"event": str(i), "actor": "a" if i % 2 else None})
        assert [json.loads(r.line)["event"] for r in router.tail()] == ["2", "3", "4"]
        assert [json.loads(r.line)["event"] for r in router.tail(1, "a")] == ["3"]

    def test_build_sinks(self, tmp_path: Path) -> None:
        """build_sinks makes one sink per spec; none means one stdout sink."""
        assert [type(s).__name__ for s in build_sinks(())] == ["StdoutSink"]
        sinks = build_sinks((SinkSpec(type="tcp", address=("127.0.0.1", 1)), SinkSpec(type="syslog", address=("h", 2))))
        assert [type(s).__name__ for s in sinks] == ["TcpSink", "SyslogSink"]

    def test_syslog_frame(self) -> None:
        """The syslog framing is RFC 5424 with an octet count and the JSON as MSG."""
        frame = syslog_framer("app", "host")(LogRecord(40, "fetcher", b'{"a":1}'))
        count, _, msg = frame.partition(b" ")
        assert int(count) == len(msg)
        head = msg.split(b" ")
        assert head[0] == b"<11>1" and head[2:4] == [b"host", b"app"] and head[5:7] == [b"fetcher", b"-"]
        assert msg.endswith(b' - {"a":1}')


class TestEmitLines:
    def _route(self, chunks: list[bytes], *, fast: bool) -> list[dict[str, Any]]:
        sink = _Blocks()
        router = LogRouter([sink], host='h%s"1')
        actor = 'a%b"'

        def emit(event: dict[str, Any]) -> None:
            router.emit({**event, "actor": actor, "pid": 7, "restarts": 2})

        def emit_lines(timestamp: str, lines: bytes) -> bool:
            return router.emit_lines("info", "stdout", timestamp, lines, actor=actor, pid=7, restarts=2)

        asm = LineAssembler("stdout", emit, emit_lines=emit_lines if fast else None)
        for chunk in chunks:
            asm.feed(chunk)
        asm.close()
        assert sink.blocks or not fast
        return sink.lines

    def test_same_events_as_line_by_line(self) -> None:
        """Every line is valid JSON with all keys, equal to the per-line path's event but for time and id."""
        fast = self._route(_NASTY, fast=True)
        slow = self._route(_NASTY, fast=False)
        assert all(e.keys() >= _KEYS for e in fast)

        def strip(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [{k: v for k, v in e.items() if k not in ("timestamp", "id")} for e in events]

        assert strip(fast) == strip(slow)
        assert [e["seq"] for e in fast] == list(range(1, len(fast) + 1))
        assert [e["id"].rsplit("-", 1)[1] for e in fast] == [str(e["seq"]) for e in fast]
        assert {e["host"] for e in fast} == {'h%s"1'} and {e["actor"] for e in fast} == {'a%b"'}
        events = [e["event"] for e in fast]
        assert 'with "quotes" and \\back\\slashes\\' in events and "tab\there %d %s %% 100%" in events
        assert "unicode é€😀 \u2028 del\x7f" in events and "no newline at the end" in events
        assert "junk \\xff\\xfe" in events and "crlf" in events and 'ValueError: "v"\\' in events

    def test_bytes_match_emit(self) -> None:
        """A plain line renders to the same bytes as emit() makes from the event dict."""
        sink = _Blocks()
        router = LogRouter([sink], host="h")
        text = 'x "q" \\ \t é 50%'
        router.emit_lines("error", "stderr", "T", text.encode() + b"\n", actor="a", pid=1, restarts=0)
        router.emit({"timestamp": "T", "level": "error", "event": text, "stream": "stderr",
                     "actor": "a", "pid": 1, "restarts": 0})
        [(level, actor, lines)] = sink.blocks
        assert (level, actor) == (40, "a")
        expected = router.tail()[-1].line.replace(b'"seq":2,', b'"seq":1,').replace(b'-2"', b'-1"')
        assert lines == expected + b"\n"

    def test_large_chunk_rendered_in_pieces(self) -> None:
        """A chunk of thousands of lines, short and long, arrives in order, complete, in bounded pieces."""
        pieces: list[bytes] = []

        class Pieces(_Memory):
            def write_many(self, level: int, actor: str | None, got: list[bytes]) -> None:
                pieces.extend(got)

        router = LogRouter([Pieces()])
        texts = ["" if i % 3 else f"line {i} %d " + "x" * (i % 500) for i in range(6000)]
        body = "".join(t + "\n" for t in texts).encode()
        router.emit_lines("info", "stdout", "T", body, actor="a", pid=1, restarts=0)
        events = [json.loads(line) for piece in pieces for line in piece.splitlines()]
        assert [e["event"] for e in events] == texts
        assert [e["seq"] for e in events] == list(range(1, 6001))
        assert len(pieces) > 10 and max(map(len, pieces)) < 128 * 1024

    def test_filters_and_sinks_without_write_many(self) -> None:
        """Level and actor filters apply to the block; a sink without write_many gets one write per line."""
        blocks, per_line = _Blocks(level=30), _Memory()
        other_actor = _Blocks(actors=frozenset({"b"}))
        router = LogRouter([blocks, per_line, other_actor])
        router.emit_lines("info", "stdout", "T", b"one\ntwo\n", actor="a", pid=1, restarts=0)
        router.emit_lines("error", "stderr", "T", b"three\n", actor="a", pid=1, restarts=0)
        assert [e["event"] for e in blocks.lines] == ["three"] and len(blocks.blocks) == 1
        assert [e["event"] for e in per_line.lines] == ["one", "two", "three"]
        assert other_actor.lines == []

    def test_ring_and_tail(self) -> None:
        """tail() unpacks blocks and keeps the newest ring_size records, in order."""
        router = LogRouter([], ring_size=3)
        router.emit({"event": "first", "actor": "b"})
        router.emit_lines("info", "stdout", "T", b"1\n2\n", actor="a", pid=1, restarts=0)
        router.emit({"event": "mid", "actor": "b"})
        router.emit_lines("info", "stdout", "T", b"3\n4\n5\n6\n7\n", actor="a", pid=1, restarts=0)
        assert [json.loads(r.line)["event"] for r in router.tail()] == ["5", "6", "7"]
        assert [json.loads(r.line)["event"] for r in router.tail(2, "a")] == ["6", "7"]
        assert router.tail(actor="b") == []
        assert router._ring_count <= 6

    @pytest.mark.anyio
    async def test_followers_get_every_line(self) -> None:
        """A follower gets one record per line of a block."""
        router = LogRouter([])
        async with router.follow() as records:
            router.emit_lines("info", "stdout", "T", b"x\ny\n", actor="a", pid=1, restarts=0)
            got = [json.loads((await records.receive()).line)["event"] for _ in range(2)]
        assert got == ["x", "y"]

    def test_broken_block_sink_isolated(self) -> None:
        """A sink whose write_many raises is reported once; the others still get the lines."""

        class BrokenBlocks(_Blocks):
            def write_many(self, level: int, actor: str | None, pieces: list[bytes]) -> None:
                raise RuntimeError("bug")

        good = _Memory()
        router = LogRouter([BrokenBlocks(), good])
        router.emit_lines("info", "stdout", "T", b"a\n", actor="x", pid=1, restarts=0)
        router.emit_lines("info", "stdout", "T", b"b\n", actor="x", pid=1, restarts=0)
        assert [e["event"] for e in good.lines] == ["a", "logs.sink_error", "b"]

    @pytest.mark.anyio
    async def test_file_sink_writes_block_at_once(self, tmp_path: Path) -> None:
        """The file sink hands a block to its writer at once; a block past max_bytes rotates line by line."""
        path = tmp_path / "out.jsonl"
        sink = FileSink(SinkSpec(type="file", path=path, max_bytes=300, backups=3, daily=False))
        router = LogRouter([sink])
        router.emit_lines("info", "stdout", "T", b"a\nb\n", actor="x", pid=1, restarts=0)
        assert sink._buffer == []  # handed to the writer, not left for the flush interval
        sink.drain()
        assert [json.loads(line)["event"] for line in path.read_bytes().splitlines()] == ["a", "b"]
        router.emit_lines("info", "stdout", "T", b"c\nd\ne\n", actor="x", pid=1, restarts=0)
        await router.aclose()
        files = [path.with_name(f"out.jsonl.{n}") for n in (3, 2, 1)] + [path]
        events = [json.loads(line)["event"] for f in files if f.exists() for line in f.read_bytes().splitlines()]
        assert events == ["a", "b", "c", "d", "e"]
        assert all(f.stat().st_size <= 300 for f in files if f.exists())

    def test_stdout_sink_writes_block_at_once(self, tmp_path: Path) -> None:
        """The stdout sink hands a block to its writer thread at once, not after the flush interval."""
        path = tmp_path / "out"
        with open(path, "wb") as out:
            sink = StdoutSink(SinkSpec(type="stdout"), fd=out.fileno())
            router = LogRouter([sink])
            router.emit_lines("info", "stdout", "T", b"a\nb\n", actor="x", pid=1, restarts=0)
            assert sink._writer.drain(timeout=5)
            assert [json.loads(line)["event"] for line in path.read_bytes().splitlines()] == ["a", "b"]
            sink._writer.close()


class TestNetworkSink:
    @pytest.mark.anyio
    async def test_spool_cap_dropped_count_exact(self, tmp_path: Path) -> None:
        """Aggregator down, spool at its cap: logs.dropped counts are exact, the newest arrive in order."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        spec = SinkSpec(type="tcp", address=("127.0.0.1", port), spool_dir=tmp_path / "spool",
                        spool_max_bytes=64 * 1024, spool_fsync="never")
        sink = TcpSink(spec, backoff_initial=0.01, backoff_max=0.05)
        router = LogRouter([sink])
        received = bytearray()

        async def collect(stream: Any) -> None:
            async with stream:
                async for chunk in stream:
                    received.extend(chunk)

        with structlog.testing.capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                await tg.start(router.run)
                for i in range(3000):  # ~100 bytes each: about 5 times the cap
                    router.emit({"event": "n", "i": i})
                dropped = sum(e["count"] for e in logs if e["event"] == "logs.dropped")
                assert 0 < dropped < 3000
                listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
                tg.start_soon(listener.serve, collect)
                with anyio.fail_after(10):
                    while sink.pending or not sink._connected:
                        await anyio.sleep(0.01)  # polling, bounded
                await router.aclose()
                tg.cancel_scope.cancel()
            await listener.aclose()
        got = [json.loads(line)["i"] for line in bytes(received).splitlines()]
        assert got == list(range(dropped, 3000))
        assert [e["event"] for e in logs].count("logs.sink_error") == 1

    @pytest.mark.anyio
    async def test_memory_queue_drops_reported(self, tmp_path: Path) -> None:
        """Without a spool, a full queue drops the oldest and reports the exact count."""
        spec = SinkSpec(type="tcp", address=("127.0.0.1", 9), queue_size=10)
        sink = TcpSink(spec)
        with structlog.testing.capture_logs() as logs:
            for _i in range(25):
                sink.write(LogRecord(20, None, b"{}"))
            await sink.aclose()
        counts = [e["count"] for e in logs if e["event"] == "logs.dropped"]
        assert counts == [15, 10]  # queue overflow, then the 10 undelivered at shutdown

    @pytest.mark.anyio
    async def test_write_never_blocks_when_down(self, tmp_path: Path) -> None:
        """write() returns at once while the aggregator is unreachable."""
        spec = SinkSpec(type="tcp", address=("127.0.0.1", 9), spool_dir=tmp_path / "s")
        sink = TcpSink(spec)
        with structlog.testing.capture_logs():
            async with anyio.create_task_group() as tg:
                await tg.start(sink.run)
                with anyio.fail_after(2):
                    for _ in range(10_000):
                        sink.write(LogRecord(20, None, b'{"x":1}'))
                await sink.aclose()
                tg.cancel_scope.cancel()
        assert sink.pending == 10_000  # all spooled for the next start


def test_stdout_sink_batches(tmp_path: Path) -> None:
    """The stdout sink collects lines and hands them over on flush()."""
    path = tmp_path / "out"
    with open(path, "wb") as out:
        sink = StdoutSink(SinkSpec(type="stdout"), fd=out.fileno())
        sink.write(LogRecord(20, None, b"{}"))
        assert sink._writer.drain(timeout=5) and path.read_bytes() == b""
        sink.flush()
        assert sink._writer.drain(timeout=5) and path.read_bytes() == b"{}\n"
        sink._writer.close()


@pytest.fixture
def unread_pipe() -> Iterator[tuple[int, int]]:
    """A pipe whose reader does not read until the test says so."""
    read_end, write_end = os.pipe()
    yield read_end, write_end
    os.close(write_end)
    os.close(read_end)


def _read_all(fd: int, until: bytes) -> bytes:
    received = b""
    while not received.endswith(until):
        received += os.read(fd, 1 << 20)
    return received


class TestStdoutSink:
    @pytest.mark.anyio
    async def test_full_pipe_drops_exactly_and_never_blocks(self, unread_pipe: tuple[int, int]) -> None:
        """A reader that stops: writes return at once, past the limit lines are dropped, and the count is exact."""
        read_end, write_end = unread_pipe
        sink = StdoutSink(SinkSpec(type="stdout"), fd=write_end)
        line = b'{"i":%d,"pad":"' + b"x" * 1000 + b'"}'
        emitted = 0
        with structlog.testing.capture_logs() as logs:
            with anyio.fail_after(5):  # 10 MiB into a pipe nobody reads: blocking would hang here
                for _ in range(100):
                    sink.write_many(20, None, [b"".join(line % (emitted + k) + b"\n" for k in range(100))])
                    emitted += 100
            assert sink._dropped > 0 and not logs  # reported once the reader catches up, not before
            received = b""
            os.set_blocking(read_end, False)
            with anyio.fail_after(10):
                while True:  # read until the writer has nothing left and the pipe is empty
                    idle = not sink._writer.pending
                    try:
                        received += os.read(read_end, 1 << 20)
                    except BlockingIOError:
                        if idle:
                            break
                        await anyio.sleep(0.005)  # polling, bounded
            os.set_blocking(read_end, True)
            sink.flush()  # the reader caught up: the count is reported
            assert [e["event"] for e in logs] == ["logs.dropped"]
            sink.write(LogRecord(20, None, b'{"last":true}'))
            sink.flush()
            received += await anyio.to_thread.run_sync(_read_all, read_end, b'{"last":true}\n')
            await sink.aclose()
        ids = [json.loads(x)["i"] for x in received.splitlines()[:-1]]
        assert ids == sorted(set(ids)) and ids[0] == 0
        assert len(ids) + logs[0]["count"] == emitted and logs[0]["reason"] == "stdout is not read fast enough"

    @pytest.mark.anyio
    async def test_report_is_never_dropped(self, unread_pipe: tuple[int, int]) -> None:
        """A logs.dropped report reaches stdout though the queue is past its limit: the count it carries survives."""
        read_end, write_end = unread_pipe
        sink = StdoutSink(SinkSpec(type="stdout"), fd=write_end)
        configure_supervisor_logging(LogRouter([sink]))
        sink.write_many(20, None, [b"x" * 999 + b"\n"] * 5000)  # 5 MB queued: past the limit
        sink._dropped = 7  # as if 7 lines had been dropped
        sink._report_dropped("stdout is not read fast enough")
        sink.write(LogRecord(20, None, b'{"after":1}'))
        sink.flush()  # an ordinary line: still no room
        received = b""
        with anyio.fail_after(10):
            while b'"logs.dropped"' not in received or not received.endswith(b"\n"):
                received += await anyio.to_thread.run_sync(os.read, read_end, 1 << 20, abandon_on_cancel=True)
        await sink.aclose()
        received += os.read(read_end, 1 << 20)
        report = json.loads(received.splitlines()[5000])
        assert report["event"] == "logs.dropped" and report["count"] == 7
        assert b'{"after":1}' not in received  # dropped, and counted in the report at close
        assert json.loads(received.splitlines()[-1])["count"] == 1

    @pytest.mark.anyio
    async def test_close_with_a_stuck_reader_is_bounded(self, unread_pipe: tuple[int, int]) -> None:
        """aclose() gives a reader that never reads CLOSE_TIMEOUT seconds, then counts the lines not known written."""
        from supervisor.logs._sinks import CLOSE_TIMEOUT

        read_end, write_end = unread_pipe
        sink = StdoutSink(SinkSpec(type="stdout"), fd=write_end)
        with structlog.testing.capture_logs() as logs:
            sink.write_many(20, None, [b"x" * 999 + b"\n"] * 1000)  # 1 MB: far more than the pipe holds
            with anyio.fail_after(CLOSE_TIMEOUT + 3):
                await sink.aclose()
        in_pipe = len(os.read(read_end, 1 << 20))
        assert [e["event"] for e in logs] == ["logs.dropped"]
        # Lines of a batch the stuck write had begun count too: the pipe may hold some for a late reader.
        assert 1000 - in_pipe // 1000 <= logs[0]["count"] <= 1000


class _Frame:
    def __init__(self, level: int, body: bytes) -> None:
        self.level, self.body = level, body


class TestEmitChildMany:
    BODIES: ClassVar[list[tuple[int, bytes]]] = [
        (20, b'{"timestamp":"T","level":"info","event":"a","i":1}'),
        (20, b'{"timestamp":"T","level":"info","event":"100% \\"q\\"","i":2}'),
        (40, b'{"timestamp":"T","level":"error","event":"e"}'),
        (20, b"{}"),
        (20, b'{ "spaced": true}'),
    ]

    def _both(self, host: str = 'h%"') -> tuple[list[bytes], list[bytes], _Blocks]:
        one, many = _Blocks(), _Blocks()
        r1, r2 = LogRouter([one], host=host), LogRouter([many], host=host)
        r2._id_prefix = r1._id_prefix  # compare byte for byte
        for level, body in self.BODIES:
            r1.emit_child(level, body, actor='a%"b', pid=7, restarts=3)
        r2.emit_child_many([_Frame(*b) for b in self.BODIES], actor='a%"b', pid=7, restarts=3)
        return [r.line for r in r1.tail()], [r.line for r in r2.tail()], many

    def test_same_bytes_as_one_by_one(self) -> None:
        """A batch renders exactly the records emit_child makes, "%" and quotes included."""
        singles, batched, _ = self._both()
        assert batched == singles
        assert [json.loads(line)["seq"] for line in batched] == [1, 2, 3, 4, 5]
        assert json.loads(batched[3]) == {"seq": 4, "id": json.loads(batched[3])["id"], "host": 'h%"',
                                          "actor": 'a%"b', "pid": 7, "restarts": 3}

    def test_runs_of_one_level_become_blocks(self) -> None:
        """Consecutive events of a level travel as one block; a level change starts the next."""
        _, _, sink = self._both()
        assert [(level, lines.count(b"\n")) for level, _, lines in sink.blocks] == [(20, 2), (40, 1), (20, 2)]

    def test_level_filter_applies_per_block(self) -> None:
        """A sink at level error gets only the error events of a batch."""
        errors = _Blocks(level=40)
        router = LogRouter([errors], host="h")
        router.emit_child_many([_Frame(*b) for b in self.BODIES], actor="a", pid=1, restarts=0)
        assert [e["event"] for e in errors.lines] == ["e"]

    def test_seq_stays_unique_when_a_sink_logs_during_a_block(self) -> None:
        """A sink that logs while writing a block gets the next seq; the batch does not reuse it."""

        class Chatty(_Blocks):
            def write_many(self, level: int, actor: str | None, pieces: list[bytes]) -> None:
                super().write_many(level, actor, pieces)
                if actor == "a":
                    router.emit({"event": "logs.dropped", "level": "warning"})

        sink = Chatty()
        router = LogRouter([sink], host="h")
        router.emit_child_many([_Frame(*b) for b in self.BODIES], actor="a", pid=1, restarts=0)
        seqs = [e["seq"] for e in sink.lines]
        assert sorted(seqs) == list(range(1, len(seqs) + 1)) and len(seqs) == 8
