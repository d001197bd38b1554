"""One run of a command actor (run_command) with real programs: readiness, watchdog, probes, capture, exits."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus

from supervisor.command._launch import CommandProcess
from supervisor.command._run import CommandRun, run_command
from supervisor.command._spec import parse_command_spec
from supervisor.config import SinkSpec
from supervisor.core._clock import MonotonicClock
from supervisor.lifecycle._machine import ChildExited, SpawnFailed
from supervisor.lifecycle._stall import LoopWatch
from supervisor.logs import LogRecord, LogRouter
from tests.fakeclock import FakeClock

pytestmark = pytest.mark.anyio
needs_notify = pytest.mark.skipif(shutil.which("systemd-notify") is None, reason="systemd-notify not installed")


class _Memory:
    def __init__(self) -> None:
        self.spec = SinkSpec(type="stdout")
        self.lines: list[dict[str, Any]] = []
        self.arrived = anyio.Event()  # set at the first line

    def write(self, record: LogRecord) -> None:
        self.lines.append(json.loads(record.line))
        self.arrived.set()

    def write_many(self, level: int, actor: str | None, pieces: list[bytes]) -> None:
        self.lines.extend(json.loads(line) for piece in pieces for line in piece.splitlines())
        self.arrived.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    async def aclose(self) -> None:
        pass


class _JumpClock(FakeClock):
    async def jump(self, seconds: float) -> None:
        """Time passes at once, as for a supervisor that was not running (SIGSTOP, a stalled loop)."""
        self._now += seconds
        await self.advance(0)


class _Hooks:
    """Records every hook call in order; unhealthy stops the run, as the handle's StopRun would."""

    def __init__(self, stop: anyio.Event) -> None:
        self.stop = stop
        self.calls: list[tuple[Any, ...]] = []
        self.called: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)
        self.proc: CommandProcess | None = None
        self._changed = anyio.Event()

    def _note(self, *call: Any) -> None:
        self.calls.append(call)
        self.called[call[0]].set()
        self._changed.set()

    async def until_call(self, *call: Any) -> None:
        """Wait until exactly this call has been made."""
        with anyio.fail_after(15):
            while call not in self.calls:
                self._changed = anyio.Event()
                await self._changed.wait()

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def spawned(self, proc: CommandProcess) -> None:
        self.proc = proc
        self._note("spawned", proc.pid)

    def ready(self, pid: int) -> None:
        self._note("ready", pid)

    def beat(self, now: float) -> None:
        self._note("beat", now)

    def status(self, text: str) -> None:
        self._note("status", text)

    def health(self, ok: bool, error: str | None) -> None:
        self._note("health", ok, error)

    def unhealthy(self, failures: int, error: str) -> None:
        self._note("unhealthy", failures, error)
        self.stop.set()

    def heartbeat_timeout(self, age: float, timeout: float) -> None:
        self._note("heartbeat_timeout", age, timeout)

    def start_timeout(self, timeout: float) -> None:
        self._note("start_timeout", timeout)


@asynccontextmanager
async def _running(
    table: dict[str, Any], clock: Any = None, loop_watch: LoopWatch | None = None, **settings: Any
) -> AsyncIterator[tuple[_Hooks, list[ChildExited | SpawnFailed], anyio.Event, _Memory]]:
    """run_command in the background; yields the hooks, the result (once done), a done event and the log sink."""
    stop = anyio.Event()
    hooks = _Hooks(stop)
    sink = _Memory()
    router = LogRouter([sink], host="h")
    result: list[ChildExited | SpawnFailed] = []
    done = anyio.Event()
    run = CommandRun("app", parse_command_spec(table), **settings)

    async def body() -> None:
        result.append(await run_command(run, router=router, clock=clock or MonotonicClock(), stop=stop,
                                        hooks=hooks, loop_watch=loop_watch))
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(body)
        try:
            yield hooks, result, done, sink
        finally:
            stop.set()
            with anyio.fail_after(15):
                await done.wait()


async def _wait(event: anyio.Event, timeout: float = 15) -> None:
    with anyio.fail_after(timeout):
        await event.wait()


class TestReadiness:
    async def test_without_notify_started_when_the_process_exists(self) -> None:
        """No notify: ready right after spawned; a stop is SIGTERM and the run returns the exit."""
        async with _running({"command": "sleep 30"}) as (hooks, result, done, _):
            await _wait(hooks.called["ready"])
            assert hooks.names() == ["spawned", "ready"]
            hooks.stop.set()
            await _wait(done)
        assert result == [ChildExited(-signal.SIGTERM, None, None, program=True)]

    @pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
    async def test_redis_is_ready_only_after_its_ready_1(self, tmp_path: Path) -> None:
        """redis --supervised systemd: ready comes after its STATUS lines, at READY=1; a stop exits 0."""
        command = (f"redis-server --port 0 --unixsocket {tmp_path}/r.sock --supervised systemd "
                   f"--save '' --dir {tmp_path}")
        async with _running({"command": command, "notify": True}) as (hooks, result, done, sink):
            await _wait(hooks.called["ready"])
            assert hooks.names() == ["spawned", "status", "status", "ready"]
            assert hooks.calls[2] == ("status", "Ready to accept connections")
            hooks.stop.set()
            await _wait(done)
        assert result == [ChildExited(0, None, None, program=True)]
        assert any("ready to accept connections" in e["event"] for e in sink.lines)
        assert all(e["actor"] == "app" and e["pid"] == hooks.calls[0][1] for e in sink.lines)

    async def test_no_ready_within_start_timeout_is_killed(self) -> None:
        """notify = true and no READY=1 within start_timeout: start_timeout, SIGKILL."""
        async with _running({"command": "sleep 30", "notify": True}, start_timeout=0.3) as (hooks, result, done, _):
            await _wait(done)
        assert hooks.names() == ["spawned", "start_timeout"]
        assert result == [ChildExited(-signal.SIGKILL, None, None, program=True)]


@needs_notify
class TestWatchdog:
    async def test_pings_that_stop_hit_the_heartbeat_timeout(self) -> None:
        """READY, three WATCHDOG=1, then silence: heartbeat_timeout from READY, the program SIGKILLed."""
        script = "systemd-notify --ready; for i in 1 2 3; do systemd-notify WATCHDOG=1; done; exec sleep 30"
        async with _running({"command": ["sh", "-c", script], "notify": True}, heartbeat_timeout=0.5,
                            watchdog_from_ready=True) as (hooks, result, done, _):
            await _wait(done)
        assert hooks.names() == ["spawned", "ready", "beat", "beat", "beat", "heartbeat_timeout"]
        _, age, timeout = hooks.calls[-1]
        assert timeout == 0.5 and age >= 0.5 and result == [ChildExited(-signal.SIGKILL, None, None, program=True)]

    async def test_a_program_that_never_pings_is_not_timed_out(self) -> None:
        """heartbeat_timeout not set in the table: the deadline waits for a first WATCHDOG=1 (fake clock)."""
        clock = FakeClock()
        async with _running({"command": ["sh", "-c", "systemd-notify --ready; exec sleep 30"], "notify": True},
                            clock=clock, heartbeat_timeout=1.0) as (hooks, result, done, _):
            await _wait(hooks.called["ready"])
            await clock.advance(100)
            assert "heartbeat_timeout" not in hooks.names()
            hooks.stop.set()
            await _wait(done)
        assert result == [ChildExited(-signal.SIGTERM, None, None, program=True)]

    async def test_the_first_ping_arms_the_deadline(self) -> None:
        """Without watchdog_from_ready, the first WATCHDOG=1 starts the deadline; a miss is then a timeout."""
        clock = FakeClock()
        script = "systemd-notify --ready; systemd-notify WATCHDOG=1; exec sleep 30"
        async with _running({"command": ["sh", "-c", script], "notify": True}, clock=clock,
                            heartbeat_timeout=1.0) as (hooks, result, done, _):
            await _wait(hooks.called["beat"])
            await clock.advance(0.999)
            assert "heartbeat_timeout" not in hooks.names()
            await clock.advance(0.001)
            await _wait(done)
        assert hooks.names()[-1] == "heartbeat_timeout"
        assert result == [ChildExited(-signal.SIGKILL, None, None, program=True)]

    async def test_a_stall_of_the_supervisor_extends_the_deadline(self) -> None:
        """A supervisor stall longer than heartbeat_timeout (seen by the LoopWatch) is not the program's miss."""
        clock = _JumpClock()
        watch = LoopWatch(clock, tick=0.2, tolerance=0.3)
        script = "systemd-notify --ready; systemd-notify WATCHDOG=1; exec sleep 30"
        async with _running({"command": ["sh", "-c", script], "notify": True}, clock=clock, loop_watch=watch,
                            heartbeat_timeout=1.0) as (hooks, result, done, _):
            await _wait(hooks.called["beat"])
            await clock.jump(5.0)
            assert "heartbeat_timeout" not in hooks.names() and watch.stalls == 1
            hooks.stop.set()
            await _wait(done)
        assert result == [ChildExited(-signal.SIGTERM, None, None, program=True)]

    async def test_errno_is_the_exit_error(self) -> None:
        """ERRNO= before a failing exit is the run's error text."""
        async with _running({"command": ["sh", "-c", "systemd-notify ERRNO=2; exit 1"], "notify": True},
                            start_timeout=10) as (_, result, done, _sink):
            await _wait(done)
        assert result == [ChildExited(1, None, "ERRNO=2 (ENOENT: No such file or directory)", program=True)]


class TestExits:
    async def test_program_not_found(self) -> None:
        """A missing program is SpawnFailed with its code and reason; nothing was spawned."""
        async with _running({"command": "no-such-program-x --flag"}) as (hooks, result, done, _):
            await _wait(done)
        assert hooks.calls == [] and result == [
            SpawnFailed("program_not_found", f"program not found: 'no-such-program-x' is not in PATH "
                                             f"({os.environ.get('PATH')})", exited=True)]

    async def test_exits_zero_at_once(self) -> None:
        """`true` exits 0 at once: the run ends with ChildExited(0) (the handle's policy decides the rest)."""
        async with _running({"command": "true"}) as (_, result, done, _sink):
            await _wait(done)
        assert result == [ChildExited(0, None, None, program=True)]

    async def test_ignores_sigterm_escalates_to_sigkill(self) -> None:
        """A program that ignores SIGTERM is SIGKILLed after stop_timeout."""
        async with _running({"command": ["sh", "-c", "trap '' TERM; echo up; exec sleep 30"]},
                            stop_timeout=0.3) as (hooks, result, done, sink):
            await _wait(sink.arrived)  # its first line: the trap is set by then
            hooks.stop.set()
            await _wait(done)
        assert result == [ChildExited(-signal.SIGKILL, None, None, program=True)]

    async def test_json_and_plain_lines_nothing_lost(self) -> None:
        """JSON lines are merged, plain lines stay text, and the last line without a newline arrives."""
        script = (r"""printf '%s\n' '{"msg":"up","level":"warn","pid":7}' plain; """
                  r"""printf '{"event":"bye","code":3}' >&2""")
        async with _running({"command": ["sh", "-c", script]}) as (_, result, done, sink):
            await _wait(done)
        assert result == [ChildExited(0, None, None, program=True)]
        by_event = {e["event"]: e for e in sink.lines}
        assert by_event["up"]["level"] == "warning" and by_event["up"]["app_pid"] == 7
        assert by_event["plain"]["stream"] == "stdout"
        assert by_event["bye"]["code"] == 3 and by_event["bye"]["stream"] == "stderr"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TestProbe:
    async def test_sigstopped_http_server_is_unhealthy_and_stopped(self, tmp_path: Path) -> None:
        """python3 -m http.server with an http probe: healthy, then SIGSTOP, unhealthy after 2 failures, stopped."""
        port = _free_port()
        table = {
            "command": [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                        "--directory", str(tmp_path)],
            "probe": {"http": f"http://127.0.0.1:{port}/", "every": 0.3, "timeout": 0.3, "failures": 2,
                      "initial_delay": 0.3},
        }
        async with _running(table, stop_timeout=0.5) as (hooks, result, done, _):
            await hooks.until_call("health", True, None)
            assert hooks.proc is not None
            os.kill(hooks.proc.pid, signal.SIGSTOP)
            await _wait(hooks.called["unhealthy"])
            await _wait(done)
        assert hooks.calls[-1] == ("unhealthy", 2, "timed out after 0.3s")
        # a stopped process cannot act on SIGTERM
        assert result == [ChildExited(-signal.SIGKILL, None, None, program=True)]


class TestNoticeState:
    async def test_a_late_ready_after_the_start_timeout_is_ignored(self) -> None:
        """A READY=1 read after start_timeout gave up (queued before the SIGKILL) does not mark the run ready."""
        from supervisor.command._notify import Ready
        from supervisor.command._run import _State

        hooks = _Hooks(anyio.Event())
        state = _State(CommandRun("app", parse_command_spec({"command": "x", "notify": True})), FakeClock(), hooks)
        state.proc = SimpleNamespace(pid=4242)  # type: ignore[assignment]  # only its pid is read here
        state.gave_up = True
        state.on_notice(Ready())
        assert hooks.calls == [] and not state.ready.is_set()
