"""kind = "ray" actors over the network channel, with RayHost in plain subprocesses (tests/raylocal.py)."""

from __future__ import annotations

import pytest

from supervisor.lifecycle._states import ActorState
from tests.raylocal import ray_supervisor

pytestmark = pytest.mark.anyio
T = "tests.sample_actors:"


class TestRestarts:
    async def test_crash_restarts_the_actor(self, tmp_path) -> None:
        """An actor that raises in its first life is restarted on a new host, and its second life runs."""
        actors = {"c": {"target": T + "CrashOnce", "kind": "ray", "args": {"marker": str(tmp_path / "m")}}}
        async with ray_supervisor(actors) as (sup, log, backend):
            await log.wait_for("crashonce.second_life", actor="c")
            exited = log.find("actor.exited", actor="c")
            assert exited[0]["reason"] == "crash"
            assert len(backend.requests) == 2
            assert sup.handle("c").state is ActorState.RUNNING
