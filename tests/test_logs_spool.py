"""Disk spool: order, exact drop counts at the cap, recovery after a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.logs import Spool


def _frames(n: int, start: int = 0, size: int = 100) -> list[bytes]:
    return [f"{i:08d}".encode().ljust(size, b".") for i in range(start, start + n)]


class TestSpool:
    def test_fifo_across_segments(self, tmp_path: Path) -> None:
        """Frames come back in append order across many segment files."""
        spool = Spool(tmp_path, max_bytes=1 << 20, fsync="never", segment_bytes=1000)
        frames = _frames(100)
        for f in frames:
            assert spool.append(f) == 0
        assert len(list(tmp_path.glob("*.seg"))) > 5
        got = spool.read(3000) + spool.read(1 << 20)
        assert got == frames and spool.records == 0
        spool.close()

    def test_interleaved_append_and_read(self, tmp_path: Path) -> None:
        """Reading while appending keeps order and removes read segments."""
        spool = Spool(tmp_path, max_bytes=1 << 20, fsync="never", segment_bytes=500)
        got: list[bytes] = []
        for chunk in range(10):
            for f in _frames(7, chunk * 7):
                spool.append(f)
            got += spool.read(250)
        got += spool.read(1 << 20)
        assert got == _frames(70)
        assert spool.bytes == 0
        spool.close()

    def test_cap_drops_oldest_exact_count(self, tmp_path: Path) -> None:
        """At max_bytes the oldest frames are dropped, and the returned counts are exact."""
        spool = Spool(tmp_path, max_bytes=10_000, fsync="never", segment_bytes=1_000)
        dropped = sum(spool.append(f) for f in _frames(500))
        kept = spool.read(1 << 20)
        assert dropped + len(kept) == 500
        assert kept == _frames(500)[dropped:]
        assert dropped > 0 and spool.bytes <= 10_000
        spool.close()

    def test_cap_counts_only_unread(self, tmp_path: Path) -> None:
        """A partly read oldest segment reports only its unread frames as dropped."""
        spool = Spool(tmp_path, max_bytes=5_000, fsync="never", segment_bytes=1_000)
        for f in _frames(40):
            spool.append(f)
        first = spool.read(300)
        dropped = sum(spool.append(f) for f in _frames(100, 40))
        rest = spool.read(1 << 20)
        assert len(first) + dropped + len(rest) == 140
        everything = _frames(140)
        assert first + rest == everything[: len(first)] + everything[len(first) + dropped :]
        spool.close()

    def test_oversized_frame_dropped(self, tmp_path: Path) -> None:
        """A frame larger than the whole spool is itself the one dropped."""
        spool = Spool(tmp_path, max_bytes=1000, fsync="never")
        assert spool.append(b"x" * 2000) == 1
        assert spool.records == 0
        spool.close()

    def test_recovers_after_restart(self, tmp_path: Path) -> None:
        """A new spool on the same folder resumes unread frames; a torn last record is cut off."""
        spool = Spool(tmp_path, max_bytes=1 << 20, fsync="always", segment_bytes=1000)
        for f in _frames(30):
            spool.append(f)
        first = spool.read(500)
        spool.close()
        last = sorted(tmp_path.glob("*.seg"))[-1]
        with open(last, "ab") as torn:
            torn.write(b"\x00\x00\x01\x00partial")
        again = Spool(tmp_path, max_bytes=1 << 20, fsync="batch")
        rest = again.read(1 << 20)
        assert first == _frames(30)[: len(first)]
        # Frames read before the restart may come again (at-least-once), none is lost.
        assert rest[-1] == _frames(30)[-1] and set(_frames(30)) == set(first) | set(rest)
        again.close()

    def test_prepend_goes_first(self, tmp_path: Path) -> None:
        """Frames prepended at shutdown are read before everything spooled."""
        spool = Spool(tmp_path, max_bytes=1 << 20, fsync="batch", segment_bytes=1000)
        for f in _frames(20, 10):
            spool.append(f)
        spool.read(300)
        spool.prepend(_frames(10))
        got = spool.read(1 << 20)
        assert got[:10] == _frames(10) and got[10:] == _frames(20, 10)[3:]
        spool.close()

    def test_batch_fsync_fd(self, tmp_path: Path) -> None:
        """With fsync "batch", flush() hands out a fd to sync once per dirty period."""
        spool = Spool(tmp_path, max_bytes=1 << 20, fsync="batch")
        spool.append(b"x")
        fd = spool.flush()
        assert fd is not None
        Spool.sync_fd(fd)
        assert spool.flush() is None
        spool.close()

    def test_bad_fsync_policy(self, tmp_path: Path) -> None:
        """An unknown fsync policy is rejected when the spool is built."""
        with pytest.raises(ValueError, match=r'^fsync must be "never", "batch" or "always" \(got \'sometimes\'\)$'):
            Spool(tmp_path, max_bytes=1000, fsync="sometimes")


class TestSpoolRelease:
    def test_unreleased_survive_a_crash(self, tmp_path: Path) -> None:
        """Records read but not released are still on disk: a spool opened after a crash has them all."""
        spool = Spool(tmp_path, max_bytes=1 << 20, fsync="never", segment_bytes=1000)
        frames = _frames(50)
        for f in frames:
            spool.append(f)
        spool.flush()
        got = spool.read(1 << 20)
        assert got == frames
        spool.release(20)  # delivered; the other 30 are in flight when the process dies
        again = Spool(tmp_path, max_bytes=1 << 20, fsync="never")
        recovered = again.read(1 << 20)
        assert recovered == sorted(recovered) and set(frames[20:]) <= set(recovered)
        assert len(recovered) < 50  # whole released segments are gone
        again.close()

    def test_released_segments_deleted(self, tmp_path: Path) -> None:
        """A segment read to its end goes only when all of its records are released."""
        spool = Spool(tmp_path, max_bytes=1 << 20, fsync="never", segment_bytes=1000)
        for f in _frames(30):
            spool.append(f)
        spool.flush()
        spool.read(1 << 20)
        files = len(list(tmp_path.glob("*.seg")))
        assert files >= 3
        spool.release(29)
        assert len(list(tmp_path.glob("*.seg"))) == 1
        spool.release(1)
        assert not list(tmp_path.glob("*.seg"))
        spool.close()

    def test_clean_close_resumes_exactly(self, tmp_path: Path) -> None:
        """Close after a partial read, the in-flight ones prepended: the next run gets each record once, in order."""
        spool = Spool(tmp_path, max_bytes=1 << 20, fsync="batch", segment_bytes=1000)
        frames = _frames(40)
        for f in frames:
            spool.append(f)
        spool.flush()
        in_flight = spool.read(1500)  # ends inside a segment
        spool.release(3)
        spool.prepend(in_flight[3:])  # what a sink does at shutdown
        spool.close()
        again = Spool(tmp_path, max_bytes=1 << 20, fsync="never")
        assert again.read(1 << 20) == frames[3:]
        again.close()
