"""The handle's restart loop on a fake clock, with a fake spawner: no processes, exact times."""

from __future__ import annotations

import itertools
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from actors._protocol import Beat, Health
from supervisor.config import parse_config
from supervisor.core._bus import EventBus
from supervisor.lifecycle._handle import ActorHandle
from supervisor.lifecycle._heartbeat import HeartbeatDeadline
from supervisor.lifecycle._stall import LoopWatch
from supervisor.lifecycle._states import ActorState
from supervisor.logs import LogRouter
from supervisor.monitor import HeartbeatMonitor
from tests.fakeclock import FakeClock
from tests.fakespawner import FakeChild, FakeSpawner

pytestmark = pytest.mark.anyio
S = ActorState


class JumpClock(FakeClock):
    async def jump(self, seconds: float) -> None:
        """Time passes at once, as for a supervisor that was not running (SIGSTOP, a stalled loop)."""
        self._now += seconds
        await self.advance(0)


class Rig:
    def __init__(self, clock: FakeClock, **settings: Any) -> None:
        actor = {"target": "tests.sample_actors:Steady", "heartbeat_interval": 1.0, "heartbeat_timeout": 3.0,
                 "backoff_initial": 2.0, "backoff_max": 16.0, **settings}
        self.spec = parse_config({"actors": {"a": actor}}).actors[0]
        self.clock = clock
        self.bus = EventBus()
        self.events: list[dict[str, Any]] = []
        self.bus.add_callback(self.events.append)
        self.spawner = FakeSpawner()
        self.monitor = HeartbeatMonitor(self.bus, interval=1.0, clock=clock)
        self.loop_watch = LoopWatch(clock)
        self.handle = ActorHandle(
            self.spec, spawner=self.spawner, router=LogRouter(), bus=self.bus, clock=clock,
            observers=[self.monitor], loop_watch=self.loop_watch, jitter=lambda: 1.0,
        )

    def state(self) -> ActorState:
        return self.handle.state  # a call: each read is fresh (no narrowing across awaits)

    def names(self, *events: str) -> list[str]:
        return [e["event"] for e in self.events if e["event"] in events]

    async def beat(self) -> None:
        self.spawner.children[-1].push(Beat(seq=0))
        await anyio.wait_all_tasks_blocked()


@asynccontextmanager
async def rig(clock: FakeClock | None = None, **settings: Any) -> AsyncIterator[Rig]:
    r = Rig(clock or FakeClock(), **settings)
    async with anyio.create_task_group() as tg:
        await tg.start(r.monitor.run)
        await tg.start(r.loop_watch.run)
        await tg.start(r.handle.run)
        r.handle.start()
        await anyio.wait_all_tasks_blocked()
        yield r
        tg.cancel_scope.cancel()


class TestRestartLoop:
    async def test_crash_backs_off_then_restarts(self) -> None:
        """A crash waits backoff_initial on the clock, then a new child is spawned and runs."""
        async with rig() as r:
            assert r.state() is S.RUNNING and len(r.spawner.children) == 1
            r.spawner.children[0].exit(1)
            await anyio.wait_all_tasks_blocked()
            assert r.state() is S.BACKOFF and r.handle.restarts == 1
            await r.clock.advance(1.999)
            assert len(r.spawner.children) == 1
            await r.clock.advance(0.001)
            assert r.state() is S.RUNNING and len(r.spawner.children) == 2
            assert r.names("actor.starting", "actor.started", "actor.exited", "actor.errored", "actor.restarting") == [
                "actor.starting", "actor.started", "actor.exited", "actor.errored", "actor.restarting",
                "actor.starting", "actor.started",
            ]

    async def test_intensity_exceeded_fails(self) -> None:
        """With max_restarts=1 the second crash in the window ends in failed; nothing more is spawned."""
        async with rig(max_restarts=1) as r:
            r.spawner.children[0].exit(1)
            await r.clock.advance(2.0)
            r.spawner.children[1].exit(1)
            await anyio.wait_all_tasks_blocked()
            assert r.state() is S.FAILED
            await r.clock.advance(20.0)
            assert len(r.spawner.children) == 2
            r.handle.start()  # an explicit start revives it
            await anyio.wait_all_tasks_blocked()
            assert r.state() is S.RUNNING and len(r.spawner.children) == 3

    async def test_stop_during_backoff(self) -> None:
        """A stop during the backoff delay is immediate, and the delay's end spawns nothing."""
        async with rig() as r:
            r.spawner.children[0].exit(1)
            await anyio.wait_all_tasks_blocked()
            with anyio.fail_after(1):
                await r.handle.stop()
            assert r.state() is S.STOPPED
            await r.clock.advance(20.0)
            assert len(r.spawner.children) == 1 and r.state() is S.STOPPED

    async def test_stop_sends_sigterm_and_waits(self) -> None:
        """stop() on a running child: SIGTERM, stopping then stopped, reason stopped."""
        async with rig() as r:
            await r.handle.stop()
            child = r.spawner.children[0]
            assert child.signals[0] == signal.SIGTERM
            assert r.names("actor.stopping", "actor.stopped") == ["actor.stopping", "actor.stopped"]
            assert r.handle.last_exit is not None and r.handle.last_exit.reason == "stopped"

    async def test_heartbeat_timeout_kills_and_restarts(self) -> None:
        """Beats stop: exactly heartbeat_timeout after the last one the child gets SIGKILL and is replaced."""
        async with rig() as r:
            await r.clock.advance(1.0)
            await r.beat()
            await r.clock.advance(2.999)
            assert r.spawner.children[0].signals == []
            await r.clock.advance(0.001)
            assert r.spawner.children[0].signals[0] == signal.SIGKILL
            assert r.handle.last_exit is not None and r.handle.last_exit.reason == "heartbeat_timeout"
            await r.clock.advance(2.0)
            assert r.state() is S.RUNNING and len(r.spawner.children) == 2

    async def test_one_hang_is_one_timeout_event(self) -> None:
        """The monitor reads the handle's verdict: a hang gives actor.heartbeat_timeout only, once."""
        async with rig() as r:
            await r.clock.advance(4.5)  # hang, kill at 3 s, backoff, monitor ticks all along
            assert r.names("actor.heartbeat_timeout", "component.heartbeat_timeout") == ["actor.heartbeat_timeout"]
            status = r.monitor.get_component_status("a")
            assert status != "unknown" and status["restarts"] == r.handle.restarts == 1
            assert status["status"] == "error"
            assert [e["error"] for e in status["errors"]] == ["heartbeat_timeout (SIGKILL)"]


class TestHandshakeAndHealth:
    async def test_handshake_timeout_kills_and_restarts(self) -> None:
        """No Ready within start_timeout: SIGKILL, reason handshake_timeout, then the restart path."""
        async with rig(start_timeout=5.0) as r:
            r.spawner.child_options["ready"] = False
            r.spawner.children[0].exit(1)  # the first child dies; the second never answers Init
            await r.clock.advance(2.0)
            child = r.spawner.children[1]
            assert r.state() is S.STARTING
            await r.clock.advance(4.999)
            assert child.signals == []
            await r.clock.advance(0.001)
            assert child.signals[0] == signal.SIGKILL
            assert r.handle.last_exit is not None and r.handle.last_exit.reason == "handshake_timeout"
            assert r.state() is S.BACKOFF

    async def test_stop_during_the_handshake_is_graceful_and_immediate(self) -> None:
        """A stop while a child is still starting sends SIGTERM at once, without waiting for start_timeout."""
        r = Rig(FakeClock())
        r.spawner.child_options["ready"] = False
        async with anyio.create_task_group() as tg:
            await tg.start(r.handle.run)
            r.handle.start()
            await anyio.wait_all_tasks_blocked()
            assert r.state() is S.STARTING
            with anyio.fail_after(1):
                await r.handle.stop()
            assert r.spawner.children[0].signals[0] == signal.SIGTERM
            assert r.names("actor.stopping", "actor.stopped", "actor.errored") == ["actor.stopping", "actor.stopped"]
            tg.cancel_scope.cancel()

    async def test_stop_right_after_start_is_not_lost(self) -> None:
        """stop() before the loop has even spawned the child still ends in stopped."""
        r = Rig(FakeClock())
        async with anyio.create_task_group() as tg:
            await tg.start(r.handle.run)
            r.handle.start()
            with anyio.fail_after(1):
                await r.handle.stop()
            assert r.state() is S.STOPPED
            assert all(c.returncode is not None for c in r.spawner.children)
            tg.cancel_scope.cancel()

    async def test_failing_health_checks_restart_gracefully(self) -> None:
        """health_failure_threshold failed checks: SIGTERM (no stopping event), reason unhealthy, a restart."""
        async with rig(health_failure_threshold=2) as r:
            child = r.spawner.children[0]
            child.push(Health(ok=False, error="db down"), Health(ok=False, error="db down"))
            await anyio.wait_all_tasks_blocked()
            assert child.signals[0] == signal.SIGTERM
            assert r.handle.last_exit is not None and r.handle.last_exit.reason == "unhealthy"
            assert r.names("actor.unhealthy", "actor.stopping", "actor.restarting") == [
                "actor.unhealthy", "actor.restarting",
            ]
            status = r.monitor.get_component_status("a")
            assert status != "unknown" and status["has_health_check"] is True


class TestDrainBeforeJudging:
    @pytest.mark.parametrize("waiting", [True, False], ids=["beat-waiting", "silent"])
    async def test_a_beat_in_the_channel_is_read_before_the_verdict(self, waiting: bool) -> None:
        """A passed deadline with bytes waiting on the channel lets the pump read them first."""
        clock = FakeClock()
        spec = Rig(clock).spec
        handle = ActorHandle(spec, spawner=FakeSpawner(), router=LogRouter(), bus=EventBus(), clock=clock)
        child = FakeChild(1)
        beats = HeartbeatDeadline(spec.heartbeat_timeout, clock.now())
        await clock.advance(spec.heartbeat_timeout + 1)
        if waiting:
            child._peer.send(b"b")  # a beat sent while the supervisor was busy

        async def pump() -> None:
            await anyio.wait_readable(child.channel)
            child.channel.recv(1)
            beats.beat(clock.now())

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump)
            assert await handle._excused(child, beats) is waiting  # type: ignore[arg-type]
            tg.cancel_scope.cancel()
        await child.aclose()


class TestStall:
    async def test_a_supervisor_stall_extends_every_deadline(self) -> None:
        """A 5 s jump of the supervisor's own clock is a stall: no kill, one supervisor.stalled."""
        clock = JumpClock()
        async with rig(clock) as r:
            await r.clock.advance(1.0)
            await r.beat()
            await clock.jump(5.0)  # deadline passed by 3 s, but the supervisor was the one away
            assert r.spawner.children[0].signals == []
            assert r.loop_watch.stalls == 1
            await r.beat()  # the beats that waited in the channel
            await r.clock.advance(2.0)
            assert r.spawner.children[0].signals == [] and r.state() is S.RUNNING

    async def test_without_a_stall_a_missed_deadline_still_kills(self) -> None:
        """The same 5 s of silence, passing as normal time, is a hang."""
        async with rig() as r:
            await r.clock.advance(1.0)
            await r.beat()
            await r.clock.advance(5.0)
            assert r.spawner.children[0].signals[0] == signal.SIGKILL and r.loop_watch.stalls == 0


class TestBeatRounds:
    async def test_one_sweep_per_beat_round_until_discarded(self) -> None:
        """A registered sweep runs once a round of its interval, from the watch's one task, and not after discard."""
        clock = FakeClock()
        watch = LoopWatch(clock)
        calls: list[float] = []
        async with anyio.create_task_group() as tg:
            await tg.start(watch.run)
            assert watch.sweeping
            watch.add_sweep("a", 1.0, lambda: calls.append(clock.now()))
            for _ in range(40):  # 4 s in ticks: every sleeper (tick, rounds) gets its turn
                await clock.advance(0.1)
            assert 3 <= len(calls) <= 5
            assert all(b - a >= 0.9 for a, b in itertools.pairwise(calls))
            watch.discard_sweep("a")
            seen = len(calls)
            for _ in range(20):
                await clock.advance(0.1)
            assert len(calls) == seen
            tg.cancel_scope.cancel()
        assert not watch.sweeping

    async def test_deadlines_are_judged_by_the_watch_exactly(self) -> None:
        """expiry() returns at the exact deadline of a silent actor, and not while the other keeps beating."""
        clock = FakeClock()
        watch = LoopWatch(clock)
        silent, beating = HeartbeatDeadline(2.0, clock.now()), HeartbeatDeadline(2.0, clock.now())
        fired: dict[str, float] = {}

        async def judge(name: str, beats: HeartbeatDeadline) -> None:
            await watch.expiry(beats)
            fired[name] = clock.now()

        async with anyio.create_task_group() as tg:
            await tg.start(watch.run)
            start = clock.now()
            tg.start_soon(judge, "silent", silent)
            tg.start_soon(judge, "beating", beating)
            for _ in range(5):
                await clock.advance(1.0)
                beating.beat(clock.now())
            assert fired == {"silent": start + 2.0}
            tg.cancel_scope.cancel()
