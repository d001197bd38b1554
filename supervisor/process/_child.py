"""One child process as the supervisor sees it, and the one routine that stops it.

A child is identified by (pid, create_time). Signals go to its process group
(the child is a session leader, so pgid == pid), which also reaches any
grandchildren it started. Its frames arrive on the channel socket until the
Hello, then through its shared-memory ring (:mod:`actors._ring`), with
doorbell frames on the socket to wake the reader.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import psutil
import structlog

from actors._protocol import ChildFrame, Doorbell, FrameDecoder, FrameError, Hello
from actors._ring import SharedRing

from ..core._clock import Clock
from ._popen import AsyncPopen

__all__ = [
    "ChildProcess", "StoppableProcess", "signal_name", "signal_own_group", "still_ours", "stop_process", "wait_until",
]

log = structlog.get_logger()
REAP_TIMEOUT = 5.0  # bound on the shielded wait after SIGKILL
# A drain of this many frames means a flood: wait _LINGER for more before parking.
_FLOOD_FRAMES = 32
_LINGER = 0.001
_RECV_SIZE = 64 * 1024  # below malloc's mmap threshold: a 256 KiB buffer per beat costs page faults


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"



def still_ours(pid: int, create_time: float | None, returncode: int | None) -> bool:
    """True while ``pid`` (not yet reaped) still names the process created at ``create_time``."""
    if returncode is not None:
        return False
    try:
        return psutil.Process(pid).create_time() == create_time
    except psutil.NoSuchProcess:
        return False
    except OSError:  # no descriptor left to read /proc with (EMFILE): a pid we have not reaped is not reused
        return True


def signal_own_group(pid: int, create_time: float | None, returncode: int | None, sig: int) -> bool:
    """Signal the process group led by ``pid``; never a reused pid.

    Before the leader is reaped its pid cannot be reused, and the identity
    check confirms it. After reaping, the group id stays reserved while any
    grandchild still lives in the group, so killpg reaches only them.
    """
    if returncode is None and not still_ours(pid, create_time, returncode):
        return False
    try:
        os.killpg(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False

class ChildProcess:
    """A spawned child: its process, its channel, and its identity."""

    def __init__(self, process: AsyncPopen, channel: socket.socket, ring: SharedRing | None = None) -> None:
        channel.setblocking(False)
        self.process = process
        self.pid = process.pid
        self.channel = channel
        self.ring = ring
        self._flooding = False
        self._parked = False  # its reader waits for the doorbell
        self.decoder = FrameDecoder(ChildFrame)
        self.ring_decoder = FrameDecoder(ChildFrame)
        self.backlog: list[Any] = []  # frames decoded along with the Hello
        self.hello: Hello | None = None
        self.token = ""  # its tree cookie (see _reaper.py)
        self.on_exit: Callable[[], None] | None = None  # once, when it has been reaped
        try:
            self.create_time: float | None = psutil.Process(self.pid).create_time()
        except psutil.NoSuchProcess:
            self.create_time = None

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def is_ours(self) -> bool:
        """True while the pid still names the process we started."""
        return still_ours(self.pid, self.create_time, self.process.returncode)

    def signal_group(self, sig: int) -> bool:
        """Signal the whole process group; never a reused pid (see :func:`signal_own_group`)."""
        return signal_own_group(self.pid, self.create_time, self.process.returncode, sig)

    @property
    def ring_mode(self) -> bool:
        """After a Hello that accepted the ring, every frame comes through it."""
        return self.ring is not None and self.hello is not None and self.hello.ring

    async def receive_frames(self) -> list[Any]:
        """Frames from the channel (and its ring); an empty list means EOF."""
        if self.backlog:
            backlog, self.backlog = self.backlog, []
            return backlog
        # A raw non-blocking socket: read first, wait only when empty. This is the
        # per-beat hot path, and skipping the stream wrapper halves its cost.
        waited = False
        eof = False
        while True:
            frames: list[Any] = []
            if not eof:
                try:
                    data = self.channel.recv(_RECV_SIZE)
                except BlockingIOError:
                    data = None
                except OSError:  # reset by a dying child: same as EOF
                    data = b""
                if data:
                    try:
                        frames = [f for f in self.decoder.feed(data) if type(f) is not Doorbell]
                    except FrameError as exc:
                        raise self._salvage(exc) from None
                eof = data == b""
            if self.ring_mode:
                # Socket frames here are doorbells, or come from a forked grandchild.
                ring_frames = self._drain_ring()
                frames = ring_frames + frames if ring_frames else frames
                if data is None and not frames:
                    if self._flooding:
                        # The last drain was big: let the next batch build up
                        # instead of parking, so the child writes on without
                        # ringing the doorbell (a syscall) for every event.
                        self._flooding = False
                        await anyio.sleep(_LINGER)
                        waited = True
                        continue
                    if self.ring.park():  # type: ignore[union-attr]
                        continue  # written between the drain and the park: no doorbell comes
                else:
                    self._flooding = len(ring_frames) >= _FLOOD_FRAMES
            if frames:
                if not waited:
                    # Data was already there: a child is flooding. Without this
                    # checkpoint its reader would never yield, and every other
                    # actor's beats (and the control socket) would wait.
                    # Shielded: a cancel here must not lose the frames already read.
                    await anyio.lowlevel.cancel_shielded_checkpoint()
                return frames
            if eof:
                return []
            if data is None:
                self._parked = True  # holds no frames while it waits: sweep() may read for it
                try:
                    await anyio.wait_readable(self.channel)
                finally:
                    self._parked = False
                waited = True

    def sweep(self) -> list[Any]:
        """Frames waiting in the ring while the reader is parked (beats written without a
        doorbell); [] while it is busy, so a sweep never overtakes frames it holds."""
        if not self._parked or not self.ring_mode:
            return []
        assert self.ring is not None
        return self._drain_ring() if self.ring.pending else []

    def _salvage(self, exc: FrameError) -> FrameError:
        """Garbage on the socket: keep what arrived before it (the ring first, as always)."""
        ring_frames: list[Any] = []
        if self.ring_mode:
            with contextlib.suppress(ValueError):  # a broken ring too: the socket's frames still count
                ring_frames = self._drain_ring()
        good = [f for f in exc.frames if type(f) is not Doorbell]
        return FrameError(str(exc), ring_frames + good)

    def _drain_ring(self) -> list[Any]:
        assert self.ring is not None
        data = self.ring.read()  # RingError (a ValueError) if the child scribbled on it
        return self.ring_decoder.feed(data) if data else []

    async def send(self, data: bytes) -> bool:
        """Write all of ``data``; False if the child is gone."""
        view = memoryview(data)
        while view:
            try:
                view = view[self.channel.send(view):]
            except BlockingIOError:
                await anyio.wait_writable(self.channel)
            except OSError:
                return False
        return True

    async def wait(self) -> int:
        code = await self.process.wait()
        self._exited()  # what it left outside its group goes now, not after the pipes drain
        return code

    def _exited(self) -> None:
        on_exit = self.on_exit
        self.on_exit = None
        if on_exit is not None:
            on_exit()

    async def aclose(self) -> None:
        if self.process.poll() is not None:
            self._exited()
        self.channel.close()
        if self.ring is not None:
            self.ring.close()
            self.ring = None
        with anyio.CancelScope(shield=True):
            await self.process.aclose()


class StoppableProcess(Protocol):
    pid: int

    @property
    def returncode(self) -> int | None: ...

    def signal_group(self, sig: int) -> bool: ...

    async def wait(self) -> int: ...


async def wait_until(wait: Any, clock: Clock, deadline: float) -> bool:
    """Await ``wait()`` unless ``clock`` reaches ``deadline`` first; True if it finished."""
    finished = False
    async with anyio.create_task_group() as tg:

        async def waiter() -> None:
            nonlocal finished
            await wait()
            finished = True
            tg.cancel_scope.cancel()

        async def timer() -> None:
            await clock.sleep_until(deadline)
            tg.cancel_scope.cancel()

        tg.start_soon(waiter)
        tg.start_soon(timer)
    return finished


async def stop_process(
    proc: StoppableProcess, *, stop_timeout: float, clock: Clock, actor: str, setting: str = "stop_timeout",
    stop_signal: signal.Signals = signal.SIGTERM,
) -> int | None:
    """``stop_signal`` (SIGTERM) to the group, wait ``stop_timeout``, SIGKILL the group, reap.

    Every step is logged, and the escalation names the setting that controls
    it. The reap runs shielded and bounded, so a cancelled caller still
    leaves no zombie behind. Returns the exit status (None if not reaped).
    """
    if proc.returncode is None:
        proc.signal_group(stop_signal)
        log.info("actor.signalled", actor=actor, pid=proc.pid, signal=stop_signal.name)
        if not await wait_until(proc.wait, clock, clock.now() + stop_timeout):
            log.warning(
                "actor.stop_timeout",
                actor=actor,
                pid=proc.pid,
                signal="SIGKILL",
                **{setting: stop_timeout},
                hint=f"the actor ignored {stop_signal.name} for {stop_timeout:g}s; "
                f"raise {setting} if it needs longer",
            )
            proc.signal_group(signal.SIGKILL)
    with anyio.CancelScope(shield=True), anyio.move_on_after(REAP_TIMEOUT):
        await proc.wait()
    proc.signal_group(signal.SIGKILL)  # grandchildren that outlived their parent
    return proc.returncode
