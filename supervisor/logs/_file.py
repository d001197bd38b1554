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

Decisions (rotation, retries, what was dropped) are made here, in the event
loop's thread; the bytes go to a :mod:`._writer`, which copies them into the
page cache on a thread of its own when the C module is built. A failed write
comes back as the exact number of lines it lost, counted in ``logs.dropped``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

import structlog

from ..config import SinkSpec
from ..core._clock import Clock, MonotonicClock
from ._record import LogRecord
from ._sinks import _BufferedSink
from ._writer import new_writer

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
        self._writer = new_writer()
        self._fd: int | None = None
        self._buffer: list[bytes] = []  # lines not yet handed to the writer
        self._buffered = 0
        self._size = 0  # of the active file, counting what is buffered or queued
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
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            stat = os.fstat(fd)
        except OSError as exc:
            self._failure(exc, now)
            return False
        self._fd = fd
        self._size = stat.st_size
        # Appending to a file from an earlier day: its content is dated by its mtime.
        self._set_day(min(now, stat.st_mtime) if stat.st_size else now)
        if self._failed_at is not None:
            self._recovered()
        return True

    def _set_day(self, now: float) -> None:
        day = dt.datetime.fromtimestamp(now, dt.UTC).date()
        self._day = day.isoformat()
        midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)
        self._next_day = midnight.timestamp()

    def _close_file(self) -> None:
        """Write out what is buffered for the active file, wait for it, close it."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        self._submit(fd)
        self._writer.drain()
        self._collect_failures()
        try:
            os.close(fd)
        except OSError as exc:
            log.error("logs.sink_error", sink=self.name, error=str(exc), hint="check free disk space")

    def reopen(self) -> None:
        """Close and reopen the configured path (SIGHUP after an external logrotate)."""
        self._close_file()
        self._open()

    def flush(self) -> None:
        """Hand the buffered lines to the writer (:meth:`drain` waits until they are written)."""
        super().flush()
        self._collect_failures()
        if self._fd is not None:
            self._submit(self._fd)

    def drain(self) -> None:
        """Flush, and return once every line so far is in the file or counted as dropped."""
        self.flush()
        self._writer.drain()
        self._collect_failures()

    async def aclose(self) -> None:
        self._close_file()
        self._writer.close()
        self._report_dropped()

    # --- writing -------------------------------------------------------------
    def _submit(self, fd: int) -> None:
        if self._buffer:
            buffer, self._buffer = self._buffer, []
            self._buffered = 0
            self._writer.submit(fd, buffer)

    def _collect_failures(self) -> None:
        failures = self._writer.take_failures()
        if failures:
            self._dropped += sum(lost for _, lost in failures)
            code = failures[-1][0]
            self._failure(OSError(code, os.strerror(code)), self._clock.wall())

    def _writable(self, size: int) -> bool:
        """Open, rotate or retry as ``size`` more bytes need; False if they must be dropped."""
        self._collect_failures()
        if self._fd is None:
            now = self._clock.wall()
            if self._failed_at is not None and now - self._failed_at < RETRY_INTERVAL:
                return False
            if not self._open():
                return False
        if self._size + size > self.spec.max_bytes and self._size > 0:
            self._rotate()
        elif self.spec.daily and (now := self._clock.wall()) >= self._next_day:
            if self._size:
                self._rotate()
            else:
                self._set_day(now)
        return self._fd is not None

    def write(self, record: LogRecord) -> None:
        line = record.line + b"\n"
        if not self._writable(len(line)):
            self._dropped += 1
            return
        self._buffer.append(line)
        self._buffered += len(line)
        self._size += len(line)
        if self._buffered >= _BUFFER:
            self.flush()
        else:
            self._mark_dirty()

    def write_many(self, level: int, actor: str | None, pieces: list[bytes]) -> None:
        """Pieces of JSON lines (each line ends in a newline), handed to the writer at once.

        They came from one read of a child's pipe or channel, so they need not
        wait for the flush interval. A block that needs a rotation or a reopen
        goes line by line.
        """
        size = sum(map(len, pieces))
        self._collect_failures()
        if (
            self._fd is None
            or self._size + size > self.spec.max_bytes
            or (self.spec.daily and self._clock.wall() >= self._next_day)
        ):
            for piece in pieces:
                for line in piece.split(b"\n")[:-1]:
                    self.write(LogRecord(level, actor, line))
            return
        self._buffer.extend(pieces)
        self._size += size
        self.flush()

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

