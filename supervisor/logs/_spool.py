"""On-disk spool for a network sink: append-only segment files.

Each record is a 4-byte big-endian length and the framed bytes. Records are
appended to the newest segment and read from the oldest. A record read is not
gone yet: its segment file stays until the segment is read to its end and the
sink has released every record of it (:meth:`Spool.release`: the receiver
confirmed them), so a crash of the supervisor loses no event in flight; the next run
sends them again (at-least-once). Segments left by an earlier run are picked
up again at start (a torn last record is cut off). A clean :meth:`Spool.close`
cuts the read part off a partly read segment, so the next run starts exactly
where this one ended.

Nothing is lost silently. New records wait in a small memory buffer and are
written in chunks with ``os.write``, so a failed write (ENOSPC, EIO) is seen
at once: the segment is cut back to its last whole record, the records stay in
memory (up to ``memory_bytes``; past that the oldest give way), and the write
is retried at every :meth:`Spool.flush` until the disk takes them again. Every
record dropped (``max_bytes`` reached, memory bound while the disk fails, an
unreadable segment, a failed shutdown write) goes to ``on_dropped`` with its
count and reason.

fsync policy: ``never`` (the OS decides), ``batch`` (the sink calls
:meth:`Spool.sync_fd` off the event loop about once a second), ``always``
(after every record; safe and slow).
"""

from __future__ import annotations

import os
import struct
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import structlog

__all__ = ["Spool"]

log = structlog.get_logger("actorsup.logs")

_LEN = struct.Struct(">I")
_FIRST_ID = 10**12  # room below for segments prepended at shutdown
_READ_CHUNK = 1 << 20
_WRITE_CHUNK = 1 << 16
MEMORY_BYTES = 16 << 20  # records kept in memory while the disk refuses them

DropReport = Callable[[int, str], None]


class _Segment:
    __slots__ = ("id", "offset", "path", "records", "size")

    def __init__(self, seg_id: int, path: Path, records: int = 0, size: int = 0) -> None:
        self.id = seg_id
        self.path = path
        self.records = records  # records not yet read
        self.size = size  # bytes on disk
        self.offset = 0  # bytes already read


class _Held:
    """Records handed out by read() and not yet released, all from one segment file (or memory)."""

    __slots__ = ("done", "path", "records")

    def __init__(self, path: Path | None) -> None:
        self.path = path  # None: the records never reached the disk, or their file is gone
        self.records = 0
        self.done = False  # the segment is read to its end: its file goes with the last release


def _ignore(count: int, reason: str) -> None:
    pass


class Spool:
    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        fsync: str = "batch",
        segment_bytes: int | None = None,
        *,
        memory_bytes: int = MEMORY_BYTES,
        name: str = "spool",
        on_dropped: DropReport = _ignore,
    ) -> None:
        if fsync not in ("never", "batch", "always"):
            raise ValueError(f'fsync must be "never", "batch" or "always" (got {fsync!r})')
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.segment_bytes = segment_bytes or max(1 << 16, min(max_bytes // 8, 16 << 20))
        self.memory_bytes = min(memory_bytes, max_bytes)
        self.name = name
        self._on_dropped = on_dropped
        self._write_chunk = min(_WRITE_CHUNK, self.segment_bytes)
        self._segments: deque[_Segment] = deque()
        self._fd: int | None = None  # appends to self._segments[-1]
        self._reader: BinaryIO | None = None  # reads self._segments[0]
        self._read_buf = b""
        self._pending: deque[bytes] = deque()  # newer than everything on disk, not yet written
        self._held: deque[_Held] = deque()  # read, not yet released: their files stay for a crash
        self._pending_bytes = 0
        self._unsynced = False
        self.error: OSError | None = None  # set while writes fail; cleared by the next one that succeeds
        self.records = 0  # records not yet read: on disk and pending
        self.bytes = 0  # bytes on disk plus pending, over all segments
        self.directory.mkdir(parents=True, exist_ok=True)
        self._recover()

    # --- startup -------------------------------------------------------------
    def _recover(self) -> None:
        for path in sorted(self.directory.glob("*.seg")):
            try:
                seg_id = int(path.stem)
            except ValueError:
                continue
            records, good = _scan(path)
            if good != path.stat().st_size:
                os.truncate(path, good)  # a record torn by a crash
            if records == 0:
                path.unlink()
                continue
            self._segments.append(_Segment(seg_id, path, records, good))
            self.records += records
            self.bytes += good

    # --- writing -------------------------------------------------------------
    def append(self, frame: bytes) -> int:
        """Spool one frame; return how many records were dropped for it (also reported)."""
        size = _LEN.size + len(frame)
        if size > self.max_bytes:
            self._dropped(1, "event larger than spool_max_bytes: dropped")
            return 1  # can never fit: this record itself is the one dropped
        dropped = 0
        while self.bytes + size > self.max_bytes and (self._segments or self._pending):
            dropped += self._drop_oldest()
        if dropped:
            self._dropped(dropped, "spool_max_bytes reached: oldest spooled events dropped")
        self._pending.append(frame)
        self._pending_bytes += size
        self.records += 1
        self.bytes += size
        if self.error is not None:
            over = 0
            while self._pending_bytes > self.memory_bytes:
                self._pop_pending()
                over += 1
            if over:
                self._dropped(over, f"spool not writable and {self.memory_bytes} bytes waiting in memory: "
                              "oldest waiting events dropped")
            return dropped + over
        if self.fsync == "always":
            if self._write_out() and self._fd is not None:
                self._sync(self._fd)
        elif self._pending_bytes >= self._write_chunk:
            self._write_out()
        return dropped

    def prepend(self, frames: list[bytes]) -> None:
        """Store frames that are older than everything spooled (shutdown); a failure is reported."""
        if not frames:
            return
        seg_id = (self._segments[0].id if self._segments else _FIRST_ID) - 1
        path = self.directory / f"{seg_id:016d}.seg"
        data = b"".join(_LEN.pack(len(f)) + f for f in frames)
        try:
            with open(path, "wb") as file:
                file.write(data)
                if self.fsync != "never":
                    file.flush()
                    os.fsync(file.fileno())
        except OSError as exc:
            path.unlink(missing_ok=True)
            self._dropped(len(frames), f"spool not writable at shutdown ({exc.strerror or exc})")
            return
        self._close_reader()
        self._segments.appendleft(_Segment(seg_id, path, len(frames), len(data)))
        self.records += len(frames)
        self.bytes += len(data)

    def _write_out(self) -> bool:
        """Write every pending record; False (with the records kept) if the disk refuses."""
        while self._pending:
            try:
                fd = self._writable_fd()
            except OSError as exc:
                self._write_failed(exc)
                return False
            seg = self._segments[-1]
            chunk: list[bytes] = []
            size = 0
            for frame in self._pending:
                if chunk and (size >= self._write_chunk or seg.size + size >= self.segment_bytes):
                    break
                chunk.append(_LEN.pack(len(frame)))
                chunk.append(frame)
                size += _LEN.size + len(frame)
            data = memoryview(b"".join(chunk))
            written = 0
            error: OSError | None = None
            try:
                while written < len(data):
                    written += os.write(fd, data[written:])
            except OSError as exc:
                error = exc
            whole = self._commit(seg, written)
            if whole != written:  # never leave a torn record behind for the next write to follow
                try:
                    os.ftruncate(fd, seg.size)
                except OSError as exc:
                    error = error or exc
                    self._close_writer()  # a torn tail: the next write starts a new segment
            if error is not None:
                self._write_failed(error)
                return False
        if self.error is not None:
            log.info("logs.sink_recovered", sink=self.name, spool_dir=str(self.directory),
                     spooled=self.records, hint="the spool is writable again")
            self.error = None
        return True

    def _commit(self, seg: _Segment, written: int) -> int:
        """Move the pending records that reached the disk whole into ``seg``; return their bytes."""
        done = 0
        while self._pending:
            size = _LEN.size + len(self._pending[0])
            if done + size > written:
                break
            self._pending.popleft()
            self._pending_bytes -= size
            seg.records += 1
            done += size
        seg.size += done
        if done:
            self._unsynced = True
        return done

    def _write_failed(self, exc: OSError) -> None:
        if self.error is None:
            log.error("logs.sink_error", sink=self.name, error=str(exc), spool_dir=str(self.directory),
                      hint=f"the spool is not writable (disk full?); up to {self.memory_bytes} bytes of events "
                      "wait in memory and the write is retried every second")
        self.error = exc

    def _writable_fd(self) -> int:
        if self._fd is not None and self._segments[-1].size < self.segment_bytes:
            return self._fd
        self._close_writer()
        seg_id = self._segments[-1].id + 1 if self._segments else _FIRST_ID
        path = self.directory / f"{seg_id:016d}.seg"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self._segments.append(_Segment(seg_id, path))
        return self._fd

    def _drop_oldest(self) -> int:
        if not self._segments:
            self._pop_pending()
            return 1
        seg = self._segments[0]
        lost = seg.records
        self.records -= lost
        seg.records = 0
        self._finish_head(gone=True)
        return lost

    def _pop_pending(self) -> bytes:
        frame = self._pending.popleft()
        size = _LEN.size + len(frame)
        self._pending_bytes -= size
        self.records -= 1
        self.bytes -= size
        return frame

    def _dropped(self, count: int, reason: str) -> None:
        self._on_dropped(count, reason)

    # --- reading -------------------------------------------------------------
    def read(self, max_bytes: int, max_records: int = 1 << 62) -> list[bytes]:
        """Take up to about ``max_bytes`` (and ``max_records``) of the oldest records, in order (never raises)."""
        out: list[bytes] = []
        taken = 0
        while self.records > len(self._pending) and taken < max_bytes and len(out) < max_records:
            seg = self._segments[0]
            if seg.records == 0:
                self._finish_head()
                continue
            before = len(out)
            try:
                taken += self._read_segment(seg, out, max_bytes - taken, max_records)
            except OSError as exc:
                self._hold(seg.path, len(out) - before)
                lost = seg.records
                self.records -= lost
                seg.records = 0
                self._finish_head(gone=True)
                self._dropped(lost, f"spool segment {seg.path.name} unreadable ({exc}): its events dropped")
                continue
            self._hold(seg.path, len(out) - before)
            if seg.records == 0:
                self._finish_head()
        if self.records == len(self._pending):
            self._finish_all()  # the disk part is drained: new records start a fresh segment
        before = len(out)
        while self._pending and taken < max_bytes and len(out) < max_records:
            frame = self._pop_pending()
            out.append(frame)
            taken += len(frame)
        self._hold(None, len(out) - before)
        return out

    def release(self, count: int) -> None:
        """The oldest ``count`` records handed out are delivered: a segment read to its end
        and wholly released is deleted. Until then it stays, and a crash sends it again."""
        held = self._held
        while count and held:
            entry = held[0]
            take = min(count, entry.records)
            entry.records -= take
            count -= take
            if entry.records:
                break
            if not entry.done and entry.path is not None:
                break  # the segment being read: more of its records come
            held.popleft()
            if entry.path is not None:
                entry.path.unlink(missing_ok=True)

    def _hold(self, path: Path | None, count: int) -> None:
        if not count:
            return
        if self._held and self._held[-1].path == path and not self._held[-1].done:
            self._held[-1].records += count
        else:
            entry = _Held(path)
            entry.records = count
            self._held.append(entry)

    def _held_for(self, path: Path) -> _Held | None:
        for entry in reversed(self._held):
            if entry.path == path:
                return entry
        return None

    def _read_segment(self, seg: _Segment, out: list[bytes], max_bytes: int, max_records: int) -> int:
        if self._reader is None:
            self._reader = open(seg.path, "rb")  # noqa: SIM115 - kept open
            self._reader.seek(seg.offset)
            self._read_buf = b""
        buf = self._read_buf
        pos = taken = 0
        while seg.records and taken < max_bytes and len(out) < max_records:
            if len(buf) - pos < _LEN.size:
                buf = buf[pos:] + self._reader.read(_READ_CHUNK)
                pos = 0
                if len(buf) < _LEN.size:
                    raise OSError(f"spool segment {seg.path} is shorter than its records")
            (length,) = _LEN.unpack_from(buf, pos)
            end = pos + _LEN.size + length
            while len(buf) < end:
                more = self._reader.read(max(_READ_CHUNK, end - len(buf)))
                if not more:
                    raise OSError(f"spool segment {seg.path} is shorter than its records")
                buf += more
            out.append(buf[pos + _LEN.size : end])
            taken += length
            seg.offset += end - pos
            pos = end
            seg.records -= 1
            self.records -= 1
        self._read_buf = buf[pos:]
        return taken

    def _finish_head(self, *, gone: bool = False) -> None:
        """The oldest segment has no unread record left (or is ``gone``: dropped, unreadable)."""
        self._close_reader()
        seg = self._segments.popleft()
        if not self._segments:
            self._close_writer()
        self.bytes -= seg.size
        entry = self._held_for(seg.path)
        if entry is not None and entry.records and not gone:
            entry.done = True  # deleted with its last release
            return
        if entry is not None:
            entry.path = None
        seg.path.unlink(missing_ok=True)

    def _finish_all(self) -> None:
        while self._segments:
            self._finish_head()

    # --- durability ------------------------------------------------------------
    def flush(self) -> int | None:
        """Write what is pending (retrying a failed disk); return a dup'ed fd to fsync if a sync is due."""
        if self._pending:
            self._write_out()
        if self._fd is None or self.fsync != "batch" or not self._unsynced:
            return None
        self._unsynced = False
        try:
            return os.dup(self._fd)
        except OSError:
            return None

    @staticmethod
    def sync_fd(fd: int) -> None:
        """fsync and close a fd from :meth:`flush` (run it in a worker thread)."""
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _sync(self, fd: int) -> None:
        try:
            os.fsync(fd)
        except OSError as exc:
            self._write_failed(exc)

    def close(self) -> None:
        """Write what is pending and close; records the disk refuses now are reported dropped."""
        self._close_reader()
        if self._pending and not self._write_out():
            lost = len(self._pending)
            while self._pending:
                self._pop_pending()
            self._dropped(lost, f"spool not writable at shutdown ({self.error}): events dropped")
        if self._fd is not None and self.fsync != "never":
            self._sync(self._fd)
        self._close_writer()
        # The records handed out and not released are the caller's now (a sink
        # prepends them): their copies go, and a partly read segment keeps only
        # its unread records, so the next run starts exactly where this one ended.
        unread = {seg.path for seg in self._segments}
        for entry in self._held:
            if entry.path is not None and entry.path not in unread:
                entry.path.unlink(missing_ok=True)
        self._held.clear()
        for seg in self._segments:
            if seg.offset:  # the one partly read (behind a prepended one, maybe)
                self._cut_read_part(seg)

    def _cut_read_part(self, seg: _Segment) -> None:
        tmp = seg.path.with_suffix(".tmp")
        try:
            with open(seg.path, "rb") as src, open(tmp, "wb") as dst:
                src.seek(seg.offset)
                while chunk := src.read(_READ_CHUNK):
                    dst.write(chunk)
                if self.fsync != "never":
                    dst.flush()
                    os.fsync(dst.fileno())
            os.replace(tmp, seg.path)
        except OSError:
            tmp.unlink(missing_ok=True)  # the whole segment stays: its read part comes again (at-least-once)
            return
        seg.size -= seg.offset
        seg.offset = 0

    def _close_writer(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _close_reader(self) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            reader.close()
            self._read_buf = b""  # a reopened reader seeks to the segment's offset

    def __len__(self) -> int:
        return self.records


def _scan(path: Path) -> tuple[int, int]:
    """Count whole records in a segment; return (records, bytes they span)."""
    records = good = 0
    with open(path, "rb") as file:
        data = file.read()
    while len(data) - good >= _LEN.size:
        (length,) = _LEN.unpack_from(data, good)
        end = good + _LEN.size + length
        if end > len(data):
            break
        records += 1
        good = end
    return records, good
