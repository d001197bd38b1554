"""LineAssembler: raw child output bytes -> structured line events."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from supervisor.logs import LineAssembler
from supervisor.logs._lines import SLICE
from supervisor.logs._render import render_lines_py


def _assembler(stream: str = "stdout", max_line: int = 1 << 20) -> tuple[LineAssembler, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    return LineAssembler(stream, events.append, max_line), events


class TestLineAssembler:
    def test_lines_become_events(self) -> None:
        """Each complete line is one event with timestamp, level, event and stream."""
        asm, events = _assembler()
        asm.feed(b"hello\nwor")
        asm.feed(b"ld\r\n")
        assert [e["event"] for e in events] == ["hello", "world"]
        assert events[0]["level"] == "info" and events[0]["stream"] == "stdout"
        assert events[0]["timestamp"].endswith("Z") and "T" in events[0]["timestamp"]

    def test_stderr_is_error_level(self) -> None:
        """Lines from stderr are level error."""
        asm, events = _assembler("stderr")
        asm.feed(b"oops\n")
        assert events[0]["level"] == "error" and events[0]["stream"] == "stderr"

    def test_partial_last_line_flushed_on_close(self) -> None:
        """close() emits a last line that had no newline."""
        asm, events = _assembler()
        asm.feed(b"a\nno newline")
        assert [e["event"] for e in events] == ["a"]
        asm.close()
        assert [e["event"] for e in events] == ["a", "no newline"]

    def test_100_kib_line_is_one_event(self) -> None:
        """A 100 KiB line fed in small chunks arrives as one intact event."""
        asm, events = _assembler()
        line = (b"0123456789abcdef" * 6400)[: 100 * 1024]
        for i in range(0, len(line), 4096):
            asm.feed(line[i : i + 4096])
        asm.feed(b"\n")
        assert len(events) == 1 and events[0]["event"] == line.decode()

    def test_over_long_line_split_on_char_boundary(self) -> None:
        """A line above max_line is split into pieces without breaking a UTF-8 character."""
        asm, events = _assembler(max_line=64)
        text = "é" * 100  # 200 bytes, 2 bytes per character
        asm.feed(text.encode() + b"\n")
        assert "".join(e["event"] for e in events) == text
        assert all(e.get("continued") for e in events[:-1]) and "continued" not in events[-1]
        assert all("\\x" not in e["event"] for e in events)

    def test_endless_line_bounded_memory(self) -> None:
        """Bytes without a newline are emitted in max_line pieces, not buffered forever."""
        asm, events = _assembler(max_line=1000)
        for _ in range(50):
            asm.feed(b"x" * 999)
        assert sum(len(e["event"]) for e in events) >= 49 * 999 - 1000
        asm.close()
        assert sum(len(e["event"]) for e in events) == 50 * 999

    def test_binary_junk_escaped(self) -> None:
        """Bytes that are not valid UTF-8 are escaped, never fatal."""
        asm, events = _assembler()
        asm.feed(b"ok \xff\xfe\x00\x80 end\n\xc3\n")
        asm.close()
        assert events[0]["event"] == "ok \\xff\\xfe\x00\\x80 end"
        assert events[1]["event"] == "\\xc3"

    def test_traceback_is_one_event(self) -> None:
        """An interpreter traceback arrives as one event: the exception line, full text."""
        asm, events = _assembler("stderr")
        text = (
            "Traceback (most recent call last):\n"
            '  File "x.py", line 3, in <module>\n'
            "    1 / 0\n"
            "    ~~^~~\n"
            "ZeroDivisionError: division by zero\n"
        )
        for line in text.splitlines(keepends=True):
            asm.feed(line.encode())
        asm.feed(b"next line\n")
        assert len(events) == 2
        assert events[0]["event"] == "ZeroDivisionError: division by zero"
        assert events[0]["exception"] == text.rstrip("\n")
        assert events[1]["event"] == "next line"

    def test_chained_traceback_is_one_event(self) -> None:
        """A chained traceback (during handling / direct cause) is one event."""
        proc = subprocess.run(
            [sys.executable, "-c", "try:\n 1/0\nexcept Exception as e:\n raise KeyError('k') from e"],
            capture_output=True,
            timeout=30,
        )
        asm, events = _assembler("stderr")
        for line in proc.stderr.splitlines(keepends=True):
            asm.feed(line)
        asm.close()
        assert len(events) == 1
        assert events[0]["event"] == "KeyError: 'k'"
        assert "ZeroDivisionError" in events[0]["exception"]
        assert "direct cause" in events[0]["exception"]

    def test_exception_group_is_one_event(self) -> None:
        """An exception group traceback is one event named after the group."""
        proc = subprocess.run(
            [sys.executable, "-c", "raise ExceptionGroup('eg', [ValueError('v'), TypeError('t')])"],
            capture_output=True,
            timeout=30,
        )
        asm, events = _assembler("stderr")
        asm.feed(proc.stderr + b"after\n")
        asm.close()
        assert [e["event"] for e in events] == ["ExceptionGroup: eg (2 sub-exceptions)", "after"]
        assert "ValueError: v" in events[0]["exception"]

    def test_traceback_then_blank_lines(self) -> None:
        """Blank lines after a traceback that start no chain are their own events."""
        asm, events = _assembler("stderr")
        asm.feed(b"Traceback (most recent call last):\n  File \"a\", line 1\nValueError: x\n\n")
        asm.feed(b"\nplain\n")
        assert [e["event"] for e in events] == ["ValueError: x", "", "", "plain"]

    def test_flush_emits_held_traceback(self) -> None:
        """flush() releases a traceback held back for a possible chained section."""
        asm, events = _assembler("stderr")
        asm.feed(b"Traceback (most recent call last):\n  File \"a\", line 1\nValueError: x\n")
        assert events == []
        asm.flush()
        assert [e["event"] for e in events] == ["ValueError: x"]

    def test_not_a_traceback(self) -> None:
        """A header followed by an unindented line is emitted line by line, nothing lost."""
        asm, events = _assembler("stderr")
        asm.feed(b"Traceback (most recent call last):\n\nfoo\n")
        asm.close()
        assert [e["event"] for e in events] == ["Traceback (most recent call last):", "", "foo"]

    def test_bad_stream_rejected(self) -> None:
        """An unknown stream name is rejected when the assembler is built."""
        with pytest.raises(ValueError, match=r'^stream must be "stdout" or "stderr" \(got \'x\'\)$'):
            LineAssembler("x", print)


def _fast_assembler(
    stream: str = "stdout", max_line: int = 1 << 20
) -> tuple[LineAssembler, list[dict[str, Any]], list[tuple[str, bytes]]]:
    events: list[dict[str, Any]] = []
    blocks: list[tuple[str, bytes]] = []

    def emit_lines(timestamp: str, lines: bytes | memoryview) -> bool:
        if render_lines_py(lines, 1, b"", b"", b"", b"", 1 << 20) is None:
            return False  # declined, as the router declines it
        blocks.append((timestamp, bytes(lines)))
        return True

    asm = LineAssembler(stream, events.append, max_line, emit_lines=emit_lines)
    return asm, events, blocks


class TestLineAssemblerFastPath:
    def test_plain_chunk_handed_over_whole(self) -> None:
        """A chunk of plain lines goes to emit_lines in one call with one timestamp."""
        asm, events, blocks = _fast_assembler()
        asm.feed(b'a "quoted" \\ line\twith tab\n\nnon-ascii \xc3\xa9 \xe2\x82\xac\npart')
        assert events == []
        [(timestamp, lines)] = blocks
        assert timestamp.endswith("Z")
        assert lines == b'a "quoted" \\ line\twith tab\n\nnon-ascii \xc3\xa9 \xe2\x82\xac\n'
        asm.feed(b"ial\n")
        assert blocks[1][1] == b"partial\n"
        assert asm.level == "info"

    @pytest.mark.parametrize(
        "chunk",
        [b"ok\ncr\r\n", b"ok\nnul\x00\n", b"ok\nbad \xff\n", b"ok\nsurrogate \xed\xa0\x80\n", b"esc \x1b[0m\n"],
    )
    def test_other_chunks_line_by_line(self, chunk: bytes) -> None:
        """A chunk with a control character or invalid UTF-8 takes the per-line path, unchanged."""
        asm, events, blocks = _fast_assembler()
        plain, expected = _assembler()
        asm.feed(chunk)
        plain.feed(chunk)
        assert blocks == []
        assert [e["event"] for e in events] == [e["event"] for e in expected]

    def test_traceback_grouped(self) -> None:
        """A traceback inside a chunk of plain lines is still one event, in order."""
        asm, events, blocks = _fast_assembler("stderr")
        asm.feed(b"before\n")
        asm.feed(b"Traceback (most recent call last):\n  File \"a\", line 1\nValueError: x\nafter\n")
        asm.feed(b"later\n")
        assert [b[1] for b in blocks] == [b"before\n", b"later\n"]
        assert [e["event"] for e in events] == ["ValueError: x", "after"]
        assert events[0]["exception"].startswith("Traceback")

    def test_held_traceback_keeps_per_line_path(self) -> None:
        """While a traceback waits for a chained section, the next chunk is read line by line."""
        proc = subprocess.run(
            [sys.executable, "-c", "try:\n 1/0\nexcept Exception as e:\n raise KeyError('k') from e"],
            capture_output=True,
            timeout=30,
        )
        first, _, rest = proc.stderr.partition(b"\n\nThe above")
        asm, events, blocks = _fast_assembler("stderr")
        asm.feed(first + b"\n")
        asm.feed(b"\nThe above" + rest)
        asm.close()
        assert blocks == []
        assert [e["event"] for e in events] == ["KeyError: 'k'"]
        assert "ZeroDivisionError" in events[0]["exception"]

    def test_partial_and_long_lines(self) -> None:
        """Lines before an over-long one go whole; it and the rest are split and flushed as without the fast path."""
        asm, events, blocks = _fast_assembler(max_line=64)
        asm.feed(b"short\n" + b"x" * 100 + b"\nend")
        asm.close()
        assert [lines for _, lines in blocks] == [b"short\n"]
        assert [e["event"] for e in events] == ["x" * 64, "x" * 36, "end"]
        assert events[0]["continued"] is True

    def test_big_read_in_bounded_slices(self) -> None:
        """A read bigger than SLICE goes over in slices of at most SLICE bytes, cut at newlines, one timestamp."""
        asm, events, blocks = _fast_assembler()
        chunk = b"".join(b"line %06d\n" % i for i in range(60_000))  # 660,000 bytes
        asm.feed(chunk)
        assert events == []
        assert b"".join(lines for _, lines in blocks) == chunk
        assert len(blocks) >= 3 and all(len(lines) <= SLICE and lines.endswith(b"\n") for _, lines in blocks)
        assert len({timestamp for timestamp, _ in blocks}) == 1

    def test_line_longer_than_slice_still_whole(self) -> None:
        """A line longer than SLICE but within max_line is one slice of its own, not split."""
        asm, events, blocks = _fast_assembler()
        long = b"x" * (SLICE + 100)
        asm.feed(b"a\n" + long + b"\nb\n")
        assert events == []
        assert b"".join(lines for _, lines in blocks) == b"a\n" + long + b"\nb\n"
        assert any(lines == long + b"\n" or lines.endswith(long + b"\n") for _, lines in blocks)

    def test_chunk_longer_than_max_line_in_slices(self) -> None:
        """A chunk of many short lines, longer than max_line, goes to emit_lines in slices cut at newlines."""
        asm, events, blocks = _fast_assembler(max_line=64)
        chunk = b"".join(b"line %02d\n" % i for i in range(40))  # 320 bytes
        asm.feed(chunk)
        assert events == []
        assert b"".join(lines for _, lines in blocks) == chunk
        assert all(len(lines) <= 64 and lines.endswith(b"\n") for _, lines in blocks)
        assert len({timestamp for timestamp, _ in blocks}) == 1  # one read, one timestamp
