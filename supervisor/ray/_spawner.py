"""RaySpawner: the Spawner of ``kind = "ray"`` actors.

Each spawn is a new generation of the actor with a fresh token (a random
secret behind this supervisor's run id). The backend asks Ray for a host
actor; the spawn waits for that host to dial the listener, then for the
child's Hello, as a local spawn does. While Ray has not placed the host
(``backend.pending``) the wait does not count against ``start_timeout``: the
actor stays ``starting``, ``actor.pending`` says why, and ``status`` shows it.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from typing import cast

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus

from ..config import ActorSpec, Config
from ..config._schema import RayOptions, RaySettings
from ..core._clock import Clock
from ..exceptions import HandshakeTimeout
from ..process._child import ChildProcess, wait_until
from ..process._reaper import Reaper
from ..process._spawn import await_hello, discard
from ._backend import CreateRequest, HostTicket, RayBackend
from ._child import KILL_BOUND, RayChild
from ._listener import Connection, RayListener, Slot

__all__ = ["RaySpawner", "default_backend", "listen_address"]

log = structlog.get_logger()
PENDING_POLL = 0.25  # how often a waiting spawn asks Ray whether the host is placed


def default_backend(config: Config, reaper: Reaper | None = None) -> RayBackend:
    """The backend that drives Ray (``supervisor/ray/_driver.py``, with the ``ray`` extra)."""
    from ._driverclient import RayDriverBackend

    return RayDriverBackend(config.ray, reaper=reaper)


def listen_address(settings: RaySettings) -> tuple[str, int]:
    """Where the hosts dial back: ``[ray] listen``, else loopback for a local Ray, else the
    address this machine reaches the cluster's head from (for ``"auto"``, the head in ``RAY_ADDRESS``)."""
    if settings.listen:
        host, _, port = settings.listen.rpartition(":") if ":" in settings.listen else (settings.listen, "", "0")
        return host.strip("[]"), int(port or 0)
    if settings.address == "local":
        return "127.0.0.1", 0
    address = os.environ.get("RAY_ADDRESS", "") if settings.address == "auto" else settings.address
    head = address.rpartition(":")[0].strip("[]") if ":" in address else "8.8.8.8"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # no packet is sent
        try:
            probe.connect((head or "8.8.8.8", 9))
            return str(probe.getsockname()[0]), 0
        except OSError:
            return socket.gethostbyname(socket.gethostname()), 0


class RaySpawner:
    def __init__(
        self, config: Config, backend: RayBackend, clock: Clock, spec_of: Callable[[str], ActorSpec],
    ) -> None:
        self.settings = config.ray
        self.backend = backend
        self.clock = clock
        self._spec_of = spec_of
        self.listener = RayListener(*listen_address(config.ray))
        self.run_id = secrets.token_hex(8)  # a host of an earlier supervisor has another
        self.pending: dict[str, str] = {}  # actor -> why Ray has not placed its host yet
        self._generations: dict[str, int] = {}
        self._tg: TaskGroup | None = None
        paths = [str(config.base_dir), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        self._env = {"ACTORSUP_BACKEND": config.supervisor.backend, "PYTHONPATH": os.pathsep.join(paths)}

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                run = getattr(self.backend, "run", None)  # a backend with work of its own: the driver's client
                if run is not None:
                    await tg.start(run)  # RayUnavailable here: the cluster is not there, the run ends (exit 2)
                await tg.start(self.listener.run)
                task_status.started()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10.0):
                await self.backend.aclose()

    async def spawn(self, *, actor: str, start_timeout: float) -> ChildProcess:
        assert self._tg is not None and self.listener.address is not None, "RaySpawner.run is not running"
        generation = self._generations[actor] = self._generations.get(actor, 0) + 1
        key = f"{actor}#{generation}"
        token = f"{self.run_id}.{secrets.token_urlsafe(24)}"
        slot = self.listener.expect(actor, generation, token)
        ticket = HostTicket(
            actor=actor, generation=generation, token=token, address=self.listener.address,
            lease_timeout=self.settings.lease_timeout, env=self._env,
        )
        options = self._spec_of(actor).ray or RayOptions()
        try:
            try:
                await self.backend.create(CreateRequest(key=key, options=options, ticket=ticket))
            except Exception as exc:  # Ray's errors are many; each is one failed start under the policy
                raise OSError(f"Ray did not create the actor: {exc}") from None
            connection, left = await self._await_host(actor, key, slot, start_timeout)
        except BaseException:
            with anyio.CancelScope(shield=True), anyio.move_on_after(KILL_BOUND):
                await self.backend.kill(key)
            raise
        finally:
            self.listener.forget(actor, generation)
            self.pending.pop(actor, None)
        child = RayChild(
            connection, actor=actor, key=key, backend=self.backend, lease_timeout=self.settings.lease_timeout,
            clock=self.clock,
        )
        child.start(self._tg)
        local = cast(ChildProcess, child)  # the interface the handle uses (supervisor/ray/_child.py)
        try:
            await await_hello(local, actor, left, self.clock)
        except BaseException:
            await discard(local)
            raise
        log.info("ray.connected", actor=actor, generation=generation, pid=child.pid, node=child.node)
        return local

    async def _await_host(self, actor: str, key: str, slot: Slot, start_timeout: float) -> tuple[Connection, float]:
        """The host's connection, and what is left of ``start_timeout``; time pending in Ray is free."""
        left = start_timeout
        last = self.clock.now()
        while not slot.arrived.is_set():
            await wait_until(slot.arrived.wait, self.clock, last + min(PENDING_POLL, left))
            now = self.clock.now()
            if slot.arrived.is_set():
                left -= now - last
                break
            reason = self.backend.pending(key)
            if reason is None:
                left -= now - last
            elif self.pending.get(actor) != reason:
                self.pending[actor] = reason
                log.warning("actor.pending", actor=actor, reason=reason)
            last = now
            if left <= 0:
                raise HandshakeTimeout(actor, start_timeout, "connection from its Ray host")
        assert slot.connection is not None
        return slot.connection, max(left, 0.001)
