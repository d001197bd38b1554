"""The blocking and anyio clients of the control socket."""

from __future__ import annotations

import pickle
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from supervisor.control import (
    ControlClient,
    ControlError,
    ControlServer,
    NoReply,
    NotListening,
    RequestFailed,
    SocketInUse,
    arequest,
    request,
)
from supervisor.control._sock import UnixConnection, accept
from supervisor.control.testing import FakeTarget

pytestmark = pytest.mark.anyio


@pytest.fixture
def sock() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ctl-", dir="/tmp") as d:
        yield Path(d) / "s.sock"


@asynccontextmanager
async def serving(target: FakeTarget, path: Path) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        await tg.start(ControlServer(target, path).serve)
        yield
        tg.cancel_scope.cancel()


@asynccontextmanager
async def rogue(path: Path, reply: bytes | None) -> AsyncIterator[None]:
    """A listener that answers every connection with ``reply`` (None: say nothing) and hangs up."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    listener.setblocking(False)

    async def serve() -> None:
        while True:
            async with UnixConnection(await accept(listener)) as conn:
                await conn.receive()
                if reply is not None:
                    await conn.send(reply)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            yield
            tg.cancel_scope.cancel()
    finally:
        listener.close()


def in_thread(func, *args, **kw):  # type: ignore[no-untyped-def]
    return anyio.to_thread.run_sync(lambda: func(*args, **kw))


class TestNothingListening:
    def test_missing_socket_file(self, sock: Path) -> None:
        """A missing socket file says no supervisor listens there and how to start one."""
        with pytest.raises(NotListening) as info:
            request(sock, "status")
        assert str(info.value) == (f"no supervisor is listening at {sock} (no socket file); start one "
                                   "with `actorsup run CONFIG`, or point --socket / -c at a running one")
        assert info.value.path == str(sock)

    def test_refused_connection(self, sock: Path) -> None:
        """A socket file left by a dead supervisor is reported as refused."""
        dead = socket.socket(socket.AF_UNIX)
        dead.bind(str(sock))
        dead.close()
        with pytest.raises(NotListening, match=r"\(connection refused\)"):
            ControlClient(sock)

    async def test_async_client_too(self, sock: Path) -> None:
        """arequest raises the same NotListening."""
        with pytest.raises(NotListening):
            await arequest(sock, "status")

    def test_errors_pickle(self, sock: Path) -> None:
        """Control errors survive pickling with their fields."""
        for err in (NotListening(sock, "x"), RequestFailed("stop", "unknown_actor", "no"),
                    NoReply(sock, "shutdown"), SocketInUse(sock)):
            copy = pickle.loads(pickle.dumps(err))
            assert type(copy) is type(err) and str(copy) == str(err)


class TestRequests:
    async def test_request_returns_the_result(self, sock: Path) -> None:
        """request() returns the reply's result."""
        target = FakeTarget()
        async with serving(target, sock):
            rows = await in_thread(request, sock, "status")
        assert rows == target.status()

    async def test_error_reply_raises_request_failed(self, sock: Path) -> None:
        """An error reply becomes RequestFailed with the command, code and message."""
        async with serving(FakeTarget(), sock):
            with pytest.raises(RequestFailed) as info:
                await in_thread(request, sock, "stop", name="ghost")
        assert (info.value.cmd, info.value.code, info.value.message) == (
            "stop", "unknown_actor", "no actor or cron task named 'ghost'; known names: "
            "actor-000, actor-001, actor-002")

    async def test_async_request(self, sock: Path) -> None:
        """arequest returns the result and raises RequestFailed like the blocking client."""
        async with serving(FakeTarget(), sock):
            with anyio.fail_after(5):
                assert (await arequest(sock, "ping"))["protocol"] == 1
                with pytest.raises(RequestFailed, match=r"^unknown command"):
                    await arequest(sock, "nope")

    async def test_stream_yields_item_lines(self, sock: Path) -> None:
        """stream() checks the header, then yields each line until the server ends the stream."""
        target = FakeTarget()
        target.log("a")
        target.log("b")
        async with serving(target, sock):
            def read() -> list[bytes]:
                with ControlClient(sock, timeout=5) as client:
                    return list(client.stream("logs", follow=True))

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    result: list[list[bytes]] = []
                    tg.start_soon(lambda: _collect(result, read))
                    while not target._followers:
                        await anyio.sleep(0.005)
                    target.end_streams()
        assert result == [[target.logs[0] + b"\n", target.logs[1] + b"\n"]]


async def _collect(into: list, func) -> None:  # type: ignore[no-untyped-def,type-arg]
    into.append(await anyio.to_thread.run_sync(func))


class TestBrokenServers:
    async def test_hang_up_without_reply(self, sock: Path) -> None:
        """A server that closes without answering raises NoReply."""
        async with rogue(sock, None):
            with pytest.raises(NoReply, match=r"closed the connection without replying to 'shutdown'"):
                await in_thread(request, sock, "shutdown", timeout=5)

    async def test_non_json_reply(self, sock: Path) -> None:
        """A reply that is not JSON is a ControlError that quotes it."""
        async with rogue(sock, b"HTTP/1.1 400 Bad Request\r\n"):
            with pytest.raises(ControlError, match=r"sent a reply that is not JSON: b'HTTP/1.1 400"):
                await in_thread(request, sock, "status", timeout=5)

    async def test_foreign_protocol(self, sock: Path) -> None:
        """JSON that is not a control reply is reported as another protocol."""
        async with rogue(sock, b'{"hello": 1}\n'):
            with pytest.raises(ControlError, match=r"does not speak the actorsup control protocol"):
                await in_thread(request, sock, "status", timeout=5)

    async def test_reply_timeout(self, sock: Path) -> None:
        """A server that never answers trips the client's timeout with a clear message."""
        listener = socket.socket(socket.AF_UNIX)
        with listener:
            listener.bind(str(sock))
            listener.listen()  # accepts (in the backlog) but never answers
            with pytest.raises(ControlError, match=r"did not answer 'status' within 0.05s"):
                await in_thread(request, sock, "status", timeout=0.05)
