"""Real child processes under a real Supervisor: crashes, hangs, kills, lossless logs."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import anyio
import psutil
import pytest

from supervisor.lifecycle._states import ActorState
from tests import harness
from tests.harness import running_supervisor

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
T = "tests.sample_actors:"


@pytest.fixture(autouse=True, params=["forkserver", "spawn"])
def spawner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with both spawners: children forked by the template, and spawned ones."""
    make_config = harness.make_config

    def with_spawner(actors: Any, cron: Any = None, **supervisor: Any) -> Any:
        return make_config(actors, cron, **{"spawner": request.param, **supervisor})

    monkeypatch.setattr(harness, "make_config", with_spawner)
    return str(request.param)


class TestRestarts:
    async def test_crash_leads_to_restart(self, tmp_path) -> None:
        """An exception in run() exits non-zero, is logged with its traceback, and the actor restarts."""
        actors = {"c": {"target": T + "CrashOnce", "args": {"marker": str(tmp_path / "m")}}}
        async with running_supervisor(actors) as (sup, log):
            await log.wait_for("crashonce.second_life")
            exited = log.find("actor.exited", actor="c")[0]
            assert exited["reason"] == "crash" and exited["exit_code"] == 1
            assert "boom on first life" in log.find("actor.run_failed", actor="c")[0]["error"]
            assert log.find("actor.restarting", actor="c")[0]["attempt"] == 1
            started = log.find("actor.started", actor="c")
            assert [e["restarts"] for e in started] == [0, 1]
            assert sup.handles["c"].state is ActorState.RUNNING

    async def test_sigkill_of_child_leads_to_restart(self) -> None:
        """A child killed by SIGKILL is logged with the signal's name and replaced."""
        async with running_supervisor({"s": {"target": T + "Steady"}}) as (_sup, log):
            first = (await log.wait_for("actor.started", actor="s"))[0]["pid"]
            os.kill(first, signal.SIGKILL)
            second = (await log.wait_for("actor.started", actor="s", count=2))[1]["pid"]
            assert second != first
            exited = log.find("actor.exited", actor="s")[0]
            assert exited["signal"] == "SIGKILL" and exited["reason"] == "crash"
            assert "exit_code" not in exited

    async def test_blocked_loop_is_a_heartbeat_timeout(self, tmp_path) -> None:
        """time.sleep() inside run() stops the beats; the actor is killed and restarted."""
        actors = {"b": {"target": T + "BlockLoop", "args": {"marker": str(tmp_path / "m")},
                        "heartbeat_interval": 0.1, "heartbeat_timeout": 1.0}}
        async with running_supervisor(actors) as (_sup, log):
            await log.wait_for("blockloop.second_life")
            timeout = log.find("actor.heartbeat_timeout", actor="b")[0]
            assert 1.0 <= timeout["last_beat_age"] < 1.0 + 0.1 + 0.5  # timeout + one tick + slack
            assert log.find("actor.exited", actor="b")[0]["reason"] == "heartbeat_timeout"

    async def test_one_hang_is_one_timeout_event(self, tmp_path) -> None:
        """A hung actor gives exactly one timeout event (the handle's), never the monitor's as well."""
        actors = {"b": {"target": T + "BlockLoop", "args": {"marker": str(tmp_path / "m")},
                        "heartbeat_interval": 0.1, "heartbeat_timeout": 1.0,
                        "backoff_initial": 1.0, "backoff_max": 1.0}}
        async with running_supervisor(actors, heartbeat_interval=0.1) as (sup, log):
            # The monitor ticks every 0.1 s through the >= 0.5 s backoff after the hang.
            await log.wait_for("blockloop.second_life")
            assert len(log.find("actor.heartbeat_timeout", actor="b")) == 1
            assert log.find("component.heartbeat_timeout") == []
            status = sup.heartbeat_status()["components"]["b"]
            assert status["restarts"] == 1 == sup.status()[0]["restarts"]
            assert [e["error"] for e in status["errors"]] == ["heartbeat_timeout (SIGKILL)"]

    async def test_a_stalled_supervisor_kills_no_healthy_actor(self) -> None:
        """3 s with the supervisor's loop blocked: beats wait in the channels, nobody is timed out."""
        actors = {f"s{i}": {"target": T + "Steady", "heartbeat_interval": 0.2, "heartbeat_timeout": 1.0}
                  for i in range(4)}
        async with running_supervisor(actors) as (sup, log):
            for name in actors:
                await log.wait_for("steady.up", actor=name)
            time.sleep(3)  # the supervisor's whole event loop stops here, as under SIGSTOP
            (stalled,) = await log.wait_for("supervisor.stalled")
            assert stalled["gap"] >= 2.5
            with anyio.fail_after(5):  # fresh beats from every actor after the stall
                while not all((b := h.beats) is not None and b.age(sup.clock.now()) < 0.3
                              for h in sup.handles.values()):
                    await anyio.sleep(0.05)
            assert log.find("actor.heartbeat_timeout") == []
            assert len(log.find("supervisor.stalled")) == 1
            assert all(h.restarts == 0 for h in sup.handles.values())

    async def test_handshake_timeout_takes_the_restart_path(self) -> None:
        """A constructor slower than start_timeout is errored like a crash."""
        actors = {"slow": {"target": T + "SlowInit", "args": {"seconds": 30}, "start_timeout": 0.5,
                           "max_restarts": 0}}
        async with running_supervisor(actors) as (_sup, log):
            await log.wait_for("actor.failed", actor="slow")
            assert log.find("actor.errored", actor="slow")[0]["reason"] == "handshake_timeout"

    async def test_restart_intensity_leads_to_failed(self) -> None:
        """A permanent actor that keeps exiting goes to failed after max_restarts; others live on."""
        actors = {
            "done": {"target": T + "Completes", "max_restarts": 2, "backoff_initial": 0.01},
            "s": {"target": T + "Steady"},
        }
        async with running_supervisor(actors) as (sup, log):
            failed = (await log.wait_for("actor.failed", actor="done"))[0]
            assert failed["restarts"] == 2 and failed["window"] == 60.0
            assert [e["reason"] for e in log.find("actor.errored", actor="done")] == ["completed"] * 3
            assert sup.handles["s"].state is ActorState.RUNNING

    async def test_transient_clean_exit_is_not_restarted(self) -> None:
        """A transient actor whose run() returns is stopped, not restarted."""
        async with running_supervisor({"t": {"target": T + "Completes", "restart": "transient"}}) as (_sup, log):
            await log.wait_for("actor.stopped", actor="t")
            assert log.find("actor.restarting", actor="t") == []
            assert log.find("actor.exited", actor="t")[0]["reason"] == "completed"

    async def test_garbage_frame_errors_only_that_actor(self) -> None:
        """Bytes that are not a frame error the writer; the supervisor and other actors carry on."""
        actors = {"g": {"target": T + "GarbageWriter", "max_restarts": 0}, "s": {"target": T + "Steady"}}
        async with running_supervisor(actors) as (sup, log):
            error = (await log.wait_for("actor.protocol_error", actor="g"))[0]
            assert "exceeds" in error["error"] or "undecodable" in error["error"]
            await log.wait_for("actor.failed", actor="g")
            assert log.find("actor.exited", actor="g")[0]["reason"] == "protocol_error"
            with anyio.fail_after(20):  # it may start later than g fails
                await sup.wait_for_state("s", ActorState.RUNNING)
            assert log.find("actor.exited", actor="s") == []

    @pytest.mark.parametrize("channel_ring", ["128KiB", 0], ids=["ring", "socket"])
    async def test_the_event_before_garbage_is_never_lost(self, channel_ring: str | int) -> None:
        """Ten lives that each log an event and then write garbage: all ten events arrive."""
        lives = 10
        actors = {"g": {"target": T + "LogsThenGarbage", "max_restarts": lives, "backoff_initial": 0.01,
                        "backoff_max": 0.01}}
        async with running_supervisor(actors, channel_ring=channel_ring) as (_sup, log):
            errors = await log.wait_for("actor.protocol_error", actor="g", count=lives)
            events = log.find("garbage.next", actor="g")
            assert {e["pid"] for e in errors} <= {e["pid"] for e in events}

    async def test_task_actor_crash_restarts_only_itself(self, tmp_path) -> None:
        """A kind=task actor that raises is restarted in-process; a process actor is undisturbed."""
        actors = {
            "t": {"target": T + "CrashOnce", "kind": "task", "args": {"marker": str(tmp_path / "m")}},
            "s": {"target": T + "Steady"},
        }
        async with running_supervisor(actors) as (_sup, log):
            await log.wait_for("crashonce.second_life", actor="t")
            await log.wait_for("actor.started", actor="s")
            assert log.find("actor.started", actor="t")[1]["pid"] == os.getpid()
            assert len(log.find("actor.started", actor="s")) == 1
            assert log.find("actor.exited", actor="s") == []


class TestStopping:
    async def test_stop_escalates_to_sigkill(self) -> None:
        """A child ignoring SIGTERM is killed after stop_timeout, and the step is logged."""
        actors = {"i": {"target": T + "IgnoresSigterm", "stop_timeout": 0.3, "heartbeat_timeout": 30}}
        async with running_supervisor(actors) as (sup, log):
            await log.wait_for("ignores.up")
            await sup.stop_actor("i")
            escalation = log.find("actor.stop_timeout", actor="i")[0]
            assert escalation["stop_timeout"] == 0.3 and "raise stop_timeout" in escalation["hint"]
            assert log.find("actor.exited", actor="i")[0]["signal"] == "SIGKILL"
            assert sup.handles["i"].state is ActorState.STOPPED


    async def test_a_stopped_actor_shows_no_stale_figures(self) -> None:
        """After a stop, status() has no pid and no RSS of the process that is gone."""
        async with running_supervisor({"s": {"target": T + "Steady"}}) as (sup, log):
            await log.wait_for("steady.up")
            with anyio.fail_after(10):
                while sup.status()[0]["rss"] is None:  # sampled on the first beat
                    await anyio.sleep(0.05)
            await sup.stop_actor("s")
            row = sup.status()[0]
            assert row["state"] == "stopped" and row["rss"] is None and row["pid"] is None

    async def test_grandchild_dies_with_its_actor(self) -> None:
        """Killing an actor also kills the grandchildren in its process group."""
        async with running_supervisor({"g": {"target": T + "Grandparent"}}) as (_sup, log):
            started = (await log.wait_for("grandchild.started"))[0]
            grandchild = psutil.Process(started["grandchild"])
            os.kill(started["pid"], signal.SIGKILL)
            await log.wait_for("actor.started", actor="g", count=2)
            _, alive = await anyio.to_thread.run_sync(lambda: psutil.wait_procs([grandchild], timeout=10))
            assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
            # the second life's grandchild goes with the graceful shutdown


class TestLosslessLogs:
    @pytest.mark.parametrize("channel_ring", ["128KiB", "4KiB", 0], ids=["ring", "small-ring", "socket"])
    async def test_os_exit_after_n_lines_delivers_all(self, channel_ring: str | int) -> None:
        """Every line logged before os._exit arrives: structlog, print, stdlib logging, raw fds.

        Through the shared-memory ring (a 4 KiB one fills up and blocks the child), and with
        ``channel_ring = 0`` through the socket alone.
        """
        n = 2000
        actors = {"l": {"target": T + "LinesThenExit", "args": {"n": n}, "restart": "temporary"}}
        async with running_supervisor(actors, channel_ring=channel_ring) as (_sup, log):
            await log.wait_for("actor.stopped", actor="l")
            lines = log.find("line", actor="l")
            assert [e["i"] for e in lines] == list(range(n))
            pid = lines[0]["pid"]
            assert all(e["pid"] == pid for e in lines)
            assert log.find("printed line", actor="l", stream="stdout")
            assert log.find("raw fd1 line", actor="l", stream="stdout")
            assert log.find("raw fd2 line", actor="l", stream="stderr")
            assert log.find("stdlib line", actor="l")
            assert log.find("actor.exited", actor="l")[0]["exit_code"] == 7


class TestForkedActorProcess:
    async def test_a_forked_process_logs_through_the_socket(self) -> None:
        """A process forked from an actor cannot share the ring: its events come over the socket, and nothing breaks."""
        actors = {"f": {"target": T + "ForkLogs"}}
        async with running_supervisor(actors) as (sup, log):
            (parent,) = await log.wait_for("fork.parent_logged", actor="f")
            (child,) = await log.wait_for("fork.child_logged", actor="f")
            assert child["child"] == parent["child"]
            assert log.find("actor.protocol_error") == []
            assert sup.status()[0]["state"] == "running"


class TestShutdown:
    async def test_independent_actors_stop_concurrently(self) -> None:
        """Shutdown of 20 idle actors signals them all before the first has stopped: one stop, not 20."""
        actors = {f"s{i:02}": {"target": T + "Steady"} for i in range(20)}
        async with running_supervisor(actors, spare_processes=4) as (_sup, log):
            for name in actors:
                await log.wait_for("steady.up", actor=name)
            began = anyio.current_time()
        took = anyio.current_time() - began
        stopping = [e["seq"] for e in log.find("actor.stopping")]
        stopped = [e["seq"] for e in log.find("actor.stopped")]
        assert len(stopping) == len(stopped) == 20
        assert max(stopping) < min(stopped), "a stop waited for another"
        assert took < 5, f"shutdown of 20 idle actors took {took:.2f}s"

    async def test_nothing_starts_once_a_shutdown_began(self) -> None:
        """start, restart and reload during a shutdown are refused with a one-line reason."""
        from supervisor.exceptions import ControlError

        async with running_supervisor({"s": {"target": T + "Steady"}}) as (sup, log):
            await log.wait_for("steady.up")
            sup.shutdown_nowait()
            for call in (lambda: sup.start_actor("s"), lambda: sup.restart_actor("s"), lambda: sup.reload(sup.config)):
                with pytest.raises(ControlError, match=r"^cannot \w+.*: the supervisor is shutting down$"):
                    await call()
