"""Rotating JSON-lines file sink.

The active file always has the configured name, so ``tail -F``, a log
shipper or an external logrotate can watch one path. It rotates:

* by size: before a line would take it past ``max_bytes``;
* by day (``daily = true``): at the first line after UTC midnight.

Rotated files carry the date of their content when ``daily`` is on
(``actorsup.2026-11-26.1.jsonl``, ``.2``, ... within a day), else the classic
``actorsup.jsonl.1`` (newest) to ``.N``. Only the newest ``backups`` rotated
files are kept, so disk use stays under ``(backups + 1) * max_bytes``.
``reopen()`` (SIGHUP) reopens the configured path after an external rename.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import re
from pathlib import Path
from typing import BinaryIO

import structlog

from .._clock import Clock, MonotonicClock
from ..config import SinkSpec
from ._record import LogRecord
from ._sinks import _BufferedSink

__all__ = ["FileSink"]

log = structlog.get_logger("actorsup.logs")

RETRY_INTERVAL = 1.0  # seconds between attempts to reopen a file that failed
_BUFFER = 1 << 16


class FileSink(_BufferedSink):
    def __init__(self, spec: SinkSpec, *, clock: Clock | None = None) -> None:
        if spec.path is None:
            raise ValueError("a file sink needs a path")
        super().__init__(spec)
        self.path = Path(spec.path)
        self._clock: Clock = clock or MonotonicClock()  # only wall() is read
        self._file: BinaryIO | None = None
        self._size = 0
        self._day = ""  # UTC date of the content in the active file
        self._next_day = 0.0  # wall time of the next UTC midnight
        self._failed_at: float | None = None
        self._dropped = 0
        self._open()

    # --- files ---------------------------------------------------------------
    def _open(self) -> bool:
        now = self._clock.wall()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            file = open(self.path, "ab", buffering=_BUFFER)  # noqa: SIM115 - kept open
            size = file.tell()
            # Appending to a file from an earlier day: its content is dated by its mtime.
            day = min(now, os.fstat(file.fileno()).st_mtime) if size else now
        except OSError as exc:
            self._failure(exc, now)
            return False
        self._file = file
        self._size = size
        self._set_day(day)
        if self._failed_at is not None:
            self._recovered()
        return True

    def _set_day(self, now: float) -> None:
        day = dt.datetime.fromtimestamp(now, dt.timezone.utc).date()
        self._day = day.isoformat()
        midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
        self._next_day = midnight.timestamp()

    def _close_file(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            except OSError as exc:
                log.error("logs.sink_error", sink=self.name, error=str(exc), hint="check free disk space")

    def reopen(self) -> None:
        """Close and reopen the configured path (SIGHUP after an external logrotate)."""
        self._close_file()
        self._open()

    def flush(self) -> None:
        super().flush()
        if self._file is not None:
            try:
                self._file.flush()
            except OSError as exc:
                self._failure(exc, self._clock.wall())

    async def aclose(self) -> None:
        self.flush()
        self._close_file()
        self._report_dropped()

    # --- writing -------------------------------------------------------------
    def write(self, record: LogRecord) -> None:
        line = record.line + b"\n"
        file = self._file
        if file is None:
            now = self._clock.wall()
            if self._failed_at is not None and now - self._failed_at < RETRY_INTERVAL:
                self._dropped += 1
                return
            if not self._open():
                self._dropped += 1
                return
            file = self._file
            assert file is not None
        if self._size + len(line) > self.spec.max_bytes and self._size > 0:
            self._rotate()
            file = self._file
        elif self.spec.daily and (now := self._clock.wall()) >= self._next_day:
            if self._size:
                self._rotate()
                file = self._file
            else:
                self._set_day(now)
        if file is None:
            self._dropped += 1
            return
        try:
            file.write(line)
        except OSError as exc:
            self._dropped += 1
            self._failure(exc, self._clock.wall())
            return
        self._size += len(line)
        self._mark_dirty()

    def write_many(self, level: int, actor: str | None, pieces: list[bytes]) -> None:
        """Pieces of JSON lines (each line ends in a newline), written and flushed at once.

        They came from one read of a child's pipe, so one more syscall per
        block is cheap, and the lines need not wait for the flush interval.
        A block that needs a rotation or a reopen goes line by line.
        """
        file = self._file
        size = sum(map(len, pieces))
        if (
            file is None
            or self._size + size > self.spec.max_bytes
            or (self.spec.daily and self._clock.wall() >= self._next_day)
        ):
            for piece in pieces:
                for line in piece.split(b"\n")[:-1]:
                    self.write(LogRecord(level, actor, line))
            return
        try:
            file.flush()  # single records buffered earlier go first
        except OSError as exc:
            self._dropped += sum(piece.count(b"\n") for piece in pieces)
            self._failure(exc, self._clock.wall())
            return
        try:
            _writev_all(file.fileno(), pieces)
        except _ShortWrite as short:
            self._dropped += _lines_from(pieces, short.written)
            self._failure(short.error, self._clock.wall())
            return
        self._size += size
        super().flush()  # nothing left in the buffer

    # --- rotation ------------------------------------------------------------
    def _rotate(self) -> None:
        self.flush()
        self._close_file()
        try:
            if self.path.exists():
                if self.spec.daily:
                    self._rotate_dated()
                else:
                    self._rotate_numbered()
        except OSError as exc:
            log.error("logs.sink_error", sink=self.name, error=str(exc),
                      hint="cannot rename the log file for rotation; check the folder's permissions")
        self._open()

    def _rotate_numbered(self) -> None:
        backups = self.spec.backups
        if backups == 0:
            self.path.unlink()
            return
        for n in range(backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))

    def _dated_pattern(self) -> re.Pattern[str]:
        stem, suffix = re.escape(self.path.stem), re.escape(self.path.suffix)
        return re.compile(rf"^{stem}\.(\d{{4}}-\d\d-\d\d)\.(\d+){suffix}$")

    def rotated_files(self) -> list[Path]:
        """Rotated files of this sink, oldest first."""
        if not self.spec.daily:
            found = [self.path.with_name(f"{self.path.name}.{n}") for n in range(self.spec.backups, 0, -1)]
            return [p for p in found if p.exists()]
        pattern = self._dated_pattern()
        dated = []
        for p in self.path.parent.iterdir():
            if m := pattern.match(p.name):
                dated.append((m[1], int(m[2]), p))
        return [p for _, _, p in sorted(dated)]

    def _rotate_dated(self) -> None:
        pattern = self._dated_pattern()
        n = 1 + max(
            (int(m[2]) for p in self.path.parent.iterdir() if (m := pattern.match(p.name)) and m[1] == self._day),
            default=0,
        )
        target = self.path.with_name(f"{self.path.stem}.{self._day}.{n}{self.path.suffix}")
        self.path.replace(target)
        rotated = self.rotated_files()
        for old in rotated[: max(0, len(rotated) - self.spec.backups)]:
            old.unlink()

    # --- failures ------------------------------------------------------------
    def _failure(self, exc: OSError, now: float) -> None:
        self._close_file()
        if self._failed_at is None:
            log.error("logs.sink_error", sink=self.name, path=str(self.path), error=str(exc),
                      hint="check that the folder exists and is writable; retrying every "
                      f"{RETRY_INTERVAL:g}s, events meanwhile are counted in logs.dropped")
        self._failed_at = now

    def _recovered(self) -> None:
        self._failed_at = None
        log.info("logs.sink_recovered", sink=self.name)
        self._report_dropped()

    def _report_dropped(self) -> None:
        if self._dropped:
            count, self._dropped = self._dropped, 0
            log.warning("logs.dropped", sink=self.name, count=count, reason="file not writable")


_IOV_MAX = 1024  # buffers per writev call (Linux's limit)


class _ShortWrite(Exception):
    def __init__(self, error: OSError, written: int) -> None:
        super().__init__(error, written)
        self.error, self.written = error, written


def _writev_all(fd: int, pieces: list[bytes]) -> None:
    """Write ``pieces`` to ``fd`` straight from their buffers; _ShortWrite tells how far it got."""
    written = 0
    rest = pieces
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
                rest = [rest[0][n:], *rest[1:]]
    except OSError as exc:
        raise _ShortWrite(exc, written) from exc


def _lines_from(pieces: list[bytes], offset: int) -> int:
    """Lines of ``pieces`` whose newline lies at or past byte ``offset``: those lost in a short write."""
    lost = 0
    for piece in pieces:
        if offset >= len(piece):
            offset -= len(piece)
            continue
        lost += piece.count(b"\n", offset)
        offset = 0
    return lost
