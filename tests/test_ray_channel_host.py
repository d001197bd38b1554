"""RayHost against a scripted supervisor: the lease, EOF, signals, EXIT, and the mux codec under fuzzing."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import anyio
import msgspec
import psutil
import pytest
from anyio.abc import SocketStream
from hypothesis import given
from hypothesis import strategies as st

from actors._rayhost import _Ticket
from actors._raymux import (
    CHANNEL,
    EXIT,
    HANDSHAKE,
    LEASE,
    MuxDecoder,
    MuxError,
    decode_exit,
    decode_handshake,
    decode_signal,
    encode_signal,
    frame,
)
from supervisor.ray._backend import HostTicket, encode_ticket
from tests.harness import wait_gone
from tests.raylocal import reap, start_host

pytestmark = pytest.mark.anyio
LEASE_TIMEOUT = 1.0


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Peer:
    """The supervisor's end of one host connection, scripted by a test."""

    def __init__(self, stream: SocketStream, host_pid: int, child_pid: int) -> None:
        self.stream = stream
        self.host_pid = host_pid
        self.child_pid = child_pid
        self.decoder = MuxDecoder()
        self.early: list[tuple[int, bytes]] = []  # what came with the handshake

    async def frames(self) -> list[tuple[int, bytes]]:
        return self.decoder.feed(await self.stream.receive())


@asynccontextmanager
async def host_peer(lease_timeout: float = LEASE_TIMEOUT) -> AsyncIterator[Peer]:
    """A RayHost subprocess dialled into a listener of the test's; it is killed by pid if it outlives the test."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.listeners[0].extra(anyio.abc.SocketAttribute.local_port)
    ticket = HostTicket(actor="a", generation=1, token="t", address=("127.0.0.1", port), lease_timeout=lease_timeout)
    host = start_host(ticket)
    try:
        async with listener:
            with anyio.fail_after(20):
                stream = await listener.listeners[0].accept()
                peer = Peer(stream, host.pid, 0)
                while not (got := await peer.frames()):
                    pass
            kind, payload = got[0]
            assert kind == HANDSHAKE
            peer.child_pid = decode_handshake(payload).pid
            peer.early = got[1:]
            async with stream:
                yield peer
    finally:
        if host.poll() is None:
            host.kill()
        await reap(host)


async def wait_ended(peer: Peer, timeout: float) -> float:
    """Seconds until the host and its child are both gone (fails after ``timeout``)."""
    started = time.monotonic()
    await wait_gone(peer.host_pid, peer.child_pid, timeout=timeout)
    return time.monotonic() - started


class TestLease:
    async def test_a_silent_supervisor_ends_host_and_child_within_the_bound(self) -> None:
        """No LEASE for lease_timeout: the host SIGKILLs its child and ends, within lease_timeout + one period."""
        async with host_peer() as peer:
            assert alive(peer.child_pid)
            elapsed = await wait_ended(peer, LEASE_TIMEOUT * 1.2 + 1.0)
            assert LEASE_TIMEOUT * 0.8 <= elapsed <= LEASE_TIMEOUT * 1.2 + 0.5

    async def test_leases_keep_the_host_and_eof_ends_it(self) -> None:
        """A LEASE every lease_timeout / 5 keeps host and child alive; closing the connection ends both at once."""
        async with host_peer() as peer:
            for _ in range(15):  # three lease_timeouts
                await peer.stream.send(frame(LEASE))
                await anyio.sleep(LEASE_TIMEOUT / 5)
            assert alive(peer.host_pid) and alive(peer.child_pid)
            await peer.stream.aclose()
            assert await wait_ended(peer, 2.0) < 0.5

    async def test_garbage_from_the_supervisor_ends_the_host(self) -> None:
        """Bytes that are no mux frame: the host ends (it cannot trust the stream) and takes its child."""
        async with host_peer() as peer:
            await peer.stream.send(b"\xff\x00\x00\x00\x00")
            assert await wait_ended(peer, 2.0) < 0.5


class TestExit:
    async def test_a_signal_frame_reaches_the_child_and_exit_follows_its_output(self) -> None:
        """After the child's Hello, SIGNAL(SIGTERM) ends the child; EXIT(-15) is the last frame, then the host waits."""
        async with host_peer(lease_timeout=10.0) as peer:
            kinds = [kind for kind, _ in peer.early]
            with anyio.fail_after(10):
                while CHANNEL not in kinds:
                    kinds += [kind for kind, _ in await peer.frames()]
            await peer.stream.send(encode_signal(signal.SIGTERM))
            code = None
            with anyio.fail_after(10):
                while code is None:
                    for kind, payload in await peer.frames():
                        kinds.append(kind)
                        if kind == EXIT:
                            code = decode_exit(payload)
            assert code == -signal.SIGTERM
            assert kinds[-1] == EXIT
            assert alive(peer.host_pid)  # it reads on until the supervisor closes
            await peer.stream.aclose()
            await wait_ended(peer, 2.0)


class TestCodec:
    def test_a_ticket_decodes_in_the_host(self) -> None:
        """What the supervisor encodes (HostTicket) is what RayHost decodes (its own mirror of the struct)."""
        ticket = HostTicket(actor="a.1", generation=3, token="r.s", address=("10.0.0.1", 4242), lease_timeout=2.5,
                            env={"K": "V"}, cwd="/tmp")
        mirror = msgspec.msgpack.decode(encode_ticket(ticket), type=_Ticket)
        assert msgspec.structs.asdict(mirror) == msgspec.structs.asdict(ticket)

    @given(st.lists(st.tuples(st.integers(CHANNEL, 8), st.binary(max_size=300)), max_size=8), st.data())
    def test_frames_survive_any_split(self, frames: list[tuple[int, bytes]], data: st.DataObject) -> None:
        """Frames cut at any points decode to the same frames, in order."""
        stream = b"".join(frame(kind, payload) for kind, payload in frames)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
        decoder = MuxDecoder()
        got = []
        for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            got += decoder.feed(stream[start:end])
        assert got == frames

    @given(st.binary(max_size=400))
    def test_garbage_is_a_mux_error_never_a_crash(self, garbage: bytes) -> None:
        """Any bytes decode to frames or raise MuxError (a ValueError), and no other exception."""
        with suppress(MuxError):
            MuxDecoder().feed(garbage)
        for decode in (decode_handshake, decode_exit, decode_signal):
            with suppress(MuxError):
                decode(garbage)

    def test_an_oversized_frame_is_refused_before_it_arrives(self) -> None:
        """A length above MAX_PAYLOAD is an error at its header, not after buffering a gigabyte."""
        with pytest.raises(MuxError, match="exceeds the 1048576-byte limit"):
            MuxDecoder().feed(b"\x02\x40\x00\x00\x00")
