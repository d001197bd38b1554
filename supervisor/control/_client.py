"""Clients of the control socket: a blocking one for the CLI, an anyio one for async code."""

from __future__ import annotations

import errno
import json
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..exceptions import ControlError
from ._errors import BadSocketPath, NoReply, NotListening, RequestFailed

__all__ = ["ControlClient", "arequest", "request"]

# The stdlib's json, not msgspec: the CLI's requests and replies are small, and
# msgspec's import (its C module pulls datetime, uuid, decimal) would be most
# of a `status` command's start-up time.
_MAX_REPLY = 256 * 1024 * 1024  # a reply line; status of thousands of actors fits easily
_GONE = (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR, errno.ENOTSOCK)


def _not_a_socket(path: Path) -> ControlError | None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if stat.S_ISDIR(mode):
        hint = f" (the socket itself is usually {path / 'actorsup.sock'})"
        return BadSocketPath(path, "it is a folder, not a socket" + hint, BadSocketPath.CLIENT_ADVICE)
    if not stat.S_ISSOCK(mode):
        return BadSocketPath(path, "it is a regular file, not a socket", BadSocketPath.CLIENT_ADVICE)
    return None


def encode(request: dict[str, Any]) -> bytes:
    """One request line: compact JSON plus the newline."""
    return json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _connect_error(path: Path, exc: OSError) -> ControlError:
    if exc.errno in (errno.ECONNREFUSED, errno.ENOTSOCK) and (wrong := _not_a_socket(path)):
        return wrong
    if exc.errno in _GONE:
        reason = "no socket file" if exc.errno in (errno.ENOENT, errno.ENOTDIR) else "connection refused"
        return NotListening(path, reason)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ControlError(f"permission denied on control socket {path}: it belongs to another "
                            "user; run the command as the supervisor's user")
    return ControlError(f"cannot connect to control socket {path}: {exc}")


def _result(cmd: str, path: Path, line: bytes) -> Any:
    if not line:
        raise NoReply(path, cmd)
    try:
        reply = json.loads(line)
    except Exception:
        raise ControlError(f"the process at {path} sent a reply that is not JSON: {line[:80]!r}") from None
    if not isinstance(reply, dict) or "ok" not in reply:
        raise ControlError(f"the process at {path} does not speak the actorsup control protocol")
    if not reply["ok"]:
        raise RequestFailed(cmd, str(reply.get("code", "error")), str(reply.get("error", "")))
    return reply


class ControlClient:
    """One blocking connection; several requests may share it, one at a time."""

    def __init__(self, path: str | Path, *, timeout: float | None = 30.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.settimeout(timeout)
            self._sock.connect(str(self.path))
        except OSError as exc:
            self._sock.close()
            raise _connect_error(self.path, exc) from None
        except BaseException:
            self._sock.close()
            raise
        self._file = self._sock.makefile("rb")

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def _send(self, cmd: str, args: dict[str, Any]) -> None:
        try:
            self._sock.sendall(encode({"cmd": cmd, **args}))
        except OSError as exc:
            raise ControlError(f"lost the connection to {self.path}: {exc}") from None

    def _readline(self, cmd: str) -> bytes:
        try:
            return self._file.readline(_MAX_REPLY)
        except TimeoutError:
            raise ControlError(f"the supervisor at {self.path} did not answer {cmd!r} within "
                               f"{self.timeout:g}s") from None
        except OSError as exc:
            raise ControlError(f"lost the connection to {self.path}: {exc}") from None

    def request(self, cmd: str, **args: Any) -> Any:
        """Send one request; return its ``result`` or raise :class:`RequestFailed`."""
        self._send(cmd, args)
        return _result(cmd, self.path, self._readline(cmd)).get("result")

    def stream(self, cmd: str, **args: Any) -> Iterator[bytes]:
        """Send a streaming request; yield each item line (JSON bytes) until the server ends it."""
        self._send(cmd, args)
        _result(cmd, self.path, self._readline(cmd))
        self._sock.settimeout(None)  # a stream may be quiet for as long as it likes
        while line := self._readline(cmd):
            yield line


def request(path: str | Path, cmd: str, *, timeout: float | None = 30.0, **args: Any) -> Any:
    """Connect, send one request, return its result."""
    with ControlClient(path, timeout=timeout) as client:
        return client.request(cmd, **args)


async def arequest(path: str | Path, cmd: str, **args: Any) -> Any:
    """The anyio version of :func:`request` (bound it with ``anyio.fail_after``)."""
    import anyio  # only async callers pay for it: the CLI stays fast
    from anyio.streams.buffered import BufferedByteReceiveStream

    from ._sock import connect

    path = Path(path)
    try:
        conn = await connect(path)
    except OSError as exc:
        raise _connect_error(path, exc) from None
    async with conn:
        await conn.send(encode({"cmd": cmd, **args}))
        reader = BufferedByteReceiveStream(conn)
        try:
            line = await reader.receive_until(b"\n", _MAX_REPLY)
        except anyio.IncompleteRead:
            line = b""
        return _result(cmd, path, line).get("result")
