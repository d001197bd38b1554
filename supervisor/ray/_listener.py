"""The one TCP listener the Ray hosts dial back to.

Each connection starts with a HANDSHAKE frame (actor, generation, token),
read under a short timeout. It is handed to the run that waits for exactly
that (actor, generation) if the token matches (``hmac.compare_digest``).
Anything else is refused (``ray.refused`` with the reason) and closed: a host
of an older generation, one from before a partition, or one of an earlier
supervisor (another run id in its token) cannot speak for the current run.
"""

from __future__ import annotations

import contextlib
import hmac
from dataclasses import dataclass, field

import anyio
import structlog
from anyio.abc import SocketAttribute, SocketStream, TaskStatus

from actors._raymux import (
    HANDSHAKE,
    HEADER_SIZE,
    REFUSED,
    Handshake,
    MuxError,
    decode_handshake,
    frame,
    parse_header,
)

__all__ = ["Connection", "RayListener", "Slot"]

log = structlog.get_logger()
HANDSHAKE_TIMEOUT = 5.0  # a peer that connects and says nothing is dropped after this long
MAX_HANDSHAKE = 4096


@dataclass
class Connection:
    """A host that passed the handshake: its stream and the bytes that came after the handshake."""

    stream: SocketStream
    handshake: Handshake
    leftover: bytes


@dataclass
class Slot:
    """One run waiting for its host."""

    token: str
    arrived: anyio.Event = field(default_factory=anyio.Event)
    connection: Connection | None = None


class RayListener:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.address: tuple[str, int] | None = None  # where it listens, once running
        self._current: dict[str, int] = {}  # actor -> its newest generation
        self._waiting: dict[tuple[str, int], Slot] = {}

    def expect(self, actor: str, generation: int, token: str) -> Slot:
        """Wait for this run's host; every older generation of ``actor`` is refused from now on."""
        self._current[actor] = max(generation, self._current.get(actor, 0))
        slot = self._waiting[(actor, generation)] = Slot(token)
        return slot

    def forget(self, actor: str, generation: int) -> None:
        """The run no longer waits (connected, or gave up): a later connection for it is refused."""
        self._waiting.pop((actor, generation), None)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host=self.host, local_port=self.port)
        async with listener:
            sockname = listener.extra(SocketAttribute.local_address)
            self.address = (str(sockname[0]), int(sockname[1]))
            log.info("ray.listening", host=self.address[0], port=self.address[1])
            task_status.started()
            await listener.serve(self._greet)

    async def _greet(self, stream: SocketStream) -> None:
        peer = _peer(stream)
        handed_over = False
        try:
            with anyio.move_on_after(HANDSHAKE_TIMEOUT):
                connection = await _read_handshake(stream)
                refusal = self._hand_over(connection, peer)
                handed_over = refusal is None
                if refusal is not None:
                    await _send_refusal(stream, refusal)
                return
            log.warning("ray.refused", reason="handshake_timeout", peer=peer, handshake_timeout=HANDSHAKE_TIMEOUT)
        except MuxError as exc:
            log.warning("ray.refused", reason="bad_handshake", peer=peer, error=str(exc))
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            pass  # gone before it said who it is
        finally:
            if not handed_over:
                await stream.aclose()

    def _hand_over(self, connection: Connection, peer: str) -> str | None:
        """Give the connection to its run; else the reason it is refused."""
        hs = connection.handshake
        slot = self._waiting.get((hs.actor, hs.generation))
        if slot is not None and hmac.compare_digest(slot.token.encode(), hs.token.encode()):
            self.forget(hs.actor, hs.generation)
            slot.connection = connection
            slot.arrived.set()
            return None
        if slot is not None:
            reason = "bad_token"
        elif hs.actor not in self._current:
            reason = "unknown_actor"
        elif hs.generation < self._current[hs.actor]:
            reason = "stale_generation"
        else:
            reason = "not_expected"  # its run gave up waiting, or already has its host
        log.warning(
            "ray.refused", reason=reason, actor=hs.actor, generation=hs.generation,
            current=self._current.get(hs.actor), peer=peer, node=hs.node,
        )
        return reason


async def _send_refusal(stream: SocketStream, reason: str) -> None:
    """Tell the host why (best effort: it ends on the close in any case)."""
    with anyio.move_on_after(1.0), contextlib.suppress(anyio.BrokenResourceError, OSError):
        await stream.send(frame(REFUSED, reason.encode()))


async def _read_handshake(stream: SocketStream) -> Connection:
    received = b""
    while True:
        received += await stream.receive(64 * 1024)
        if len(received) < HEADER_SIZE:
            continue
        kind, size = parse_header(received)
        if kind != HANDSHAKE:
            raise MuxError(f"expected a handshake first, got mux frame kind {kind}")
        if size > MAX_HANDSHAKE:
            raise MuxError(f"handshake of {size} bytes exceeds the {MAX_HANDSHAKE}-byte limit")
        end = HEADER_SIZE + size
        if len(received) >= end:
            # The child's first bytes may have come with it: the run reads them next.
            return Connection(stream, decode_handshake(received[HEADER_SIZE:end]), received[end:])


def _peer(stream: SocketStream) -> str:
    try:
        address = stream.extra(SocketAttribute.remote_address)
    except OSError:
        return "?"
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
