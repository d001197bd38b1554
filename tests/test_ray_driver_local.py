"""RayDriverBackend with a real driver: a private Ray, bad addresses, a lost or hung driver, a SIGKILLed supervisor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import psutil
import pytest
import structlog.testing

from supervisor.config._schema import RayOptions, RaySettings
from supervisor.ray import _driverclient
from supervisor.ray._backend import CreateRequest, HostTicket, RayUnavailable
from supervisor.ray._driverclient import RayDriverBackend
from tests.raycluster import ROOT, Reports, driver_env, needs_ray, reports

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def anyio_backend() -> str:
    return "trio"  # a private Ray costs seconds per start: the client runs on both in test_ray_driver_client

LOCAL = RaySettings(address="local", namespace="test", connect_timeout=60)
# SIGKILL of the supervisor -> no Ray process left: the deathwatch kills every process with its cookie.
LEFTOVER_BOUND = 5.0


def request(got: Reports, actor: str, generation: int = 1) -> CreateRequest:
    ticket = HostTicket(actor=actor, generation=generation, token="t", address=got.address, lease_timeout=5.0)
    return CreateRequest(key=f"{actor}#{generation}", options=RayOptions(num_cpus=0), ticket=ticket)


def events(logs: list[dict[str, object]], name: str) -> list[dict[str, object]]:
    return [e for e in logs if e["event"] == name]


async def replaced(logs: list[dict[str, object]]) -> None:
    """Until a second driver has started (structlog's capture announces nothing: a bounded poll)."""
    with anyio.fail_after(60):
        while len(events(logs, "ray.started")) < 2:
            await anyio.sleep(0.1)


@needs_ray
async def test_local_ray_runs_a_host_and_shuts_down() -> None:
    """address = "local": a private Ray on 127.0.0.1 runs a host; aclose leaves no process (conftest checks)."""
    with structlog.testing.capture_logs() as logs:
        async with reports() as got, anyio.create_task_group() as tg:
            backend = RayDriverBackend(LOCAL, env=driver_env())
            info = await tg.start(backend.run)
            assert (info.nodes, info.address.startswith("127.0.0.1:"), info.node_ip) == (1, True, "127.0.0.1")
            await backend.create(request(got, "one"))
            report = await got.next()
            assert report.actor == "one"
            with anyio.fail_after(30):
                await backend.aclose()
    assert [e["nodes"] for e in events(logs, "ray.started")] == [1]
    assert len(events(logs, "ray.stopped")) == 1
    assert events(logs, "ray.host_created")[0]["key"] == "one#1"  # the driver's own event, relayed


@needs_ray
async def test_lost_driver_is_restarted() -> None:
    """A driver that dies is logged and replaced; hosts can be created through the new one."""
    with structlog.testing.capture_logs() as logs:
        async with reports() as got, anyio.create_task_group() as tg:
            backend = RayDriverBackend(LOCAL, env=driver_env())
            await tg.start(backend.run)
            first = backend._driver
            assert first is not None
            os.killpg(first.process.pid, signal.SIGKILL)
            await replaced(logs)
            await backend.create(request(got, "after"))
            assert (await got.next()).actor == "after"
            with anyio.fail_after(30):
                await backend.aclose()
    assert events(logs, "ray.driver_lost")[0]["status"] == -signal.SIGKILL


@needs_ray
async def test_hung_driver_is_killed_and_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """A driver that does not answer within the request timeout is killed: the caller gets one line."""
    monkeypatch.setattr(_driverclient, "REQUEST_TIMEOUT", 1.0)
    with structlog.testing.capture_logs() as logs:
        async with reports() as got, anyio.create_task_group() as tg:
            backend = RayDriverBackend(LOCAL, env=driver_env())
            await tg.start(backend.run)
            driver = backend._driver
            assert driver is not None
            os.kill(driver.process.pid, signal.SIGSTOP)
            started = time.monotonic()
            with pytest.raises(RayUnavailable, match=r"^the Ray driver did not answer Create within 1 s$"):
                await backend.create(request(got, "x"))
            assert time.monotonic() - started < 3.0
            await replaced(logs)
            with anyio.fail_after(30):
                await backend.aclose()
    assert len(events(logs, "ray.driver_hung")) == 1


SUPERVISOR = textwrap.dedent("""
    import sys, anyio
    from supervisor.config._schema import RayOptions, RaySettings
    from supervisor.process._reaper import Reaper
    from supervisor.ray._backend import CreateRequest, HostTicket
    from supervisor.ray._driverclient import RayDriverBackend
    from tests.raycluster import driver_env

    async def main():
        reaper = Reaper()
        async with anyio.create_task_group() as tg:
            await tg.start(reaper.run)
            backend = RayDriverBackend(RaySettings(connect_timeout=60), env=driver_env(), reaper=reaper)
            await tg.start(backend.run)
            ticket = HostTicket(actor="h", generation=1, token="t", address=("127.0.0.1", int(sys.argv[1])),
                                lease_timeout=5.0)
            await backend.create(CreateRequest(key="h#1", options=RayOptions(num_cpus=0), ticket=ticket))
            print("PREFIX", reaper.prefix, flush=True)
            await anyio.sleep_forever()

    anyio.run(main)
""")


def _marked(prefix: str) -> list[int]:
    found = []
    for proc in psutil.process_iter():
        try:
            with open(f"/proc/{proc.pid}/environ", "rb") as f:
                if prefix.encode() in f.read():
                    found.append(proc.pid)
        except OSError:
            continue
    return found


@needs_ray
async def test_sigkilled_supervisor_leaves_no_ray_process(tmp_path: Path) -> None:
    """SIGKILL of the supervisor: the driver, the private Ray and its host are gone within the bound."""
    async with reports() as got:
        proc = subprocess.Popen([sys.executable, "-c", SUPERVISOR, str(got.address[1])], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)
        try:
            report = await got.next(timeout=90)
            assert proc.stdout is not None
            line = ""
            while not line.startswith("PREFIX "):  # structlog's own lines come first
                line = await anyio.to_thread.run_sync(proc.stdout.readline)
                assert line, "the supervisor ended without its prefix"
            prefix = line.split()[1]
            ray_pids = _marked(prefix)
            assert report.pid in ray_pids  # the host's worker carries the supervisor's cookie
            assert len(ray_pids) >= 4  # driver, GCS, raylet, the worker at least
            proc.kill()
            killed = time.monotonic()
            with anyio.fail_after(LEFTOVER_BOUND + 5):
                while _marked(prefix):
                    await anyio.sleep(0.05)
            took = time.monotonic() - killed
        finally:
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
    assert took < LEFTOVER_BOUND, f"Ray processes outlived the supervisor by {took:.1f} s"
    print(f"SIGKILLed supervisor -> no Ray process left: {took:.2f} s")
