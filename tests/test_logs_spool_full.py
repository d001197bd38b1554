"""A full disk under the spool (issue 16, defect 4): it recovers, and every event is delivered or counted.

The disk is a real 256 KiB tmpfs mounted in tmp_path (the tests run as root
in CI), filled up with a filler file and freed again by deleting it.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog

from supervisor.config import SinkSpec
from supervisor.logs import LogRouter, Spool, TcpSink


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mnt)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        message = f"cannot mount a tmpfs (needs root): {done.stderr.strip()}"
        if os.environ.get("CI") == "true" and os.geteuid() == 0:
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def _fill(disk: Path) -> Path:
    """Fill the disk to the last byte; return the filler file (delete it to free the space)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as out:
        while True:
            try:
                out.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
        for _ in range(4096):  # the last partial block, byte by byte
            try:
                out.write(b"\0")
            except OSError:
                break
    return filler


def _failing(spool: Spool) -> bool:
    return spool.error is not None  # a call: the state changes behind mypy's narrowing


def _frames(start: int, n: int) -> list[bytes]:
    return [f"{i:08d}".encode().ljust(100, b".") for i in range(start, start + n)]


class TestSpoolDiskFull:
    def test_recovers_and_counts_every_drop(self, small_disk: Path) -> None:
        """ENOSPC keeps records in memory (bounded, drops counted); freed space makes the spool write again."""
        drops: list[tuple[int, str]] = []
        spool = Spool(small_disk / "spool", max_bytes=64 << 20, fsync="never", segment_bytes=1 << 16,
                      memory_bytes=32 * 1024, on_dropped=lambda n, why: drops.append((n, why)))
        total = 0
        for f in _frames(0, 1000):
            spool.append(f)
        total += 1000
        spool.flush()  # these are on disk before it fills up
        filler = _fill(small_disk)
        with structlog.testing.capture_logs() as logs:
            for f in _frames(total, 2000):  # about 200 KiB while the disk is full
                spool.append(f)
            total += 2000
            assert isinstance(spool.error, OSError) and spool.error.errno == errno.ENOSPC
            assert sum(n for n, _ in drops) > 0  # the memory bound was reached: counted
            filler.unlink()
            assert spool.flush() is None
            assert not _failing(spool)
            for f in _frames(total, 1000):
                spool.append(f)
            total += 1000
            spool.flush()
        events = [e["event"] for e in logs]
        assert events.count("logs.sink_error") == 1 and events.count("logs.sink_recovered") == 1
        assert spool.records > 0 and spool._pending_bytes < 1 << 16  # on disk again
        got = spool.read(1 << 30)
        spool.close()
        dropped = sum(n for n, _ in drops)
        assert len(got) + dropped == total
        everything = _frames(0, total)
        assert got[:1000] == everything[:1000] and got[-1000:] == everything[-1000:]
        assert got == sorted(got) and len(set(got)) == len(got)  # in order, each at most once
        assert not list((small_disk / "spool").glob("*.seg"))

    def test_no_torn_record_after_partial_write(self, small_disk: Path) -> None:
        """A write cut short by ENOSPC leaves only whole records; a new spool reads them all back."""
        spool = Spool(small_disk / "spool", max_bytes=64 << 20, fsync="never", segment_bytes=1 << 20)
        filler = _fill(small_disk)
        filler.unlink()
        with open(filler, "wb") as out:  # leave about 10 KiB free
            out.write(b"\0" * (256 * 1024 - 10 * 1024))
        frames = _frames(0, 300)
        with structlog.testing.capture_logs():
            for f in frames:
                spool.append(f)
            spool.flush()
        assert spool.error is not None
        on_disk = sum(p.stat().st_size for p in (small_disk / "spool").glob("*.seg"))
        assert on_disk % 104 == 0 and on_disk > 0  # whole 104-byte records only
        filler.unlink()
        spool.close()
        again = Spool(small_disk / "spool", max_bytes=64 << 20, fsync="never")
        assert again.read(1 << 30) == frames
        again.close()



@pytest.mark.anyio
async def test_network_sink_spools_again_after_disk_full(small_disk: Path) -> None:
    """Aggregator down, spool disk full then freed: the spool is used again and sent + dropped == emitted."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec = SinkSpec(type="tcp", address=("127.0.0.1", port), spool_dir=small_disk / "spool",
                    spool_fsync="never", queue_size=100)
    sink = TcpSink(spec, backoff_initial=0.01, backoff_max=0.05, spool_memory_bytes=16 * 1024)
    router = LogRouter([sink])
    received = bytearray()

    async def collect(stream: Any) -> None:
        async with stream:
            async for chunk in stream:
                received.extend(chunk)

    emitted = 0

    def emit(n: int) -> None:
        nonlocal emitted
        for _ in range(n):
            router.emit({"event": "n", "i": emitted})
            emitted += 1

    listener: Any = None  # the aggregator is down until the disk has filled and been freed
    with structlog.testing.capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            await tg.start(router.run)
            emit(500)
            assert sink._spool is not None
            sink._spool.flush()  # these reach the disk before it fills up
            filler = _fill(small_disk)
            emit(3000)  # the disk refuses these: memory, then counted drops
            assert _failing(sink._spool)
            filler.unlink()
            with anyio.fail_after(5):
                while _failing(sink._spool):  # the once-a-second flush retries the disk
                    await anyio.sleep(0.05)
            emit(1000)
            sink._spool.flush()
            assert sum(p.stat().st_size for p in (small_disk / "spool").glob("*.seg")) > 80_000  # spooled again
            listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
            tg.start_soon(listener.serve, collect)
            with anyio.fail_after(10):
                while sink.pending or not sink._connected:
                    await anyio.sleep(0.01)  # polling, bounded
            await router.aclose()
            tg.cancel_scope.cancel()
        await listener.aclose()
    got = [json.loads(line)["i"] for line in bytes(received).splitlines()]
    dropped = sum(e["count"] for e in logs if e["event"] == "logs.dropped")
    assert dropped > 0 and dropped == sink.dropped
    assert len(got) + dropped == emitted
    assert got == sorted(set(got))  # in order, no duplicates
    assert got[:500] == list(range(500)) and got[-1000:] == list(range(emitted - 1000, emitted))
    assert any(e["event"] == "logs.sink_recovered" and "spool_dir" in e for e in logs)
