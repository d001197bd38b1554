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
from collections.abc import Sequence
from typing import Protocol

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


try:
    from ._cwriter import Writer as ThreadWriter
except ImportError:  # not built: write in the event loop's thread
    ThreadWriter = None
    NATIVE = False
else:
    NATIVE = True


def new_writer() -> Writer:
    """The C thread writer if it was built, else a :class:`SyncWriter`."""
    return ThreadWriter() if ThreadWriter is not None else SyncWriter()
