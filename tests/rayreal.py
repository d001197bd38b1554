"""Real Ray for the channel tests: a private cluster on 127.0.0.1 and a small in-process RayBackend.

The backend runs ``actors._rayhost.RayHost`` as a Ray actor (``max_restarts=0``),
so the host's thread, its child's PDEATHSIG and its ``os._exit`` are tested
inside a real Ray worker. Tests using it are slow and skip without ray,
unless ``CI`` is set (CI installs the extra, so there they fail instead).
"""

from __future__ import annotations

import os
from typing import Any

import anyio
import pytest

from actors._rayhost import RayHost
from supervisor.config import Config
from supervisor.ray._backend import CreateRequest, encode_ticket

try:
    import ray
except ImportError:  # pragma: no cover - the extra is not installed
    ray = None

needs_ray = pytest.mark.skipif(ray is None and not os.environ.get("CI"), reason="needs the ray extra")


def start_ray() -> None:
    """A private single-node Ray on loopback, started from this process."""
    assert ray is not None, "ray is not installed: pip install 'actorsup[ray]'"
    ray.init(
        address="local", num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False,
        namespace="actorsup-test", _node_ip_address="127.0.0.1",
    )


class InProcessRayBackend:
    """RayBackend over the running ``ray`` of this process."""

    def __init__(self, *, detached: bool = False) -> None:
        """``detached``: Ray does not end the actors with this driver; only actorsup's lease does."""
        assert ray is not None
        self._lifetime = "detached" if detached else None
        self._host = ray.remote(RayHost)
        self.actors: dict[str, Any] = {}
        self.requests: dict[str, CreateRequest] = {}

    def __call__(self, config: Config) -> InProcessRayBackend:
        return self

    async def create(self, request: CreateRequest) -> None:
        opts = request.options
        self.requests[request.key] = request
        self.actors[request.key] = self._host.options(
            name=request.key, max_restarts=0, max_task_retries=0, num_cpus=opts.num_cpus or 0,
            lifetime=self._lifetime,
        ).remote(encode_ticket(request.ticket))

    def pending(self, key: str) -> str | None:
        return None

    async def kill(self, key: str, *, unresponsive: bool = False) -> None:
        actor = self.actors.pop(key, None)
        if actor is not None:
            await anyio.to_thread.run_sync(lambda: ray.kill(actor, no_restart=True))

    async def aclose(self) -> None:
        for key in list(self.actors):
            await self.kill(key)
