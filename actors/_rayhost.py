"""The host of one remote actorsup child: what runs inside a Ray actor.

``RayHost(ticket)`` starts the child *locally*, as the supervisor's cold
spawner would (``python -m actors._runtime FD``: a socketpair channel, its own
session, PDEATHSIG towards the host, stdout and stderr pipes), then dials the
supervisor and relays, in one thread, between the child and one TCP connection
of multiplexed frames (:mod:`actors._raymux`). The child's channel, pipes and
exit status stay local to the host, which outlives the child: everything the
child wrote before it died is drained to EOF and sent before the EXIT frame.

The supervisor sends a LEASE frame every ``lease_timeout / 5``. A host that
hears nothing for ``lease_timeout`` (a SIGKILLed supervisor, a partition), or
whose connection ends, SIGKILLs the child's process group and ends its own
process. Plain Python: this module never imports Ray or ``supervisor``.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import NoReturn

import msgspec

from ._raymux import (
    CHANNEL,
    LEASE,
    REFUSED,
    SIGNAL,
    STDERR,
    STDOUT,
    Handshake,
    MuxDecoder,
    MuxError,
    decode_signal,
    encode_exit,
    encode_handshake,
    frame,
)

__all__ = ["RayHost"]

_READ_SIZE = 64 * 1024
_HIGH_WATER = 1024 * 1024  # unsent bytes above this: stop reading the child until the supervisor reads
_DRAIN_TIMEOUT = 2.0  # after the child's exit: bound on waiting for EOF (a grandchild holding a pipe)


class _Ticket(msgspec.Struct, frozen=True, kw_only=True):
    """The fields of ``supervisor.ray._backend.HostTicket`` (actors/ does not import supervisor/)."""

    actor: str
    generation: int
    token: str
    address: tuple[str, int]
    lease_timeout: float
    env: dict[str, str] = {}
    cwd: str | None = None


class RayHost:
    """Starts the child and relays its channel and output to the supervisor (in a thread)."""

    def __init__(self, ticket: bytes) -> None:
        self.ticket = msgspec.msgpack.decode(ticket, type=_Ticket)
        self.pid = 0
        self._spawned = threading.Event()
        self._error: BaseException | None = None
        # The child is spawned by the relay thread: PDEATHSIG fires when the
        # thread that forked the child ends, and this one lives as long as the host.
        threading.Thread(target=self._main, name="actorsup-rayhost", daemon=False).start()
        self._spawned.wait()
        if self._error is not None:
            raise self._error

    def ping(self) -> int:
        """The child's pid: the host is up."""
        return self.pid

    def _main(self) -> None:
        try:
            relay = _Relay(self.ticket)
            self.pid = relay.proc.pid
        except BaseException as exc:
            self._error = exc
            self._spawned.set()
            return
        self._spawned.set()
        relay.run()


class _Relay:
    def __init__(self, ticket: _Ticket) -> None:
        self.ticket = ticket
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {**os.environ, **ticket.env, "PYTHONUNBUFFERED": "1", "ACTORSUP_PARENT_PID": str(os.getpid())}
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "actors._runtime", str(child_end.fileno())],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                pass_fds=(child_end.fileno(),), start_new_session=True, env=env, cwd=ticket.cwd,
            )
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.channel = parent_end
        self.sources: dict[int, int] = {  # fd -> the mux kind its bytes travel as
            parent_end.fileno(): CHANNEL, self.proc.stdout.fileno(): STDOUT, self.proc.stderr.fileno(): STDERR,
        }
        for fd in self.sources:
            os.set_blocking(fd, False)
        self.pidfd = os.pidfd_open(self.proc.pid)
        self.reaped = False
        self.to_supervisor = bytearray()
        self.to_child = bytearray()
        self.sel = selectors.DefaultSelector()
        self.masks: dict[int, int] = {}

    # --- ending ---------------------------------------------------------------------
    def _kill_group(self) -> None:
        """SIGKILL the child's group; only before it is reaped, so its pid cannot be reused yet."""
        if not self.reaped:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def _end(self) -> NoReturn:
        self._kill_group()
        os._exit(0)

    # --- the loop -----------------------------------------------------------------
    def run(self) -> NoReturn:
        host, port = self.ticket.address
        try:
            self.sock = socket.create_connection((host, port), timeout=self.ticket.lease_timeout)
        except OSError:
            self._end()
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t = self.ticket
        hs = Handshake(actor=t.actor, generation=t.generation, token=t.token, pid=self.proc.pid,
                       node=socket.gethostname())
        self.to_supervisor += encode_handshake(hs)
        try:
            self._relay()
        finally:  # whatever ended the relay (EOF, the lease, garbage, a bug): the child goes with it
            self._end()

    def _relay(self) -> None:
        decoder = MuxDecoder()
        lease = self.ticket.lease_timeout
        heard = time.monotonic()
        drain_until: float | None = None  # set when the child has exited
        exit_sent = False
        while True:
            now = time.monotonic()
            if now - heard > lease:
                return  # the supervisor is gone or cut off
            if drain_until is not None and not exit_sent:
                out_of_time = now > drain_until and not self.to_supervisor
                if not self.sources or out_of_time:
                    self._send_exit()
                    exit_sent = True
            self._want(self.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if self.to_supervisor else 0))
            reading = len(self.to_supervisor) < _HIGH_WATER
            for fd in list(self.sources):
                want = selectors.EVENT_READ if reading else 0
                if fd == self.channel.fileno() and self.to_child:
                    want |= selectors.EVENT_WRITE
                self._want(fd, want)
            if not self.reaped:
                self._want(self.pidfd, selectors.EVENT_READ)
            timeout = heard + lease - now
            if drain_until is not None and not exit_sent:
                timeout = min(timeout, max(0.0, drain_until - now) + 0.01)
            for key, mask in self.sel.select(timeout):
                fd = key.fd
                if fd == self.sock.fileno():
                    if mask & selectors.EVENT_READ:
                        data = self.sock.recv(_READ_SIZE)
                        if not data:
                            return  # the supervisor closed: after EXIT, or it is gone
                        heard = time.monotonic()
                        self._from_supervisor(decoder.feed(data))
                    if mask & selectors.EVENT_WRITE:
                        self._flush()
                elif fd == self.pidfd:
                    self._reap()
                    drain_until = time.monotonic() + _DRAIN_TIMEOUT
                elif fd in self.sources:
                    if mask & selectors.EVENT_WRITE:
                        self._write_child()
                    if mask & selectors.EVENT_READ:
                        self._read_child(fd)

    def _want(self, fd: int | socket.socket, events: int) -> None:
        number = fd if isinstance(fd, int) else fd.fileno()
        old = self.masks.get(number, 0)
        if events == old:
            return
        if not old:
            self.sel.register(number, events)
        elif not events:
            self.sel.unregister(number)
        else:
            self.sel.modify(number, events)
        self.masks[number] = events

    def _forget(self, fd: int) -> None:
        self._want(fd, 0)
        self.masks.pop(fd, None)

    def _from_supervisor(self, frames: list[tuple[int, bytes]]) -> None:
        for kind, payload in frames:
            if kind == CHANNEL:
                self.to_child += payload
            elif kind == SIGNAL:
                sig = decode_signal(payload)
                if not self.reaped:
                    with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                        os.killpg(self.proc.pid, sig)
            elif kind == REFUSED:
                raise MuxError("refused by the supervisor")
            elif kind != LEASE:
                raise MuxError(f"mux frame kind {kind} is not for a host")

    def _read_child(self, fd: int) -> None:
        kind = self.sources[fd]
        try:
            data = self.channel.recv(_READ_SIZE) if kind == CHANNEL else os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:  # reset by a dying child: same as EOF
            data = b""
        if data:
            self.to_supervisor += frame(kind, data)
            self._flush()
            return
        self._forget(fd)
        del self.sources[fd]
        if kind != CHANNEL:
            os.close(fd)

    def _write_child(self) -> None:
        try:
            sent = self.channel.send(self.to_child)
        except BlockingIOError:
            return
        except OSError:  # the child closed its channel: what it never reads is moot
            sent = len(self.to_child)
        del self.to_child[:sent]

    def _flush(self) -> None:
        try:
            sent = self.sock.send(self.to_supervisor)
        except BlockingIOError:
            return
        del self.to_supervisor[:sent]

    def _reap(self) -> None:
        self._kill_group()  # grandchildren in its group die with it (the pid is still reserved)
        self.proc.wait()
        self.reaped = True
        self._forget(self.pidfd)
        os.close(self.pidfd)

    def _send_exit(self) -> None:
        """The child is gone and its output drained: EXIT, then read until the supervisor closes."""
        assert self.proc.returncode is not None
        for fd in list(self.sources):  # past the drain bound: what a stray grandchild writes is not the actor's
            self._forget(fd)
        self.sources.clear()
        self.to_supervisor += encode_exit(self.proc.returncode)
        self._flush()
