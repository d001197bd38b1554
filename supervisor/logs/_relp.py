"""The ``relp`` sink: RFC 5424 messages over RELP, as rsyslog's ``imrelp`` speaks it.

RELP frames are ``TXNR SP COMMAND SP DATALEN [SP DATA] LF``. A session opens
with ``open`` (our offer: ``relp_version=0``, ``commands=syslog``), each event
is one ``syslog`` command, and the receiver answers every command with an
``rsp`` of the same txnr whose data starts with a status (``200 OK``). Up to
``window`` commands are outstanding at once, in txnr order.

Unlike plain TCP, delivery is exact: a frame stays in memory, and a spooled
one on the spool's disk too, until its ``200`` arrives (it goes back to the
spool at shutdown if it never does, and survives a crash on disk), so
after a reconnect only the unacknowledged frames are sent again, first, and
the duplicates are at most one window. A ``500`` for an event (refused by the
receiver) drops that event and counts it in ``logs.dropped``. After a session
that ended without any answer, frames go one at a time until one is answered;
an event the receiver ends three such sessions on is dropped the same way,
instead of blocking the stream forever.
"""

from __future__ import annotations

import contextlib
import re
import socket
from typing import Any

import anyio
import structlog

from ..config import SinkSpec
from ._framing import syslog_message_framer
from ._net import BATCH_BYTES, NetworkSink

__all__ = ["RelpParser", "RelpSink"]

log = structlog.get_logger("actorsup.logs")

WINDOW = 128
MAX_TXNR = 999_999_999
STUCK_SESSIONS = 3  # sessions in a row closed on the same first event, with no ack: it is dropped
OFFER = b"relp_version=0\nrelp_software=actorsup\ncommands=syslog"
_HEADER = re.compile(rb"(\d{1,9}) ([A-Za-z]{1,32}) (\d{1,9})([ \n])")
_PARTIAL = re.compile(rb"\d{1,9}( [A-Za-z]{0,32}( \d{0,9})?)?")  # a header still arriving
_MAX_HEADER = 9 + 1 + 32 + 1 + 9 + 1


class RelpProtocolError(ConnectionError):
    """The receiver sent something that is not RELP (or not in order)."""


class RelpParser:
    """Splits received bytes into ``(txnr, command, data)`` frames."""

    def __init__(self, max_data: int = 1 << 20) -> None:
        self.max_data = max_data
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes, bytes]]:
        self._buf += data
        frames: list[tuple[int, bytes, bytes]] = []
        pos = 0
        buf = self._buf
        while pos < len(buf):
            match = _HEADER.match(buf, pos)
            if match is None:
                if len(buf) - pos >= _MAX_HEADER or not _PARTIAL.fullmatch(buf, pos):
                    raise RelpProtocolError(f"not a RELP frame: {bytes(buf[pos:pos + 40])!r}")
                break
            txnr, command, length = int(match[1]), match[2], int(match[3])
            if length > self.max_data:
                raise RelpProtocolError(f"RELP frame of {length} bytes (at most {self.max_data})")
            if length == 0:
                if match[4] != b"\n":
                    raise RelpProtocolError("RELP frame without data has no trailer")
                frames.append((txnr, command, b""))
                pos = match.end()
                continue
            if match[4] != b" ":
                raise RelpProtocolError("RELP frame with data lacks the space before it")
            end = match.end() + length
            if len(buf) < end + 1:
                break
            if buf[end] != 0x0A:
                raise RelpProtocolError("RELP frame does not end in a newline")
            frames.append((txnr, command, bytes(buf[match.end() : end])))
            pos = end + 1
        del buf[:pos]
        return frames


def _next_txnr(txnr: int) -> int:
    return 1 if txnr >= MAX_TXNR else txnr + 1


class RelpSink(NetworkSink):
    """RFC 5424 over RELP; every event acknowledged by the receiver."""

    def __init__(self, spec: SinkSpec, *, host: str | None = None, window: int = WINDOW, **kwargs: Any) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1 (got {window})")
        super().__init__(spec, syslog_message_framer(spec.app_name, host), **kwargs)
        self.window = window
        self._txnr = 1
        self._parser = RelpParser()
        self._acked: anyio.Event | None = None
        self._session_acks = 0
        self._stuck_head: bytes | None = None
        self._stuck = 0
        self._probe = False  # one frame at a time, to find the event a receiver ends sessions on
        self._session_open = False
        self._close_txnr: int | None = None
        self._close_confirmed = False
        self.acknowledged = 0  # events the receiver confirmed

    @property
    def unacknowledged(self) -> int:
        return len(self._sent)

    # --- one session -----------------------------------------------------------------
    def _settle(self, sock: socket.socket) -> None:
        """Acknowledged frames already left ``_sent``: every other one is sent again."""

    async def _pump(self, sock: socket.socket) -> None:
        self._session_acks = 0
        self._session_open = False
        try:
            await self._open(sock)
            self._session_open = True  # stays set when cancelled: aclose goes on with this session
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._read_loop, sock, tg.cancel_scope)
                await self._send_loop(sock, until_empty=False)
        except* OSError as group:  # a task group wraps a send's error: BrokenPipe, reset
            error = group.exceptions[0]
            while isinstance(error, BaseExceptionGroup):  # nested task groups nest their groups
                error = error.exceptions[0]
            self._error = error
            self._session_open = False
        finally:
            self._note_stuck()

    async def _open(self, sock: socket.socket) -> None:
        # Small frames both ways, each waiting for the other's answer: Nagle and
        # delayed ACKs would hold every exchange for up to 40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._parser = RelpParser()
        self._out = None
        await self._send_bytes(sock, b"1 open %d %s\n" % (len(OFFER), OFFER))
        self._txnr = 2
        while True:
            for txnr, command, data in await self._receive(sock):
                if txnr != 1 or command != b"rsp":
                    raise RelpProtocolError(f"expected the answer to open, got {command.decode(errors='replace')}")
                if not data.startswith(b"200"):
                    raise ConnectionRefusedError(f"the receiver refused the session: {_status(data)}")
                if b"syslog" not in data.partition(b"commands=")[2].split(b"\n")[0]:
                    raise ConnectionRefusedError("the receiver does not accept the syslog command")
                return

    async def _receive(self, sock: socket.socket) -> list[tuple[int, bytes, bytes]]:
        while True:
            await anyio.wait_readable(sock)
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                raise ConnectionResetError("the receiver closed the connection")
            with contextlib.suppress(OSError, AttributeError):  # ACK the answers now (Linux)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            return self._parser.feed(data)

    async def _read_loop(self, sock: socket.socket, scope: anyio.CancelScope) -> None:
        try:
            while True:
                for txnr, command, data in await self._receive(sock):
                    self._on_frame(txnr, command, data)
        except OSError as exc:
            self._error = exc
        scope.cancel()

    def _on_frame(self, txnr: int, command: bytes, data: bytes) -> None:
        if command == b"serverclose":
            raise ConnectionResetError("the receiver ended the session (serverclose)")
        if command != b"rsp":
            raise RelpProtocolError(f"unexpected RELP command {command.decode(errors='replace')!r}")
        if txnr == self._close_txnr:
            self._close_confirmed = True
        elif not self._sent or self._sent[0][0] != txnr:
            raise RelpProtocolError(f"answer for txnr {txnr}, expected {self._sent[0][0] if self._sent else 'none'}")
        else:
            _, frame, spooled = self._sent.popleft()
            self._sent_bytes -= len(frame)
            self._release(spooled)
            self._session_acks += 1
            self._probe = False
            if data.startswith(b"200"):
                self.acknowledged += 1
            else:
                self._report_dropped(1, f"refused by the receiver: {_status(data)}")
        if self._acked is not None:
            self._acked.set()

    async def _send_loop(self, sock: socket.socket, *, until_empty: bool) -> None:
        while True:
            if self._out is None:
                window = 1 if self._probe else self.window
                room = window - len(self._sent)
                if room < max(1, window // 4) and self._sent:
                    await self._wait_ack()  # refill in batches, not one frame per answer
                    continue
                frames = self._next_frames(BATCH_BYTES, room)
                if not frames:
                    if until_empty:
                        return
                    self._idle = True
                    assert self._wake is not None
                    await self._wake.wait()
                    self._wake = anyio.Event()
                    continue
                parts: list[bytes] = []
                for frame, spooled in frames:
                    parts.append(b"%d syslog %d %s\n" % (self._txnr, len(frame), frame))
                    self._sent.append((self._txnr, frame, spooled))
                    self._sent_bytes += len(frame)
                    self._txnr = _next_txnr(self._txnr)
                self._out = memoryview(b"".join(parts))
            await self._send_bytes(sock, self._out)

    async def _send_bytes(self, sock: socket.socket, data: bytes | memoryview) -> None:
        """Send all of ``data``; a cancelled send leaves its unsent rest in ``_out``."""
        out = memoryview(data)
        while out:
            try:
                out = out[sock.send(out) :]
            except BlockingIOError:
                self._out = out
                await anyio.wait_writable(sock)
        self._out = None

    async def _wait_ack(self) -> None:
        self._acked = anyio.Event()
        await self._acked.wait()

    def _note_stuck(self) -> None:
        # A receiver that ends the session on one event (too big for it?) would get
        # that event again on every reconnect, forever. With several frames out, any
        # of them may be the one (and a reset can swallow the answers to the others),
        # so the sessions after one without any answer carry one frame each: ended
        # STUCK_SESSIONS times on that same frame, it is dropped.
        if self._session_acks or not self._sent:
            self._stuck, self._stuck_head, self._probe = 0, None, False
            return
        if not self._probe:
            self._probe = True
            return
        head = self._sent[0][1]
        self._stuck = self._stuck + 1 if head is self._stuck_head else 1
        self._stuck_head = head
        if self._stuck >= STUCK_SESSIONS:
            _, _, spooled = self._sent.popleft()
            self._sent_bytes -= len(head)
            self._release(spooled)
            self._stuck, self._stuck_head = 0, None
            self._report_dropped(1, f"the receiver ended {STUCK_SESSIONS} sessions in a row on this event "
                                 f"({len(head)} bytes; larger than its maxDataSize?)")

    # --- shutdown ------------------------------------------------------------------
    async def _finish(self, sock: socket.socket) -> bool:
        """Send what is pending, wait for every answer, then close the session."""
        if not self._session_open:
            return False
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._read_loop, sock, tg.cancel_scope)
            await self._send_loop(sock, until_empty=True)
            while self._sent:
                await self._wait_ack()
            self._close_txnr = self._txnr
            await self._send_bytes(sock, b"%d close 0\n" % self._txnr)
            while not self._close_confirmed:
                await self._wait_ack()
            tg.cancel_scope.cancel()
        return not self._sent


def _status(data: bytes) -> str:
    return data.split(b"\n", 1)[0].decode(errors="replace")[:200]
