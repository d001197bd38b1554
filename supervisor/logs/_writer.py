"""Where the file sink's bytes are written: on a thread of their own when the C module is built.

Copying 42 MB of JSON lines into the page cache costs ~10 ms; the C
``Writer`` (``_cwriter.c``) does it on another core, without the GIL, while
the event loop reads and renders the next chunk. A stalled disk then delays
log lines, not heartbeats: only once ``limit`` bytes wait does ``submit``
block. :class:`SyncWriter`, its pure-Python twin with the same interface,
writes at once; it serves where the C module was not built.

Both keep a failed write as ``(errno, lines lost)``, exactly: the lines whose
newline did not reach the file.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from ._native import allowed

__all__ = ["NATIVE", "ShortWrite", "SyncWriter", "Writer", "lines_from", "new_writer", "writev_all"]

_IOV_MAX = 1024  # buffers per writev call (Linux's limit)


class Writer(Protocol):
    def submit(self, fd: int, pieces: Sequence[bytes]) -> None:
        """Queue ``pieces`` for ``fd``, in order; waits while too many bytes are pending."""

    def drain(self) -> None:
        """Return once everything submitted is written or has failed."""

    def take_failures(self) -> list[tuple[int, int]]:
        """``(errno, lines lost)`` for each failed batch since the last call."""

    def close(self) -> None:
        """Write what is queued; later submits raise ValueError."""


class ShortWrite(Exception):
    """A write that stopped part way: the error, and the bytes written before it."""

    def __init__(self, error: OSError, written: int) -> None:
        super().__init__(error, written)
        self.error, self.written = error, written


def writev_all(fd: int, pieces: Sequence[bytes]) -> None:
    """Write ``pieces`` to ``fd`` straight from their buffers; :class:`ShortWrite` tells how far it got."""
    written = 0
    rest = list(pieces)
    try:
        while rest:
            n = os.writev(fd, rest[:_IOV_MAX])
            if n == 0:
                raise OSError(errno.EIO, "write returned 0 bytes")
            written += n
            i = 0
            while i < len(rest) and n >= len(rest[i]):
                n -= len(rest[i])
                i += 1
            rest = rest[i:]
            if n:  # a short write: disk nearly full, or a file size limit
                rest[0] = rest[0][n:]
    except OSError as exc:
        raise ShortWrite(exc, written) from exc


def lines_from(pieces: Sequence[bytes], offset: int) -> int:
    """Lines of ``pieces`` whose newline lies at or past byte ``offset``: those a short write lost."""
    lost = 0
    for piece in pieces:
        if offset >= len(piece):
            offset -= len(piece)
            continue
        lost += piece.count(b"\n", offset)
        offset = 0
    return lost


class SyncWriter:
    """Writes each batch at once, in the caller's thread."""

    def __init__(self) -> None:
        self._failures: list[tuple[int, int]] = []
        self._closed = False

    def submit(self, fd: int, pieces: Sequence[bytes]) -> None:
        if self._closed:
            raise ValueError("submit() on a closed Writer")
        try:
            writev_all(fd, pieces)
        except ShortWrite as short:
            self._failures.append((short.error.errno or errno.EIO, lines_from(pieces, short.written)))

    def drain(self) -> None:
        pass

    def take_failures(self) -> list[tuple[int, int]]:
        failures, self._failures = self._failures, []
        return failures

    def close(self) -> None:
        self._closed = True


class PyThreadWriter:
    """Writes on a thread of its own; ``os.writev`` releases the GIL while the bytes are copied.

    The same batching as the C writer: the thread is woken once ``wake`` bytes
    wait, or ``delay`` seconds after the first of them; ``submit`` waits while
    ``limit`` bytes are queued or being written.
    """

    def __init__(self, limit: int = 8 << 20, wake: int = 1 << 20, delay: float = 0.0002) -> None:
        if limit < 1 or wake < 1 or wake > limit:
            raise ValueError(f"need 1 <= wake <= limit (got wake={wake}, limit={limit})")
        if not 0 <= delay <= 1:
            raise ValueError(f"delay must be between 0 and 1 second (got {delay!r})")
        self._limit, self._wake, self._delay = limit, wake, delay
        lock = threading.Lock()
        self._work = threading.Condition(lock)  # the thread waits here
        self._room = threading.Condition(lock)  # callers wait here for room, or for the queue to drain
        self._queue: list[tuple[int, Sequence[bytes]]] = []
        self._pending = 0  # bytes queued or being written
        self._urgent = 0  # drain() or close() is waiting: write now
        self._stop = False
        self._failures: list[tuple[int, int]] = []
        self._thread = threading.Thread(target=self._run, name="actorsup-log-writer", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        with self._work:
            return self._pending

    def submit(self, fd: int, pieces: Sequence[bytes]) -> None:
        pieces = tuple(pieces)
        size = sum(map(len, pieces))
        with self._room:
            while self._pending >= self._limit and not self._stop:
                self._room.wait()
            if self._stop:
                raise ValueError("submit() on a closed Writer")
            before = self._pending
            self._queue.append((fd, pieces))
            self._pending += size
            if before == 0 or (before < self._wake <= self._pending):
                self._work.notify()

    def drain(self) -> None:
        with self._room:
            self._urgent += 1
            self._work.notify()
            while self._pending:
                self._room.wait()
            self._urgent -= 1

    def take_failures(self) -> list[tuple[int, int]]:
        with self._work:
            failures, self._failures = self._failures, []
        return failures

    def close(self) -> None:
        with self._work:
            self._stop = True
            self._work.notify()
        self._thread.join()

    def _run(self) -> None:
        with self._work:
            while True:
                while not self._queue and not self._stop:
                    self._work.wait()
                if not self._queue:
                    return
                if self._pending < self._wake and not self._urgent and not self._stop:
                    deadline = time.monotonic() + self._delay  # a little: wait for more, but not long
                    while self._pending < self._wake and not self._urgent and not self._stop:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._work.wait(left)
                batch, self._queue = self._queue, []
                self._work.release()
                failures = []
                size = 0
                try:
                    for fd, pieces in batch:
                        size += sum(map(len, pieces))
                        try:
                            writev_all(fd, pieces)
                        except ShortWrite as short:
                            failures.append((short.error.errno or errno.EIO, lines_from(pieces, short.written)))
                finally:
                    self._work.acquire()
                self._failures.extend(failures)
                self._pending -= size
                self._room.notify_all()


try:
    if not allowed():
        raise ImportError("ACTORSUP_NO_NATIVE is set")
    from ._cwriter import Writer as ThreadWriter
except ImportError:  # not built, or turned off: write in the event loop's thread
    ThreadWriter = None
    NATIVE = False
else:
    NATIVE = True


def new_writer() -> Writer:
    """The C thread writer if it was built, else a :class:`SyncWriter`."""
    choice = os.environ.get("ACTORSUP_WRITER")  # for the A/B measurement only
    if choice == "python":
        return PyThreadWriter()
    if choice == "sync":
        return SyncWriter()
    return ThreadWriter() if ThreadWriter is not None else SyncWriter()
