"""A RayBackend for tests: each host is ``actors._rayhost.RayHost`` in a plain subprocess.

The channel, the lease and the supervisor's side are then tested in seconds,
without Ray. ``hold(actor, reason)`` keeps an actor's hosts unplaced (what
``pending`` reports) until ``release(actor)``.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from supervisor._supervisor import Supervisor
from supervisor.config import Config
from supervisor.logs import LogRouter, configure_supervisor_logging
from supervisor.ray._backend import CreateRequest, HostTicket, encode_ticket
from tests.harness import CaptureSink, make_config, wait_gone

HOST_CODE = "import sys, actors._rayhost as h; h.RayHost(bytes.fromhex(sys.argv[1]))"


def start_host(ticket: HostTicket) -> subprocess.Popen[bytes]:
    """A RayHost in a subprocess of its own, as a Ray worker would run it."""
    return subprocess.Popen([sys.executable, "-c", HOST_CODE, encode_ticket(ticket).hex()], start_new_session=True)


class LocalRayBackend:
    def __init__(self) -> None:
        self.hosts: dict[str, subprocess.Popen[bytes]] = {}  # key -> its host process
        self.requests: dict[str, CreateRequest] = {}
        self.killed: list[str] = []
        self._held: dict[str, str] = {}  # actor -> the pending reason
        self._waiting: dict[str, CreateRequest] = {}
        self.asked: dict[str, int] = {}  # key -> how often the spawner asked whether it is placed
        self._asked = anyio.Event()

    def __call__(self, config: Config) -> LocalRayBackend:
        """The Supervisor's ``ray_backend`` factory."""
        return self

    def hold(self, actor: str, reason: str) -> None:
        self._held[actor] = reason

    def release(self, actor: str) -> None:
        self._held.pop(actor, None)

    async def create(self, request: CreateRequest) -> None:
        self.requests[request.key] = request
        if request.ticket.actor in self._held:
            self._waiting[request.key] = request
        else:
            self.hosts[request.key] = start_host(request.ticket)

    async def wait_asked(self, key: str, times: int, timeout: float = 10.0) -> None:
        """Until the spawner has asked ``times`` times whether ``key`` is placed: its clock has moved on."""
        with anyio.move_on_after(timeout):
            while self.asked.get(key, 0) < times:
                await self._asked.wait()
            return
        raise AssertionError(f"asked {self.asked.get(key, 0)} of {times} times whether {key} is placed")

    def pending(self, key: str) -> str | None:
        self.asked[key] = self.asked.get(key, 0) + 1
        self._asked.set()
        self._asked = anyio.Event()
        request = self._waiting.get(key)
        if request is None:
            return None
        reason = self._held.get(request.ticket.actor)
        if reason is None:  # released: Ray places it now
            del self._waiting[key]
            self.hosts[key] = start_host(request.ticket)
        return reason

    async def kill(self, key: str, *, unresponsive: bool = False) -> None:
        self._waiting.pop(key, None)
        proc = self.hosts.get(key)
        if proc is None:
            return
        self.killed.append(key)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await reap(proc)

    async def aclose(self) -> None:
        for key in list(self.hosts):
            await self.kill(key)


async def reap(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """Wait for ``proc`` without blocking the loop (its pidfd), then reap it."""
    if proc.returncode is None:  # not reaped yet: its pid is still its own
        await wait_gone(proc.pid, timeout=timeout)
    return proc.wait()


PRODUCTION: Any = object()  # ray_supervisor's backend: Ray through the supervisor's own driver


@asynccontextmanager
async def ray_supervisor(
    actors: dict[str, dict[str, Any]], backend: Any = None, **settings: Any
) -> AsyncIterator[tuple[Supervisor, CaptureSink, Any]]:
    """A started Supervisor whose ``kind = "ray"`` actors run on ``backend``; shut down gracefully at exit."""
    backend = LocalRayBackend() if backend is None else backend
    sink = CaptureSink()
    router = LogRouter([sink])
    configure_supervisor_logging(router)
    # PRODUCTION: the real driver (RayDriverBackend, address = "local")
    factory = None if backend is PRODUCTION else backend
    sup = Supervisor(make_config(actors, **settings), router=router, ray_backend=factory)
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        try:
            yield sup, sink, backend
        finally:
            with anyio.CancelScope(shield=True), anyio.fail_after(30):
                sup.shutdown_nowait()
                await sup.closed.wait()
