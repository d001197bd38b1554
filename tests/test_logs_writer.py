"""The file sink's writers: the C thread writer and its synchronous Python twin."""

from __future__ import annotations

import errno
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from supervisor.logs import _native, _writer
from supervisor.logs._writer import PyThreadWriter, ShortWrite, Writer, lines_from, writev_all

WRITERS: list[Callable[..., Writer]] = [PyThreadWriter]
try:
    from supervisor.logs._cwriter import Writer as CWriter
except ImportError:  # not built here; CI builds it (see test_built_in_ci)
    C_BUILT = False
else:
    C_BUILT = True
    WRITERS.append(CWriter)


@pytest.fixture(params=WRITERS, ids=lambda w: w.__name__)
def writer(request: pytest.FixtureRequest) -> Iterator[Writer]:
    made = request.param()
    yield made
    made.close()


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    yield read_end, write_end
    os.close(read_end)
    os.close(write_end)


class TestWriters:
    def test_batches_in_order(self, writer: Writer, tmp_path: Path) -> None:
        """Thousands of batches to two files arrive complete and in submission order."""
        paths = [tmp_path / "a", tmp_path / "b"]
        fds = [os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND) for p in paths]
        try:
            for i in range(3000):
                writer.submit(fds[i % 2], [b"%d " % i, b"x" * (i % 500), b"\n"])
            writer.drain()
        finally:
            for fd in fds:
                os.close(fd)
        for k, path in enumerate(paths):
            numbers = [int(line.split()[0]) for line in path.read_bytes().splitlines()]
            assert numbers == list(range(k, 3000, 2))
        assert writer.take_failures() == []

    def test_failure_counts_lost_lines(self, writer: Writer, pipe: tuple[int, int]) -> None:
        """A write that stops part way reports its errno and exactly the lines that did not get through."""
        read_end, write_end = pipe
        os.set_blocking(write_end, False)
        writer.submit(write_end, [b"y" * 999 + b"\n"] * 200)  # 200,000 bytes: more than a pipe holds
        writer.drain()
        arrived = len(os.read(read_end, 1 << 20))
        assert 0 < arrived < 200_000
        assert writer.take_failures() == [(errno.EAGAIN, 200 - arrived // 1000)]
        assert writer.take_failures() == []

    def test_closed_writer_refuses(self, writer: Writer) -> None:
        """submit() after close() is an error that says so."""
        writer.close()
        with pytest.raises(ValueError, match=r"^submit\(\) on a closed Writer$"):
            writer.submit(1, [b"x\n"])


@pytest.fixture(params=WRITERS, ids=lambda w: w.__name__)
def kind(request: pytest.FixtureRequest) -> Callable[..., Writer]:
    made: Callable[..., Writer] = request.param
    return made


class TestThreadWriters:
    def test_submit_waits_for_room(self, kind: Callable[..., Writer], pipe: tuple[int, int]) -> None:
        """Past its limit, submit() waits until the thread has written; memory stays bounded."""
        read_end, write_end = pipe
        writer = kind(limit=100_000, wake=1)
        try:
            writer.submit(write_end, [b"z" * 150_000])  # more than the pipe holds: the thread blocks
            done = threading.Event()
            second = threading.Thread(target=lambda: (writer.submit(write_end, [b"last\n"]), done.set()))
            second.start()
            assert not done.wait(0.2)  # still over the limit: the second submit must wait
            received = b""
            while not received.endswith(b"last\n"):
                received += os.read(read_end, 1 << 16)
            second.join()
            assert received == b"z" * 150_000 + b"last\n"
        finally:
            writer.close()

    def test_close_writes_what_is_queued(self, kind: Callable[..., Writer], tmp_path: Path) -> None:
        """close() returns after the queued bytes are written, even with a long batching delay."""
        path = tmp_path / "out"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT)
        writer = kind(wake=1 << 20, delay=1.0)
        writer.submit(fd, [b"one\n", b"two\n"])
        writer.close()
        os.close(fd)
        assert path.read_bytes() == b"one\ntwo\n"

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"limit": 0}, r"^need 1 <= wake <= limit \(got wake=1048576, limit=0\)$"),
            ({"wake": 10, "limit": 5}, r"^need 1 <= wake <= limit \(got wake=10, limit=5\)$"),
            ({"delay": 2.0}, r"^delay must be between 0 and 1 second \(got 2.0\)$"),
        ],
    )
    def test_bad_settings(self, kind: Callable[..., Writer], kwargs: dict[str, float], message: str) -> None:
        """Settings out of range are refused with the rule and the value."""
        with pytest.raises(ValueError, match=message):
            kind(**kwargs)

    @pytest.mark.skipif(not C_BUILT, reason="the C writer was not built")
    def test_preallocation_leaves_nothing_past_the_end(self, tmp_path: Path) -> None:
        """Big batches are allocated before they are written (ext4), and exactly: the file holds no spare blocks."""
        kind = subprocess.run(["stat", "-f", "-c", "%T", str(tmp_path)],
                              capture_output=True, text=True, check=True).stdout
        if not kind.startswith("ext2/ext3"):
            pytest.skip(f"preallocation is for ext4; {tmp_path} is on {kind.strip() or 'an unknown filesystem'}")
        path = tmp_path / "big.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        writer = CWriter()
        try:
            for i in range(40):  # 40 batches of 100-300 KiB: none a multiple of the block size
                writer.submit(fd, [b"%d" % i * 1000 + b"\n"] * (100 + 5 * i))
            writer.drain()
            stat = os.fstat(fd)
        finally:
            writer.close()
            os.close(fd)
        assert not writer.take_failures()
        assert stat.st_size == sum(len(b"%d" % i * 1000) * (100 + 5 * i) + (100 + 5 * i) for i in range(40))
        # The last partial block, and perhaps an extent-tree block; an 8 MiB reserve would show.
        assert stat.st_blocks * 512 <= stat.st_size + 8192, "preallocated blocks were left past the end"

    def test_bad_arguments(self, kind: Callable[..., Writer]) -> None:
        """A non-bytes piece or a negative fd is refused before anything is queued."""
        writer = kind()
        try:
            with pytest.raises(TypeError, match=r"^pieces must be bytes \(got str\)$"):
                writer.submit(1, ["text"])
            with pytest.raises(ValueError, match=r"^fd must be a file descriptor \(got -1\)$"):
                writer.submit(-1, [b"x"])
            assert writer.pending == 0
        finally:
            writer.close()


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="only CI guarantees a compiler")
@pytest.mark.skipif(not _native.allowed(), reason="ACTORSUP_NO_NATIVE is set")
def test_built_in_ci() -> None:
    """In CI the thread writer is built and chosen."""
    made = _writer.new_writer()
    made.close()
    assert _writer.NATIVE and type(made) is CWriter


class TestWritevAll:
    def test_short_write_reports_how_far_it_got(self, pipe: tuple[int, int]) -> None:
        """A write that stops part way (a full non-blocking pipe) says how many bytes went out."""
        read_end, write_end = pipe
        os.set_blocking(write_end, False)
        pieces = [b"x" * 999 + b"\n"] * 200
        with pytest.raises(ShortWrite) as caught:
            writev_all(write_end, pieces)
        written = caught.value.written
        assert 0 < written < 200_000 and isinstance(caught.value.error, BlockingIOError)
        assert written == len(os.read(read_end, 1 << 20))
        assert lines_from(pieces, written) == 200 - written // 1000
        assert pieces == [b"x" * 999 + b"\n"] * 200  # the caller's list is left alone


_FSIZE_PROBE = """
import errno, json, os, resource, signal, sys
from supervisor.logs._writer import PyThreadWriter
try:
    from supervisor.logs._cwriter import Writer as CWriter
except ImportError:
    CWriter = None
kind = {"PyThreadWriter": PyThreadWriter, "Writer": CWriter}[sys.argv[1]]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG instead
path = sys.argv[2]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))
writer = kind()
writer.submit(fd, [b"%02d" % i + b"x" * 74 + b"\\n" for i in range(30)])  # 77 bytes a line: 1000 is mid-line
writer.drain()
failures = writer.take_failures()
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
writer.submit(fd, [b"after\\n"])
writer.close()
print(json.dumps({"failures": failures, "efbig": errno.EFBIG}))
"""


@pytest.mark.parametrize("kind", WRITERS, ids=lambda w: w.__name__)
def test_short_write_cuts_the_partial_line(kind: Callable[..., Writer], tmp_path: Path) -> None:
    """A write cut short mid-line (a file size limit) leaves only whole lines; the lost count includes the cut one."""
    import json
    import sys

    path = tmp_path / "limited"
    out = subprocess.run([sys.executable, "-c", _FSIZE_PROBE, kind.__name__, str(path)],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["failures"] == [[result["efbig"], 30 - 1000 // 77]]  # 12 whole lines fitted, 18 lost
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and lines[-2] == b"after"
    assert lines[:-2] == [b"%02d" % i + b"x" * 74 for i in range(12)]
