"""The shared-memory frame ring: order, wrap-around, backpressure, the doorbell, corruption."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from actors._protocol import ChildFrame, FrameDecoder, Log, encode
from actors._ring import HEADER, RingError, SharedRing, create_ring_fd, ring_supported

pytestmark = pytest.mark.skipif(not ring_supported(), reason="needs memfd_create (Linux)")


@pytest.fixture
def ring_pair() -> Iterator[tuple[SharedRing, SharedRing]]:
    """A writer's and a reader's view of one 4 KiB ring (both in this process)."""
    fd = create_ring_fd(4096)
    writer, reader = SharedRing(fd), SharedRing(fd)
    os.close(fd)
    yield writer, reader
    writer.close()
    reader.close()


def test_rejects_a_capacity_that_is_not_a_power_of_two() -> None:
    """The error names the rule and the value."""
    with pytest.raises(ValueError, match=r"power of two >= 4096 \(got 5000\)"):
        create_ring_fd(5000)


def test_frames_come_out_in_order_across_many_wraps(ring_pair: tuple[SharedRing, SharedRing]) -> None:
    """Frames of every size up to 1.5 KiB, written and drained in turns, decode in order."""
    writer, reader = ring_pair
    decoder = FrameDecoder(ChildFrame)
    sent, got = 0, []
    for i in range(3000):
        writer.write(encode(Log(level=20, body=b"x" * (i % 1500) + b"%d" % i)))
        sent += 1
        if i % 2:  # never more than ~3 KiB unread: fits the 4 KiB ring
            got += decoder.feed(reader.read())
    got += decoder.feed(reader.read())
    assert [f.body for f in got] == [b"x" * (i % 1500) + b"%d" % i for i in range(sent)]
    assert reader.read() == b""


def test_a_frame_larger_than_the_ring_streams_through(ring_pair: tuple[SharedRing, SharedRing]) -> None:
    """A 100 KiB frame into a 4 KiB ring: the writer blocks and resumes as the reader drains."""
    writer, reader = ring_pair
    frame = encode(Log(level=20, body=bytes(range(256)) * 400))
    done = threading.Event()
    thread = threading.Thread(target=lambda: (writer.write(frame), done.set()))
    thread.start()
    decoder = FrameDecoder(ChildFrame)
    frames: list[object] = []
    while not frames:
        frames += decoder.feed(reader.read())
        assert thread.is_alive() or done.is_set()
    thread.join(10)
    assert done.is_set()
    assert frames == [Log(level=20, body=bytes(range(256)) * 400)]


def test_full_ring_blocks_the_writer_until_the_reader_makes_room(ring_pair: tuple[SharedRing, SharedRing]) -> None:
    """With the ring full, write() waits on the futex; a read() wakes it, and nothing is lost."""
    writer, reader = ring_pair
    writer.write(b"a" * 4000)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (writer.write(b"b" * 500), done.set()))
    thread.start()
    deadline = time.monotonic() + 10
    while not reader._waiting.value:  # the header's writer_waiting: the rest waits for room
        assert time.monotonic() < deadline, "the writer never waited for room"
        time.sleep(0.001)
    assert not done.is_set()  # blocked: only 96 bytes free
    first = reader.read()
    thread.join(10)
    assert done.is_set()
    assert first + reader.read() == b"a" * 4000 + b"b" * 500


def test_park_and_doorbell(ring_pair: tuple[SharedRing, SharedRing]) -> None:
    """A parked reader gets exactly one doorbell; data that raced the park cancels the wait."""
    writer, reader = ring_pair
    assert writer.write(b"first") is True  # a new ring starts parked: nobody read yet
    assert writer.write(b"second") is False
    assert reader.read() == b"firstsecond"
    assert reader.park() is False  # empty: wait for the doorbell
    assert writer.write(b"x") is True
    assert writer.write(b"y") is False
    writer.write(b"z")
    assert reader.read() == b"xyz"
    writer.write(b"late")
    assert reader.park() is True  # written before the park: do not wait


def test_corrupt_positions_are_an_error(ring_pair: tuple[SharedRing, SharedRing]) -> None:
    """A write position behind the read position, or a whole ring ahead, raises RingError."""
    writer, reader = ring_pair
    writer.write(b"abc")
    reader.read()
    writer._w.value = 1  # a child scribbling on the header
    with pytest.raises(RingError, match=r"out of range \(write 1, read 3\)"):
        reader.read()
    writer._w.value = 3 + 4096 + 1
    with pytest.raises(RingError):
        reader.read()


def test_another_process_writes_while_this_one_reads() -> None:
    """20,000 frames from a child process through a 4 KiB ring arrive complete and in order."""
    fd = create_ring_fd(4096)
    reader = SharedRing(fd)
    script = (
        "import sys; from actors._ring import SharedRing; from actors._protocol import Log, encode\n"
        f"ring = SharedRing({fd})\n"
        "for i in range(20000): ring.write(encode(Log(level=20, body=b'%d' % i)))\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], pass_fds=[fd])
    os.close(fd)
    decoder = FrameDecoder(ChildFrame)
    bodies: list[bytes] = []
    try:
        while len(bodies) < 20000:
            data = reader.read()
            if data:
                bodies += [f.body for f in decoder.feed(data)]
            elif child.poll() is not None:
                bodies += [f.body for f in decoder.feed(reader.read())]
                break
    finally:
        child.wait(30)
        reader.close()
    assert child.returncode == 0
    assert bodies == [b"%d" % i for i in range(20000)]
    assert HEADER == 64


def test_writer_gives_up_once_the_reader_is_gone(ring_pair: tuple[SharedRing, SharedRing]) -> None:
    """A full ring and a reader that died: write() drops the rest instead of blocking for ever."""
    writer, _ = ring_pair
    asked: list[int] = []

    def alive() -> bool:
        asked.append(1)
        return len(asked) < 3

    writer.write(b"a" * 4096)
    assert writer.write(b"b" * 10, reader_alive=alive) is False
    assert len(asked) == 3  # about three futex slices (0.3 s), then it stopped waiting


def test_child_channel_sees_the_supervisor_go() -> None:
    """The channel's liveness check turns False when the other end of the socket closes."""
    import socket

    from actors._channel import ChildChannel

    parent, child = socket.socketpair()
    channel = ChildChannel(child)
    try:
        assert channel._supervisor_alive()
        parent.close()
        assert not channel._supervisor_alive()
    finally:
        child.close()


def test_a_lazy_write_leaves_the_reader_parked(ring_pair: tuple[SharedRing, SharedRing]) -> None:
    """A lazy write asks for no doorbell and keeps the reader parked, so the next ordinary write still rings."""
    writer, reader = ring_pair
    assert reader.park() is False
    assert writer.write(encode(Log(level=20, body=b"{}")), lazy=True) is False
    assert reader.pending
    assert writer.write(encode(Log(level=20, body=b"{}"))) is True
    assert len(FrameDecoder(ChildFrame).feed(reader.read())) == 2
    assert not reader.pending
