"""Where a sink's bytes are written: on a thread of its own, so a slow disk or reader never stalls the loop.

Copying 42 MB of JSON lines into the page cache costs ~10 ms; the C
``Writer`` (``_cwriter.c``) does it on another core, without the GIL, while
the event loop reads and renders the next chunk. A stalled disk then delays
log lines, not heartbeats: only once ``limit`` bytes wait does ``submit``
block. :class:`PyThreadWriter`, its pure-Python twin with the same interface,
serves where the C module was not built (or ``ACTORSUP_NO_NATIVE`` is set),
and always for the stdout sink, whose reader may stop for good: its daemon
thread can be left behind at exit, the C one must be joined.

Measured against each other (``benchmarks/log_throughput.py``, 10
interleaved invocations of ``--only lines --repeat 5`` each, 2 vCPUs), the
Python thread took 1.38x the supervisor CPU and 1.33x the wall time of the
C writer on 200,000 lines (medians of the paired ratios; slower in 9 and 8
of 10 pairs): after each ``os.writev`` it must take the GIL back from the
loop, which is rendering the next chunk. On structured events (``--only
events``) the two were level: the child's framing is what costs there.

Both keep a failed write as ``(errno, lines lost)``, exactly: the lines whose
newline did not reach the file. A line cut short by the failure is cut from
a regular file too, so every line in it stays whole.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from ._native import allowed

__all__ = ["NATIVE", "PyThreadWriter", "ShortWrite", "Writer", "lines_from", "new_writer", "writev_all"]

_IOV_MAX = 1024  # buffers per writev call (Linux's limit)


class Writer(Protocol):
    def submit(self, fd: int, pieces: Sequence[bytes]) -> None:
        """Queue ``pieces`` for ``fd``, in order; waits while too many bytes are pending."""

    def drain(self) -> bool | None:
        """Return once everything submitted is written or has failed."""

    def take_failures(self) -> list[tuple[int, int]]:
        """``(errno, lines lost)`` for each failed batch since the last call."""

    def close(self) -> bool | None:
        """Write what is queued; later submits raise ValueError."""

    @property
    def pending(self) -> int:
        """Bytes queued or being written."""


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


def cut_partial_line(fd: int, pieces: Sequence[bytes], written: int) -> None:
    """After a short write of ``written`` bytes, cut a regular file back to its last whole line."""
    partial = 0  # bytes after the last newline written
    for piece in pieces:
        if written <= 0:
            break
        part = piece[:written]
        newline = part.rfind(b"\n")
        partial = len(part) - newline - 1 if newline >= 0 else partial + len(part)
        written -= len(part)
    if partial:
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and st.st_size >= partial:
                os.ftruncate(fd, st.st_size - partial)
        except OSError:
            pass  # the line stays cut short; it is counted as lost either way


def _write_batch(fd: int, pieces: Sequence[bytes]) -> tuple[int, int] | None:
    """Write one batch; ``(errno, lines lost)`` if it failed."""
    try:
        writev_all(fd, pieces)
    except ShortWrite as short:
        cut_partial_line(fd, pieces, short.written)
        return short.error.errno or errno.EIO, lines_from(pieces, short.written)
    return None


class PyThreadWriter:
    """Writes on a daemon thread; ``os.writev`` releases the GIL while the bytes are copied.

    The C writer's batching: the thread is woken once ``wake`` bytes wait, or
    ``delay`` seconds after the first of them; ``submit`` waits while
    ``limit`` bytes are queued or being written.
    """

    def __init__(self, limit: int = 8 << 20, wake: int = 1 << 20, delay: float = 0.0002) -> None:
        if limit < 1 or wake < 1 or wake > limit:
            raise ValueError(f"need 1 <= wake <= limit (got wake={wake}, limit={limit})")
        if not 0 <= delay <= 1:
            raise ValueError(f"delay must be between 0 and 1 second (got {delay!r})")
        self._limit, self._wake, self._delay = limit, wake, delay
        lock = threading.Lock()
        self._work = threading.Condition(lock)  # the thread waits here (Condition.wait is on the monotonic clock)
        self._room = threading.Condition(lock)  # callers wait here for room, or for the queue to drain
        self._queue: list[tuple[int, tuple[bytes, ...], int]] = []
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
        batch = tuple(pieces)
        for piece in batch:
            if type(piece) is not bytes:
                raise TypeError(f"pieces must be bytes (got {type(piece).__name__})")
        if fd < 0:
            raise ValueError(f"fd must be a file descriptor (got {fd})")
        size = sum(map(len, batch))
        with self._room:
            while self._pending >= self._limit and not self._stop:
                self._room.wait()
            if self._stop:
                raise ValueError("submit() on a closed Writer")
            before = self._pending
            self._queue.append((fd, batch, size))
            self._pending += size
            # Wake the thread for the first bytes (it starts its delay) and when wake is reached.
            if before == 0 or before < self._wake <= self._pending:
                self._work.notify()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted is written or failed; False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._room:
            self._urgent += 1
            self._work.notify()
            try:
                while self._pending:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._room.wait(left)
            finally:
                self._urgent -= 1
        return True

    def take_failures(self) -> list[tuple[int, int]]:
        with self._work:
            failures, self._failures = self._failures, []
        return failures

    def close(self, timeout: float | None = None) -> bool:
        """Write what is queued, then end the thread; False if ``timeout`` passed first (it is left behind)."""
        with self._work:
            self._stop = True
            self._work.notify()
            self._room.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()

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
                try:
                    for fd, pieces, _ in batch:
                        failure = _write_batch(fd, pieces)
                        if failure is not None:
                            failures.append(failure)
                finally:
                    self._work.acquire()
                self._failures.extend(failures)
                self._pending -= sum(size for _, _, size in batch)
                self._room.notify_all()


try:
    if not allowed():
        raise ImportError("ACTORSUP_NO_NATIVE is set")
    from ._cwriter import Writer as CWriter
except ImportError:  # not built, or turned off
    NATIVE = False
else:
    NATIVE = True


def new_writer() -> Writer:
    """The C thread writer if it is built and allowed, else a :class:`PyThreadWriter`."""
    return CWriter() if NATIVE else PyThreadWriter()
