"""A per-actor sd_notify receiver: READY, WATCHDOG, STATUS and friends from a program.

Each command actor with ``notify = true`` gets its own datagram socket, by
default in the abstract namespace (no file to clean up, no directory
permissions for a child that runs as another user). Anyone on the host could
send to it, so the socket has SO_PASSCRED and every datagram's sender pid
(SCM_CREDENTIALS) must be the actor's process or a descendant of it, checked
by (pid, create_time) with psutil: one actor cannot speak for another.

A daemon that double-forks is re-parented away from the actor, so a sender
also passes while it is in the session the actor's process leads (a session
cannot be joined, only inherited). ``MAINPID=`` moves the watched process, and
is honoured only for a descendant: it becomes the run's main process (its exit
ends the run, as in systemd; ``CommandProcess.follow``). Received descriptors (``systemd-notify``
sends ``BARRIER=1`` with a pipe end and waits for it to close) are closed once
the datagrams before them are handled.

Limits: the sender must still exist when its datagram is read
(``systemd-notify`` waits on its barrier, a daemon does not exit after
notifying); and a sender with CAP_SYS_ADMIN can claim any pid, so the check
holds against a child that runs as an unprivileged ``user``.
"""

from __future__ import annotations

import array
import contextlib
import os
import secrets
import select
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import anyio
import psutil
import structlog

__all__ = [
    "MAX_DATAGRAM",
    "Errno",
    "MainPid",
    "Notice",
    "NotifySocket",
    "Ready",
    "Reloading",
    "Status",
    "Stopping",
    "Watchdog",
    "WatchdogTrigger",
    "parse_datagram",
    "watchdog_env",
    "with_watchdog_pid",
]

log = structlog.get_logger()

MAX_DATAGRAM = 4096  # systemd's NOTIFY_BUFFER_MAX: longer messages are refused
_MAX_FDS = 64  # room for FDSTORE=1 with many descriptors: whatever arrives is closed
_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid
_ANCILLARY = socket.CMSG_SPACE(_UCRED.size) + socket.CMSG_SPACE(_MAX_FDS * 4)
_BATCH = 64  # datagrams handled per wake-up before yielding to the loop
_CACHE = 64  # verified (pid, create_time) senders remembered


@dataclass(frozen=True, slots=True)
class Ready:
    """``READY=1``: start-up is complete."""


@dataclass(frozen=True, slots=True)
class Watchdog:
    """``WATCHDOG=1``: a beat."""


@dataclass(frozen=True, slots=True)
class WatchdogTrigger:
    """``WATCHDOG=trigger``: the program asks for the watchdog action now."""


@dataclass(frozen=True, slots=True)
class Status:
    """``STATUS=...``: a one-line status for ``actorsup status``."""

    text: str


@dataclass(frozen=True, slots=True)
class Stopping:
    """``STOPPING=1``: the program has begun shutting down."""


@dataclass(frozen=True, slots=True)
class Reloading:
    """``RELOADING=1``: the program is reloading its configuration."""


@dataclass(frozen=True, slots=True)
class MainPid:
    """``MAINPID=``: the actor's main process is now ``pid`` (a verified descendant)."""

    pid: int
    create_time: float


@dataclass(frozen=True, slots=True)
class Errno:
    """``ERRNO=``: the program reports a failure as an errno value."""

    errno: int


Notice = Ready | Watchdog | WatchdogTrigger | Status | Stopping | Reloading | MainPid | Errno

_FLAGS: dict[str, Notice] = {"READY": Ready(), "STOPPING": Stopping(), "RELOADING": Reloading()}
# Keys systemd knows that mean nothing here: accepted without a word.
_IGNORED = frozenset(
    {"BARRIER", "MONOTONIC_USEC", "EXTEND_TIMEOUT_USEC", "WATCHDOG_USEC", "FDSTORE", "FDSTOREREMOVE",
     "FDNAME", "FDPOLL", "BUSERROR", "EXIT_STATUS", "NOTIFYACCESS"}
)


def parse_datagram(data: bytes) -> tuple[list[Notice | int], list[str]]:
    """The notices of one datagram in order, and a problem text per line it cannot use.

    ``MAINPID=`` comes out as a bare ``int``: only the receiver, which knows
    the actor's processes, can turn it into a :class:`MainPid`.
    """
    notices: list[Notice | int] = []
    problems: list[str] = []
    for line in data.decode("utf-8", "replace").split("\n"):
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            problems.append(f"expected KEY=VALUE, got {line[:80]!r}")
        elif key in _FLAGS:
            if value == "1":
                notices.append(_FLAGS[key])
            else:
                problems.append(f"expected {key}=1, got {line[:80]!r}")
        elif key == "WATCHDOG":
            if value == "1":
                notices.append(Watchdog())
            elif value == "trigger":
                notices.append(WatchdogTrigger())
            else:
                problems.append(f'expected WATCHDOG=1 or WATCHDOG=trigger, got {line[:80]!r}')
        elif key == "STATUS":
            notices.append(Status(value))
        elif key in ("MAINPID", "ERRNO"):
            number = int(value) if value.isdigit() and value.isascii() else -1
            if key == "MAINPID" and number > 0:
                notices.append(number)
            elif key == "ERRNO" and number >= 0:
                notices.append(Errno(number))
            else:
                wanted = "a pid > 0" if key == "MAINPID" else "an errno number >= 0"
                problems.append(f"expected {key}= {wanted}, got {line[:80]!r}")
        elif key not in _IGNORED:
            problems.append(f"unknown key {key[:40]!r} ignored")
    return notices, problems


def watchdog_env(address: str, heartbeat_timeout: float | None) -> dict[str, str]:
    """``NOTIFY_SOCKET`` and, with a timeout, ``WATCHDOG_USEC`` for the child's environment.

    ``WATCHDOG_PID`` needs the child's pid before it runs: see :func:`with_watchdog_pid`.
    Without it, ``sd_watchdog_enabled()`` treats the watchdog as meant for any process.
    """
    env = {"NOTIFY_SOCKET": address}
    if heartbeat_timeout is not None:
        if not heartbeat_timeout > 0:
            raise ValueError(f"heartbeat_timeout must be > 0 (got {heartbeat_timeout!r})")
        env["WATCHDOG_USEC"] = str(max(1, round(heartbeat_timeout * 1_000_000)))
    return env


def with_watchdog_pid(argv: Sequence[str], sh: str = "/bin/sh") -> list[str]:
    """``argv`` run through ``sh`` so that ``WATCHDOG_PID`` is the program's own pid.

    The shell exports its pid and execs the program, which keeps it; the
    program then sees ``argv[0]`` as given, its path resolved by the shell.
    """
    return [sh, "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"', "sh", *argv]


@dataclass(frozen=True, slots=True)
class _Identity:
    pid: int
    create_time: float


def _identity(pid: int) -> _Identity | None:
    try:
        return _Identity(pid, psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


class NotifySocket:
    """One actor's ``NOTIFY_SOCKET``: receive, check the sender, hand over typed notices.

    ``on_notice`` is called in the loop, synchronously, once per notice, in the
    order sent. Call :meth:`watch` with each new process of the actor (after
    every spawn); until then, and for any other sender, datagrams are refused,
    logged as ``notify.refused`` and counted in :attr:`refused`.
    """

    def __init__(
        self,
        actor: str,
        on_notice: Callable[[Notice], None],
        *,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.actor = actor
        self._on_notice = on_notice
        self.refused = 0
        self._roots: list[_Identity] = []  # the watched process, and MAINPID's when it moved
        self._verified: dict[_Identity, None] = {}
        self._path = os.fspath(path) if path is not None else None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            if self._path is None:
                name = f"actorsup/{os.getpid()}/{actor[:40]}/{secrets.token_hex(8)}"
                sock.bind("\0" + name)
                self.address = "@" + name
            else:
                sock.bind(self._path)
                os.chmod(self._path, 0o666)  # a child running as another user must be able to send
                self.address = self._path
        except BaseException:
            sock.close()
            raise
        self._sock: socket.socket | None = sock

    # --- the actor's processes ----------------------------------------------
    def watch(self, pid: int, create_time: float | None = None) -> None:
        """The actor's process is now ``pid`` (a new spawn); earlier senders no longer count.

        Call it right after the spawn, with no await in between: a program may
        notify at once, and a datagram read before it is refused.
        """
        if create_time is None:
            found = _identity(pid)
            create_time = found.create_time if found is not None else -1.0
        self._roots = [_Identity(pid, create_time)]
        self._verified.clear()

    def unwatch(self) -> None:
        """The actor has no process (exited, stopping): refuse everything."""
        self._roots = []
        self._verified.clear()

    @property
    def main_pid(self) -> int | None:
        """The pid notices are accepted for: the spawned one, or the last valid ``MAINPID=``."""
        return self._roots[-1].pid if self._roots else None

    def env(self, heartbeat_timeout: float | None) -> dict[str, str]:
        """The variables that point a child at this socket (see :func:`watchdog_env`)."""
        return watchdog_env(self.address, heartbeat_timeout)

    def _check(self, pid: int) -> tuple[_Identity | None, str | None]:
        """``(identity, None)`` if ``pid`` may speak for the actor, else ``(None, reason)``."""
        if not self._roots:
            return None, "the actor has no running process"
        sender = _identity(pid)
        if sender is None:
            return None, "the sender exited before its message was read"
        if sender in self._verified or sender in self._roots:
            return sender, None
        if self._descends(sender):
            self._verified[sender] = None
            if len(self._verified) > _CACHE:
                del self._verified[next(iter(self._verified))]
            return sender, None
        return None, "the sender is not the actor's process or a descendant of it"

    def _descends(self, sender: _Identity) -> bool:
        roots = set(self._roots)
        try:
            for parent in psutil.Process(sender.pid).parents():
                if _Identity(parent.pid, parent.create_time()) in roots:
                    return True
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False
        # Re-parented (a double fork): still in the session a live root leads.
        try:
            sid = os.getsid(sender.pid)
        except OSError:
            return False
        return any(
            root.pid == sid and root.create_time <= sender.create_time and _identity(root.pid) == root
            for root in self._roots
        )

    # --- receiving -------------------------------------------------------------
    def pending(self) -> bool:
        """True if a datagram is waiting to be read: a missed watchdog deadline may be excused."""
        sock = self._sock
        if sock is None:
            return False
        try:
            return bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError):
            return False

    async def serve(self) -> None:
        """Receive until cancelled; never blocks the loop."""
        sock = self._sock
        if sock is None:
            raise RuntimeError("NotifySocket is closed")
        while True:
            await anyio.wait_readable(sock)
            self.drain(_BATCH)
            await anyio.lowlevel.checkpoint()  # a flood must not starve the loop

    def drain(self, limit: int = _BATCH) -> None:
        """Handle up to ``limit`` datagrams that wait now, without blocking (the program exited: its last word)."""
        sock = self._sock
        for _ in range(limit if sock is not None else 0):
            assert sock is not None
            try:
                data, ancillary, flags, _ = sock.recvmsg(MAX_DATAGRAM, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                break
            self._datagram(data, ancillary, flags)

    def _datagram(self, data: bytes, ancillary: list[tuple[int, int, bytes]], flags: int) -> None:
        pid: int | None = None
        fds: list[int] = []
        for level, kind, payload in ancillary:
            if level != socket.SOL_SOCKET:
                continue
            if kind == socket.SCM_CREDENTIALS and len(payload) >= _UCRED.size:
                pid = _UCRED.unpack_from(payload)[0]
            elif kind == socket.SCM_RIGHTS:
                got = array.array("i")
                got.frombytes(payload[: len(payload) - len(payload) % got.itemsize])
                fds.extend(got)
        try:
            self._handle(data, pid, flags)
        finally:
            for fd in fds:  # after handling: this is what releases a BARRIER=1 waiter
                os.close(fd)

    def _handle(self, data: bytes, pid: int | None, flags: int) -> None:
        if flags & socket.MSG_TRUNC:
            return self._refuse(pid, f"message longer than {MAX_DATAGRAM} bytes")
        if pid is None or pid <= 0:  # 0: a sender in a pid namespace we cannot see into
            return self._refuse(pid, "no sender credentials")
        sender, reason = self._check(pid)
        if sender is None:
            return self._refuse(pid, reason or "")
        notices, problems = parse_datagram(data)
        for problem in problems:
            log.warning("notify.invalid", actor=self.actor, sender_pid=pid, problem=problem)
        # As systemd: a datagram's MAINPID= counts before the rest of it ("READY=1\nMAINPID=N"
        # in sd_notify(3)'s example starts the actor with N as its main process).
        notices.sort(key=lambda notice: not isinstance(notice, int))
        for notice in notices:
            if isinstance(notice, int):
                moved = self._main_pid(notice, pid)
                if moved is None:
                    continue
                notice = moved
            self._on_notice(notice)

    def _main_pid(self, pid: int, sender: int) -> MainPid | None:
        identity = _identity(pid)
        if identity is not None and (identity in self._roots or self._descends(identity)):
            self._roots = [self._roots[0], identity] if identity != self._roots[0] else [identity]
            return MainPid(identity.pid, identity.create_time)
        self._refuse(sender, f"MAINPID={pid} is not a descendant of the actor's process")
        return None

    def _refuse(self, pid: int | None, reason: str) -> None:
        self.refused += 1
        log.warning("notify.refused", actor=self.actor, sender_pid=pid, reason=reason, refused=self.refused)

    # --- closing -----------------------------------------------------------------
    def close(self) -> None:
        """Close the socket (and remove a path socket); cancel :meth:`serve` first."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        with contextlib.suppress(RuntimeError):  # no event loop: nothing can be waiting
            anyio.notify_closing(sock)  # wakes a waiter on trio instead of leaving it on a dead fd
        sock.close()
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
