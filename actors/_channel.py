"""The child's end of the channel: blocking, thread-safe frame writes.

Writes are synchronous on purpose: once ``send()`` returned, the frame is in
the shared-memory ring (or, without one, the kernel's socket buffer), and the
supervisor reads it even if this process dies by ``os._exit`` or SIGKILL a
microsecond later. A full ring blocks the writer, which is the backpressure
that slows a child flooding its log. See :mod:`actors._ring`.
"""

from __future__ import annotations

import os
import select
import socket
import threading

import anyio
import msgspec

from ._oversize import MAX_EVENT, shrink_error, shrink_event
from ._protocol import MAX_FRAME, PROTOCOL_VERSION, Doorbell, FrameDecoder, Hello, Log, ParentFrame, _Frame, encode
from ._ring import SharedRing

_DOORBELL = encode(Doorbell())

__all__ = ["ChildChannel"]


class ChildChannel:
    def __init__(self, sock: socket.socket, ring: SharedRing | None = None) -> None:
        sock.set_inheritable(False)  # grandchildren must not keep the channel open
        sock.setblocking(False)
        self._sock = sock
        self._offered_ring = ring
        self._ring: SharedRing | None = None  # in use from the Hello on
        self._lock = threading.Lock()
        # A forked process must not write into the ring next to its parent: the
        # lock is not shared between processes. It falls back to the socket,
        # and says whose events they are (the supervisor stamps the actor's pid).
        self._pid_head = b""
        os.register_at_fork(after_in_child=self._forked)
        self._decoder = FrameDecoder(ParentFrame)
        self._pending: list[ParentFrame] = []
        self.closed = False

    def send(self, frame: _Frame) -> None:
        data = encode(frame)
        error = getattr(frame, "error", None)
        if len(data) > MAX_FRAME and error is not None:  # a huge traceback must not kill the actor
            data = encode(msgspec.structs.replace(frame, error=shrink_error(error)))
        self.send_bytes(data)

    def send_beat(self, frame: _Frame, *, lazy: bool) -> None:
        """A beat; ``lazy``: into the ring without waking the supervisor, which sweeps the rings
        once a beat round (one wake-up for a thousand beats instead of one each)."""
        if not lazy:
            self.send(frame)
            return
        data = encode(frame)
        with self._lock:
            ring = self._ring
            if ring is None:
                self._send_socket(data)
            elif ring.write(data, self._ring_doorbell, self._supervisor_alive, lazy=True):
                self._ring_doorbell()

    def send_log(self, level: int, body: bytes) -> None:
        if self._pid_head:
            rest = body[1:]
            body = self._pid_head + (rest if rest[:1] == b"}" else b"," + rest)
        if len(body) > MAX_EVENT:  # over the frame limit: the supervisor would kill us for it
            body = shrink_event(body)
        self.send_bytes(encode(Log(level=level, body=body)))

    def send_bytes(self, data: bytes) -> None:
        with self._lock:
            ring = self._ring
            if ring is not None:
                if ring.write(data, self._ring_doorbell, self._supervisor_alive):
                    self._ring_doorbell()
                return
            self._send_socket(data)

    def _supervisor_alive(self) -> bool:
        """False once the supervisor's end of the socket is closed (it died)."""
        if self.closed:
            return False
        poller = select.poll()
        poller.register(self._sock, select.POLLIN | getattr(select, "POLLRDHUP", 0))
        for _, events in poller.poll(0):
            if events & (select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)):
                self.closed = True
        return not self.closed

    def _ring_doorbell(self) -> None:
        self._send_socket(_DOORBELL)  # lock held

    def _forked(self) -> None:
        self._ring = self._offered_ring = None
        self._lock = threading.Lock()
        self._pid_head = b'{"pid":%d' % os.getpid()  # first: the supervisor keeps it

    def _send_socket(self, data: bytes) -> None:
        try:  # the common case: the whole frame fits in the socket buffer
            sent = self._sock.send(data)
        except (BlockingIOError, BrokenPipeError, ConnectionResetError):
            sent = 0
        if sent != len(data):
            self._send_rest(memoryview(data)[sent:])

    def _send_rest(self, view: memoryview) -> None:
        # The buffer is full (a flood): block until the supervisor reads. Lock held.
        while view:
            try:
                sent = self._sock.send(view)
            except BlockingIOError:
                select.select([], [self._sock], [])
                continue
            except (BrokenPipeError, ConnectionResetError):
                self.closed = True  # supervisor gone: EOF handling ends the process
                return
            view = view[sent:]

    def hello(self, pid: int) -> None:
        """The handshake, on the socket; every later frame goes through the ring, if any."""
        self.send(Hello(version=PROTOCOL_VERSION, pid=pid, ring=self._offered_ring is not None))
        self._ring = self._offered_ring

    def receive_blocking(self, timeout: float | None = None) -> ParentFrame | None:
        """Read one frame before the event loop exists (the handshake)."""
        while not self._pending:
            ready, _, _ = select.select([self._sock], [], [], timeout)
            if not ready:
                return None
            data = self._sock.recv(65536)
            if not data:
                return None
            self._pending.extend(self._decoder.feed(data))
        return self._pending.pop(0)

    async def receive(self) -> ParentFrame | None:
        """Next frame from the supervisor, or None at EOF (supervisor gone)."""
        while not self._pending:
            await anyio.wait_readable(self._sock)
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                return None
            self._pending.extend(self._decoder.feed(data))
        return self._pending.pop(0)

    def close(self) -> None:
        self._sock.close()
