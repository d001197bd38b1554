"""The handle's restart loop on a fake clock, with a fake spawner: no processes, exact times."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from actors._protocol import Beat
from supervisor.config import parse_config
from supervisor.core._bus import EventBus
from supervisor.lifecycle._handle import ActorHandle
from supervisor.lifecycle._stall import LoopWatch
from supervisor.lifecycle._states import ActorState
from supervisor.logs import LogRouter
from supervisor.monitor import HeartbeatMonitor
from tests.fakeclock import FakeClock
from tests.fakespawner import FakeSpawner

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
            monitor=self.monitor, loop_watch=self.loop_watch, jitter=lambda: 1.0,
        )

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
            assert r.handle.state is S.RUNNING and len(r.spawner.children) == 1
            r.spawner.children[0].exit(1)
            await anyio.wait_all_tasks_blocked()
            assert r.handle.state is S.BACKOFF and r.handle.restarts == 1
            await r.clock.advance(1.999)
            assert len(r.spawner.children) == 1
            await r.clock.advance(0.001)
            assert r.handle.state is S.RUNNING and len(r.spawner.children) == 2
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
            assert r.handle.state is S.FAILED
            await r.clock.advance(20.0)
            assert len(r.spawner.children) == 2
            r.handle.start()  # an explicit start revives it
            await anyio.wait_all_tasks_blocked()
            assert r.handle.state is S.RUNNING and len(r.spawner.children) == 3

    async def test_stop_during_backoff(self) -> None:
        """A stop during the backoff delay is immediate, and the delay's end spawns nothing."""
        async with rig() as r:
            r.spawner.children[0].exit(1)
            await anyio.wait_all_tasks_blocked()
            with anyio.fail_after(1):
                await r.handle.stop()
            assert r.handle.state is S.STOPPED
            await r.clock.advance(20.0)
            assert len(r.spawner.children) == 1 and r.handle.state is S.STOPPED

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
            assert r.handle.state is S.RUNNING and len(r.spawner.children) == 2

    async def test_one_hang_is_one_timeout_event(self) -> None:
        """The monitor reads the handle's verdict: a hang gives actor.heartbeat_timeout only, once."""
        async with rig() as r:
            await r.clock.advance(4.5)  # hang, kill at 3 s, backoff, monitor ticks all along
            assert r.names("actor.heartbeat_timeout", "component.heartbeat_timeout") == ["actor.heartbeat_timeout"]
            status = r.monitor.get_component_status("a")
            assert status != "unknown" and status["restarts"] == r.handle.restarts == 1
            assert status["status"] == "error"
            assert [e["error"] for e in status["errors"]] == ["heartbeat_timeout (SIGKILL)"]


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
            assert r.spawner.children[0].signals == [] and r.handle.state is S.RUNNING

    async def test_without_a_stall_a_missed_deadline_still_kills(self) -> None:
        """The same 5 s of silence, passing as normal time, is a hang."""
        async with rig() as r:
            await r.clock.advance(1.0)
            await r.beat()
            await r.clock.advance(5.0)
            assert r.spawner.children[0].signals[0] == signal.SIGKILL and r.loop_watch.stalls == 0
