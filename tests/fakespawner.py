"""A Spawner whose children are scripted objects, so the handle's loop runs without processes.

Each spawned :class:`FakeChild` answers Init with Ready (unless told not to);
the test then pushes frames (beats, logs), makes it exit, and reads the
signals it got. It honours SIGKILL always, and SIGTERM unless it ``ignores_term``.
"""

from __future__ import annotations

import signal
import socket
from typing import Any

import anyio
from anyio.abc import TaskStatus

from actors._protocol import Ready


class _Pipe:
    """stdout/stderr: silent until the child exits, then EOF."""

    def __init__(self, child: FakeChild) -> None:
        self._child = child

    async def receive(self) -> bytes:
        await self._child.exited.wait()
        return b""


class _Process:
    def __init__(self, child: FakeChild) -> None:
        self.stdout = _Pipe(child)
        self.stderr = _Pipe(child)


class FakeChild:
    create_time = None  # never sampled by psutil

    def __init__(self, pid: int, *, ready: bool = True, ignores_term: bool = False) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.signals: list[int] = []
        self.sent: list[bytes] = []
        self.exited = anyio.Event()
        self.process = _Process(self)
        self.channel, self._peer = socket.socketpair()
        self._ready = ready
        self._ignores_term = ignores_term
        self._frames: list[Any] = []
        self.backlog: list[Any] = []  # as ChildProcess's: frames read but not yet delivered
        self._arrived = anyio.Event()

    def push(self, *frames: Any) -> None:
        self._frames.extend(frames)
        self._arrived.set()

    def exit(self, returncode: int) -> None:
        if self.returncode is None:
            self.returncode = returncode
            self.exited.set()
            self._arrived.set()

    async def receive_frames(self) -> list[Any]:
        while not self._frames:
            if self.returncode is not None:
                return []
            self._arrived = anyio.Event()
            await self._arrived.wait()
        frames, self._frames = self._frames, []
        return frames

    def sweep(self) -> list[Any]:
        return []  # no ring: every frame comes through receive_frames

    async def send(self, data: bytes) -> bool:
        if self.returncode is not None:
            return False
        self.sent.append(data)
        if len(self.sent) == 1 and self._ready:  # the Init: the handshake succeeds
            self.push(Ready())
        return True

    def signal_group(self, sig: int) -> bool:
        self.signals.append(sig)
        if sig == signal.SIGKILL or (sig == signal.SIGTERM and not self._ignores_term):
            self.exit(-sig)
        return True

    async def wait(self) -> int:
        await self.exited.wait()
        assert self.returncode is not None
        return self.returncode

    async def aclose(self) -> None:
        self.channel.close()
        self._peer.close()


class FakeSpawner:
    def __init__(self, **child_options: Any) -> None:
        self.children: list[FakeChild] = []
        self.child_options = child_options
        self._spawned = anyio.Event()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    async def spawn(self, *, actor: str, start_timeout: float) -> Any:
        child = FakeChild(1000 + len(self.children), **self.child_options)
        self.children.append(child)
        self._spawned.set()
        self._spawned = anyio.Event()
        return child
