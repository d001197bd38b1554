"""The per-actor sd_notify receiver, fed by real programs: redis-server, systemd-notify, sh."""

from __future__ import annotations

import array
import contextlib
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import psutil
import pytest
import structlog

from supervisor.command._notify import (
    Errno,
    MainPid,
    Notice,
    NotifySocket,
    Ready,
    Reloading,
    Status,
    Stopping,
    Watchdog,
    WatchdogTrigger,
    parse_datagram,
    watchdog_env,
    with_watchdog_pid,
)
from supervisor.core._clock import MonotonicClock
from supervisor.lifecycle._heartbeat import HeartbeatDeadline, wait_for_expiry

pytestmark = pytest.mark.anyio

needs_notify = pytest.mark.skipif(shutil.which("systemd-notify") is None, reason="systemd-notify not installed")
needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")


class TestParseDatagram:
    @pytest.mark.parametrize(
        ("data", "notices"),
        [
            (b"READY=1", [Ready()]),
            (b"READY=1\nSTATUS=Ready to accept connections\n", [Ready(), Status("Ready to accept connections")]),
            (b"WATCHDOG=1", [Watchdog()]),
            (b"WATCHDOG=trigger", [WatchdogTrigger()]),
            (b"STOPPING=1\nRELOADING=1\nMONOTONIC_USEC=5", [Stopping(), Reloading()]),
            (b"STATUS=", [Status("")]),
            (b"STATUS=a=b", [Status("a=b")]),
            (b"MAINPID=4242", [4242]),
            (b"ERRNO=2", [Errno(2)]),
            (b"BARRIER=1", []),
            (b"", []),
        ],
    )
    def test_notices(self, data: bytes, notices: list[object]) -> None:
        """Each known assignment becomes its typed notice, in order; systemd-only keys are dropped."""
        assert parse_datagram(data) == (notices, [])

    @pytest.mark.parametrize(
        ("data", "problem"),
        [
            (b"READY=2", "expected READY=1, got 'READY=2'"),
            (b"WATCHDOG=0", "expected WATCHDOG=1 or WATCHDOG=trigger, got 'WATCHDOG=0'"),
            (b"MAINPID=0", "expected MAINPID= a pid > 0, got 'MAINPID=0'"),
            (b"MAINPID=12x", "expected MAINPID= a pid > 0, got 'MAINPID=12x'"),
            (b"ERRNO=-1", "expected ERRNO= an errno number >= 0, got 'ERRNO=-1'"),
            (b"garbage", "expected KEY=VALUE, got 'garbage'"),
            (b"FROB=1", "unknown key 'FROB' ignored"),
        ],
    )
    def test_problems(self, data: bytes, problem: str) -> None:
        """A line that cannot be used is a problem text, and the rest of the datagram still counts."""
        assert parse_datagram(data + b"\nREADY=1") == ([Ready()], [problem])


class TestEnvironment:
    def test_watchdog_usec_from_heartbeat_timeout(self) -> None:
        """WATCHDOG_USEC is heartbeat_timeout in microseconds; without a timeout only NOTIFY_SOCKET is set."""
        assert watchdog_env("@x", 2.5) == {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "2500000"}
        assert watchdog_env("@x", None) == {"NOTIFY_SOCKET": "@x"}
        with pytest.raises(ValueError, match=r"^heartbeat_timeout must be > 0 \(got 0\)$"):
            watchdog_env("@x", 0)

    def test_watchdog_pid_is_the_programs_own_pid(self) -> None:
        """Through with_watchdog_pid, `env` sees WATCHDOG_PID equal to its pid (the shell execs it)."""
        proc = subprocess.Popen(with_watchdog_pid(["env"]), stdout=subprocess.PIPE, env={"PATH": os.defpath})
        out, _ = proc.communicate(timeout=10)
        assert f"WATCHDOG_PID={proc.pid}" in out.decode().splitlines()


class _Notices(list[Notice]):
    """The notices received so far; :meth:`until` waits for a condition on them."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = anyio.Event()

    def add(self, notice: Notice) -> None:
        self.append(notice)
        self._changed.set()

    async def until(self, done: Callable[[list[Notice]], bool], timeout: float = 10) -> None:
        with anyio.fail_after(timeout):
            while not done(self):
                self._changed = anyio.Event()
                await self._changed.wait()


@asynccontextmanager
async def _receiver(path: Path | None = None) -> AsyncIterator[tuple[NotifySocket, _Notices]]:
    """A serving NotifySocket whose notices are collected."""
    notices = _Notices()
    with NotifySocket("cache", notices.add, path=path) as ns:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ns.serve)
            yield ns, notices
            tg.cancel_scope.cancel()


async def _barrier(ns: NotifySocket) -> None:
    """Send BARRIER=1 with a pipe end, as sd_notify_barrier() does; return once the receiver closed it."""
    read_fd, write_fd = os.pipe()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendmsg([b"BARRIER=1"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [write_fd]))],
                      0, "\0" + ns.address[1:])
        os.close(write_fd)
        write_fd = -1
        os.set_blocking(read_fd, False)
        with anyio.fail_after(10):
            await anyio.wait_readable(read_fd)
            assert os.read(read_fd, 1) == b""
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)


class _Child:
    """A real child in its own session, awaited through a pidfd (no thread, no SIGCHLD handler)."""

    def __init__(self, argv: list[str], env: dict[str, str], *, stdin: bool, stderr: bool) -> None:
        self.popen = subprocess.Popen(
            argv, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stderr=subprocess.PIPE if stderr else subprocess.DEVNULL,
        )
        self.pid = self.popen.pid
        self._pidfd = os.pidfd_open(self.pid)

    async def wait(self) -> int:
        await anyio.wait_readable(self._pidfd)
        return self.popen.wait()

    def write(self, data: bytes) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(data)
        self.popen.stdin.flush()

    async def read_stderr(self) -> bytes:
        assert self.popen.stderr is not None
        await anyio.wait_readable(self.popen.stderr)
        return os.read(self.popen.stderr.fileno(), 4096)

    async def end(self) -> None:
        with anyio.fail_after(10):
            if self.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
            await self.wait()
        for pipe in (self.popen.stdin, self.popen.stderr):
            if pipe is not None:
                pipe.close()
        os.close(self._pidfd)


def _spawn(
    argv: list[str], ns: NotifySocket, heartbeat_timeout: float | None = None, *, stdin: bool = False,
    stderr: bool = False,
) -> _Child:
    """Spawn and watch() at once, with no await between: the child may notify straight away."""
    child = _Child(argv, {**os.environ, **ns.env(heartbeat_timeout)}, stdin=stdin, stderr=stderr)
    ns.watch(child.pid)
    return child


class TestNotifySocket:
    @needs_redis
    async def test_redis_ready_and_status(self, tmp_path: Path) -> None:
        """redis-server --supervised systemd: STATUS lines, then READY=1, then STOPPING=1 on SIGTERM."""
        async with _receiver() as (ns, notices):
            argv = ["redis-server", "--port", "0", "--unixsocket", str(tmp_path / "r.sock"),
                    "--supervised", "systemd", "--save", "", "--dir", str(tmp_path)]
            proc = _spawn(argv, ns)
            try:
                await notices.until(lambda n: Ready() in n)
                assert Status("Ready to accept connections") in notices
                assert notices.index(Status("Ready to accept connections")) < notices.index(Ready())
                proc.popen.send_signal(signal.SIGTERM)
                await notices.until(lambda n: Stopping() in n)
                with anyio.fail_after(10):
                    assert await proc.wait() == 0
            finally:
                await proc.end()
        assert ns.refused == 0

    @needs_notify
    async def test_shell_script_with_systemd_notify(self) -> None:
        """systemd-notify in an actor's script: READY, STATUS and WATCHDOG arrive; its barrier is released."""
        async with _receiver() as (ns, notices):
            script = "systemd-notify --ready --status=up && systemd-notify WATCHDOG=1 && systemd-notify WATCHDOG=1"
            proc = _spawn(["sh", "-c", script], ns)
            try:
                with anyio.fail_after(10):
                    assert await proc.wait() == 0  # each systemd-notify returned: its barrier fd was closed
                await notices.until(lambda n: len(n) >= 4)
                assert notices == [Ready(), Status("up"), Watchdog(), Watchdog()]
            finally:
                await proc.end()
        assert ns.refused == 0

    @needs_notify
    async def test_sender_that_is_not_the_actor_is_refused(self) -> None:
        """A process outside the actor's tree (here a sibling) is refused, logged and counted."""
        async with _receiver() as (ns, notices):
            actor = _spawn(["sleep", "30"], ns)
            try:
                with structlog.testing.capture_logs() as logs:
                    with anyio.fail_after(10):
                        # It claims our pid (its parent) as root may: still not the actor's tree.
                        for pid_arg in ("--pid=self", "--pid=parent"):
                            outsider = await anyio.run_process(
                                ["systemd-notify", pid_arg, "--ready"], env={**os.environ, **ns.env(None)}
                            )
                            assert outsider.returncode == 0
                await anyio.wait_all_tasks_blocked()
                assert notices == []
                assert ns.refused >= 2  # the message and the barrier, at least
                refusals = [e for e in logs if e["event"] == "notify.refused"]
                assert refusals and refusals[0]["actor"] == "cache" and refusals[0]["log_level"] == "warning"
                assert refusals[0]["reason"] == "the sender is not the actor's process or a descendant of it"
            finally:
                await actor.end()

    @needs_notify
    async def test_mainpid_of_a_descendant_moves_the_main_process(self) -> None:
        """MAINPID= of the actor's own background child is honoured; the notices of that child then count."""
        async with _receiver() as (ns, notices):
            proc = _spawn(["sh", "-c", 'sleep 30 & systemd-notify MAINPID=$! && wait'], ns)
            try:
                await notices.until(lambda n: len(n) >= 1)
                [moved] = notices
                assert isinstance(moved, MainPid)
                assert psutil.Process(moved.pid).cmdline() == ["sleep", "30"]
                assert ns.main_pid == moved.pid and ns.refused == 0
            finally:
                await proc.end()

    @needs_notify
    async def test_mainpid_counts_before_the_rest_of_its_datagram(self) -> None:
        """"READY=1\nMAINPID=N" in one datagram: the main process moves first, so READY=1 is N's."""
        async with _receiver() as (ns, notices):
            proc = _spawn(["sh", "-c", "sleep 30 & systemd-notify --ready MAINPID=$! && wait"], ns)
            try:
                await notices.until(lambda n: len(n) >= 2)
                moved, ready = notices
                assert isinstance(moved, MainPid) and isinstance(ready, Ready)
                assert ns.main_pid == moved.pid
            finally:
                await proc.end()

    @needs_notify
    async def test_mainpid_of_a_non_descendant_is_refused(self) -> None:
        """MAINPID= naming a process outside the actor's tree (its parent) is refused; main_pid stays."""
        async with _receiver() as (ns, notices):
            with structlog.testing.capture_logs() as logs:
                proc = _spawn(["sh", "-c", "systemd-notify MAINPID=$PPID READY=1"], ns)
                try:
                    await notices.until(lambda n: Ready() in n)
                    with anyio.fail_after(10):
                        await proc.wait()
                finally:
                    await proc.end()
            assert notices == [Ready()] and ns.main_pid == proc.pid
            assert any(e.get("reason") == f"MAINPID={os.getpid()} is not a descendant of the actor's process"
                       for e in logs)

    @needs_notify
    async def test_double_forked_daemon_in_the_actors_session_is_accepted(self, tmp_path: Path) -> None:
        """A grandchild re-parented away from the actor (a double fork) still speaks for it: same session."""
        script = tmp_path / "daemon.sh"
        script.write_text(
            "#!/bin/sh\n"
            'case "$1" in\n'
            "grandchild)  # wait until orphaned, then notify\n"
            '    while read -r _ _ _ ppid _ < /proc/$$/stat; [ "$ppid" = "$2" ]; do sleep 0.01; done\n'
            "    systemd-notify --ready ;;\n"
            'child) "$0" grandchild $$ & ;;\n'
            '*) "$0" child; exec sleep 30 ;;\n'
            "esac\n"
        )
        script.chmod(0o755)
        async with _receiver() as (ns, notices):
            proc = _spawn([str(script)], ns)
            try:
                await notices.until(lambda n: Ready() in n)
                assert ns.refused == 0
            finally:
                await proc.end()

    @needs_notify
    async def test_a_new_process_disowns_the_old_one(self) -> None:
        """After watch() of a new process, a notice from the previous, still running, process is refused."""
        async with _receiver() as (ns, notices):
            old = _spawn(["sh", "-c", "systemd-notify WATCHDOG=1; read x; systemd-notify READY=1"], ns, stdin=True)
            new = None
            try:
                await notices.until(lambda n: len(n) >= 1)
                new = _spawn(["sleep", "30"], ns)
                old.write(b"go\n")  # now the old process notifies again
                with anyio.fail_after(10):
                    await old.wait()  # systemd-notify returned: its datagrams were handled
                assert notices == [Watchdog()] and ns.refused >= 1
            finally:
                await old.end()
                if new is not None:
                    await new.end()

    @needs_notify
    async def test_watchdog_stops_and_the_heartbeat_deadline_expires(self) -> None:
        """A script pings WATCHDOG=1 three times then hangs: fed to a HeartbeatDeadline, it expires."""
        clock = MonotonicClock()
        timeout = 0.5
        beats = HeartbeatDeadline(timeout, clock.now())

        def on_notice(notice: Notice) -> None:
            if isinstance(notice, Watchdog):
                beats.beat(clock.now())

        with NotifySocket("pinger", on_notice) as ns:
            async with anyio.create_task_group() as tg:
                tg.start_soon(ns.serve)
                script = 'for i in 1 2 3; do systemd-notify WATCHDOG=1; done; echo "$WATCHDOG_USEC" >&2; exec sleep 30'
                proc = _spawn(["sh", "-c", script], ns, timeout, stderr=True)
                try:
                    with anyio.fail_after(10):
                        assert (await proc.read_stderr()).strip() == b"500000"
                        age = await wait_for_expiry(beats, clock)
                    assert beats.beats == 3 and age >= timeout
                finally:
                    await proc.end()
                tg.cancel_scope.cancel()

    @needs_notify
    async def test_path_socket(self, tmp_path: Path) -> None:
        """With a path, NOTIFY_SOCKET is that file, it works the same, and close() removes it."""
        path = tmp_path / "cache.notify"
        async with _receiver(path) as (ns, notices):
            assert ns.address == str(path) and path.is_socket()
            proc = _spawn(["sh", "-c", "systemd-notify --ready"], ns)
            try:
                await notices.until(lambda n: Ready() in n)
            finally:
                await proc.end()
        assert not path.exists()

    async def test_refused_without_a_process_and_when_oversized(self) -> None:
        """No watched process: refused; a datagram above 4096 bytes: refused for its size; fds are closed."""
        async with _receiver() as (ns, notices):
            with structlog.testing.capture_logs() as logs:
                with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                    s.sendto(b"READY=1", "\0" + ns.address[1:])
                    s.sendto(b"STATUS=" + b"x" * 5000, "\0" + ns.address[1:])
                await _barrier(ns)  # returns only once the receiver closed the fd it was sent
            assert notices == [] and ns.refused == 3
            assert [e["reason"] for e in logs] == [
                "the actor has no running process",
                "message longer than 4096 bytes",
                "the actor has no running process",
            ]

    def test_pending_sees_an_unread_datagram(self) -> None:
        """pending() is True while a datagram waits unread, False once it has been read, and after close."""
        with NotifySocket("x", lambda n: None) as ns:
            assert not ns.pending()
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.sendto(b"WATCHDOG=1", "\0" + ns.address[1:])
            assert ns.pending()
            assert ns._sock is not None
            ns._sock.recv(100)
            assert not ns.pending()
        assert not ns.pending()

    async def test_close_wakes_nothing_and_is_idempotent(self) -> None:
        """close() twice is harmless, and serve() on a closed socket is a clear error."""
        ns = NotifySocket("x", lambda n: None)
        ns.close()
        ns.close()
        with pytest.raises(RuntimeError, match="closed"):
            await ns.serve()
