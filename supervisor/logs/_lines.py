"""Turn a child's raw stdout/stderr bytes into structured events.

The interpreter writes an uncaught traceback line by line, so the pieces
arrive in separate reads; :class:`LineAssembler` recognises the shape
(``Traceback (most recent call last):``, indented frames, the exception line,
chained sections) and emits it as ONE event. Bytes that are not UTF-8 are
escaped (``\\xff``), and over-long lines are split on a character boundary.

The common case, a chunk of plain text lines, takes a fast path when an
``emit_lines`` callback is given: the chunk is handed over whole, with one
timestamp, so the router can render every line without a dict per line (in C,
see :mod:`._render`, which checks each line on the way). The callback declines
a chunk that needs the per-line path (a traceback header, invalid UTF-8, a
control character); it then goes line by line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol

import anyio

from ._time import iso_utc

__all__ = ["LineAssembler"]

_TB_START = "Traceback (most recent call last):"
_GROUP_START = re.compile(r"^\s*\+ Exception Group Traceback \(most recent call last\):$")
_CHAIN = frozenset(
    {
        "During handling of the above exception, another exception occurred:",
        "The above exception was the direct cause of the following exception:",
    }
)
_GROUP_EXC = re.compile(r"^\s*\| (\S.*)$")
_MAX_TB_LINES = 5000

_NONE, _FRAMES, _AFTER = 0, 1, 2
SLICE = 256 * 1024  # bytes of plain lines handed to emit_lines at a time, at most


class LineAssembler:
    """Split one stream into line events; group interpreter tracebacks.

    ``emit`` gets one event dict per line or traceback. With ``emit_lines``,
    a chunk of lines is offered to ``emit_lines(timestamp, lines)`` first
    while no traceback is being assembled: ``lines`` (bytes or a memoryview)
    is one or more complete lines, each ending in ``b"\\n"`` and none longer
    than ``max_line``. Each line is one event of this assembler's ``level``
    and ``stream``, stamped ``timestamp``; the callback returns False to
    decline the chunk (it may only take valid UTF-8 lines that start no
    traceback), which then goes to ``emit`` line by line.
    """

    def __init__(
        self,
        stream: str,
        emit: Callable[[dict[str, Any]], None],
        max_line: int = 1 << 20,
        *,
        emit_lines: Callable[[str, bytes | memoryview], bool] | None = None,
    ) -> None:
        if stream not in ("stdout", "stderr"):
            raise ValueError(f'stream must be "stdout" or "stderr" (got {stream!r})')
        if max_line < 16:
            raise ValueError(f"max_line must be >= 16 (got {max_line})")
        self.stream = stream
        self._emit = emit
        self._emit_lines = emit_lines
        self._max_line = max_line
        self.level = "info" if stream == "stdout" else "error"
        self._partial = bytearray()
        # traceback being assembled
        self._state = _NONE
        self._tb: list[str] = []
        self._tb_size = 0
        self._tb_event = ""
        self._tb_time = ""
        self._held: list[str] = []  # blank/chain lines after an exception line
        self._group = False

    # --- bytes -> lines ------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Consume a chunk of raw bytes; emit every complete line in it."""
        if not data:
            return
        end = data.rfind(b"\n")
        if end < 0:
            self._partial += data
            self._split_long()
            return
        # The complete lines: data itself, or joined to the partial line (one copy).
        if self._partial:
            body, stop = b"".join((self._partial, memoryview(data)[: end + 1])), len(self._partial) + end + 1
        else:
            body, stop = data, end + 1
        self._partial = bytearray(memoryview(data)[end + 1 :])
        start = 0
        if self._emit_lines is not None and self._state == _NONE:
            start = self._offer(body, stop)
            if start == stop:
                self._split_long()
                return
        lines = body[start:stop].split(b"\n")
        lines.pop()  # empty: the lines end with a newline
        max_line = self._max_line
        for raw in lines:
            if len(raw) > max_line:
                self._long_line(raw)
            else:
                self._line(_decode(raw))
        self._split_long()

    def _offer(self, body: bytes, stop: int) -> int:
        """Hand ``body[:stop]`` to ``emit_lines`` in slices; the offset of the first byte not taken.

        Slices end at a newline, within :data:`SLICE` bytes (bounding what one
        render allocates) or max_line, whichever is less, or further for one
        line of up to max_line bytes. A line longer than max_line, or a slice
        ``emit_lines`` declines, is left with all after it for the per-line path.
        """
        assert self._emit_lines is not None
        max_line = self._max_line
        limit = min(SLICE, max_line)  # a slice no longer than max_line holds no line longer
        timestamp = iso_utc()
        view = memoryview(body)
        start = 0
        while start < stop:
            cut = stop
            if stop - start > limit:
                cut = body.rfind(b"\n", start, start + limit) + 1 or body.find(b"\n", start + limit, stop) + 1
            if not cut or cut - start > max_line + 1 or not self._emit_lines(timestamp, view[start:cut]):
                return start
            start = cut
        return start

    def _split_long(self) -> None:
        # An endless line must not grow memory: emit it in max_line pieces.
        while len(self._partial) > self._max_line:
            cut = _boundary(self._partial, self._max_line)
            piece = bytes(self._partial[:cut])
            del self._partial[:cut]
            self._flush_tb()
            self._plain(_decode(piece), continued=True)

    def _long_line(self, raw: bytes) -> None:
        self._flush_tb()
        while len(raw) > self._max_line:
            cut = _boundary(raw, self._max_line)
            self._plain(_decode(raw[:cut]), continued=True)
            raw = raw[cut:]
        self._plain(_decode(raw))

    @property
    def holding(self) -> bool:
        """True while a traceback is held back, waiting for more lines or a flush()."""
        return bool(self._held or self._tb)

    def flush(self) -> None:
        """Emit a traceback held back in case a chained section follows.

        Call it when the stream has been idle for a moment; ``close()`` does it too.
        """
        held, self._held = self._held, []
        self._flush_tb()
        for text in held:
            self._line(text)
        self._flush_tb()

    def close(self) -> None:
        """End of stream: emit a partial last line and any pending traceback."""
        if self._partial:
            raw, self._partial = bytes(self._partial), bytearray()
            self._line(_decode(raw))
        self.flush()

    # --- lines -> events -----------------------------------------------------
    def _plain(self, text: str, continued: bool = False) -> None:
        event: dict[str, Any] = {"timestamp": iso_utc(), "level": self.level, "event": text, "stream": self.stream}
        if continued:
            event["continued"] = True
        self._emit(event)

    def _line(self, text: str) -> None:
        state = self._state
        if state == _NONE:
            if text == _TB_START or _GROUP_START.match(text):
                self._start_tb(text)
            else:
                self._plain(text)
        elif state == _FRAMES:
            if text[:1] in (" ", "\t"):
                self._add_tb(text)
                m = _GROUP_EXC.match(text) if self._group and not self._tb_event else None
                if m is not None and not m[1].startswith(("File ", "Traceback")):
                    self._tb_event = m[1]
            elif self._group or not text:
                self._flush_tb()
                self._line(text)
            else:  # the exception line ends this section
                self._add_tb(text)
                self._tb_event = text
                self._state = _AFTER
        else:  # _AFTER: a chained section may follow
            if not text or text in _CHAIN:
                self._held.append(text)
            elif (text == _TB_START or _GROUP_START.match(text)) and any(
                h in _CHAIN for h in self._held
            ):
                for held in self._held:
                    self._add_tb(held)
                self._held = []
                self._add_tb(text)
                self._group = text != _TB_START
                self._state = _FRAMES
            else:
                waiting, self._held = self._held, []
                self._flush_tb()
                for h in waiting:
                    self._line(h)
                self._line(text)
        if self._state != _NONE and (
            len(self._tb) > _MAX_TB_LINES or self._tb_size > self._max_line
        ):
            self.flush()

    def _start_tb(self, text: str) -> None:
        self._state = _FRAMES
        self._tb = [text]
        self._tb_size = len(text)
        self._tb_event = ""
        self._tb_time = iso_utc()
        self._group = text != _TB_START

    def _add_tb(self, text: str) -> None:
        self._tb.append(text)
        self._tb_size += len(text) + 1

    def _flush_tb(self) -> None:
        if self._state == _NONE:
            return
        self._state = _NONE
        lines, self._tb = self._tb, []
        self._emit(
            {
                "timestamp": self._tb_time,
                "level": self.level,
                "event": self._tb_event or lines[-1],
                "stream": self.stream,
                "exception": "\n".join(lines),
            }
        )


def _decode(raw: bytes) -> str:
    if raw[-1:] == b"\r":
        raw = raw[:-1]
    return raw.decode("utf-8", "backslashreplace")


def _boundary(buf: bytes | bytearray, limit: int) -> int:
    """Largest cut <= limit that does not split a UTF-8 sequence."""
    cut = limit
    while cut > limit - 4 and (buf[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut if cut > limit - 4 else limit


PIPE_IDLE_FLUSH = 0.2  # seconds of pipe silence after which a held-back traceback is released


class ChunkReader(Protocol):
    async def receive(self) -> bytes: ...


async def pump_lines(reader: ChunkReader, assembler: LineAssembler, done: anyio.Event) -> None:
    """Feed a pipe's reads to ``assembler`` until EOF (or a read error); ``done`` is set at the end."""
    try:
        while True:
            if assembler.holding:
                # A quiet pipe releases a held-back traceback (it may have no more
                # lines); the timer is armed only then, so a flood of plain lines
                # pays for no cancel scope.
                with anyio.move_on_after(PIPE_IDLE_FLUSH) as idle:
                    chunk = await reader.receive()
                if idle.cancelled_caught:
                    assembler.flush()
                    continue
            else:
                chunk = await reader.receive()
            if not chunk:
                break
            assembler.feed(chunk)
    except OSError:
        pass
    finally:
        assembler.close()
        done.set()
