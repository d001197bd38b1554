"""The network channel with real Ray: RayHost as a Ray actor on a private cluster on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import anyio
import psutil
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


class TestSupervisorKilled:
    @pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "silent"])
    async def test_a_lost_supervisor_leaves_nothing_within_the_lease_bound(self, ray_cluster: None, sig: int) -> None:
        """SIGKILL (EOF) or SIGSTOP (silence, as in a partition) of the supervisor: its detached Ray actor's
        host and child end within lease_timeout + one lease period, and Ray forgets the actor."""
        lease = 2.0
        bound = lease + lease / 5  # docs/ARCHITECTURE.md, "Lease bound"
        gcs = ray.get_runtime_context().gcs_address
        proc = await anyio.open_process(
            [sys.executable, "-m", "tests.ray_supervisor_main", gcs, str(lease)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        async with proc:
            try:
                child_pid = await _started_pid(proc)
                host_pid = psutil.Process(child_pid).ppid()
                assert "ray" in " ".join(psutil.Process(host_pid).cmdline()).lower()  # a Ray worker hosts it
                killed = time.monotonic()
                proc.send_signal(sig)  # only the supervisor this test started
                with anyio.fail_after(bound + 1.0):
                    while _alive(child_pid) or _alive(host_pid):
                        await anyio.sleep(0.02)
                assert time.monotonic() - killed <= bound + 0.5
                with anyio.fail_after(10):  # Ray itself has forgotten the actor too
                    while _ray_alive("s#1"):
                        await anyio.sleep(0.1)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()


async def _started_pid(proc: anyio.abc.Process) -> int:
    """The pid in the supervisor's actor.started line."""
    assert proc.stdout is not None
    buffer = b""
    with anyio.fail_after(90):
        async for chunk in proc.stdout:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                event = json.loads(line)
                if event.get("event") == "actor.started":
                    return int(event["pid"])
    raise AssertionError("the supervisor ended before its actor started")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _ray_alive(name: str) -> bool:
    try:
        ray.get_actor(name, namespace="actorsup-test")  # a named actor is found while it lives
    except ValueError:
        return False
    return True
