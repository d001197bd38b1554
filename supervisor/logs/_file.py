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
page cache on a thread of its own. A failed write comes back as the exact
number of lines it lost, counted in ``logs.dropped``; the writer cuts a line
that a full disk left half written, so every line in the file is whole.
``logs.sink_recovered`` follows the first write that succeeded again.

A rotation renames and deletes files, which with many backups (or a slow
disk) takes seconds: it runs on a worker thread, after the writer has
written the old file's lines. Lines that arrive meanwhile wait in memory
(up to :data:`ROTATION_BUFFER` bytes, then they are dropped and counted), one
group per file to come, and are written once their file is open: the order
of lines is kept exactly.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import structlog
from anyio.abc import TaskStatus

from ..config import SinkSpec
from ..core._clock import Clock, MonotonicClock
from ._record import LogRecord
from ._sinks import _BufferedSink
from ._writer import new_writer

__all__ = ["FileSink"]

log = structlog.get_logger("actorsup.logs")

RETRY_INTERVAL = 1.0  # seconds between attempts to reopen a file that failed
ROTATION_BUFFER = 8 << 20  # bytes of lines held in memory while a rotation runs
_BUFFER = 1 << 16


def _next_midnight(now: float) -> tuple[str, float]:
    """The UTC date of ``now``, and the wall time of the midnight after it."""
    day = dt.datetime.fromtimestamp(now, dt.UTC).date()
    return day.isoformat(), dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC).timestamp()


@dataclass
class _Held:
    """The lines for one file that a rotation under way will open."""

    since: float  # wall time of its first line: its day
    next_day: float
    lines: list[bytes] = field(default_factory=list)
    size: int = 0


@dataclass
class _Rotated:
    """What the worker thread did: the new file (or why not), and what went wrong on the way."""

    fd: int | None = None
    size: int = 0
    mtime: float = 0.0
    errors: list[tuple[str, OSError]] = field(default_factory=list)


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
        self._unconfirmed = False  # since the failure, lines were handed to the writer: has one landed?
        self._dropped = 0
        # A rotation under way: the file it closes, and the lines of each file to come.
        self._rotating_fd: int | None = None
        self._held: deque[_Held] = deque()
        self._held_bytes = 0
        self._rotations = anyio.Lock()
        self._rotation_wake: anyio.Event | None = None
        self._open()

    # --- files ---------------------------------------------------------------
    def _open_file(self) -> tuple[int, os.stat_result]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            return fd, os.fstat(fd)
        except OSError:
            os.close(fd)
            raise

    def _open(self) -> bool:
        now = self._clock.wall()
        try:
            fd, stat = self._open_file()
        except OSError as exc:
            self._failure(exc, now)
            return False
        self._opened(fd, stat.st_size, stat.st_mtime, now)
        return True

    def _opened(self, fd: int, size: int, mtime: float, now: float) -> None:
        self._fd = fd
        self._size = size
        # Appending to a file from an earlier day: its content is dated by its mtime.
        self._set_day(min(now, mtime) if size else now)

    def _set_day(self, now: float) -> None:
        self._day, self._next_day = _next_midnight(now)

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
        if self._held:
            return  # a rotation is under way: it opens the path anew
        self._close_file()
        self._open()

    def flush(self) -> None:
        """Hand the buffered lines to the writer (:meth:`drain` waits until they are written)."""
        super().flush()
        self._collect_failures()
        if self._fd is not None:
            self._submit(self._fd)

    def drain(self) -> None:
        """Flush, and return once every line so far is in the file or counted as dropped.

        Lines held for a rotation under way are written once it is done.
        """
        self.flush()
        self._writer.drain()
        self._collect_failures()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(super().run)
            self._rotation_wake = anyio.Event()
            task_status.started()
            while True:
                if not self._held:
                    await self._rotation_wake.wait()
                self._rotation_wake = anyio.Event()
                await self._finish_rotations()

    async def aclose(self) -> None:
        await self._finish_rotations()
        self._close_file()
        self._writer.close()
        self._collect_failures()
        self._report_dropped()

    # --- writing -------------------------------------------------------------
    def _submit(self, fd: int) -> None:
        if self._buffer:
            buffer, self._buffer = self._buffer, []
            self._buffered = 0
            self._writer.submit(fd, buffer)
            self._unconfirmed = self._failed_at is not None

    def _collect_failures(self) -> None:
        pending = self._writer.pending  # read first: a batch no longer pending has its failure listed
        failures = self._writer.take_failures()
        if failures:
            self._dropped += sum(lost for _, lost in failures)
            code = failures[-1][0]
            self._failure(OSError(code, os.strerror(code)), self._clock.wall())
        elif self._unconfirmed and not pending:
            self._recovered()  # lines handed over since the failure are in the file

    def _writable(self, size: int) -> bool:
        """Open, rotate or retry as ``size`` more bytes need; False if they must be dropped."""
        self._collect_failures()
        if self._held:
            return True  # a rotation is under way: the line is held for its file
        if self._fd is None:
            now = self._clock.wall()
            if self._failed_at is not None and now - self._failed_at < RETRY_INTERVAL:
                return False
            if not self._open():
                return False
        if self._size + size > self.spec.max_bytes and self._size > 0:
            self._begin_rotation()
        elif self.spec.daily and (now := self._clock.wall()) >= self._next_day:
            if self._size:
                self._begin_rotation()
            else:
                self._set_day(now)
        return bool(self._held) or self._fd is not None

    def write(self, record: LogRecord) -> None:
        line = record.line + b"\n"
        if not self._writable(len(line)):
            self._dropped += 1
            return
        if self._held:
            self._hold(line)
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
    def _begin_rotation(self) -> None:
        """Close the active file for the worker thread to rotate; lines wait until the new one is open."""
        self.flush()
        self._rotating_fd, self._fd = self._fd, None
        now = self._clock.wall()
        self._held.append(_Held(now, _next_midnight(now)[1]))
        if self._rotation_wake is not None:
            self._rotation_wake.set()

    def _hold(self, line: bytes) -> None:
        if self._held_bytes + len(line) > ROTATION_BUFFER:
            self._dropped += 1
            return
        held = self._held[-1]
        now = self._clock.wall()
        if held.size and (held.size + len(line) > self.spec.max_bytes or (self.spec.daily and now >= held.next_day)):
            held = _Held(now, _next_midnight(now)[1])  # one more rotation once this file is full
            self._held.append(held)
        held.lines.append(line)
        held.size += len(line)
        self._held_bytes += len(line)

    async def _finish_rotations(self) -> None:
        """Rotate on a worker thread, once for each group of held lines, and write each to its new file."""
        async with self._rotations:
            while self._held:
                done = await anyio.to_thread.run_sync(self._rotate_files, self._rotating_fd, self._day)
                self._rotating_fd = None  # closed by the thread (cleared only now: a cancel may come before it runs)
                held = self._held.popleft()
                self._held_bytes -= held.size
                self._collect_failures()  # the old file's last lines
                for what, exc in done.errors:
                    if what == "open":
                        self._failure(exc, self._clock.wall())
                    else:
                        log.error("logs.sink_error", sink=self.name, error=str(exc),
                                  hint="cannot rename the log file for rotation; check the folder's permissions")
                if done.fd is None:  # nothing to write to: every held line is lost
                    self._dropped += len(held.lines) + sum(len(h.lines) for h in self._held)
                    self._held.clear()
                    self._held_bytes = 0
                    break
                self._opened(done.fd, done.size, done.mtime, held.since)
                self._buffer.extend(held.lines)
                self._buffered += held.size
                self._size += held.size
                if self._held:  # this file is full already: the next rotation closes it
                    self._submit(done.fd)
                    self._rotating_fd, self._fd = done.fd, None
                else:
                    self.flush()
                    if self._failed_at is None:
                        self._report_dropped()  # lines the rotation buffer could not hold

    def _rotate_files(self, old: int | None, day: str) -> _Rotated:
        """On a worker thread: close the old file once its lines are written, rename, open the path anew."""
        done = _Rotated()
        if old is not None:
            self._writer.drain()
            try:
                os.close(old)
            except OSError as exc:
                done.errors.append(("close", exc))
        try:
            if self.path.exists():
                if self.spec.daily:
                    self._rotate_dated(day)
                else:
                    self._rotate_numbered()
        except OSError as exc:
            done.errors.append(("rename", exc))
        try:
            fd, stat = self._open_file()
        except OSError as exc:
            done.errors.append(("open", exc))
        else:
            done.fd, done.size, done.mtime = fd, stat.st_size, stat.st_mtime
        return done

    def _numbered(self) -> dict[int, Path]:
        """Rotated files ``NAME.N`` (1 <= N <= backups) that exist, by N: one listing, not one stat per N."""
        prefix = self.path.name + "."
        found = {}
        for entry in os.scandir(self.path.parent):
            number = entry.name[len(prefix):]
            if entry.name.startswith(prefix) and number.isdigit() and 1 <= int(number) <= self.spec.backups:
                found[int(number)] = Path(entry.path)
        return found

    def _rotate_numbered(self) -> None:
        backups = self.spec.backups
        if backups == 0:
            self.path.unlink()
            return
        for n, older in sorted(self._numbered().items(), reverse=True):
            if n < backups:
                older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))

    def _dated_pattern(self) -> re.Pattern[str]:
        stem, suffix = re.escape(self.path.stem), re.escape(self.path.suffix)
        return re.compile(rf"^{stem}\.(\d{{4}}-\d\d-\d\d)\.(\d+){suffix}$")

    def rotated_files(self) -> list[Path]:
        """Rotated files of this sink, oldest first."""
        if not self.spec.daily:
            return [p for _, p in sorted(self._numbered().items(), reverse=True)]
        pattern = self._dated_pattern()
        dated = []
        for p in self.path.parent.iterdir():
            if m := pattern.match(p.name):
                dated.append((m[1], int(m[2]), p))
        return [p for _, _, p in sorted(dated)]

    def _rotate_dated(self, day: str) -> None:
        pattern = self._dated_pattern()
        n = 1 + max(
            (int(m[2]) for p in self.path.parent.iterdir() if (m := pattern.match(p.name)) and m[1] == day),
            default=0,
        )
        target = self.path.with_name(f"{self.path.stem}.{day}.{n}{self.path.suffix}")
        self.path.replace(target)
        rotated = self.rotated_files()
        for old in rotated[: max(0, len(rotated) - self.spec.backups)]:
            old.unlink()

    # --- failures ------------------------------------------------------------
    def _failure(self, exc: OSError, now: float) -> None:
        self._unconfirmed = False  # the lines handed over since the last failure did not all land
        self._close_file()
        if self._failed_at is None:
            log.error("logs.sink_error", sink=self.name, path=str(self.path), error=str(exc),
                      hint="check that the folder exists and is writable; retrying every "
                      f"{RETRY_INTERVAL:g}s, events meanwhile are counted in logs.dropped")
        self._failed_at = now

    def _recovered(self) -> None:
        self._failed_at = None
        self._unconfirmed = False
        log.info("logs.sink_recovered", sink=self.name)
        self._report_dropped()

    def _report_dropped(self) -> None:
        if self._dropped:
            count, self._dropped = self._dropped, 0
            log.warning("logs.dropped", sink=self.name, count=count, reason="file not writable")
