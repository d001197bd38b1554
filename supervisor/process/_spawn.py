"""Spawners: how a fresh child process comes to be.

``ColdSpawner`` starts ``python -m actors._runtime`` and waits for its Hello.
``WarmSpawner`` keeps a few such children pre-started (interpreter up,
anyio/trio/structlog/msgspec imported, Hello sent) and hands one out at once,
so a restart costs the actor's own import and construction, not the
interpreter's start-up. Both hide behind the :class:`Spawner` interface
(``spawn`` and ``run``), so a fork server can replace them: it makes the child
its own way, then reuses :meth:`Reaper.track`, :func:`await_hello` and
:func:`discard`, which are all a spawner shares with the rest of actorsup.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import anyio
import structlog
from anyio.abc import TaskStatus

from actors._fresh import NOFILE_ENV
from actors._protocol import PROTOCOL_VERSION, Hello
from actors._ring import SharedRing, create_ring_fd, ring_supported

from ..app._sdnotify import SYSTEMD_ENV
from ..core._clock import Clock, MonotonicClock
from ..exceptions import HandshakeTimeout, ProtocolError
from ._child import REAP_TIMEOUT, ChildProcess, wait_until
from ._fdlimit import original_open_files
from ._popen import AsyncPopen
from ._reaper import Reaper

if TYPE_CHECKING:
    from ..command._launch import CommandProcess
    from ..command._privileges import Credentials

__all__ = ["ColdSpawner", "Spawner", "WarmSpawner", "await_hello", "discard"]

log = structlog.get_logger()

# Bytes of shared memory per child for its frames: a flood of log events fills
# it between two drains; the supervisor maps it, so this also bounds what each
# busy child adds to the supervisor's RSS.
RING_SIZE = 128 * 1024
REFILL_DELAY = 0.02  # after a spare is taken: its Init, import and first statement take a few ms


class Spawner(Protocol):
    """How the supervisor gets a child; all a new backend (a fork server) must provide.

    ``run`` is started before the first ``spawn`` and cancelled after the last
    child has been stopped; the handles call nothing else. A backend must give
    each child its own process group, PR_SET_PDEATHSIG=SIGKILL towards the
    supervisor (``actors._runtime`` sets it), the tree cookie of a running
    :class:`Reaper` in its environment (:meth:`Reaper.child_env`), and must
    register it with :meth:`Reaper.track` before the handshake, so that what
    it leaves behind is killed (docs/GUARANTEES.md).
    """

    async def spawn(self, *, actor: str, start_timeout: float) -> ChildProcess:
        """A running child that has completed the Hello handshake."""

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        """Background work (the reaper, keeping a pool warm); returns when cancelled."""

    def spawn_command(
        self, argv: Sequence[str], *, actor: str, env: Mapping[str, str], cwd: str | None,
        credentials: Credentials | None,
    ) -> CommandProcess:
        """A command actor's program, started and tracked by the reaper (ProgramError if it cannot run)."""


class ColdSpawner:
    def __init__(
        self,
        *,
        python: str = sys.executable,
        pythonpath: Sequence[str] = (),
        clock: Clock | None = None,
        ring_size: int = RING_SIZE,
        backend: str | None = None,
        child_nice: int = 0,
    ) -> None:
        """``ring_size``: bytes of each child's shared-memory frame ring; 0 sends frames on the socket.

        ``backend``: the anyio backend children will be asked to run, so a child
        preloads only that one (asyncio's import is ~35 ms of a cold start).
        ``child_nice``: nice steps below the supervisor for each child (``[supervisor] child_nice``).
        """
        self.python = python
        self.ring_size = ring_size
        self.clock = clock or MonotonicClock()
        env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_ENV}  # systemd talks to us only
        env["PYTHONUNBUFFERED"] = "1"  # print() then os._exit() must still reach the pipe
        env["ACTORSUP_PARENT_PID"] = str(os.getpid())
        original = original_open_files()
        if original is not None:
            env[NOFILE_ENV] = str(original)  # the child's limit, not the supervisor's raised one
        if backend is not None:
            env["ACTORSUP_BACKEND"] = backend
        if child_nice:
            env["ACTORSUP_NICE"] = str(child_nice)  # applied by actors._runtime
        paths = [*pythonpath, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        if paths:
            env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        self.env = env
        self.child_nice = child_nice  # command actors' programs get it from launch()
        self.reaper = Reaper()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self.reaper.run(task_status=task_status)

    async def spawn(self, *, actor: str, start_timeout: float) -> ChildProcess:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        token = self.reaper.new_token()
        ring_fd = create_ring_fd(self.ring_size) if self.ring_size and ring_supported() else None
        ring: SharedRing | None = None
        fds = (child_end.fileno(),) if ring_fd is None else (child_end.fileno(), ring_fd)
        try:
            if ring_fd is not None:
                ring = SharedRing(ring_fd)
            process = AsyncPopen(
                [self.python, "-m", "actors._runtime", *map(str, fds)],
                pass_fds=fds, env=self.reaper.child_env(self.env, token),
            )
        except BaseException:
            parent_end.close()
            if ring is not None:
                ring.close()
            raise
        finally:
            child_end.close()
            if ring_fd is not None:
                os.close(ring_fd)
        child = ChildProcess(process, parent_end, ring)
        self.reaper.track(child, token, actor, move=False)
        try:
            # Into its cgroup before Hello: no user code runs until Init follows Hello.
            await self.reaper.place(token)
            await await_hello(child, actor, start_timeout, self.clock)
        except BaseException:
            await discard(child)
            raise
        return child

    def spawn_command(
        self, argv: Sequence[str], *, actor: str, env: Mapping[str, str], cwd: str | None,
        credentials: Credentials | None,
    ) -> CommandProcess:
        """As :meth:`spawn` without the channel: the program has the tree cookie and is tracked."""
        from ..command._launch import launch  # only a config with command actors pays for the import

        token = self.reaper.new_token()
        proc = launch(argv, env=self.reaper.child_env(dict(env), token), cwd=cwd, credentials=credentials,
                      nice=self.child_nice)
        self.reaper.track(proc, token, actor)
        proc.on_follow = functools.partial(self.reaper.moved, token)  # MAINPID's process is not adopted
        return proc


async def await_hello(child: ChildProcess, actor: str, start_timeout: float, clock: Clock) -> None:
    """Read the child's Hello within ``start_timeout``; frames that came with it go to its backlog."""
    frames: list[object] = []
    garbage: list[ValueError] = []

    async def read() -> None:
        try:
            frames.extend(await child.receive_frames())
        except ValueError as exc:  # caught here: out of wait_until's task group it would be an ExceptionGroup
            garbage.append(exc)

    got = await wait_until(read, clock, clock.now() + start_timeout)
    if garbage:
        raise ProtocolError(f"garbage before handshake: {garbage[0]}", actor) from None
    if not got:
        raise HandshakeTimeout(actor, start_timeout, "Hello")
    if not frames:
        raise ProtocolError("child exited before the handshake", actor)
    hello = frames[0]
    if not isinstance(hello, Hello):
        raise ProtocolError(f"expected Hello first, got {type(hello).__name__}", actor)
    if hello.version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {hello.version} does not match the supervisor's {PROTOCOL_VERSION}"
            " (reinstall actorsup so both sides match)",
            actor,
        )
    child.hello = hello
    child.backlog = list(frames[1:])


async def discard(child: ChildProcess) -> None:
    """SIGKILL a child that will not be used, reap it (shielded, bounded) and close it."""
    child.signal_group(signal.SIGKILL)
    with anyio.CancelScope(shield=True), anyio.move_on_after(REAP_TIMEOUT):
        await child.wait()
    await child.aclose()


class WarmSpawner(ColdSpawner):
    """Hands out pre-started children; refills the pool in the background."""

    def __init__(self, *, spares: int = 1, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.spares = spares
        self._pool: deque[ChildProcess] = deque()
        self._watchers: dict[int, anyio.CancelScope] = {}
        self._taken = anyio.Event()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(super().run)
            task_status.started()
            try:
                while True:
                    while len(self._pool) < self.spares:
                        try:
                            child = await super().spawn(actor="<spare>", start_timeout=30.0)
                        except Exception as exc:  # keep serving cold spawns; retry later
                            log.warning("spawner.spare_failed", error=str(exc))
                            await anyio.sleep(1.0)
                            continue
                        self._pool.append(child)
                        tg.start_soon(self._watch_spare, child)
                    self._taken = anyio.Event()
                    await self._taken.wait()
                    # The spare just taken is starting its actor: a fork (and its warm-up) now
                    # would compete with it for the CPU and the loop (crash -> running).
                    await anyio.sleep(REFILL_DELAY)
            finally:
                with anyio.CancelScope(shield=True):
                    while self._pool:
                        await discard(self._pool.popleft())

    async def _watch_spare(self, child: ChildProcess) -> None:
        """Reap a spare that dies while it waits in the pool, and refill the pool."""
        with anyio.CancelScope() as scope:
            self._watchers[child.pid] = scope
            await child.wait()
            if child in self._pool:
                self._pool.remove(child)
                log.warning("spawner.spare_died", pid=child.pid, exit_code=child.returncode)
                await child.aclose()
                self._taken.set()
        self._watchers.pop(child.pid, None)

    async def spawn(self, *, actor: str, start_timeout: float) -> ChildProcess:
        while self._pool:
            child = self._pool.popleft()
            watcher = self._watchers.pop(child.pid, None)
            if watcher is not None:
                watcher.cancel()
            self._taken.set()
            if child.process.poll() is None and child.is_ours():
                self.reaper.owned_by(child.token, actor)
                return child
            log.warning("spawner.spare_died", pid=child.pid, exit_code=child.returncode)
            await discard(child)
        return await super().spawn(actor=actor, start_timeout=start_timeout)
