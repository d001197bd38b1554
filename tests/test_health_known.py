"""heartbeat status knows an actor has a health_check() from its start, before any result."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from actors._protocol import ChildFrame, FrameDecoder, Ready, encode
from tests.harness import running_supervisor

pytestmark = pytest.mark.anyio
T = "tests.sample_actors:"


def test_a_ready_frame_without_the_field_still_decodes() -> None:
    """An older child's Ready frame (no has_health_check) decodes, with False; the new one round-trips."""
    old = msgspec.msgpack.encode(["ready"])
    decoder = FrameDecoder(ChildFrame)
    assert decoder.feed(len(old).to_bytes(4, "big") + old) == [Ready(has_health_check=False)]
    assert decoder.feed(encode(Ready(has_health_check=True))) == [Ready(has_health_check=True)]


@pytest.mark.slow
async def test_has_health_check_is_known_at_start() -> None:
    """A real child that defines health_check() reports HAS HEALTH CHECK true before its first Health frame."""
    actors: dict[str, dict[str, Any]] = {
        "checked": {"target": T + "HealthChecked", "health_interval": 3600},
        "plain": {"target": T + "Steady"},
    }
    async with running_supervisor(actors) as (sup, log):
        await log.wait_for("actor.started", actor="checked")
        await log.wait_for("actor.started", actor="plain")
        components = sup.heartbeat_status()["components"]
        assert components["checked"]["has_health_check"] is True
        assert components["plain"]["has_health_check"] is False


@pytest.mark.slow
async def test_a_sync_health_check_runs_off_the_loop_and_fails_the_actor() -> None:
    """A blocking plain-def health_check() (0.4 s, past the 0.3 s heartbeat timeout) never stops the beats,
    and its False results restart the actor as unhealthy."""
    actors: dict[str, dict[str, Any]] = {"sync": {
        "target": T + "SyncHealthSlow", "heartbeat_interval": 0.1, "heartbeat_timeout": 0.3,
        "health_interval": 0.05, "health_timeout": 2.0, "health_failure_threshold": 2,
    }}
    async with running_supervisor(actors) as (_sup, log):
        await log.wait_for("actor.unhealthy", actor="sync")
        assert log.find("actor.heartbeat_timeout") == []
