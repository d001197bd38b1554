"""The child's end of the channel: blocking, thread-safe frame writes.

Writes are synchronous on purpose: once ``send()`` returned, the frame is in
the kernel's socket buffer, and the supervisor reads it even if this process
dies by ``os._exit`` or SIGKILL a microsecond later. A full buffer blocks the
writer, which is the backpressure that slows a child flooding its log.
"""

from __future__ import annotations

import select
import socket
import threading

import anyio

from ._protocol import PROTOCOL_VERSION, FrameDecoder, Hello, Log, ParentFrame, encode

__all__ = ["ChildChannel"]


class ChildChannel:
    def __init__(self, sock: socket.socket) -> None:
        sock.set_inheritable(False)  # grandchildren must not keep the channel open
        sock.setblocking(False)
        self._sock = sock
        self._lock = threading.Lock()
        self._decoder = FrameDecoder(ParentFrame)
        self._pending: list[ParentFrame] = []
        self.closed = False

    def send(self, frame: object) -> None:
        self.send_bytes(encode(frame))  # type: ignore[arg-type]

    def send_log(self, level: int, body: bytes) -> None:
        self.send_bytes(encode(Log(level=level, body=body)))

    def send_bytes(self, data: bytes) -> None:
        with self._lock:
            try:  # the common case: the whole frame fits in the socket buffer
                sent = self._sock.send(data)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                sent = 0
            if sent == len(data):
                return
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
        self.send(Hello(version=PROTOCOL_VERSION, pid=pid))

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
