"""Network sinks (tcp, syslog): queue, disk spool, reconnect, in-order replay.

``write()`` never blocks and never awaits: a frame goes to a bounded memory
queue while the aggregator keeps up, and to the on-disk spool while it is down
or slow (or once anything is spooled, so order holds). One background task
connects with exponential backoff and sends, in this order: the replay window,
the memory queue, the spool.

Plain TCP has no application acknowledgements, but the kernel knows how many
sent bytes the peer's TCP has not acknowledged yet (``SIOCOUTQ``). Every frame
taken for sending is kept with its end offset in the connection's byte stream
until the peer's TCP has acknowledged it; when the connection breaks, only the
frames not acknowledged are sent again, first, on the next one. So a flapping
aggregator still gets new events on every connection, and duplicates are at
most what was in flight (each event carries a unique ``id`` to drop them
downstream). Bytes the peer's TCP acknowledged but the aggregator itself never
read are beyond what TCP can tell; the ``relp`` sink closes that gap with
acknowledgements per event. At shutdown, a half-close that the peer answers
with EOF proves everything was read; frames that are still unconfirmed then
go to the front of the spool for the next run.

The socket is driven directly (non-blocking ``send`` plus ``wait_writable``),
so a cancelled sender always knows exactly how many bytes went out.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
from collections import deque
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus

from ..config import SinkSpec
from ..core._clock import Clock, MonotonicClock
from ._framing import Framer, ndjson_framer, syslog_framer
from ._record import LogRecord
from ._sinks import describe
from ._spool import MEMORY_BYTES as SPOOL_MEMORY_BYTES
from ._spool import Spool
from ._tcpinfo import peer_window, unacked_bytes

__all__ = ["NetworkSink", "SyslogSink", "TcpSink"]

log = structlog.get_logger("actorsup.logs")

Entry = tuple[bytes, bool]  # a frame, and whether it was read from the spool

BATCH_BYTES = 256 * 1024
REPLAY_BYTES = 8 * 1024 * 1024  # at most this much unacknowledged data is kept for a replay
SYNC_INTERVAL = 1.0  # seconds between spool flushes (and fsyncs, policy "batch")
DROP_REPORT_INTERVAL = 1.0


class NetworkSink:
    def __init__(
        self,
        spec: SinkSpec,
        framer: Framer,
        *,
        clock: Clock | None = None,
        backoff_initial: float = 0.1,
        backoff_max: float = 10.0,
        replay_bytes: int = REPLAY_BYTES,
        connect_timeout: float = 5.0,
        close_timeout: float = 3.0,
        spool_memory_bytes: int = SPOOL_MEMORY_BYTES,
    ) -> None:
        if spec.address is None:
            raise ValueError(f"a {spec.type} sink needs an address")
        if replay_bytes < 2 * BATCH_BYTES:
            raise ValueError(f"replay_bytes must be >= {2 * BATCH_BYTES} (got {replay_bytes})")
        self.spec = spec
        self.name = describe(spec)
        self._frame = framer
        self._clock: Clock = clock or MonotonicClock()
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.replay_bytes = replay_bytes
        self.connect_timeout = connect_timeout
        self.close_timeout = close_timeout
        self._queue_max = spec.queue_size
        self._queue: deque[bytes] = deque()
        self._replay: deque[Entry] = deque()  # frames to send again first
        # Taken for sending and not yet confirmed by the peer, in order, each with its
        # mark: the end offset in this connection's stream (TCP), or the txnr (RELP).
        # A frame read from the spool stays on its disk until confirmed (released).
        self._sent: deque[tuple[int, bytes, bool]] = deque()
        self._sent_bytes = 0
        self._stream_sent = 0  # bytes the kernel took on this connection
        self._stream_end = 0  # stream offset at the end of the last frame taken
        self._widest_window = 0  # the peer's widest advertised receive window on this connection
        self._out: memoryview | None = None  # unsent rest of the current batch
        self._sock: socket.socket | None = None
        self._connected = False
        self._idle = False
        self._wake: anyio.Event | None = None
        self._error: BaseException | None = None
        self._failed_since: float | None = None
        self._closed = False
        self._run_scope: anyio.CancelScope | None = None
        self._stopped: anyio.Event | None = None  # both made in run(): Events need a loop
        self._queue_dropped = 0  # not yet reported
        self.replayed = 0  # frames sent again after reconnects: the bound on duplicates
        self.connections = 0  # connections made
        self.dropped = 0  # frames lost on purpose (spool or queue full), all reported
        self._spool: Spool | None = None
        if spec.spool_dir is not None:
            try:
                self._spool = Spool(spec.spool_dir, spec.spool_max_bytes, spec.spool_fsync,
                                    memory_bytes=spool_memory_bytes, name=self.name,
                                    on_dropped=self._report_dropped)
            except OSError as exc:
                log.error("logs.sink_error", sink=self.name, error=str(exc), spool_dir=str(spec.spool_dir),
                          hint="cannot use the spool folder; events wait in memory only until it is fixed")

    # --- write side (sync, never blocks) -----------------------------------------
    def write(self, record: LogRecord) -> None:
        if self._closed:
            return
        frame = self._frame(record)
        spool = self._spool
        if spool is not None and (not self._connected or spool.records or len(self._queue) >= self._queue_max):
            spool.append(frame)  # drops (cap, disk full) are reported by the spool
            self._poke()
            return
        if len(self._queue) >= self._queue_max:
            self._queue.popleft()  # no spool: the oldest waiting event gives way
            self._queue_dropped += 1
        self._queue.append(frame)
        self._poke()

    def _poke(self) -> None:
        if self._idle and self._connected:
            self._idle = False
            assert self._wake is not None
            self._wake.set()

    def _report_dropped(self, count: int, reason: str) -> None:
        self.dropped += count
        log.warning("logs.dropped", sink=self.name, count=count, total=self.dropped, reason=reason)

    @property
    def pending(self) -> int:
        """Frames not yet handed to the socket (replay + queue + spool)."""
        spooled = self._spool.records if self._spool is not None else 0
        return len(self._replay) + len(self._queue) + spooled

    # --- background delivery -------------------------------------------------------
    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._wake = anyio.Event()
        self._stopped = anyio.Event()
        try:
            with anyio.CancelScope() as self._run_scope:
                await self._deliver(task_status)
        finally:
            self._stopped.set()

    async def _deliver(self, task_status: TaskStatus[None]) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._housekeeping)
            task_status.started()
            delay = self.backoff_initial
            while True:
                try:
                    sock = await self._connect()
                except OSError as exc:
                    self._down(exc, retry_in=delay)
                    await self._clock.sleep_until(self._clock.now() + delay)
                    delay = min(delay * 2, self.backoff_max)
                    continue
                delay = self.backoff_initial
                self._up(sock)
                await self._pump(sock)
                self._down(self._error or ConnectionResetError("connection lost"), retry_in=delay)
                await self._clock.sleep_until(self._clock.now() + delay)

    async def _connect(self) -> socket.socket:
        assert self.spec.address is not None
        host, port = self.spec.address
        try:
            with anyio.fail_after(self.connect_timeout):
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                family, kind, proto, _, addr = infos[0]
                sock = socket.socket(family, kind, proto)
                try:
                    sock.setblocking(False)
                    with contextlib.suppress(BlockingIOError):
                        sock.connect(addr)
                    await anyio.wait_writable(sock)
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, os.strerror(err))
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError:
            raise TimeoutError(f"no connection within {self.connect_timeout:g}s") from None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return sock

    def _up(self, sock: socket.socket) -> None:
        self._sock = sock
        self._stream_sent = self._stream_end = 0
        self._widest_window = 0
        self.connections += 1
        self._connected = True
        self._error = None
        if self._failed_since is not None:
            log.info("logs.sink_recovered", sink=self.name, outage=round(self._clock.now() - self._failed_since, 3),
                     replaying=len(self._replay), spooled=self._spool.records if self._spool is not None else 0,
                     replayed_total=self.replayed)
            self._failed_since = None

    def _down(self, exc: BaseException, retry_in: float) -> None:
        if self._sock is not None:
            self._settle(self._sock)
            self._close_socket()
        self._connected = False
        self._requeue()
        if self._failed_since is None:
            self._failed_since = self._clock.now()
            where = f"spooled to {self.spec.spool_dir}" if self._spool is not None else "kept in memory (no spool_dir)"
            log.error(
                "logs.sink_error", sink=self.name, error=str(exc) or type(exc).__name__, retry_in=retry_in,
                hint=f"is the aggregator running and listening? events are {where} and sent in order "
                f"once it is back; retrying with backoff up to {self.backoff_max:g}s",
            )

    def _requeue(self) -> None:
        # Everything the peer may not have received goes first on the next connection.
        if self._sent:
            self.replayed += len(self._sent)
            self._replay = deque(itertools.chain(((f, spooled) for _, f, spooled in self._sent), self._replay))
            self._sent.clear()
            self._sent_bytes = 0
        self._out = None

    def _settle(self, sock: socket.socket) -> None:
        """Forget the frames the peer has surely read; the rest is replayed (also after a reset).

        Read = acknowledged by the peer's TCP (``SIOCOUTQ`` says how much is not)
        and not still waiting in its receive buffer. A reset throws that buffer
        away; how much it held shows in the window the peer advertised last,
        against the widest it advertised on this connection.
        """
        unacked = unacked_bytes(sock)
        if unacked is None:
            return  # no answer: everything kept is sent again
        window = peer_window(sock)
        unread = max(0, self._widest_window - window) if window is not None else 0
        read = self._stream_sent - unacked - unread
        sent = self._sent
        released = 0
        while sent and sent[0][0] <= read:
            _, frame, spooled = sent.popleft()
            self._sent_bytes -= len(frame)
            released += spooled
        self._release(released)

    def _release(self, count: int) -> None:
        """``count`` frames read from the spool are confirmed: their disk space may go."""
        if count and self._spool is not None:
            self._spool.release(count)

    def _sample_window(self, sock: socket.socket) -> None:
        window = peer_window(sock)
        if window is not None and window > self._widest_window:
            self._widest_window = window

    def _close_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            anyio.notify_closing(sock)
            sock.close()

    async def _pump(self, sock: socket.socket) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_peer, sock, tg.cancel_scope)
            try:
                await self._send_all(sock, until_empty=False)
            except OSError as exc:
                self._error = exc
            tg.cancel_scope.cancel()

    async def _watch_peer(self, sock: socket.socket, scope: anyio.CancelScope) -> None:
        """An aggregator never talks back: readable means closed or reset."""
        while True:
            await anyio.wait_readable(sock)
            try:
                if not sock.recv(65536):
                    self._error = ConnectionResetError("the aggregator closed the connection")
                    break
            except BlockingIOError:
                continue
            except OSError as exc:
                self._error = exc
                break
        scope.cancel()

    async def _send_all(self, sock: socket.socket, *, until_empty: bool) -> None:
        while True:
            if self._out is None:
                batch = self._take_batch()
                if batch is None:
                    if until_empty:
                        return
                    self._idle = True
                    assert self._wake is not None
                    await self._wake.wait()
                    self._wake = anyio.Event()
                    continue
                self._out = memoryview(batch)
            out = self._out
            while out:
                try:
                    n = sock.send(out)
                except BlockingIOError:
                    self._out = out
                    await anyio.wait_writable(sock)
                    continue
                self._stream_sent += n
                out = out[n:]
            self._out = None
            self._sample_window(sock)
            self._trim_window()

    def _next_frames(self, max_bytes: int, max_frames: int = 1 << 62) -> list[Entry]:
        """The oldest frames waiting, in order: replay, then the memory queue, then the spool."""
        frames: list[Entry] = []
        size = 0
        while size < max_bytes and len(frames) < max_frames:
            if self._replay:
                entry = self._replay.popleft()
            elif self._queue:
                entry = (self._queue.popleft(), False)
            elif self._spool is not None and self._spool.records:
                more = self._spool.read(max_bytes - size, max_frames - len(frames))
                frames.extend((f, True) for f in more)
                size += sum(map(len, more))
                continue
            else:
                break
            frames.append(entry)
            size += len(entry[0])
        return frames

    def _take_batch(self) -> bytes | None:
        frames = self._next_frames(BATCH_BYTES)
        if not frames:
            return None
        for frame, spooled in frames:
            self._stream_end += len(frame)
            self._sent.append((self._stream_end, frame, spooled))
            self._sent_bytes += len(frame)
        return b"".join(frame for frame, _ in frames)

    def _trim_window(self) -> None:
        # Frames older than replay_bytes are taken as read, whatever a reset says.
        sent, limit = self._sent, self.replay_bytes
        released = 0
        while sent and self._sent_bytes - len(sent[0][1]) >= limit:
            _, frame, spooled = sent.popleft()
            self._sent_bytes -= len(frame)
            released += spooled
        self._release(released)

    async def _housekeeping(self) -> None:
        """Flush (and fsync) the spool, and report memory-queue drops, about once a second."""
        while True:
            await anyio.sleep(SYNC_INTERVAL)
            self._flush_drops()
            if self._spool is not None:
                fd = self._spool.flush()  # also retries a spool the disk refused
                if fd is not None:
                    try:
                        await anyio.to_thread.run_sync(Spool.sync_fd, fd)
                    except OSError as exc:
                        log.error("logs.sink_error", sink=self.name, error=str(exc),
                                  spool_dir=str(self.spec.spool_dir), hint="fsync of the spool failed")

    def _flush_drops(self) -> None:
        if self._queue_dropped:
            count, self._queue_dropped = self._queue_dropped, 0
            self._report_dropped(count, f"queue_size ({self._queue_max}) reached and no spool_dir: oldest dropped")

    # --- shutdown ------------------------------------------------------------------
    async def aclose(self) -> None:
        """Deliver what is pending for up to ``close_timeout``; spool the rest."""
        if self._closed:
            return
        if self._run_scope is not None:  # stop the sender; its state stays consistent
            self._run_scope.cancel()
            assert self._stopped is not None
            await self._stopped.wait()
        confirmed = False
        with anyio.move_on_after(self.close_timeout):
            if self._connected and self._sock is not None:
                with contextlib.suppress(OSError):
                    confirmed = await self._finish(self._sock)
        self._closed = True
        if confirmed:
            self._release(sum(spooled for _, _, spooled in self._sent))
            self._sent.clear()
            self._sent_bytes = 0
        elif self._sock is not None:
            self._settle(self._sock)
        self._requeue()
        # Frames read from the spool are still on its disk, but in front of them go
        # frames from memory: all of them are written again, in order, and close()
        # then deletes the spool's copies.
        leftover = [frame for frame, _ in self._replay] + list(self._queue)
        self._replay.clear()
        self._queue.clear()
        self._close_socket()
        self._flush_drops()
        if self._spool is not None:
            self._spool.prepend(leftover)  # what the disk refuses is reported dropped
            self._spool.close()
            if self._spool.records:
                log.info("logs.spooled", sink=self.name, count=self._spool.records,
                         spool_dir=str(self.spec.spool_dir), hint="sent at the next start")
            return
        if leftover:
            self._report_dropped(len(leftover), "shutdown while the aggregator was unreachable, and no spool_dir")

    async def _finish(self, sock: socket.socket) -> bool:
        """Send everything pending; True once the peer confirmed it has all of it."""
        await self._send_all(sock, until_empty=True)
        return await self._half_close(sock)

    async def _half_close(self, sock: socket.socket) -> bool:
        """Send EOF and wait for the peer's: then it has read every byte."""
        sock.shutdown(socket.SHUT_WR)
        while True:
            await anyio.wait_readable(sock)
            try:
                if not sock.recv(65536):
                    return True
            except BlockingIOError:
                continue


class TcpSink(NetworkSink):
    """Newline-delimited JSON over TCP."""

    def __init__(self, spec: SinkSpec, **kwargs: Any) -> None:
        super().__init__(spec, ndjson_framer(), **kwargs)


class SyslogSink(NetworkSink):
    """RFC 5424 over TCP, octet-counting framing (RFC 6587), JSON in MSG."""

    def __init__(self, spec: SinkSpec, *, host: str | None = None, **kwargs: Any) -> None:
        super().__init__(spec, syslog_framer(spec.app_name, host), **kwargs)
