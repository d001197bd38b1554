"""The control server, in-process, against a fake target over a real Unix socket."""

from __future__ import annotations

import json
import os
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from structlog.testing import capture_logs

from supervisor.control import BadSocketPath, ControlServer, PeerCred, SocketInUse, peer_credentials
from supervisor.control._sock import UnixConnection, connect
from supervisor.control.testing import FakeTarget, make_rows
from supervisor.exceptions import ConfigError

pytestmark = pytest.mark.anyio


@pytest.fixture
def sock() -> Iterator[Path]:
    # A short directory: AF_UNIX paths are limited to 107 bytes.
    with tempfile.TemporaryDirectory(prefix="ctl-", dir="/tmp") as d:
        yield Path(d) / "s.sock"


@asynccontextmanager
async def serving(target: Any, path: Path, **kw: Any) -> AsyncIterator[ControlServer]:
    server = ControlServer(target, path, **kw)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        yield server
        tg.cancel_scope.cancel()


class Conn:
    """A raw protocol client: bytes out, decoded lines in."""

    def __init__(self, stream: UnixConnection) -> None:
        self.stream = stream
        self.reader = BufferedByteReceiveStream(stream)

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path) -> AsyncIterator[Conn]:
        async with await connect(path) as stream:
            yield cls(stream)

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def line(self) -> Any:
        with anyio.fail_after(5):
            return json.loads(await self.reader.receive_until(b"\n", 10**8))

    async def ask(self, **request: Any) -> Any:
        await self.send(json.dumps(request).encode() + b"\n")
        return await self.line()

    async def eof(self) -> bool:
        """True once the server has closed the connection (data before EOF is skipped)."""
        with anyio.fail_after(5):
            try:
                while True:
                    await self.reader.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return True


async def ask(path: Path, **request: Any) -> Any:
    async with Conn.open(path) as conn:
        return await conn.ask(**request)


async def poll(predicate: Any) -> None:
    """Wait (bounded) for a condition that depends on socket I/O in another task."""
    with anyio.fail_after(5):
        while not predicate():
            await anyio.sleep(0.005)


class TestSocketFile:
    async def test_socket_is_created_with_mode_0600(self, sock: Path) -> None:
        """The socket file is owner-only read/write."""
        async with serving(FakeTarget(), sock):
            assert stat.S_ISSOCK(sock.stat().st_mode)
            assert stat.S_IMODE(sock.stat().st_mode) == 0o600

    async def test_missing_parent_folder_is_created_owner_only(self, sock: Path) -> None:
        """A missing parent folder of the socket is created with mode 0700."""
        path = sock.parent / "run" / "s.sock"
        async with serving(FakeTarget(), path):
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    async def test_socket_file_is_removed_on_exit(self, sock: Path) -> None:
        """Cancelling the server removes its socket file."""
        async with serving(FakeTarget(), sock):
            pass
        assert not sock.exists()

    async def test_a_replaced_socket_file_is_left_alone(self, sock: Path) -> None:
        """On exit the server removes only its own socket, not a successor's file."""
        async with serving(FakeTarget(), sock):
            sock.unlink()
            sock.write_text("someone else's")
        assert sock.read_text() == "someone else's"

    async def test_stale_socket_is_removed(self, sock: Path) -> None:
        """A socket file nobody listens on is replaced, and that is logged."""
        dead = socket.socket(socket.AF_UNIX)
        dead.bind(str(sock))
        dead.close()
        with capture_logs() as logs:
            async with serving(FakeTarget(), sock):
                assert (await ask(sock, cmd="ping"))["ok"] is True
        assert {"event": "control.stale_socket_removed", "path": str(sock),
                "log_level": "info"} in logs

    async def test_live_supervisor_is_not_displaced(self, sock: Path) -> None:
        """A second server on a path a live one answers on refuses to start."""
        async with serving(FakeTarget(), sock):
            with pytest.raises(SocketInUse, match=r"^control socket .* is in use by another running "
                               r"supervisor; stop it with `actorsup shutdown --socket "):
                await ControlServer(FakeTarget(), sock).serve()
            assert (await ask(sock, cmd="ping"))["ok"] is True

    async def test_a_regular_file_is_not_replaced(self, sock: Path) -> None:
        """A non-socket file at the path is an error, not something to delete."""
        sock.write_text("data")
        with pytest.raises(BadSocketPath, match=r": it exists and is not a socket \(it is never deleted"):
            await ControlServer(FakeTarget(), sock).serve()
        assert sock.read_text() == "data"

    async def test_too_long_path_is_a_clear_error(self, sock: Path) -> None:
        """A path over the AF_UNIX limit names the limit and the setting to change."""
        path = sock.parent / ("x" * 120)
        with pytest.raises(BadSocketPath, match=r"Unix sockets allow at most 107; set another "
                           r"\[supervisor\] control_socket"):
            await ControlServer(FakeTarget(), path).serve()

    async def test_a_folder_that_cannot_be_made_is_a_clear_error(self, sock: Path) -> None:
        """A parent folder that cannot be created (here: under a regular file) is a BadSocketPath."""
        sock.write_text("a file, not a folder")
        with pytest.raises(BadSocketPath, match=r"^control socket .*/s.sock/run/c.sock: cannot create "
                           r"its folder .*/s.sock/run \(.*\); set another \[supervisor\] control_socket"):
            await ControlServer(FakeTarget(), sock / "run" / "c.sock").serve()

    async def test_listening_is_logged(self, sock: Path) -> None:
        """control.listening names the path."""
        with capture_logs() as logs:
            async with serving(FakeTarget(), sock):
                pass
        events = [e["event"] for e in logs]
        assert events[0] == "control.listening" and logs[0]["path"] == str(sock)
        assert events[-1] == "control.stopped"


class TestPeerCheck:
    async def test_kernel_reports_our_own_credentials(self) -> None:
        """peer_credentials reads pid, uid and gid of the other end from SO_PEERCRED."""
        a, b = socket.socketpair(socket.AF_UNIX)
        with a, b:
            assert peer_credentials(a) == PeerCred(os.getpid(), os.getuid(), os.getgid())

    async def test_same_uid_is_served(self, sock: Path) -> None:
        """A client of the supervisor's own uid gets answers (the real SO_PEERCRED path)."""
        async with serving(FakeTarget(), sock):
            assert (await ask(sock, cmd="ping"))["result"]["pid"] == os.getpid()

    async def test_foreign_uid_is_refused(self, sock: Path) -> None:
        """A client of another uid gets a forbidden reply, then EOF, and a warning is logged."""
        foreign = PeerCred(4242, os.getuid() + 1, 0)
        with capture_logs() as logs:
            async with serving(FakeTarget(), sock, peercred=lambda s: foreign), Conn.open(sock) as conn:
                reply = await conn.ask(cmd="status")
                assert reply == {"ok": False, "code": "forbidden", "error":
                                 f"peer uid {os.getuid() + 1} may not control this supervisor "
                                 f"(only uid {os.getuid()}); run the command as that user"}
                assert await conn.eof()
        refused = [e for e in logs if e["event"] == "control.refused"]
        assert refused == [{"event": "control.refused", "reason": "foreign uid", "peer_pid": 4242,
                            "peer_uid": os.getuid() + 1, "uid": os.getuid(), "log_level": "warning"}]

    async def test_failed_credential_lookup_is_refused(self, sock: Path) -> None:
        """If the peer's credentials cannot be read, the connection is closed unserved."""
        def broken(s: socket.socket) -> PeerCred:
            raise ValueError("no creds")

        async with serving(FakeTarget(), sock, peercred=broken), Conn.open(sock) as conn:
            await conn.send(b'{"cmd": "status"}\n')
            assert await conn.eof()


class TestCommands:
    async def test_ping(self, sock: Path) -> None:
        """ping answers the supervisor's pid and the protocol version."""
        async with serving(FakeTarget(), sock):
            assert await ask(sock, cmd="ping") == {"ok": True, "result": {"pid": os.getpid(), "protocol": 1}}

    async def test_status_rows(self, sock: Path) -> None:
        """status returns one row per actor with every documented key."""
        target = FakeTarget(make_rows(200))
        async with serving(target, sock):
            reply = await ask(sock, cmd="status")
        assert reply["ok"] is True and len(reply["result"]) == 200
        assert set(reply["result"][0]) == {"name", "kind", "state", "pid", "uptime", "restarts",
                                           "last_beat_age", "cpu_percent", "rss", "last_error"}
        assert reply["result"][0] == make_rows(1)[0]

    async def test_heartbeat_status_shape(self, sock: Path) -> None:
        """heartbeat_status passes the status/counts/components document through."""
        target = FakeTarget()
        async with serving(target, sock):
            reply = await ask(sock, cmd="heartbeat_status")
        assert reply == {"ok": True, "result": target.heartbeat_status()}
        assert set(reply["result"]) == {"status", "counts", "components"}

    @pytest.mark.parametrize("cmd, state", [("start", "running"), ("stop", "stopped"),
                                            ("restart", "running")])
    async def test_lifecycle_commands(self, sock: Path, cmd: str, state: str) -> None:
        """start/stop/restart call the target with the name and answer a null result."""
        target = FakeTarget()
        async with serving(target, sock):
            assert await ask(sock, cmd=cmd, name="actor-001") == {"ok": True, "result": None}
        assert target.calls == [(cmd, "actor-001")]
        assert target.rows["actor-001"]["state"] == state

    async def test_unknown_actor(self, sock: Path) -> None:
        """A name the supervisor does not have is an unknown_actor error."""
        async with serving(FakeTarget(), sock):
            reply = await ask(sock, cmd="restart", name="nope")
        assert reply == {"ok": False, "code": "unknown_actor", "error": "no actor or cron task named 'nope'; "
                         "known names: actor-000, actor-001, actor-002"}

    async def test_cron_trigger_on_an_actor_says_what_it_is(self, sock: Path) -> None:
        """cron_trigger naming an actor says it is an actor, not that the name is unknown."""
        async with serving(FakeTarget(make_rows(10)), sock):
            reply = await ask(sock, cmd="cron_trigger", name="actor-001")
        assert reply == {"ok": False, "code": "not_cron", "error": "cron trigger: 'actor-001' is an actor "
                         "(process), not a cron task; cron tasks: actor-009"}

    async def test_trigger_of_a_stopped_cron_task_is_refused(self, sock: Path) -> None:
        """A stopped cron task is not triggered (no run_id for a run that never happens)."""
        target = FakeTarget(make_rows(10))
        target.rows["actor-009"]["state"] = "stopped"
        async with serving(target, sock):
            reply = await ask(sock, cmd="cron_trigger", name="actor-009")
        assert reply == {"ok": False, "code": "stopped", "error": "cron trigger: 'actor-009' is stopped; "
                         "start it first (`actorsup start actor-009`), then trigger it"}
        assert target.calls == []

    async def test_logs_of_an_unknown_name_is_an_error(self, sock: Path) -> None:
        """logs for a name that is neither running nor in the buffer is unknown_actor, not an empty list."""
        target = FakeTarget()
        target.log("kept", actor="removed-by-reload")
        async with serving(target, sock), Conn.open(sock) as conn:
            assert (await conn.ask(cmd="logs", actor="nosuch"))["code"] == "unknown_actor"
            assert (await conn.ask(cmd="logs", actor="removed-by-reload"))["ok"] is True
            assert await conn.ask(cmd="logs", actor="actor-001") == {"ok": True, "result": []}
            assert await conn.ask(cmd="logs", actor="removed-by-reload", n=0) == {"ok": True, "result": []}

    async def test_reload_diff(self, sock: Path) -> None:
        """reload answers the added, removed and changed names."""
        target = FakeTarget()
        target.reload_result = {"added": ["a"], "removed": ["b"], "changed": ["c"]}
        async with serving(target, sock):
            assert await ask(sock, cmd="reload") == {"ok": True, "result": target.reload_result}

    async def test_reload_with_invalid_config(self, sock: Path) -> None:
        """An invalid new config is a config_error that names the problem and keeps running."""
        target = FakeTarget()
        target.reload_error = ConfigError("actorsup.toml", "actors.x.heartbeat_timeout",
                                          'expected a number > 0, got "soon"')
        async with serving(target, sock):
            reply = await ask(sock, cmd="reload")
            assert (await ask(sock, cmd="ping"))["ok"] is True
        assert reply == {"ok": False, "code": "config_error", "error":
                         'actorsup.toml: actors.x.heartbeat_timeout: expected a number > 0, '
                         'got "soon"; the running config is kept'}

    async def test_shutdown(self, sock: Path) -> None:
        """shutdown asks the target to shut down and then replies."""
        target = FakeTarget()
        async with serving(target, sock):
            assert await ask(sock, cmd="shutdown") == {"ok": True, "result": None}
        assert target.shutdown_requested

    async def test_logs_tail(self, sock: Path) -> None:
        """logs returns the buffered lines as JSON objects, filtered by actor and count."""
        target = FakeTarget()
        target.log("one", actor="actor-000")
        target.log("two", actor="actor-001")
        target.log("three", actor="actor-000")
        async with serving(target, sock):
            everything = await ask(sock, cmd="logs")
            last = await ask(sock, cmd="logs", n=1, actor="actor-000")
            none = await ask(sock, cmd="logs", n=0)
        assert [e["event"] for e in everything["result"]] == ["one", "two", "three"]
        assert last["result"] == [json.loads(target.logs[2])]
        assert none == {"ok": True, "result": []}

    async def test_unparseable_log_line_does_not_break_the_reply(self, sock: Path) -> None:
        """A log line that is not JSON is wrapped instead of corrupting the reply."""
        target = FakeTarget()
        target.logs.append(b'{"broken": ')
        async with serving(target, sock):
            reply = await ask(sock, cmd="logs")
        assert reply["result"] == [{"event": "control.unparseable_log_line", "raw": '{"broken":'}]

    async def test_cron_list_and_trigger(self, sock: Path) -> None:
        """cron_list returns the task rows; cron_trigger answers the run_id."""
        target = FakeTarget(make_rows(10))
        async with serving(target, sock):
            listed = await ask(sock, cmd="cron_list")
            triggered = await ask(sock, cmd="cron_trigger", name="actor-009")
        assert [row["name"] for row in listed["result"]] == ["actor-009"]
        assert triggered == {"ok": True, "result": {"run_id": "actor-009-1"}}

    async def test_several_requests_share_a_connection(self, sock: Path) -> None:
        """A connection serves requests one after another until the client hangs up."""
        async with serving(FakeTarget(), sock), Conn.open(sock) as conn:
            for _ in range(3):
                assert (await conn.ask(cmd="status"))["ok"] is True
            assert (await conn.ask(cmd="nope"))["code"] == "unknown_command"
            assert (await conn.ask(cmd="ping"))["ok"] is True

    async def test_target_crash_is_an_internal_error(self, sock: Path) -> None:
        """An unexpected exception in the target is reported, logged, and serving goes on."""
        class Broken(FakeTarget):
            def status(self) -> list[dict[str, Any]]:
                raise RuntimeError("boom")

        with capture_logs() as logs:
            async with serving(Broken(), sock):
                reply = await ask(sock, cmd="status")
                assert (await ask(sock, cmd="ping"))["ok"] is True
        assert reply == {"ok": False, "code": "internal",
                         "error": "status failed: RuntimeError: boom; see the supervisor's log"}
        assert any(e["event"] == "control.command_failed" for e in logs)

    async def test_not_implemented_is_unsupported(self, sock: Path) -> None:
        """A target that does not implement a command answers unsupported."""
        class NoCron(FakeTarget):
            def cron_list(self) -> list[dict[str, Any]]:
                raise NotImplementedError

        async with serving(NoCron(), sock):
            reply = await ask(sock, cmd="cron_list")
        assert reply == {"ok": False, "code": "unsupported",
                         "error": "cron_list is not supported by this supervisor"}

    async def test_mutating_commands_are_logged(self, sock: Path) -> None:
        """Each state-changing request is logged as control.command with the peer pid."""
        with capture_logs() as logs:
            async with serving(FakeTarget(), sock):
                await ask(sock, cmd="stop", name="actor-000")
        assert {"event": "control.command", "cmd": "stop", "name": "actor-000",
                "peer_pid": os.getpid(), "log_level": "info"} in logs


class TestLimits:
    async def test_oversize_request_gets_an_error_and_is_closed(self, sock: Path) -> None:
        """A line over 64 KiB gets too_large, the connection closes, the server keeps serving."""
        with capture_logs() as logs:
            async with serving(FakeTarget(), sock):
                async with Conn.open(sock) as conn:
                    await conn.send(b'{"cmd": "status", "pad": "' + b"x" * 70_000)
                    assert await conn.line() == {
                        "ok": False, "code": "too_large",
                        "error": "request exceeds 65536 bytes (newline included); the connection is closed"}
                    assert await conn.eof()
                assert (await ask(sock, cmd="status"))["ok"] is True
        assert any(e["event"] == "control.request_too_large" for e in logs)

    async def test_limit_is_exact(self, sock: Path) -> None:
        """A line of max_request bytes with its newline passes; one byte more does not."""
        async with serving(FakeTarget(), sock, max_request=100), Conn.open(sock) as conn:
            line = b'{"cmd": "ping"}'
            await conn.send(line + b" " * (99 - len(line)) + b"\n")
            assert (await conn.line())["ok"] is True
            await conn.send(line + b" " * (100 - len(line)) + b"\n")
            assert (await conn.line())["code"] == "too_large"

    async def test_connection_limit(self, sock: Path) -> None:
        """Beyond max_connections, with no idle connection to evict, a client gets busy; a freed slot is reused."""
        async with serving(FakeTarget(), sock, max_connections=1) as server:
            async with Conn.open(sock) as first:
                assert await first.ask(cmd="events") == {"ok": True, "stream": "events"}
                async with Conn.open(sock) as second:
                    reply = await second.line()
                assert reply == {"ok": False, "code": "busy",
                                 "error": "too many control connections (1); retry later"}
            await poll(lambda: server.connections == 0)
            assert (await ask(sock, cmd="ping"))["ok"] is True

    async def test_many_idle_connections_do_not_lock_out_status(self, sock: Path) -> None:
        """300 connections that never send (more than the 256 slots) leave status answering at once."""
        async with serving(FakeTarget(), sock) as server:
            idle = [await connect(sock) for _ in range(300)]
            try:
                await poll(lambda: server.connections >= server.max_connections)
                with anyio.fail_after(2):
                    assert (await ask(sock, cmd="status"))["ok"] is True
            finally:
                for conn in idle:
                    await conn.aclose()

    async def test_newcomer_evicts_the_longest_idle_connection(self, sock: Path) -> None:
        """When every slot is taken, the connection that has waited longest for a request is closed."""
        with capture_logs() as logs:
            async with serving(FakeTarget(), sock, max_connections=2) as server, \
                    Conn.open(sock) as oldest, Conn.open(sock) as newer:
                assert (await oldest.ask(cmd="ping"))["ok"] is True
                assert (await newer.ask(cmd="ping"))["ok"] is True  # newer waited less
                assert (await ask(sock, cmd="status"))["ok"] is True
                assert await oldest.eof()
                assert (await newer.ask(cmd="ping"))["ok"] is True
                assert server.connections <= 2
        assert [e["event"] for e in logs].count("control.evicted") == 1

    async def test_streams_leave_slots_for_requests(self, sock: Path) -> None:
        """Streams may take every slot but a reserve: a further stream gets busy, status still answers."""
        async with serving(FakeTarget(), sock, max_connections=4) as server, AsyncExitStack() as stack:
            for _ in range(3):  # 4 - min(16, 4 // 4) = 3 streams allowed
                conn = await stack.enter_async_context(Conn.open(sock))
                assert await conn.ask(cmd="events") == {"ok": True, "stream": "events"}
            await poll(lambda: server.streams == 3)
            async with Conn.open(sock) as refused:
                assert await refused.ask(cmd="logs", follow=True) == {
                    "ok": False, "code": "busy", "error": "too many open streams (3); the other "
                    "connection slots are kept for requests. Retry later"}
            assert (await ask(sock, cmd="status"))["ok"] is True

    async def test_a_request_trickled_in_slowly_is_cut_off(self, sock: Path) -> None:
        """idle_timeout bounds the whole request line, not the gap between bytes."""
        async with serving(FakeTarget(), sock, idle_timeout=0.3), Conn.open(sock) as conn:
            with anyio.fail_after(5):
                try:
                    for byte in b'{"cmd": "status"':
                        await conn.send(bytes([byte]))
                        await anyio.sleep(0.05)  # pacing: 16 bytes over 0.8 s, each gap < 0.3 s
                except anyio.BrokenResourceError:
                    pass  # the server already closed
            assert await conn.eof()

    async def test_duplicate_cmd_does_not_shut_down(self, sock: Path) -> None:
        """{"cmd":"status","cmd":"shutdown"} is refused with duplicate_key; nothing is shut down."""
        target = FakeTarget()
        async with serving(target, sock), Conn.open(sock) as conn:
            await conn.send(b'{"cmd":"status","cmd":"shutdown"}\n')
            assert (await conn.line())["code"] == "duplicate_key"
            assert (await conn.ask(cmd="ping"))["ok"] is True  # the connection is kept
        assert not target.shutdown_requested and target.calls == []

    async def test_idle_connection_is_closed(self, sock: Path) -> None:
        """A client that sends nothing for idle_timeout seconds is disconnected."""
        async with serving(FakeTarget(), sock, idle_timeout=0.05), Conn.open(sock) as conn:
            await conn.send(b'{"cmd": "sta')
            assert await conn.eof()

    async def test_bad_requests_get_clear_errors(self, sock: Path) -> None:
        """Malformed JSON, unknown commands and bad arguments each get a reply naming the problem."""
        async with serving(FakeTarget(), sock), Conn.open(sock) as conn:
            await conn.send(b"not json\n")
            malformed = await conn.line()
            unknown = await conn.ask(cmd="explode")
            bad = await conn.ask(cmd="logs", n="ten")
            still = await conn.ask(cmd="ping")
        assert malformed["code"] == "bad_request" and "malformed JSON" in malformed["error"]
        assert unknown == {"ok": False, "code": "unknown_command", "error":
                           'unknown command "explode". Accepted commands: ping, status, '
                           "heartbeat_status, start, stop, restart, reload, shutdown, logs, "
                           "events, cron_list, cron_trigger, scale"}
        assert bad == {"ok": False, "code": "bad_argument",
                       "error": "logs: argument 'n' must be an integer or null, got \"ten\""}
        assert still["ok"] is True


class TestConcurrency:
    async def test_half_sent_request_does_not_block_others(self, sock: Path) -> None:
        """A client stuck mid-line holds only its own connection."""
        async with serving(FakeTarget(), sock), Conn.open(sock) as stuck:
            await stuck.send(b'{"cmd": "sta')
            for _ in range(5):
                assert (await ask(sock, cmd="status"))["ok"] is True

    async def test_slow_command_does_not_block_others(self, sock: Path) -> None:
        """While one restart waits on the target, other clients are answered."""
        target = FakeTarget()
        target.gate = anyio.Event()
        async with serving(target, sock), Conn.open(sock) as slow:
            await slow.send(b'{"cmd": "restart", "name": "actor-000"}\n')
            await poll(lambda: target.calls == [("restart", "actor-000")])
            assert (await ask(sock, cmd="status"))["ok"] is True
            target.gate.set()
            assert await slow.line() == {"ok": True, "result": None}

    async def test_client_that_never_reads_is_dropped(self, sock: Path) -> None:
        """A stream client that stops reading is dropped after send_timeout; others are served."""
        target = FakeTarget()
        with capture_logs() as logs:
            async with serving(target, sock, send_timeout=0.05) as server, Conn.open(sock) as deaf:
                await deaf.send(b'{"cmd": "logs", "follow": true, "n": 0}\n')
                await poll(lambda: server.connections == 1 and target._followers)
                pad = "x" * 4000
                # Enough to fill both socket buffers; the follower drops what overflows.
                for i in range(2000):
                    target.log("flood", i=i, pad=pad)
                    if i % 100 == 0:
                        await anyio.sleep(0)
                assert (await ask(sock, cmd="ping"))["ok"] is True
                await poll(lambda: server.connections == 0)
        assert any(e["event"] == "control.client_stuck" for e in logs)


class TestStreams:
    async def test_logs_follow_sends_tail_then_new_lines(self, sock: Path) -> None:
        """logs with follow sends a header, the last n buffered lines, then each new line."""
        target = FakeTarget()
        target.log("old-1")
        target.log("old-2")
        async with serving(target, sock), Conn.open(sock) as conn:
            assert await conn.ask(cmd="logs", follow=True, n=1) == {"ok": True, "stream": "logs"}
            assert (await conn.line())["event"] == "old-2"
            target.log("new")
            assert (await conn.line())["event"] == "new"

    async def test_logs_follow_filters_by_actor(self, sock: Path) -> None:
        """Following one actor's logs shows only that actor's lines."""
        target = FakeTarget()
        async with serving(target, sock), Conn.open(sock) as conn:
            await conn.ask(cmd="logs", follow=True, actor="actor-001")
            target.log("other", actor="actor-000")
            target.log("mine", actor="actor-001")
            assert (await conn.line())["event"] == "mine"

    async def test_follow_unknown_actor_is_an_error(self, sock: Path) -> None:
        """A stream that cannot open answers an error reply instead of a header."""
        async with serving(FakeTarget(), sock):
            reply = await ask(sock, cmd="logs", follow=True, actor="ghost")
        assert reply["code"] == "unknown_actor"

    async def test_events_stream(self, sock: Path) -> None:
        """events sends a header, then each bus event as one JSON line."""
        target = FakeTarget()
        async with serving(target, sock), Conn.open(sock) as conn:
            assert await conn.ask(cmd="events") == {"ok": True, "stream": "events"}
            target.bus.publish({"event": "actor.started", "actor": "a", "pid": 7})
            target.bus.publish({"event": "actor.exited", "actor": "a", "exit_code": 1})
            assert await conn.line() == {"event": "actor.started", "actor": "a", "pid": 7}
            assert await conn.line() == {"event": "actor.exited", "actor": "a", "exit_code": 1}

    async def test_hangup_releases_the_subscription(self, sock: Path) -> None:
        """A client that disconnects from an idle stream frees its subscription at once."""
        target = FakeTarget()
        async with serving(target, sock) as server:
            async with Conn.open(sock) as conn:
                await conn.ask(cmd="events")
                assert len(target.bus._subscribers) == 1
            await poll(lambda: not target.bus._subscribers and server.connections == 0)

    async def test_source_end_closes_the_stream(self, sock: Path) -> None:
        """When the supervisor ends a log stream, the client sees EOF."""
        target = FakeTarget()
        async with serving(target, sock), Conn.open(sock) as conn:
            await conn.ask(cmd="logs", follow=True)
            target.log("last")
            target.end_streams()
            assert (await conn.line())["event"] == "last"
            assert await conn.eof()


class TestPartialTargets:
    async def test_missing_methods_are_unsupported(self, sock: Path) -> None:
        """A target without a command's method answers unsupported, for plain and streaming commands."""
        class Minimal:
            def status(self) -> list[dict[str, Any]]:
                return []

        async with serving(Minimal(), sock):
            replies = [await ask(sock, cmd=cmd) for cmd in ("heartbeat_status", "logs", "events", "cron_list")]
            follow = await ask(sock, cmd="logs", follow=True)
            assert (await ask(sock, cmd="status")) == {"ok": True, "result": []}
        assert [r["code"] for r in [*replies, follow]] == ["unsupported"] * 5
        assert replies[0]["error"] == "heartbeat_status is not supported by this supervisor"
