"""The network channel with real Ray: RayHost as a Ray actor on a private cluster on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from supervisor._supervisor import Supervisor
from supervisor.lifecycle._states import ActorState
from tests.harness import CaptureSink, cli_supervisor, wait_gone
from tests.raylocal import PRODUCTION, ray_supervisor
from tests.rayreal import InProcessRayBackend, needs_ray, ray, start_ray

pytestmark = [pytest.mark.anyio, pytest.mark.slow, needs_ray]
T = "tests.sample_actors:"
ROOT = Path(__file__).resolve().parent.parent
LINES = 10_000


@pytest.fixture
def ray_cluster() -> Iterator[None]:
    """A private Ray for one test, shut down after it (no Ray process outlives the test)."""
    start_ray()
    try:
        yield
    finally:
        ray.shutdown()


def crash_hang_lines(tmp_path: Path) -> dict[str, dict[str, Any]]:
    return {
        "c": {"target": T + "CrashOnce", "kind": "ray", "args": {"marker": str(tmp_path / "c")}},
        "b": {"target": T + "BlockLoop", "kind": "ray", "args": {"marker": str(tmp_path / "b")},
              "heartbeat_interval": 0.1, "heartbeat_timeout": 1.0},
        "l": {"target": T + "LinesThenExit", "kind": "ray", "args": {"n": LINES}, "restart": "temporary"},
    }


async def check_crash_hang_lines(sup: Supervisor, log: CaptureSink) -> None:
    """A crash restarts, a hang times out and restarts, 10,000 lines then os._exit all arrive."""
    await log.wait_for("crashonce.second_life", actor="c", timeout=90)
    assert log.find("actor.exited", actor="c")[0]["reason"] == "crash"
    await log.wait_for("blockloop.second_life", actor="b", timeout=90)
    assert log.find("actor.exited", actor="b")[0]["reason"] == "heartbeat_timeout"
    await log.wait_for("actor.stopped", actor="l", timeout=90)
    assert [e["i"] for e in log.find("line", actor="l")] == list(range(LINES))
    for line, stream in [("printed line", "stdout"), ("raw fd1 line", "stdout"), ("raw fd2 line", "stderr")]:
        assert log.find(line, actor="l", stream=stream)
    assert log.find("stdlib line", actor="l")
    assert log.find("actor.exited", actor="l")[0]["exit_code"] == 7
    assert sup.handle("c").state is ActorState.RUNNING


class TestThroughTheDriver:
    async def test_crash_hang_and_lines_on_local_ray(self, tmp_path: Path) -> None:
        """address = "local" through the supervisor's own driver: crash and hang restart, 10,000 lines arrive."""
        async with ray_supervisor(crash_hang_lines(tmp_path), PRODUCTION) as (sup, log, _backend):
            await check_crash_hang_lines(sup, log)

    async def test_sigkill_of_actorsup_run_leaves_no_host_or_child(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """SIGKILL of `actorsup run` (address = "local"): the Ray worker hosting the actor and its child are gone
        within lease_timeout + one lease period."""
        monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the child imports tests.sample_actors
        config = tmp_path / "actorsup.toml"
        config.write_text(
            '[supervisor]\nheartbeat_interval = 0.5\n\n[ray]\nlease_timeout = 2.0\n\n'
            '[actors.s]\ntarget = "tests.sample_actors:Steady"\nkind = "ray"\n'
        )
        bound = 2.0 + 2.0 / 5
        async with cli_supervisor(config) as cli:
            (started,) = await cli.log.wait_for("actor.started", actor="s", timeout=90)
            child = started["pid"]
            host = psutil.Process(child).ppid()
            assert "ray" in " ".join(psutil.Process(host).cmdline()).lower()  # a Ray worker hosts it
            cli.process.kill()  # only the supervisor this test started
            killed = time.monotonic()
            await wait_gone(child, host, timeout=bound + 1.0)
            assert time.monotonic() - killed <= bound + 0.5


class TestOnRay:
    async def test_crash_hang_and_lines(self, ray_cluster: None, tmp_path: Path) -> None:
        """RayHost as a Ray actor of this process: the same crash, hang and lines."""
        async with ray_supervisor(crash_hang_lines(tmp_path), InProcessRayBackend()) as (sup, log, _backend):
            await check_crash_hang_lines(sup, log)


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
                await wait_gone(child_pid, host_pid, timeout=bound + 1.0)
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


def _ray_alive(name: str) -> bool:
    try:
        ray.get_actor(name, namespace="actorsup-test")  # a named actor is found while it lives
    except ValueError:
        return False
    except AssertionError:
        # Ray still lists the name but has already dropped the dead job's class table, so building a
        # handle fails inside Ray: the actor is on its way out, not gone yet. Keep polling.
        return True
    return True
