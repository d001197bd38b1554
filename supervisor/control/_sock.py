"""Unix stream sockets on anyio's readiness primitives.

anyio 4.16's asyncio UNIX socket streams can raise ``InvalidStateError`` from an
event-loop callback when a pending ``receive()`` is cancelled while the socket
turns readable (an idle timeout, a client hanging up as the server stops).
``anyio.wait_readable``/``wait_writable`` handle that race, so connections use them.
"""

from __future__ import annotations

import os
import socket

import anyio
from anyio.abc import ByteStream

__all__ = ["UnixConnection", "accept", "connect"]


class UnixConnection(ByteStream):
    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.socket = sock
        self._closed = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        await anyio.lowlevel.checkpoint()
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                data = self.socket.recv(max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self.socket)
                continue
            except OSError as exc:
                raise anyio.BrokenResourceError from exc
            if not data:
                raise anyio.EndOfStream
            return data

    async def send(self, item: bytes) -> None:
        await anyio.lowlevel.checkpoint()
        view = memoryview(item)
        while view:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                sent = self.socket.send(view)
            except BlockingIOError:
                await anyio.wait_writable(self.socket)
                continue
            except OSError as exc:
                raise anyio.BrokenResourceError from exc
            view = view[sent:]

    async def send_eof(self) -> None:
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise anyio.BrokenResourceError from exc

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            anyio.notify_closing(self.socket)
            self.socket.close()
        await anyio.lowlevel.checkpoint()


async def accept(listener: socket.socket) -> socket.socket:
    """The next connection on a non-blocking listening socket."""
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            await anyio.wait_readable(listener)
            continue
        conn.setblocking(False)
        return conn


async def connect(path: str | os.PathLike[str]) -> UnixConnection:
    """Connect to a Unix stream socket; raise OSError as ``socket.connect`` would."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        while True:
            try:
                sock.connect(os.fspath(path))
                break
            except BlockingIOError:  # the listener's backlog is full: retry shortly
                await anyio.sleep(0.01)
    except BaseException:
        sock.close()
        raise
    return UnixConnection(sock)


