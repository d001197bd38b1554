"""File sink: rotation by size and by day (fake clock), reopen on SIGHUP, failures, block writes."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import structlog
from fakeclock import FakeClock

from supervisor.config import SinkSpec
from supervisor.logs import FileSink, LogRecord, _writer


def _rec(i: int, size: int = 0) -> LogRecord:
    return LogRecord(20, "a", json.dumps({"i": i, "pad": "x" * size}).encode())


def _ids(path: Path) -> list[int]:
    return [json.loads(line)["i"] for line in path.read_text().splitlines()]


def _midnight_clock(day: str = "2026-11-26") -> FakeClock:
    clock = FakeClock()
    clock.set_wall(dt.datetime.fromisoformat(f"{day}T23:59:58+00:00").timestamp())
    return clock


class TestFileSink:
    @pytest.mark.anyio
    async def test_writes_json_lines(self, tmp_path: Path) -> None:
        """Each record is one line in the file once the sink is flushed."""
        sink = FileSink(SinkSpec(type="file", path=tmp_path / "a.jsonl", daily=False))
        for i in range(3):
            sink.write(_rec(i))
        await sink.aclose()
        assert _ids(tmp_path / "a.jsonl") == [0, 1, 2]

    @pytest.mark.anyio
    async def test_rotates_by_size(self, tmp_path: Path) -> None:
        """Past max_bytes the file rotates to .1 .. .N; only `backups` files are kept, none split."""
        path = tmp_path / "a.jsonl"
        sink = FileSink(SinkSpec(type="file", path=path, max_bytes=1000, backups=2, daily=False))
        for i in range(40):  # ~100 bytes each: about 4 files' worth
            sink.write(_rec(i, 80))
        await sink.aclose()
        files = [path.with_name("a.jsonl.2"), path.with_name("a.jsonl.1"), path]
        assert all(f.stat().st_size <= 1000 for f in files)
        assert not path.with_name("a.jsonl.3").exists()
        ids = [i for f in files for i in _ids(f)]
        assert ids == list(range(ids[0], 40)) and len(ids) < 40

    @pytest.mark.anyio
    async def test_rotates_by_day_with_date_in_name(self, tmp_path: Path) -> None:
        """After UTC midnight the day's file is renamed with its date; today's goes on in the path."""
        clock = _midnight_clock()
        path = tmp_path / "a.jsonl"
        sink = FileSink(SinkSpec(type="file", path=path, daily=True), clock=clock)
        sink.write(_rec(1))
        await clock.advance(1.5)
        sink.write(_rec(2))  # still 23:59:59
        await clock.advance(1.0)
        sink.write(_rec(3))  # 00:00:00.5 the next day
        await sink.aclose()
        assert _ids(tmp_path / "a.2026-11-26.1.jsonl") == [1, 2]
        assert _ids(path) == [3]

    @pytest.mark.anyio
    async def test_daily_and_size_rotation_keep_backups(self, tmp_path: Path) -> None:
        """Dated rotated files are numbered within a day and pruned to `backups`."""
        clock = _midnight_clock()
        path = tmp_path / "a.jsonl"
        sink = FileSink(SinkSpec(type="file", path=path, max_bytes=250, backups=3, daily=True), clock=clock)
        for i in range(8):  # two per file
            sink.write(_rec(i, 80))
        await clock.advance(3.0)
        sink.write(_rec(8, 80))
        await sink.aclose()
        names = [p.name for p in sink.rotated_files()]
        assert names == ["a.2026-11-26.2.jsonl", "a.2026-11-26.3.jsonl", "a.2026-11-26.4.jsonl"]
        assert _ids(tmp_path / "a.2026-11-26.4.jsonl") == [6, 7]
        assert _ids(path) == [8]

    @pytest.mark.anyio
    async def test_no_empty_file_rotated_at_midnight(self, tmp_path: Path) -> None:
        """An empty active file is not rotated at midnight."""
        clock = _midnight_clock()
        sink = FileSink(SinkSpec(type="file", path=tmp_path / "a.jsonl"), clock=clock)
        await clock.advance(5.0)
        sink.write(_rec(1))
        await sink.aclose()
        assert sink.rotated_files() == []

    @pytest.mark.anyio
    async def test_reopen_after_external_rotation(self, tmp_path: Path) -> None:
        """reopen() (SIGHUP) writes to a new file at the configured path after logrotate moved it."""
        path = tmp_path / "a.jsonl"
        sink = FileSink(SinkSpec(type="file", path=path, daily=False))
        sink.write(_rec(1))
        sink.flush()
        path.rename(tmp_path / "moved.jsonl")
        sink.write(_rec(2))  # still the old (moved) file, as logrotate expects
        sink.reopen()
        sink.write(_rec(3))
        await sink.aclose()
        assert _ids(tmp_path / "moved.jsonl") == [1, 2]
        assert _ids(path) == [3]

    @pytest.mark.anyio
    async def test_unwritable_path_logged_once_and_retried(self, tmp_path: Path) -> None:
        """A path that cannot be opened is logged once with a hint; drops are counted on recovery."""
        blocker = tmp_path / "dir"
        blocker.write_text("a file where the folder should be")
        clock = FakeClock()
        with structlog.testing.capture_logs() as logs:
            sink = FileSink(SinkSpec(type="file", path=blocker / "a.jsonl", daily=False), clock=clock)
            for i in range(5):
                sink.write(_rec(i))
            blocker.unlink()
            sink.write(_rec(5))  # within the retry interval: counted, not retried
            await clock.advance(1.0)
            sink.write(_rec(6))
            await sink.aclose()
        events = [e["event"] for e in logs]
        assert events == ["logs.sink_error", "logs.sink_recovered", "logs.dropped"]
        assert "hint" in logs[0] and logs[2]["count"] == 6
        assert _ids(blocker / "a.jsonl") == [6]


class TestFullDisk:
    @pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
    @pytest.mark.anyio
    async def test_full_disk_counts_every_lost_line(self) -> None:
        """Blocks written to a full device are counted, line for line, in logs.dropped, with one error."""
        with structlog.testing.capture_logs() as logs:
            sink = FileSink(SinkSpec(type="file", path=Path("/dev/full"), daily=False, max_bytes=1 << 40))
            sink.write_many(20, "a", [b'{"i":1}\n{"i":2}\n', b'{"i":3}\n'])
            sink.write_many(20, "a", [b'{"i":4}\n'])
            await sink.aclose()
        errors = [e for e in logs if e["event"] == "logs.sink_error"]
        assert len(errors) == 1 and "No space left" in errors[0]["error"] and "hint" in errors[0]
        assert [e["count"] for e in logs if e["event"] == "logs.dropped"] == [4]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted in tmp_path (needs root): a disk that really fills up, and frees again."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


class TestDiskFills:
    @pytest.mark.anyio
    async def test_lines_whole_count_exact_recovery_true(self, small_disk: Path) -> None:
        """A disk that fills up: every line in the file is whole, written + dropped == emitted, one true recovery."""
        path = small_disk / "a.jsonl"
        filler = small_disk / "filler"
        filler.write_bytes(b"f" * 40_000)  # about 24 KiB left for the log
        clock = FakeClock()
        emitted = 0
        with structlog.testing.capture_logs() as logs:
            sink = FileSink(SinkSpec(type="file", path=path, daily=False, max_bytes=1 << 40), clock=clock)
            for _ in range(8):  # the disk fills in the second round; the sink retries every second
                for _ in range(100):
                    sink.write(_rec(emitted, 130))  # ~150 bytes: a page boundary falls mid-line
                    emitted += 1
                sink.drain()
                await clock.advance(1.1)
            while_full = len(logs)
            filler.unlink()
            for _ in range(50):
                sink.write(_rec(emitted, 130))
                emitted += 1
            sink.drain()
            await sink.aclose()
        ids = _ids(path)  # json.loads of every line: a cut or glued line fails here
        assert ids == sorted(set(ids)) and ids[-50:] == list(range(emitted - 50, emitted))
        dropped = sum(e["count"] for e in logs if e["event"] == "logs.dropped")
        assert len(ids) + dropped == emitted and dropped > 0
        recovered = [i for i, e in enumerate(logs) if e["event"] == "logs.sink_recovered"]
        assert len(recovered) == 1 and recovered[0] >= while_full  # only once a write succeeded again
        assert [e["event"] for e in logs].count("logs.sink_error") == 1


class TestRotationOffTheLoop:
    @pytest.mark.anyio
    async def test_rotation_with_many_backups_leaves_the_loop_free(self, tmp_path: Path) -> None:
        """Renaming 5,000 backups (three times) runs on a worker thread: the loop ticks on, lines keep their order."""
        path = tmp_path / "a.jsonl"
        backups = 5_000
        for n in range(1, backups):
            os.close(os.open(tmp_path / f"a.jsonl.{n}", os.O_WRONLY | os.O_CREAT))
        sink = FileSink(SinkSpec(type="file", path=path, max_bytes=1000, backups=backups, daily=False))
        gaps: list[float] = []
        ticking = anyio.Event()
        async with anyio.create_task_group() as tg:
            await tg.start(sink.run)

            async def ticker() -> None:
                last = time.monotonic()
                while True:
                    await anyio.sleep(0.005)
                    now = time.monotonic()
                    gaps.append(now - last)
                    last = now
                    ticking.set()

            tg.start_soon(ticker)
            await ticking.wait()
            sink.write(_rec(0, 900))
            started = time.monotonic()
            sink.write(_rec(1, 900))  # past max_bytes: the rotation starts
            for i in range(2, 6):
                sink.write(_rec(i, 300))  # held until the new file is open; 1 and 5 need one more rotation each
            with anyio.fail_after(60):
                while sink._held:
                    await anyio.sleep(0.005)
            took = time.monotonic() - started
            tg.cancel_scope.cancel()
        await sink.aclose()
        assert [_ids(path.with_name(f"a.jsonl.{n}")) for n in (3, 2, 1)] + [_ids(path)] == [[0], [1], [2, 3, 4], [5]]
        assert path.with_name(f"a.jsonl.{backups}").exists()
        assert took > 0.1  # long enough to show
        assert max(gaps) < took / 3, f"the loop stalled for {max(gaps):.3f}s of a {took:.3f}s rotation"


    @pytest.mark.anyio
    async def test_lines_past_the_rotation_buffer_are_counted(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """While a rotation runs, lines past ROTATION_BUFFER are dropped and counted; the rest keep their order."""
        from supervisor.logs import _file

        monkeypatch.setattr(_file, "ROTATION_BUFFER", 1000)
        path = tmp_path / "a.jsonl"
        sink = FileSink(SinkSpec(type="file", path=path, max_bytes=500, backups=1, daily=False))
        with structlog.testing.capture_logs() as logs:
            for i in range(30):  # 100 or 101 bytes each; no run task yet, so the first rotation waits for aclose
                sink.write(_rec(i, 80))
            await sink.aclose()
        kept = _ids(path.with_name("a.jsonl.1")) + _ids(path)
        dropped = sum(e["count"] for e in logs if e["event"] == "logs.dropped")
        # 5 lines of 100 bytes fill the first file (rotated away twice); 5 more and 4 of 101 bytes
        # (two digits) are held, 904 bytes; the next would pass 1,000: it and the other 15 are dropped.
        assert dropped == 16
        assert kept == list(range(5, 14)) and _ids(path) == [10, 11, 12, 13]


class TestStalledDisk:
    @pytest.mark.skipif(not _writer.NATIVE, reason="the C writer thread was not built")
    @pytest.mark.anyio
    async def test_stalled_file_does_not_block_the_loop(self, tmp_path: Path) -> None:
        """A file that stalls (a FIFO nobody reads yet) takes 2 MiB of blocks at once; they all land once it drains."""
        fifo = tmp_path / "stalled"
        os.mkfifo(fifo)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            sink = FileSink(SinkSpec(type="file", path=fifo, daily=False, max_bytes=1 << 40))
            blocks = [[b'{"i":%d,"pad":"%s"}\n' % (i, b"x" * 1000) for i in range(k, k + 100)]
                      for k in range(0, 2000, 100)]
            with anyio.fail_after(5):
                for block in blocks:
                    sink.write_many(20, "a", block)  # returns at once: the writer thread waits, not the loop
            assert sink._writer.pending > 1 << 20
            expected = b"".join(b"".join(block) for block in blocks)
            received = bytearray()
            with anyio.fail_after(20):
                while len(received) < len(expected):
                    await anyio.wait_readable(reader)
                    received += os.read(reader, 1 << 16)
                await sink.aclose()
            assert bytes(received) == expected
        finally:
            os.close(reader)
