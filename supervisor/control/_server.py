"""The control server: a Unix socket speaking line-delimited JSON.

Every connection is its own task and holds no lock, so a slow or stuck client
only ever stalls itself: each request must arrive whole within ``idle_timeout``
(of connecting, or of the previous reply) and each write within
``send_timeout``. Idle connections never lock others out: when every slot is
taken, a newcomer evicts the longest-waiting idle connection, and streams may
hold all slots but a reserve. Only the socket owner's uid may connect
(SO_PEERCRED); the socket file is 0600 before it listens.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
import time
from collections.abc import Callable
from contextlib import AsyncExitStack, suppress
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import msgspec
import structlog
from anyio.abc import ObjectReceiveStream
from anyio.streams.buffered import BufferedByteReceiveStream

from ..cron._errors import TaskNotRunning
from ..exceptions import ConfigError, ControlError, SupervisorError, UnknownActor
from ._api import ControlTarget
from ._errors import BadSocketPath, SocketInUse
from ._sock import UnixConnection, accept, connect
from ._wire import COMMANDS, MAX_REQUEST, BadRequest, LogsArgs, encode, error_reply, parse_request

__all__ = ["ControlServer", "PeerCred", "peer_credentials"]

log = structlog.get_logger("supervisor.control")

PROTOCOL = 1
_MAX_UNIX_PATH = 107  # sun_path is 108 bytes with the trailing NUL
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_BATCH = 256  # stream items coalesced into one write when they queue up
_RESERVE = 16  # connection slots streams may never take: kept for request/reply clients
_MUTATING = {"start", "stop", "restart", "scale", "reload", "shutdown", "cron_trigger"}
_METHODS = {  # command -> ControlTarget method
    "status": "status", "heartbeat_status": "heartbeat_status", "start": "start_actor",
    "stop": "stop_actor", "restart": "restart_actor", "reload": "reload", "shutdown": "shutdown",
    "logs": "log_tail", "cron_list": "cron_list", "cron_trigger": "cron_trigger", "scale": "scale",
}
_NAMED = {"start", "stop", "restart", "cron_trigger"}
_ASYNC = {"reload", "shutdown"}


class PeerCred(NamedTuple):
    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCred:
    """The connecting process's pid, uid and gid, from the kernel (Linux SO_PEERCRED)."""
    if not hasattr(socket, "SO_PEERCRED"):
        raise ControlError("SO_PEERCRED is not available on this platform; cannot check the peer uid")
    return PeerCred(*_UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)))


class _Refused(Exception):
    """A request the server turns down itself, with its own code and message."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


def _stopped(name: str) -> _Refused:
    return _Refused("stopped", f"cron trigger: {name!r} is stopped; start it first "
                    f"(`actorsup start {name}`), then trigger it")


class _Drop(Exception):
    """End this connection now (the client is gone or stuck)."""


class ControlServer:
    def __init__(
        self,
        target: ControlTarget,
        path: Path,
        *,
        max_request: int = MAX_REQUEST,
        max_connections: int = 256,
        idle_timeout: float | None = 5.0,
        send_timeout: float = 10.0,
        peercred: Callable[[socket.socket], PeerCred] = peer_credentials,
        allowed_uid: int | None = None,
    ) -> None:
        if max_request < 2:
            raise ValueError(f"max_request must be >= 2 (got {max_request})")
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1 (got {max_connections})")
        self.target = target
        self.path = Path(path)
        self.max_request = max_request
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.send_timeout = send_timeout
        self._peercred = peercred
        self.allowed_uid = os.getuid() if allowed_uid is None else allowed_uid
        self.connections = 0
        self.streams = 0
        # Connections waiting for a request, oldest first: the ones a newcomer may evict.
        self._idle: dict[int, anyio.CancelScope] = {}
        self._evicted: set[int] = set()
        self._identity: tuple[int, int] | None = None

    async def serve(self, *, task_status: anyio.abc.TaskStatus[Path] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; ``task_status.started(path)`` once connections are accepted."""
        listener = await self._listen()
        try:
            async with anyio.create_task_group() as tg:
                log.info("control.listening", path=str(self.path))
                task_status.started(self.path)
                while True:
                    try:
                        sock = await accept(listener)
                    except OSError as exc:  # EMFILE and friends: back off, keep serving
                        log.warning("control.accept_failed", error=str(exc))
                        await anyio.sleep(0.1)
                        continue
                    tg.start_soon(self._connection, sock)
        finally:
            listener.close()
            self._remove_socket()
            log.info("control.stopped", path=str(self.path))

    # --- socket file -----------------------------------------------------------
    async def _listen(self) -> socket.socket:
        path = self.path
        if len(os.fsencode(path)) > _MAX_UNIX_PATH:
            raise BadSocketPath(path, f"the path is {len(os.fsencode(path))} bytes long, Unix "
                                f"sockets allow at most {_MAX_UNIX_PATH}")
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise BadSocketPath(path, f"cannot create its folder {path.parent} "
                                f"({exc.strerror or exc})") from None
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            mode = None
        except OSError as exc:
            raise BadSocketPath(path, f"cannot inspect it ({exc.strerror or exc})") from None
        if mode is not None:
            if not stat.S_ISSOCK(mode):
                raise BadSocketPath(path, "it exists and is not a socket (it is never deleted: "
                                    "remove it yourself if it is not needed)")
            await self._check_stale()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Bind, narrow the mode, and only then listen: until listen() nobody can
            # connect, so there is no window with a wider mode.
            listener.bind(str(path))
            os.chmod(path, 0o600)
            listener.listen(1024)
            listener.setblocking(False)
            st = path.stat()
        except OSError as exc:
            listener.close()
            raise ControlError(f"cannot listen on control socket {path}: {exc}") from None
        self._identity = (st.st_dev, st.st_ino)
        return listener

    async def _check_stale(self) -> None:
        """Refuse a socket a live supervisor answers on; remove a dead one."""
        try:
            with anyio.fail_after(2):
                conn = await connect(self.path)
        except (ConnectionRefusedError, FileNotFoundError):
            with suppress(FileNotFoundError):
                self.path.unlink()
            log.info("control.stale_socket_removed", path=str(self.path))
            return
        except TimeoutError:
            raise SocketInUse(self.path, "a process accepts connections there but does not answer") from None
        except OSError as exc:
            raise ControlError(f"cannot probe existing control socket {self.path}: {exc}") from None
        await conn.aclose()
        raise SocketInUse(self.path)

    def _remove_socket(self) -> None:
        # Only our own socket: a successor may already have replaced the file.
        try:
            st = self.path.stat()
            if (st.st_dev, st.st_ino) == self._identity:
                self.path.unlink()
        except OSError:
            pass

    # --- one connection ----------------------------------------------------------
    async def _connection(self, sock: socket.socket) -> None:
        async with UnixConnection(sock) as conn:
            try:
                peer = self._peercred(sock)
            except Exception as exc:  # no credentials, no service; never crash the server
                log.warning("control.refused", reason="no peer credentials", error=str(exc))
                return
            if peer.uid != self.allowed_uid:
                log.warning("control.refused", reason="foreign uid", peer_pid=peer.pid,
                            peer_uid=peer.uid, uid=self.allowed_uid)
                await self._try_send(conn, error_reply(
                    "forbidden", f"peer uid {peer.uid} may not control this supervisor "
                    f"(only uid {self.allowed_uid}); run the command as that user"))
                return
            if self.connections >= self.max_connections and not self._evict_idle():
                log.warning("control.busy", peer_pid=peer.pid, connections=self.connections)
                await self._try_send(conn, error_reply(
                    "busy", f"too many control connections ({self.max_connections}); retry later"))
                return
            self.connections += 1
            try:
                await self._session(conn, peer)
            except (_Drop, anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
                pass
            except Exception:
                log.exception("control.connection_failed", peer_pid=peer.pid)
            finally:
                self.connections -= 1

    def _evict_idle(self) -> bool:
        """Close the connection that has waited longest for a request; False if none waits."""
        if not self._idle:
            return False
        key = next(iter(self._idle))
        self._evicted.add(key)
        self._idle.pop(key).cancel()
        return True

    async def _next_request(self, reader: BufferedByteReceiveStream, peer: PeerCred) -> bytes | None:
        """The next request line (b"" when too large); None when the connection should end."""
        key = id(reader)
        line: bytes | None = None
        with anyio.move_on_after(self.idle_timeout if self.idle_timeout is not None else float("inf")) as idle:
            self._idle[key] = idle
            try:
                line = await reader.receive_until(b"\n", self.max_request)
            except anyio.IncompleteRead:
                pass  # client hung up (possibly mid-line)
            except anyio.DelimiterNotFound:
                line = b""
            finally:
                self._idle.pop(key, None)
        evicted = key in self._evicted
        self._evicted.discard(key)
        if idle.cancelled_caught:
            if evicted:
                log.info("control.evicted", peer_pid=peer.pid, connections=self.connections,
                         reason="every slot taken; this connection had waited longest for a request")
            else:
                log.info("control.idle_timeout", peer_pid=peer.pid, timeout=self.idle_timeout)
        return line

    async def _session(self, conn: UnixConnection, peer: PeerCred) -> None:
        reader = BufferedByteReceiveStream(conn)
        while True:
            line = await self._next_request(reader, peer)
            if line is None:
                return
            if not line or len(line) >= self.max_request:
                log.warning("control.request_too_large", peer_pid=peer.pid, limit=self.max_request)
                await self._send(conn, error_reply(
                    "too_large", f"request exceeds {self.max_request} bytes (newline included); "
                    "the connection is closed"))
                return
            try:
                cmd, args = parse_request(line)
            except BadRequest as exc:
                log.info("control.bad_request", peer_pid=peer.pid, code=exc.code, error=exc.message)
                await self._send(conn, error_reply(exc.code, exc.message))
                continue
            if COMMANDS[cmd].streaming or (isinstance(args, LogsArgs) and args.follow):
                await self._open_stream(conn, reader, cmd, args, peer)
                return
            await self._send(conn, await self._call(cmd, args, peer))

    async def _call(self, cmd: str, args: Any, peer: PeerCred) -> bytes:
        started = time.perf_counter()
        if cmd in _MUTATING:
            named = {"name": args.name} if cmd in _NAMED or cmd == "scale" else {}
            log.info("control.command", cmd=cmd, **named, peer_pid=peer.pid)
        try:
            if cmd == "logs":
                reply = self._tail_reply(args)
            else:
                reply = encode({"ok": True, "result": await self._dispatch(cmd, args)})
        except Exception as exc:
            reply = self._failure(cmd, exc)
        log.debug("control.request", cmd=cmd, peer_pid=peer.pid,
                  duration=round(time.perf_counter() - started, 6))
        return reply

    async def _dispatch(self, cmd: str, args: Any) -> Any:
        if cmd == "ping":
            return {"pid": os.getpid(), "protocol": PROTOCOL}
        method = self._method(_METHODS[cmd])
        if cmd == "cron_trigger":
            self._refuse_stopped(args.name)
        if cmd in _NAMED:
            result = await method(args.name)
            return {"run_id": result} if cmd == "cron_trigger" else result
        if cmd == "scale":
            return await method(args.name, args.count)
        if cmd in _ASYNC:
            return await method()
        return method()

    def _method(self, name: str) -> Any:
        method = getattr(self.target, name, None)
        if method is None:  # a target that predates the command
            raise NotImplementedError(name)
        return method

    def _tail_reply(self, args: LogsArgs) -> bytes:
        raw = self._method("log_tail")(args.n, args.actor)
        if not raw and args.actor is not None and not self._known(args.actor):
            raise UnknownActor(args.actor)
        return encode({"ok": True, "result": [_raw_json(line) for line in raw]})

    def _refuse_stopped(self, name: str) -> None:
        """A stopped cron task is paused: a trigger would answer a run_id for a run that never comes."""
        for row in self.target.status():
            if row.get("name") == name and row.get("kind") == "cron" and row.get("state") == "stopped":
                raise _stopped(name)

    def _known(self, actor: str) -> bool:
        """A current actor, or one with buffered lines (removed by a reload); else a typo."""
        return actor in self._names() or bool(self._method("log_tail")(1, actor))

    def _names(self) -> dict[str, str]:
        """Every actor and cron task: name -> kind (a per-run cron task has no status row)."""
        names = {str(row.get("name")): str(row.get("kind")) for row in self.target.status()}
        for row in self._method("cron_list")():
            names.setdefault(str(row.get("name")), "cron")
        return names

    def _unknown(self, cmd: str, exc: UnknownActor) -> bytes:
        names = self._names()
        if cmd == "cron_trigger" and exc.name in names:
            tasks = ", ".join(n for n, kind in names.items() if kind == "cron") or "none"
            return error_reply("not_cron", f"cron trigger: {exc.name!r} is an actor ({names[exc.name]}), "
                               f"not a cron task; cron tasks: {tasks}")
        known = ", ".join(names) or "none"
        return error_reply("unknown_actor", f"{exc}; known names: {_cut(known)}")

    def _failure(self, cmd: str, exc: Exception) -> bytes:
        if isinstance(exc, TaskNotRunning):  # a per-run task has no status row to check first
            exc = _stopped(exc.task)
        if isinstance(exc, _Refused):
            return error_reply(exc.code, exc.message)
        if isinstance(exc, UnknownActor):
            return self._unknown(cmd, exc)
        if isinstance(exc, ConfigError):
            return error_reply("config_error", f"{exc}; the running config is kept")
        if isinstance(exc, SupervisorError):
            return error_reply("failed", str(exc))
        if isinstance(exc, NotImplementedError):
            return error_reply("unsupported", f"{cmd} is not supported by this supervisor")
        log.exception("control.command_failed", cmd=cmd)
        return error_reply("internal", f"{cmd} failed: {type(exc).__name__}: {exc}; "
                                       "see the supervisor's log")

    # --- streams -----------------------------------------------------------------
    async def _open_stream(self, conn: UnixConnection, reader: BufferedByteReceiveStream,
                           cmd: str, args: Any, peer: PeerCred) -> None:
        limit = self.max_connections - min(_RESERVE, self.max_connections // 4)
        if self.streams >= limit:
            log.warning("control.busy", peer_pid=peer.pid, streams=self.streams, cmd=cmd)
            await self._send(conn, error_reply(
                "busy", f"too many open streams ({limit}); the other connection slots are kept "
                "for requests. Retry later"))
            return
        self.streams += 1
        try:
            await self._stream(conn, reader, cmd, args, peer)
        finally:
            self.streams -= 1

    async def _stream(self, conn: UnixConnection, reader: BufferedByteReceiveStream,
                      cmd: str, args: Any, peer: PeerCred) -> None:
        async with AsyncExitStack() as stack:
            try:
                if cmd == "events":
                    items: ObjectReceiveStream[Any] = await stack.enter_async_context(
                        self._method("subscribe_events")())
                    backlog: list[bytes] = []
                else:
                    # Follow first, then take the tail with no await in between:
                    # no line falls between the two.
                    items = await stack.enter_async_context(self._method("follow_logs")(args.actor))
                    tail = self._method("log_tail")(args.n, args.actor)
                    if not tail and args.actor is not None and not self._known(args.actor):
                        raise UnknownActor(args.actor)
                    backlog = [_line(b) for b in tail]
            except Exception as exc:
                await self._send(conn, self._failure(cmd, exc))
                return
            log.info("control.stream_opened", cmd=cmd, peer_pid=peer.pid)
            await self._send(conn, encode({"ok": True, "stream": cmd}) + b"".join(backlog))
            render = _line if cmd == "logs" else encode
            async with anyio.create_task_group() as tg:
                tg.start_soon(_cancel_on_hangup, reader, tg.cancel_scope)
                # The client may go away mid-write.
                with suppress(_Drop, anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
                    await self._pump(conn, items, render)
                tg.cancel_scope.cancel()  # the source ended (or the client left): close
            log.info("control.stream_closed", cmd=cmd, peer_pid=peer.pid)

    async def _pump(self, conn: UnixConnection, items: ObjectReceiveStream[Any],
                    render: Callable[[Any], bytes]) -> None:
        receive_nowait = getattr(items, "receive_nowait", None)
        while True:
            try:
                chunk = [render(await items.receive())]
            except anyio.EndOfStream:
                return
            ended = False
            while receive_nowait is not None and len(chunk) < _BATCH:
                try:
                    chunk.append(render(receive_nowait()))
                except anyio.WouldBlock:
                    break
                except anyio.EndOfStream:
                    ended = True
                    break
            await self._send(conn, b"".join(chunk))
            if ended:
                return

    # --- writes ----------------------------------------------------------------
    async def _send(self, conn: UnixConnection, data: bytes) -> None:
        with anyio.move_on_after(self.send_timeout) as scope:
            await conn.send(data)
        if scope.cancelled_caught:
            log.warning("control.client_stuck", send_timeout=self.send_timeout)
            raise _Drop

    async def _try_send(self, conn: UnixConnection, data: bytes) -> None:
        with suppress(_Drop, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await self._send(conn, data)


async def _cancel_on_hangup(reader: BufferedByteReceiveStream, scope: anyio.CancelScope) -> None:
    """Stream requests take no further input: discard it, and stop at EOF."""
    try:
        while True:
            await reader.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    scope.cancel()


def _cut(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 4] + ", ..."


def _line(data: bytes) -> bytes:
    return data.rstrip(b"\r\n") + b"\n"


_check = msgspec.json.Decoder()


def _raw_json(data: bytes) -> msgspec.Raw:
    """Embed a log line without re-encoding it, unless it is not valid JSON."""
    data = data.strip()
    try:
        _check.decode(data)
    except msgspec.DecodeError:
        return msgspec.Raw(encode({"event": "control.unparseable_log_line",
                                   "raw": data.decode("utf-8", "replace")})[:-1])
    return msgspec.Raw(data)
