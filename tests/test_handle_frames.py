"""ActorHandle's frame handling, without processes: order and protocol errors."""

from __future__ import annotations

import pytest

from actors._protocol import Beat, Health, Ready
from supervisor.config import parse_config
from supervisor.core._bus import EventBus
from supervisor.lifecycle._handle import ActorHandle, _Run
from supervisor.lifecycle._machine import Life
from supervisor.lifecycle._states import ActorState
from supervisor.logs import LogRouter
from supervisor.process._spawn import ColdSpawner
from tests.fakeclock import FakeClock


class FakeChild:
    pid = 4242
    create_time = None  # psutil never samples it

    def __init__(self) -> None:
        self.signals: list[int] = []

    def signal_group(self, sig: int) -> bool:
        self.signals.append(sig)
        return True


def make_handle(clock: FakeClock) -> tuple[ActorHandle, FakeChild, _Run]:
    config = parse_config({"actors": {"a": {"target": "tests.sample_actors:Steady", "heartbeat_interval": 1.0}}})
    handle = ActorHandle(config.actors[0], spawner=ColdSpawner(), router=LogRouter(), bus=EventBus(), clock=clock)
    handle.life = Life(state=ActorState.STARTING, want_running=True)  # as while a child does its handshake
    child = FakeChild()
    run = handle._run = _Run(handle.spec)
    run.child = child  # type: ignore[assignment]
    return handle, child, run


class TestFrameOrder:
    @pytest.mark.anyio
    async def test_beat_in_the_same_read_as_ready_is_accepted(self) -> None:
        """A Beat decoded right after Ready (before the watcher task runs) is a beat, not a protocol error."""
        clock = FakeClock()
        handle, child, run = make_handle(clock)
        handle._on_frame(run, Ready())
        handle._on_frame(run, Beat(seq=0))
        assert child.signals == []
        assert run.ready.is_set() and handle.beats is not None and handle.beats.beats == 1
        assert handle.state is ActorState.RUNNING

    @pytest.mark.anyio
    async def test_beat_before_ready_is_a_protocol_error(self) -> None:
        """A Beat before Ready breaks the handshake: the child is killed with reason protocol_error."""
        clock = FakeClock()
        handle, child, run = make_handle(clock)
        handle._on_frame(run, Beat(seq=0))
        assert child.signals and handle.life.kill_reason == "protocol_error"

    @pytest.mark.anyio
    async def test_health_failures_reach_the_threshold(self) -> None:
        """health_failure_threshold consecutive failed checks request a restart with reason unhealthy."""
        clock = FakeClock()
        handle, _child, run = make_handle(clock)
        handle._on_frame(run, Ready())
        for _ in range(2):
            handle._on_frame(run, Health(ok=False, error="db down"))
        assert handle.life.kill_reason is None
        handle._on_frame(run, Health(ok=True))
        for _ in range(3):
            handle._on_frame(run, Health(ok=False, error="db down"))
        assert handle.life.kill_reason == "unhealthy" and run.stop.is_set()


class TestLazyBeats:
    @pytest.mark.anyio
    async def test_a_beat_read_late_is_dated_when_it_was_sent(self) -> None:
        """A lazy beat read 0.4 s after it was sent moves the deadline from its send time, not the read time."""
        import time

        clock = FakeClock()
        handle, _, run = make_handle(clock)
        handle._on_frame(run, Ready())
        await clock.advance(1.0)
        handle._on_frame(run, Beat(seq=0, at=time.monotonic() - 0.4))
        assert run.beats is not None
        assert clock.now() - 0.45 < run.beats.last_beat < clock.now() - 0.35
