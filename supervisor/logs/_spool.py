"""On-disk spool for a network sink: append-only segment files.

Each record is a 4-byte big-endian length and the framed bytes. Records are
appended to the newest segment and read from the oldest; a segment is deleted
once fully read. At ``max_bytes`` whole oldest segments are dropped and the
number of records lost is returned, so that the caller can report it exactly.
Segments left by an earlier run are picked up again at start (a torn last
record is cut off).

fsync policy: ``never`` (the OS decides), ``batch`` (the sink calls
:meth:`Spool.sync_fd` off the event loop about once a second), ``always``
(after every record; safe and slow).
"""

from __future__ import annotations

import os
import struct
from collections import deque
from pathlib import Path
from typing import BinaryIO

__all__ = ["Spool"]

_LEN = struct.Struct(">I")
_FIRST_ID = 10**12  # room below for segments prepended at shutdown
_READ_CHUNK = 1 << 20


class _Segment:
    __slots__ = ("id", "offset", "path", "records", "size")

    def __init__(self, seg_id: int, path: Path, records: int = 0, size: int = 0) -> None:
        self.id = seg_id
        self.path = path
        self.records = records  # records not yet read
        self.size = size  # bytes on disk
        self.offset = 0  # bytes already read


class Spool:
    def __init__(self, directory: Path, max_bytes: int, fsync: str = "batch", segment_bytes: int | None = None) -> None:
        if fsync not in ("never", "batch", "always"):
            raise ValueError(f'fsync must be "never", "batch" or "always" (got {fsync!r})')
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.segment_bytes = segment_bytes or max(1 << 16, min(max_bytes // 8, 16 << 20))
        self._segments: deque[_Segment] = deque()
        self._writer: BinaryIO | None = None  # appends to self._segments[-1]
        self._reader: BinaryIO | None = None  # reads self._segments[0]
        self._read_buf = b""
        self._unsynced = False
        self.records = 0  # records not yet read, over all segments
        self.bytes = 0  # bytes on disk, over all segments
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
        """Spool one frame; return how many of the oldest records were dropped for it."""
        size = _LEN.size + len(frame)
        dropped = 0
        if size > self.max_bytes:
            return 1  # can never fit: this record itself is the one dropped
        while self.bytes + size > self.max_bytes and self._segments:
            dropped += self._drop_oldest()
        writer = self._writer
        if writer is None or self._segments[-1].size >= self.segment_bytes:
            writer = self._new_segment()
        writer.write(_LEN.pack(len(frame)))
        writer.write(frame)
        seg = self._segments[-1]
        seg.records += 1
        seg.size += size
        self.records += 1
        self.bytes += size
        if self.fsync == "always":
            writer.flush()
            os.fsync(writer.fileno())
        else:
            self._unsynced = True
        return dropped

    def prepend(self, frames: list[bytes]) -> None:
        """Store frames that are older than everything spooled (shutdown)."""
        if not frames:
            return
        seg_id = (self._segments[0].id if self._segments else _FIRST_ID) - 1
        path = self.directory / f"{seg_id:016d}.seg"
        data = b"".join(_LEN.pack(len(f)) + f for f in frames)
        with open(path, "wb") as file:
            file.write(data)
            if self.fsync != "never":
                file.flush()
                os.fsync(file.fileno())
        self._close_reader()
        self._segments.appendleft(_Segment(seg_id, path, len(frames), len(data)))
        self.records += len(frames)
        self.bytes += len(data)

    def _new_segment(self) -> BinaryIO:
        self._close_writer()
        seg_id = self._segments[-1].id + 1 if self._segments else _FIRST_ID
        path = self.directory / f"{seg_id:016d}.seg"
        self._writer = open(path, "ab", buffering=1 << 16)  # noqa: SIM115 - kept open
        self._segments.append(_Segment(seg_id, path))
        return self._writer

    def _drop_oldest(self) -> int:
        seg = self._segments.popleft()
        if len(self._segments) == 0:
            self._close_writer()
        self._close_reader()
        self.records -= seg.records
        self.bytes -= seg.size
        seg.path.unlink(missing_ok=True)
        return seg.records

    # --- reading -------------------------------------------------------------
    def read(self, max_bytes: int) -> list[bytes]:
        """Take up to about ``max_bytes`` of the oldest records, in order."""
        out: list[bytes] = []
        taken = 0
        while self._segments and taken < max_bytes:
            seg = self._segments[0]
            if seg.records == 0:
                if len(self._segments) == 1:
                    break  # the writer's segment, drained
                self._finish_head()
                continue
            if len(self._segments) == 1 and self._writer is not None:
                self._writer.flush()
            if self._reader is None:
                self._reader = open(seg.path, "rb")  # noqa: SIM115 - kept open
                self._reader.seek(seg.offset)
                self._read_buf = b""
            buf = self._read_buf
            pos = 0
            while seg.records and taken < max_bytes:
                if len(buf) - pos < _LEN.size:
                    buf = buf[pos:] + self._reader.read(_READ_CHUNK)
                    pos = 0
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
            if seg.records == 0 and len(self._segments) > 1:
                self._finish_head()
        if self.records == 0 and self._segments and self._writer is not None:
            self._finish_all()
        return out

    def _finish_head(self) -> None:
        self._close_reader()
        seg = self._segments.popleft()
        self.bytes -= seg.size
        seg.path.unlink(missing_ok=True)

    def _finish_all(self) -> None:
        # Everything was read: start the next record in a fresh segment.
        self._close_writer()
        while self._segments:
            self._finish_head()

    # --- durability ------------------------------------------------------------
    def flush(self) -> int | None:
        """Flush userspace buffers; return a dup'ed fd to fsync if a sync is due."""
        if self._writer is None:
            return None
        self._writer.flush()
        if self.fsync != "batch" or not self._unsynced:
            return None
        self._unsynced = False
        return os.dup(self._writer.fileno())

    @staticmethod
    def sync_fd(fd: int) -> None:
        """fsync and close a fd from :meth:`flush` (run it in a worker thread)."""
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        self._close_reader()
        if self._writer is not None and self.fsync != "never":
            self._writer.flush()
            os.fsync(self._writer.fileno())
        self._close_writer()

    def _close_writer(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

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
