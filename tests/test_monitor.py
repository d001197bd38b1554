"""HeartbeatMonitor: the origin facade's API and the fixes to its flaws, on a fake clock."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest
from anyio.abc import ObjectReceiveStream
from fakeclock import FakeClock
from structlog.testing import capture_logs

from supervisor.core._bus import EventBus
from supervisor.exceptions import SupervisorError, UnknownActor
from supervisor.lifecycle._observers import BeatRecord, HealthRecord, TransitionRecord
from supervisor.lifecycle._states import ActorState
from supervisor.monitor import HeartbeatMonitor


def _drain(stream: ObjectReceiveStream[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    while True:
        try:
            out.append(stream.receive_nowait())
        except anyio.WouldBlock:
            return out


def _named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name]


class TestHeartbeatMonitor:
    @pytest.mark.anyio
    async def test_unknown_component(self) -> None:
        """A never-registered name is "unknown"; feeding it raises UnknownActor."""
        monitor = HeartbeatMonitor(None, clock=FakeClock())
        assert monitor.get_component_status("ghost") == "unknown"
        with pytest.raises(UnknownActor):
            monitor.update_component_heartbeat("ghost")
        with pytest.raises(UnknownActor):
            monitor.mark_component_error("ghost", "x")

    @pytest.mark.anyio
    async def test_empty_system_is_unknown(self) -> None:
        """With no components the overall status is "unknown" with zero counts."""
        status = HeartbeatMonitor(None, clock=FakeClock()).get_system_status()
        assert status["status"] == "unknown"
        assert status["counts"] == {"total": 0, "healthy": 0, "error": 0, "timeout": 0}
        assert status["components"] == {}

    @pytest.mark.anyio
    async def test_component_snapshot(self) -> None:
        """A registered component reports status, beat age and timestamps."""
        clock = FakeClock()
        monitor = HeartbeatMonitor(None, interval=30, clock=clock)
        monitor.register_component("db")
        await clock.advance(12.5)
        snap = monitor.get_component_status("db")
        assert isinstance(snap, dict)
        assert snap["status"] == "healthy"
        assert snap["last_heartbeat_age"] == 12.5
        assert snap["timeout"] == 60
        assert snap["last_heartbeat"] == "2023-11-14T22:13:20.000000Z"
        assert snap["errors"] == [] and snap["error_count"] == 0

    @pytest.mark.anyio
    async def test_timeouts_applied_before_counting(self) -> None:
        """A silent component counts as timeout (not healthy) after 2 x interval."""
        clock = FakeClock()
        monitor = HeartbeatMonitor(None, interval=30, clock=clock)
        monitor.register_component("silent")
        monitor.register_component("beating")
        await clock.advance(30)
        monitor.update_component_heartbeat("beating")
        await clock.advance(29.999)
        assert monitor.get_system_status()["counts"]["timeout"] == 0
        await clock.advance(0.001)
        status = monitor.get_system_status()
        assert status["counts"] == {"total": 2, "healthy": 1, "error": 0, "timeout": 1}
        assert status["status"] == "error"
        assert status["components"]["silent"]["status"] == "timeout"

    @pytest.mark.anyio
    async def test_reads_never_grow_errors(self) -> None:
        """Reading status any number of times leaves the error lists alone."""
        clock = FakeClock()
        monitor = HeartbeatMonitor(None, interval=1, clock=clock)
        monitor.register_component("silent")
        await clock.advance(100)
        for _ in range(50):
            monitor.get_system_status()
            monitor.get_component_status("silent")
        snap = monitor.get_component_status("silent")
        assert snap["errors"] == [] and snap["error_count"] == 0

    @pytest.mark.anyio
    async def test_timeout_recorded_once_per_incident(self) -> None:
        """Ticks record one timeout error per incident, and a beat ends the incident."""
        clock = FakeClock()
        monitor = HeartbeatMonitor(None, interval=1, clock=clock)
        monitor.register_component("c")
        await clock.advance(2)
        for _ in range(5):
            await monitor.tick()
            await clock.advance(1)
        snap = monitor.get_component_status("c")
        assert [e["error"] for e in snap["errors"]] == ["no heartbeat for 2s (timeout 2s)"]
        monitor.update_component_heartbeat("c")
        assert monitor.get_component_status("c")["status"] == "healthy"
        await clock.advance(2)
        await monitor.tick()
        assert monitor.get_component_status("c")["error_count"] == 2

    @pytest.mark.anyio
    async def test_error_list_is_bounded(self) -> None:
        """mark_component_error keeps the last 10 errors and counts them all."""
        monitor = HeartbeatMonitor(None, clock=FakeClock())
        monitor.register_component("c")
        for i in range(25):
            monitor.mark_component_error("c", f"e{i}")
        snap = monitor.get_component_status("c")
        assert [e["error"] for e in snap["errors"]] == [f"e{i}" for i in range(15, 25)]
        assert snap["error_count"] == 25
        assert snap["status"] == "error"
        snap["errors"].clear()  # a copy: the monitor's own list is untouched
        assert len(monitor.get_component_status("c")["errors"]) == 10

    @pytest.mark.anyio
    async def test_exception_errors_and_recovery(self) -> None:
        """An exception is recorded by type and message; a heartbeat makes it healthy again."""
        monitor = HeartbeatMonitor(None, clock=FakeClock())
        monitor.register_component("c")
        monitor.mark_component_error("c", ValueError("bad input"))
        assert monitor.get_component_status("c")["errors"][0]["error"] == "ValueError: bad input"
        monitor.update_component_heartbeat("c")
        assert monitor.get_component_status("c")["status"] == "healthy"

    @pytest.mark.anyio
    async def test_unregister(self) -> None:
        """An unregistered component is "unknown" again."""
        monitor = HeartbeatMonitor(None, clock=FakeClock())
        monitor.register_component("c")
        assert monitor.unregister_component("c") is True
        assert monitor.unregister_component("c") is False
        assert monitor.get_component_status("c") == "unknown"

    @pytest.mark.anyio
    async def test_status_changes_are_published(self) -> None:
        """Each status transition is one component.status event on the bus."""
        bus = EventBus()
        monitor = HeartbeatMonitor(bus, clock=FakeClock())
        monitor.register_component("c")
        async with bus.subscribe() as events:
            monitor.mark_component_error("c", "boom")
            monitor.mark_component_error("c", "again")  # no change: no event
            monitor.update_component_heartbeat("c")
            got = _drain(events)
        assert got == [
            {"event": "component.status", "component": "c", "status": "error", "previous": "healthy"},
            {"event": "component.status", "component": "c", "status": "healthy", "previous": "error"},
        ]

    @pytest.mark.anyio
    async def test_ticks_do_not_drift(self) -> None:
        """Heartbeat events fire at start + k x interval even when checks take time."""
        clock = FakeClock()
        bus = EventBus()
        times: list[float] = []
        bus.add_callback(lambda e: times.append(clock.now()) if e["event"] == "heartbeat" else None)

        async def slow_check() -> bool:
            await clock.sleep_until(clock.now() + 3)
            return True

        monitor = HeartbeatMonitor(bus, interval=10, clock=clock, health_timeout=5)
        monitor.register_component("slow", slow_check)
        async with monitor:
            await anyio.wait_all_tasks_blocked()
            await clock.advance(35)
        assert times == [1003.0, 1013.0, 1023.0, 1033.0]

    @pytest.mark.anyio
    async def test_heartbeat_event_shape(self) -> None:
        """Each tick publishes overall status, counts and per-component status."""
        bus = EventBus()
        clock = FakeClock()
        monitor = HeartbeatMonitor(bus, interval=5, clock=clock)
        monitor.register_component("a")
        async with bus.subscribe() as events:
            async with monitor:
                await anyio.wait_all_tasks_blocked()
                assert monitor.is_running()
            assert not monitor.is_running()
            beats = _named(_drain(events), "heartbeat")
        assert beats == [{
            "event": "heartbeat",
            "timestamp": "2023-11-14T22:13:20.000000Z",
            "status": "healthy",
            "counts": {"total": 1, "healthy": 1, "error": 0, "timeout": 0},
            "components": {"a": "healthy"},
        }]

    @pytest.mark.anyio
    async def test_health_threshold_restarts_on_fake_clock(self) -> None:
        """Three consecutive failing checks restart the component exactly once, at the third tick."""
        clock = FakeClock()
        bus = EventBus()
        restarts: list[tuple[str, str, float]] = []

        async def failing() -> bool:
            return False

        async def restart(name: str, reason: str) -> None:
            restarts.append((name, reason, clock.now()))

        monitor = HeartbeatMonitor(bus, interval=10, clock=clock, failure_threshold=3)
        monitor.register_component("db", failing, restart=restart)
        async with bus.subscribe() as events:
            async with monitor:
                await anyio.wait_all_tasks_blocked()  # tick at 1000
                await clock.advance(10)  # 1010
                assert restarts == []
                assert monitor.get_component_status("db")["consecutive_failures"] == 2
                await clock.advance(10)  # 1020: third failure
                assert restarts == [("db", "unhealthy", 1020.0)]
                await clock.advance(20)  # two more failures after the reset: not yet
                assert len(restarts) == 1
                await clock.advance(10)
                assert len(restarts) == 2
            unhealthy = _named(_drain(events), "component.unhealthy")
        assert unhealthy == [{"event": "component.unhealthy", "component": "db", "failures": 3}] * 2
        snap = monitor.get_component_status("db")
        assert snap["restarts"] == 2 and snap["status"] == "error"
        assert snap["errors"][-1]["error"] == "health check failed: health check returned False"

    @pytest.mark.anyio
    async def test_passing_check_counts_as_heartbeat(self) -> None:
        """A component with a passing health check never times out."""
        clock = FakeClock()
        monitor = HeartbeatMonitor(None, interval=10, clock=clock)
        monitor.register_component("ok", lambda: True)
        async with monitor:
            for _ in range(3):
                await clock.advance(10)
                with anyio.fail_after(5):  # the sync check runs in a real thread
                    while monitor.get_component_status("ok")["last_heartbeat_age"] != 0:
                        await anyio.sleep(0.001)
        assert monitor.get_system_status()["status"] == "healthy"

    @pytest.mark.anyio
    async def test_hung_sync_check_does_not_block_ticks(self) -> None:
        """A sync check stuck in its thread times out, and the loop keeps ticking."""
        clock = FakeClock()
        release = threading.Event()
        entered = threading.Event()

        def stuck() -> bool:
            entered.set()
            release.wait(10)
            return True

        bus = EventBus()
        ticks: list[float] = []
        bus.add_callback(lambda e: ticks.append(clock.now()) if e["event"] == "heartbeat" else None)
        monitor = HeartbeatMonitor(bus, interval=10, clock=clock, health_timeout=2)
        monitor.register_component("stuck", stuck)
        try:
            async with monitor:
                assert await anyio.to_thread.run_sync(entered.wait, 5)
                await clock.advance(2)
                assert ticks == [1002.0]
                await clock.advance(8)  # next tick fails fast: the thread is still busy
                assert ticks == [1002.0, 1010.0]
        finally:
            release.set()
        errors = [e["error"] for e in monitor.get_component_status("stuck")["errors"]]
        assert errors == [
            "health check failed: health check timed out after 2s",
            "health check failed: previous health check is still running",
        ]

    @pytest.mark.anyio
    async def test_heartbeat_timeout_restarts_and_rearms(self) -> None:
        """A silent component is restarted at its timeout, and again after another timeout."""
        clock = FakeClock()
        restarts: list[tuple[str, float]] = []
        monitor = HeartbeatMonitor(None, interval=1, clock=clock)
        monitor.register_component("w", restart=lambda name, reason: restarts.append((reason, clock.now())))
        with capture_logs() as logs:
            async with monitor:
                await clock.advance(2)
                assert restarts == [("heartbeat_timeout", 1002.0)]
                await clock.advance(1)
                assert len(restarts) == 1
                await clock.advance(1)
                assert restarts[-1] == ("heartbeat_timeout", 1004.0)
                monitor.update_component_heartbeat("w")
                await clock.advance(1)
                assert len(restarts) == 2
        timeouts = [e for e in logs if e["event"] == "component.heartbeat_timeout"]
        assert [(e["component"], e["last_beat_age"]) for e in timeouts] == [("w", 2.0)]

    @pytest.mark.anyio
    async def test_failing_restart_callback_is_logged(self) -> None:
        """A restart callback that raises is logged and the monitor keeps ticking."""
        clock = FakeClock()

        def broken(name: str, reason: str) -> None:
            raise OSError("cannot spawn")

        monitor = HeartbeatMonitor(None, interval=1, clock=clock)
        monitor.register_component("w", restart=broken)
        with capture_logs() as logs:
            async with monitor:
                await clock.advance(3)
                assert monitor.is_running()
        failed = [e for e in logs if e["event"] == "component.restart_failed"]
        assert failed and failed[0]["reason"] == "heartbeat_timeout"
        assert monitor.get_component_status("w")["restarts"] == 0

    @pytest.mark.anyio
    async def test_start_stop_with_task_group(self) -> None:
        """start(tg) runs the loop, stop() ends it, and stopping twice is harmless."""
        monitor = HeartbeatMonitor(None, clock=FakeClock())
        with pytest.raises(SupervisorError, match="needs a task group"):
            await monitor.start()
        async with anyio.create_task_group() as tg:
            await monitor.start(tg)
            assert monitor.is_running()
            with pytest.raises(SupervisorError, match="already running"):
                await monitor.run()
            with anyio.fail_after(5):
                await monitor.stop()
            assert not monitor.is_running()
        await monitor.stop()

    def test_bad_arguments(self) -> None:
        """Bad settings are rejected when the monitor is built, naming the value."""
        with pytest.raises(ValueError, match=r"^interval must be > 0 seconds \(got 0\)$"):
            HeartbeatMonitor(None, interval=0)
        with pytest.raises(ValueError, match=r"^threshold must be an integer >= 1 \(got 0\)$"):
            HeartbeatMonitor(None, failure_threshold=0)


def _transition(actor: str, old: str, new: str, *, at: float, restarts: int = 0, error: str | None = None,
                **fields: Any) -> TransitionRecord:
    return TransitionRecord(actor, ActorState(old), ActorState(new), "actor.x", fields, restarts, error, at, 2.0)


class TestReadModelOfActors:
    """Supervised actors are fed in by their handles; the monitor only reports them."""

    @pytest.mark.anyio
    async def test_a_watched_actor_is_never_timed_out_or_restarted_by_the_monitor(self) -> None:
        """Silence past the timeout leaves a watched actor healthy: its handle is the judge."""
        clock = FakeClock()
        bus = EventBus()
        events: list[dict[str, Any]] = []
        bus.add_callback(events.append)
        monitor = HeartbeatMonitor(bus, interval=1.0, clock=clock)
        monitor.on_transition(_transition("a", "starting", "running", at=clock.now()))
        with capture_logs() as logs:
            await monitor.tick()
            await clock.advance(10.0)
            await monitor.tick()
        assert [e for e in logs if e["event"].startswith("component.")] == []
        snap = monitor.get_component_status("a")
        assert snap != "unknown" and snap["status"] == "healthy"
        assert _named(events, "component.status") == []

    @pytest.mark.anyio
    async def test_one_incident_is_one_error_and_restarts_agree(self) -> None:
        """errored records the handle's error once; failed adds none; restarts follow the handle."""
        clock = FakeClock()
        monitor = HeartbeatMonitor(None, clock=clock)
        now = clock.now()
        monitor.on_transition(_transition("a", "starting", "running", at=now))
        monitor.on_transition(_transition("a", "running", "errored", at=now, error="ValueError: x", reason="crash"))
        monitor.on_transition(_transition("a", "errored", "failed", at=now, restarts=3, error="ValueError: x"))
        snap = monitor.get_component_status("a")
        assert snap != "unknown"
        assert [e["error"] for e in snap["errors"]] == ["ValueError: x"] and snap["error_count"] == 1
        assert snap["status"] == "error" and snap["restarts"] == 3
        monitor.on_transition(_transition("a", "failed", "starting", at=now, restarts=3))
        monitor.on_transition(_transition("a", "starting", "running", at=now, restarts=3))
        snap = monitor.get_component_status("a")
        assert snap != "unknown" and snap["status"] == "healthy" and snap["error_count"] == 1
        monitor.on_transition(_transition("a", "running", "stopped", at=now))
        assert monitor.get_component_status("a") == "unknown"

    @pytest.mark.anyio
    async def test_health_results_show_the_check_and_streaks(self) -> None:
        """An actor that reports health has a health check; a failing streak is one error entry."""
        clock = FakeClock()
        monitor = HeartbeatMonitor(None, clock=clock)
        monitor.on_transition(_transition("a", "starting", "running", at=clock.now()))
        snap = monitor.get_component_status("a")
        assert snap != "unknown" and snap["has_health_check"] is False
        for _ in range(3):
            monitor.on_health(HealthRecord("a", clock.now(), False, "db down"))
        snap = monitor.get_component_status("a")
        assert snap != "unknown" and snap["has_health_check"] is True and snap["status"] == "error"
        assert [e["error"] for e in snap["errors"]] == ["health check failed: db down"]
        monitor.on_health(HealthRecord("a", clock.now(), True, None))
        monitor.on_beat(BeatRecord("a", clock.now(), 0, None))
        snap = monitor.get_component_status("a")
        assert snap != "unknown" and snap["status"] == "healthy" and snap["consecutive_failures"] == 0
