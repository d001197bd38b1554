"""The network channel with real Ray: RayHost as a Ray actor on a private cluster on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from supervisor.lifecycle._states import ActorState
from tests.raylocal import ray_supervisor
from tests.rayreal import InProcessRayBackend, needs_ray, ray, start_ray

pytestmark = [pytest.mark.anyio, pytest.mark.slow, needs_ray]
T = "tests.sample_actors:"


@pytest.fixture
def ray_cluster() -> Iterator[None]:
    """A private Ray for one test, shut down after it (no Ray process outlives the test)."""
    start_ray()
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def anyio_backend() -> str:
    return "trio"  # Ray costs seconds per start: the channel code is the same on both backends


class TestOnRay:
    async def test_crash_hang_and_lines(self, ray_cluster: None, tmp_path) -> None:
        """On a real Ray: a crash restarts, a hang times out and restarts, 10,000 lines then os._exit all arrive."""
        n = 10_000
        actors = {
            "c": {"target": T + "CrashOnce", "kind": "ray", "args": {"marker": str(tmp_path / "c")}},
            "b": {"target": T + "BlockLoop", "kind": "ray", "args": {"marker": str(tmp_path / "b")},
                  "heartbeat_interval": 0.1, "heartbeat_timeout": 1.0},
            "l": {"target": T + "LinesThenExit", "kind": "ray", "args": {"n": n}, "restart": "temporary"},
        }
        backend = InProcessRayBackend()
        async with ray_supervisor(actors, backend) as (sup, log, _backend):
            await log.wait_for("crashonce.second_life", actor="c", timeout=90)
            assert log.find("actor.exited", actor="c")[0]["reason"] == "crash"
            await log.wait_for("blockloop.second_life", actor="b", timeout=90)
            assert log.find("actor.exited", actor="b")[0]["reason"] == "heartbeat_timeout"
            await log.wait_for("actor.stopped", actor="l", timeout=90)
            assert [e["i"] for e in log.find("line", actor="l")] == list(range(n))
            for line, stream in [("printed line", "stdout"), ("raw fd1 line", "stdout"), ("raw fd2 line", "stderr")]:
                assert log.find(line, actor="l", stream=stream)
            assert log.find("stdlib line", actor="l")
            assert log.find("actor.exited", actor="l")[0]["exit_code"] == 7
            assert sup.handle("c").state is ActorState.RUNNING
