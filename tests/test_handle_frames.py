"""ActorHandle's frame handling, without processes: order and protocol errors."""

from __future__ import annotations

import anyio
import pytest

from actors._protocol import Beat, Health, Ready
from supervisor.config import parse_config
from supervisor.core._bus import EventBus
from supervisor.lifecycle._handle import ActorHandle
from supervisor.lifecycle._states import ActorState
from supervisor.logs import LogRouter
from supervisor.process._spawn import ColdSpawner
from tests.fakeclock import FakeClock


class FakeChild:
    pid = 4242

    def __init__(self) -> None:
        self.signals: list[int] = []

    def signal_group(self, sig: int) -> bool:
        self.signals.append(sig)
        return True


def make_handle(clock: FakeClock) -> ActorHandle:
    config = parse_config({"actors": {"a": {"target": "tests.sample_actors:Steady", "heartbeat_interval": 1.0}}})
    handle = ActorHandle(config.actors[0], spawner=ColdSpawner(), router=LogRouter(), bus=EventBus(), clock=clock)
    handle.state = ActorState.STARTING  # as while a child does its handshake
    return handle


class TestFrameOrder:
    @pytest.mark.anyio
    async def test_beat_in_the_same_read_as_ready_is_accepted(self) -> None:
        """A Beat decoded right after Ready (before the watcher task runs) is a beat, not a protocol error."""
        clock = FakeClock()
        handle, child, ready = make_handle(clock), FakeChild(), anyio.Event()
        handle._on_frame(child, Ready(), ready)
        handle._on_frame(child, Beat(seq=0), ready)
        assert child.signals == []
        assert ready.is_set() and handle.beats is not None and handle.beats.beats == 1
        assert handle.state is ActorState.RUNNING

    @pytest.mark.anyio
    async def test_beat_before_ready_is_a_protocol_error(self) -> None:
        """A Beat before Ready breaks the handshake: the child is killed with reason protocol_error."""
        clock = FakeClock()
        handle, child = make_handle(clock), FakeChild()
        handle._on_frame(child, Beat(seq=0), anyio.Event())
        assert child.signals and handle._kill_reason == "protocol_error"

    @pytest.mark.anyio
    async def test_health_failures_reach_the_threshold(self) -> None:
        """health_failure_threshold consecutive failed checks request a restart with reason unhealthy."""
        clock = FakeClock()
        handle, child, ready = make_handle(clock), FakeChild(), anyio.Event()
        handle.child = child  # type: ignore[assignment]
        handle._on_frame(child, Ready(), ready)
        for _ in range(2):
            handle._on_frame(child, Health(ok=False, error="db down"), ready)
        assert handle._kill_reason is None
        handle._on_frame(child, Health(ok=True), ready)
        for _ in range(3):
            handle._on_frame(child, Health(ok=False, error="db down"), ready)
        assert handle._kill_reason == "unhealthy"
