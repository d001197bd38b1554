"""What the supervisor needs from Ray, as one small interface.

The handles never import Ray: a :class:`RayBackend` creates and kills the Ray
actors that host actorsup children (``actors._rayhost.RayHost``), and tells why
one is not placed yet. The real backend drives Ray from a driver process of its
own; tests may run the host in a plain subprocess instead.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from ..config._schema import RayOptions
from ..exceptions import SupervisorError

__all__ = ["CreateRequest", "HostTicket", "RayBackend", "RayUnavailable", "encode_ticket"]


class HostTicket(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a RayHost needs to start the child and dial back (handed over at creation)."""

    actor: str
    generation: int  # the run number: a host of an older run is refused
    token: str  # per-run secret, checked in the handshake
    address: tuple[str, int]  # the supervisor's channel listener
    lease_timeout: float  # the host ends itself after this long without a word from the supervisor
    env: dict[str, str] = {}
    cwd: str | None = None


def encode_ticket(ticket: HostTicket) -> bytes:
    """The bytes ``actors._rayhost.RayHost(ticket)`` takes (msgpack)."""
    return msgspec.msgpack.encode(ticket)


class CreateRequest(msgspec.Struct, frozen=True, kw_only=True):
    key: str  # unique per run ("NAME#GENERATION"); names the Ray actor
    options: RayOptions
    ticket: HostTicket


class RayUnavailable(SupervisorError):
    """Ray cannot be used now (not installed, unreachable, an unsupported version, the driver lost).

    ``str()`` is one line for the user: what is wrong and what to do.
    """


class RayBackend(Protocol):
    async def create(self, request: CreateRequest) -> None:
        """Ask Ray for the host actor; returns once Ray accepted the request (placed or not)."""

    async def kill(self, key: str, *, unresponsive: bool = False) -> None:
        """``ray.kill`` the host of ``key`` (no Ray restart); a no-op if it is gone.

        ``unresponsive``: the host stopped answering (heartbeat timeout, channel
        lost), so its node may be gone: replacements avoid that node until it
        proves alive, instead of waiting for Ray's node-death detection.
        """

    def pending(self, key: str) -> str | None:
        """Why Ray has not placed the host of ``key`` yet (one line), or None."""

    async def aclose(self) -> None:
        """Kill every host still alive and disconnect (a private "local" Ray is shut down)."""
