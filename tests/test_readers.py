"""Channel and pipe readers: a reader whose data is already waiting still lets other tasks run.

A flooding child keeps its socket or pipe readable, so a reader that only
yields when it has to wait would never yield at all, and every other actor's
beats, the watchdogs and the control socket would wait behind it.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
from types import SimpleNamespace

import anyio
import pytest

from actors._protocol import Log, encode
from supervisor.process import _popen
from supervisor.process._child import ChildProcess
from supervisor.process._popen import PIPE_SIZE, AsyncPopen, FdReader, PipeBudget

pytestmark = pytest.mark.anyio


async def _ticks_between_reads(read: object, reads: int = 8) -> list[int]:
    """Run ``read()`` ``reads`` times next to a task that counts its turns; the count at each read."""
    ticks = 0
    seen: list[int] = []

    async def other_task() -> None:
        nonlocal ticks
        while True:
            await anyio.lowlevel.checkpoint()
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(other_task)
        await anyio.lowlevel.checkpoint()
        for _ in range(reads):
            assert await read()  # type: ignore[operator]
            seen.append(ticks)
        tg.cancel_scope.cancel()
    return seen


async def test_channel_reader_yields_while_frames_keep_coming() -> None:
    """receive_frames() with frames already buffered still gives other tasks a turn each call."""
    parent, child = socket.socketpair()
    with parent, child:
        process = SimpleNamespace(pid=os.getpid(), returncode=None)
        reader = ChildProcess(process, parent)  # type: ignore[arg-type]
        frame = encode(Log(level=20, body=b'{"event":"x"}'))
        chunk = frame * 100
        parent_recv = 64 * 1024

        async def read() -> list[object]:
            child.sendall(chunk * (parent_recv // len(chunk) + 1))  # more than one recv's worth
            return await reader.receive_frames()

        seen = await _ticks_between_reads(read)
    assert seen[-1] - seen[0] >= len(seen) - 2, seen  # a turn per read (trio may order a batch either way)


async def test_pipe_reader_yields_while_output_keeps_coming() -> None:
    """FdReader.receive() on a pipe that is never empty still gives other tasks a turn each call."""
    read_fd, write_fd = os.pipe()
    reader = FdReader(read_fd)
    try:

        async def read() -> bytes:
            os.write(write_fd, b"line\n" * 1000)
            return await reader.receive()

        seen = await _ticks_between_reads(read)
    finally:
        reader.close()
        os.close(write_fd)
    assert seen[-1] - seen[0] >= len(seen) - 2, seen  # a turn per read (trio may order a batch either way)


async def test_child_stdout_holds_and_reads_256_kib() -> None:
    """A child's stdout pipe holds PIPE_SIZE, one receive() takes a whole pipeful, and close gives the pipe back.

    A child that writes 256 KiB without a reader being scheduled must not
    block at Linux's default 64 KiB; and the reader must not need four reads.
    """
    script = "import os; os.write(1, b'x' * 262144); os.write(2, b'e')"
    left = _popen._budget.left
    child = AsyncPopen([sys.executable, "-c", script], pass_fds=(), env=dict(os.environ))
    try:
        assert fcntl.fcntl(child.stdout.fd, fcntl.F_GETPIPE_SZ) == PIPE_SIZE
        assert fcntl.fcntl(child.stderr.fd, fcntl.F_GETPIPE_SZ) == 64 * 1024  # stderr keeps Linux's default
        assert _popen._budget.left == left - 1
        with anyio.fail_after(10):
            assert await child.wait() == 0  # it never blocked on a full pipe
        assert len(await child.stdout.receive()) == PIPE_SIZE == 262144
        assert await child.stderr.receive() == b"e"
    finally:
        await child.aclose()
    assert _popen._budget.left == left


def test_pipe_budget_is_a_quarter_of_the_users_quota() -> None:
    """64 MiB of quota (Linux's default) allows 64 enlarged pipes; given back, they can be taken again."""
    budget = PipeBudget(soft_limit_pages=16384)
    assert [budget.take() for _ in range(65)] == [True] * 64 + [False]
    budget.give_back()
    assert budget.take() and not budget.take()
    assert PipeBudget(soft_limit_pages=0).take()  # 0: no limit
