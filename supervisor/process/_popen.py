"""A minimal async child process, spawned from the event loop's own thread.

Why not ``anyio.open_process``: trio (and anyio's thread pool) run
``subprocess.Popen`` in a worker thread, and Linux fires PR_SET_PDEATHSIG when
the *thread* that forked the child exits. Worker threads idle out after 10 s,
which would kill every child. Spawning here, in the loop thread that lives as
long as the supervisor, keeps PDEATHSIG meaning "the supervisor died".
Exit is awaited through a pidfd, so no thread and no SIGCHLD handler is needed,
and pipes are read with ``anyio.wait_readable``: both work on trio and asyncio.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Sequence

import anyio

__all__ = ["PIPE_SIZE", "AsyncPopen", "FdReader", "PipeBudget"]

# A child's stdout pipe holds 256 KiB (Linux's default is 64 KiB), and pipes
# are read up to that much at a time: a flooding child then costs a quarter of
# the loop iterations and context switches. 200,000 lines: 18.3 -> 15.2 ms.
# (``actorsup run`` raises glibc's mmap threshold so that buffers this size
# come from the reused heap, see _malloc.py.)
PIPE_SIZE = 256 * 1024
_READ_SIZE = PIPE_SIZE
_PAGE = 4096


class PipeBudget:
    """How many child pipes may be enlarged to :data:`PIPE_SIZE`: a quarter of the user's pipe quota.

    Linux charges every pipe's capacity to its user. Past
    ``fs.pipe-user-pages-soft`` (64 MiB by default) the new pipes of an
    unprivileged user get one page each: the supervisor's, and those of every
    other program of that user. So enlarged pipes stay under a quarter of it
    (64 of them by default); a child beyond that keeps Linux's default size.
    """

    def __init__(self, soft_limit_pages: int | None = None) -> None:
        if soft_limit_pages is None:
            soft_limit_pages = _pipe_soft_limit()
        # 0 means no limit.
        self.left = soft_limit_pages * _PAGE // 4 // PIPE_SIZE if soft_limit_pages else 1 << 30

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True

    def give_back(self) -> None:
        self.left += 1


def _pipe_soft_limit() -> int:
    try:
        with open("/proc/sys/fs/pipe-user-pages-soft") as f:
            return int(f.read())
    except (OSError, ValueError):  # not Linux, or no /proc: a conservative 64 MiB
        return 16384


_budget = PipeBudget()


class FdReader:
    """Reads the chunks of a non-blocking pipe, until EOF."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd

    async def receive(self) -> bytes:
        """The next chunk; ``b""`` at EOF. Safe to cancel and call again."""
        try:
            data = os.read(self.fd, _READ_SIZE)
        except BlockingIOError:
            pass
        else:
            # A flooding child must not starve the loop; shielded, so that a
            # cancel (the idle-flush timeout) never loses what was read.
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return data
        while True:
            await anyio.wait_readable(self.fd)
            try:
                return os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class AsyncPopen:
    def __init__(self, args: Sequence[str], *, pass_fds: Sequence[int], env: dict[str, str]) -> None:
        self._popen = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=tuple(pass_fds),
            start_new_session=True,  # own process group: killpg reaches grandchildren
            env=env,
        )
        self.pid = self._popen.pid
        assert self._popen.stdout is not None and self._popen.stderr is not None
        self._enlarged = _budget.take()
        if self._enlarged:
            try:
                fcntl.fcntl(self._popen.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:  # the kernel may refuse all the same (EPERM past the quota)
                _budget.give_back()
                self._enlarged = False
        self.stdout = FdReader(os.dup(self._popen.stdout.fileno()))
        self.stderr = FdReader(os.dup(self._popen.stderr.fileno()))

        self._popen.stdout.close()
        self._popen.stderr.close()
        try:
            self._pidfd: int | None = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # kernel < 5.3: fall back to polling
            self._pidfd = None
        self._lock = anyio.Lock()

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def poll(self) -> int | None:
        """Reap the child if it has exited (without blocking)."""
        return self._popen.poll()

    async def wait(self) -> int:
        async with self._lock:
            while self._popen.poll() is None:
                if self._pidfd is not None:
                    await anyio.wait_readable(self._pidfd)
                else:
                    await anyio.sleep(0.02)
        assert self._popen.returncode is not None
        return self._popen.returncode

    async def aclose(self) -> None:
        self.stdout.close()
        self.stderr.close()
        if self._enlarged:
            self._enlarged = False
            _budget.give_back()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
