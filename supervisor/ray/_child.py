"""RayChild: a remote child behind one TCP connection, with ChildProcess's interface.

The handle supervises it as it does a local child (``receive_frames``,
``send``, ``wait``, ``signal_group``, ``process.stdout``/``stderr`` for the
line pumps). One reader task demultiplexes the connection; one writer task
sends what the handle, the lease and the signals queue. The child's pid is
the one on its node: ``create_time`` is None, so nothing samples it locally.

``wait()`` ends when the host's EXIT arrives (after the child's output was
drained on its node), when the connection ends (returncode -9), or
:data:`KILL_BOUND` seconds after a SIGKILL that got no EXIT (a node that no
longer answers): then the Ray actor is killed too, and the run can restart.
"""

from __future__ import annotations

import signal
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import structlog
from anyio.abc import SocketAttribute, TaskGroup

from actors._protocol import ChildFrame, Doorbell, FrameDecoder, FrameError, Hello
from actors._raymux import (
    CHANNEL,
    EXIT,
    LEASE,
    STDERR,
    STDOUT,
    MuxDecoder,
    MuxError,
    decode_exit,
    encode_signal,
    frame,
)

from ..core._clock import Clock
from ._backend import RayBackend
from ._listener import Connection

__all__ = ["KILL_BOUND", "RayChild"]

log = structlog.get_logger()
KILL_BOUND = 2.0  # after SIGKILL: how long an EXIT may take before the node counts as lost
_READ_SIZE = 256 * 1024
_HIGH_WATER = 8 * 1024 * 1024  # buffered output above this: stop reading until the pumps catch up
_LOST = -signal.SIGKILL  # the returncode of a child whose host went silent or away


class _Output:
    """One remote pipe as a ChunkReader (``receive() -> bytes``, ``b""`` at EOF)."""

    def __init__(self, owner: RayChild) -> None:
        self._owner = owner
        self._chunks: deque[bytes] = deque()
        self._eof = False
        self._arrived = anyio.Event()

    def push(self, data: bytes) -> None:
        self._chunks.append(data)
        self._owner.buffered += len(data)
        self._arrived.set()

    def close(self) -> None:
        self._eof = True
        self._arrived.set()

    async def receive(self) -> bytes:
        while not self._chunks:
            if self._eof:
                return b""
            self._arrived = anyio.Event()
            await self._arrived.wait()
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._owner.consumed(len(data))
        return data


class _Pipes:
    def __init__(self, owner: RayChild) -> None:
        self.stdout = _Output(owner)
        self.stderr = _Output(owner)


class RayChild:
    """The remote child of one Ray host, as the handle sees it."""

    def __init__(
        self, connection: Connection, *, actor: str, key: str, backend: RayBackend, lease_timeout: float,
        clock: Clock,
    ) -> None:
        hs = connection.handshake
        self.actor = actor
        self.key = key
        self.node = hs.node
        self.pid = hs.pid
        self.create_time: float | None = None  # not ours to sample: it runs on another node
        self.token = ""
        self.hello: Hello | None = None
        self.backlog: list[Any] = []  # decoded frames not yet taken by receive_frames
        self.ring = None
        self.ring_mode = False
        self.on_exit: Callable[[], None] | None = None
        self.process = _Pipes(self)
        self.buffered = 0
        self._stream = connection.stream
        self.channel = connection.stream.extra(SocketAttribute.raw_socket)  # readable: frames wait
        self._leftover = connection.leftover
        self._backend = backend
        self._lease_period = lease_timeout / 5
        self._clock = clock
        self._decoder = FrameDecoder(ChildFrame)
        self._error: ValueError | None = None
        self._frames = anyio.Event()
        self._room = anyio.Event()
        self._out = bytearray()
        self._queued = anyio.Event()
        self._returncode: int | None = None
        self._exited = anyio.Event()
        self._killed = anyio.Event()
        self._closed = False
        self._scope = anyio.CancelScope()

    # --- what the handle calls ---------------------------------------------------
    @property
    def returncode(self) -> int | None:
        return self._returncode

    def is_ours(self) -> bool:
        return self._returncode is None

    def signal_group(self, sig: int) -> bool:
        """A SIGNAL frame to the host, which signals the child's group on its node."""
        if self._returncode is not None:
            return False
        self._queue(encode_signal(sig))
        if sig == signal.SIGKILL:
            self._killed.set()
        return True

    async def send(self, data: bytes) -> bool:
        """Queue channel bytes for the child; False once its host is gone."""
        if self._closed or self._exited.is_set():
            return False
        self._queue(frame(CHANNEL, data))
        return True

    async def receive_frames(self) -> list[Any]:
        """The child's frames; an empty list at EOF (its EXIT, or a lost host)."""
        while True:
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            if self.backlog:
                frames, self.backlog = self.backlog, []
                return frames
            if self._exited.is_set():
                return []
            self._frames = anyio.Event()
            await self._frames.wait()

    def sweep(self) -> list[Any]:
        """Nothing to sweep: a host's child has no ring, so its beats come as frames."""
        return []

    async def wait(self) -> int:
        await self._exited.wait()
        on_exit, self.on_exit = self.on_exit, None
        if on_exit is not None:
            on_exit()
        assert self._returncode is not None
        return self._returncode

    async def aclose(self) -> None:
        """Close the connection (the host ends on it) and have Ray forget the actor."""
        self._closed = True
        self._scope.cancel()
        with anyio.CancelScope(shield=True):
            await self._stream.aclose()
            with anyio.move_on_after(KILL_BOUND):
                await self._backend.kill(self.key)

    # --- the connection ----------------------------------------------------------
    def start(self, tg: TaskGroup) -> None:
        tg.start_soon(self._serve)

    async def _serve(self) -> None:
        with self._scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._write)
                tg.start_soon(self._leases)
                tg.start_soon(self._kill_bound)
                await self._read()
                await anyio.sleep_forever()  # keep writing leases until aclose: the host waits for our close

    async def _read(self) -> None:
        mux = MuxDecoder()
        data = self._leftover
        try:
            while not self._exited.is_set():
                if data:
                    for kind, payload in mux.feed(data):
                        self._dispatch(kind, payload)
                if self._exited.is_set():
                    break
                while self.buffered > _HIGH_WATER and not self._closed:
                    self._room = anyio.Event()
                    await self._room.wait()
                data = await self._stream.receive(_READ_SIZE)
        except MuxError as exc:
            self._fail(f"mux: {exc}")
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            if self._returncode is None:
                log.warning("ray.connection_lost", actor=self.actor, pid=self.pid, node=self.node)
                await self._lost()
        self._finish(_LOST)

    def _dispatch(self, kind: int, payload: bytes) -> None:
        if kind == CHANNEL:
            if self._error is None:
                try:
                    self.backlog += [f for f in self._decoder.feed(payload) if type(f) is not Doorbell]
                except FrameError as exc:
                    self._error = FrameError(str(exc), self.backlog + exc.frames)
                    self.backlog = []
                self._frames.set()
        elif kind == STDOUT:
            self.process.stdout.push(payload)
        elif kind == STDERR:
            self.process.stderr.push(payload)
        elif kind == EXIT:
            self._finish(decode_exit(payload))
        else:
            raise MuxError(f"mux frame kind {kind} is not for the supervisor")

    def _fail(self, reason: str) -> None:
        """Garbage on the connection: a protocol error for the handle, after what came before it."""
        if self._error is None:
            self._error = FrameError(reason, self.backlog)
            self.backlog = []
        self._frames.set()

    def _finish(self, returncode: int) -> None:
        if self._returncode is not None:
            return
        self._returncode = returncode
        self.process.stdout.close()
        self.process.stderr.close()
        self._exited.set()
        self._frames.set()

    def consumed(self, size: int) -> None:
        self.buffered -= size
        if self.buffered <= _HIGH_WATER:
            self._room.set()

    def _queue(self, data: bytes) -> None:
        self._out += data
        self._queued.set()

    async def _write(self) -> None:
        try:
            while True:
                await self._queued.wait()
                self._queued = anyio.Event()
                data, self._out = bytes(self._out), bytearray()
                await self._stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass  # the reader sees the same end

    async def _leases(self) -> None:
        lease = frame(LEASE)
        while True:
            self._queue(lease)
            await self._clock.sleep_until(self._clock.now() + self._lease_period)

    async def _kill_bound(self) -> None:
        """A SIGKILL with no EXIT within KILL_BOUND: the node is lost; end the run without it."""
        await self._killed.wait()
        with anyio.move_on_after(KILL_BOUND):  # real time: the node's answer does not follow a test clock
            await self._exited.wait()
            return
        log.warning("ray.kill_timeout", actor=self.actor, pid=self.pid, node=self.node, kill_bound=KILL_BOUND)
        await self._lost()
        self._finish(_LOST)

    async def _lost(self) -> None:
        """Kill the host as unresponsive *before* the run ends, so its replacement avoids its node."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(KILL_BOUND):
            await self._backend.kill(self.key, unresponsive=True)
