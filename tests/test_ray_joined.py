"""`actorsup run` joined to a running cluster: a SIGKILLed supervisor leaves nothing, and ``address = "auto"``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from tests.harness import wait_gone
from tests.raycluster import ROOT, LoopbackCluster, cluster, needs_ray, no_leaked_processes

pytestmark = [pytest.mark.anyio, pytest.mark.slow, needs_ray]
__all__ = ["cluster", "no_leaked_processes"]  # the fixtures, used by name

WHERE = "tests.raycluster:WhereAmI"
LEASE_TIMEOUT = 2.0
# docs/RAY.md: a SIGKILLed supervisor's hosts end at the latest lease_timeout after its last
# lease frame (sent every lease_timeout / 5); 1 s more for the child's kill and the host's exit.
LEFTOVER_BOUND = LEASE_TIMEOUT + LEASE_TIMEOUT / 5 + 1.0

CONFIG = """
[supervisor]
heartbeat_interval = 0.5
heartbeat_timeout = 3.0
start_timeout = 60.0
control_socket = "{folder}/ctl.sock"

[ray]
address = "{address}"
namespace = "{namespace}"
listen = "127.0.0.1"
lease_timeout = {lease}
connect_timeout = {connect}
"""

ACTOR = """
[actors.{name}]
target = "{target}"
kind = "ray"
ray = {{ num_cpus = 1, scheduling_strategy = "SPREAD" }}
"""

# Which of the named host actors Ray still has, asked from a driver of its own.
ALIVE = textwrap.dedent("""
    import json, sys
    import ray
    from ray._private import services
    services.resolve_ip_for_localhost = lambda host: host
    ray.init(address=sys.argv[1], namespace=sys.argv[2], _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False, logging_level="ERROR")
    alive = []
    for key in sys.argv[3:]:
        try:
            ray.get_actor(key)
        except ValueError:
            continue
        except AssertionError:
            pass  # listed, but its dead job's class table is gone already: on its way out, still listed
        alive.append(key)
    print(json.dumps(alive))
""")


@pytest.fixture
def anyio_backend() -> str:
    return "trio"  # the supervisor is a subprocess: the test only reads its events


@pytest.fixture
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="rayj-", dir="/tmp") as d:  # short: AF_UNIX paths
        yield Path(d)


def write(folder: Path, address: str, namespace: str, actors: int, *, connect: float = 30.0) -> Path:
    text = CONFIG.format(folder=folder, address=address, namespace=namespace, lease=LEASE_TIMEOUT, connect=connect)
    text += "".join(ACTOR.format(name=f"j{i}", target=WHERE) for i in range(actors))
    path = folder / "ray.toml"
    path.write_text(text)
    return path


class Run:
    """``actorsup run CONFIG`` as a subprocess; its JSON events, read as they come."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "supervisor", "run", str(config)], cwd=ROOT, env=env, text=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.events: list[dict[str, Any]] = []

    async def wait_for(self, name: str, count: int = 1, timeout: float = 90.0) -> list[dict[str, Any]]:
        assert self.process.stdout is not None
        with anyio.fail_after(timeout):
            while len(found := [e for e in self.events if e.get("event") == name]) < count:
                line = await anyio.to_thread.run_sync(self.process.stdout.readline)
                if not line:
                    assert self.process.stderr is not None
                    pytest.fail(f"the supervisor ended ({self.process.wait()}) before {count} {name}: "
                                + self.process.stderr.read()[-2000:])
                if line.startswith("{"):
                    self.events.append(json.loads(line))
        return found

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def env_for(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "ACTORSUP_RAY_HOST")}
    return {**env, "PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0", **extra}


async def alive_hosts(address: str, namespace: str, keys: list[str]) -> list[str]:
    """Asked from a Ray driver of its own, without blocking the loop that reads the supervisor's events."""
    with anyio.fail_after(60):
        done = await anyio.run_process([sys.executable, "-c", ALIVE, address, namespace, *keys], cwd=ROOT,
                                       env=env_for(), stderr=subprocess.PIPE)
    return list(json.loads(done.stdout.decode().strip().splitlines()[-1]))


def cluster_pids(cluster: LoopbackCluster) -> set[int]:
    """The cluster's own raylets and GCS: not the supervisor's to kill."""
    head = cluster.cluster.head_node.all_processes
    return set(cluster.raylets()) | {head["gcs_server"][0].process.pid}


def live(pids: set[int]) -> set[int]:
    found = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                found.add(pid)
        except psutil.NoSuchProcess:
            continue
    return found


async def test_sigkilled_joined_supervisor_leaves_no_actor(cluster: LoopbackCluster, folder: Path) -> None:
    """SIGKILL of a supervisor joined to a cluster: its driver, hosts, children and Ray actors are gone within
    lease_timeout + one lease period; the cluster keeps running."""
    namespace = f"joined-{uuid.uuid4().hex[:8]}"
    run = Run(write(folder, cluster.address, namespace, 3), env_for())
    try:
        wheres = await run.wait_for("where", count=3)
        raylets = cluster.raylets()
        assert {raylets.get(e["raylet"]) for e in wheres} == {"head", "node_a", "node_b"}  # spread over the nodes
        driver = (await run.wait_for("ray.started"))[0]["pid"]
        keys = [e["key"] for e in await run.wait_for("ray.host_created", count=3)]
        children = {e["pid"] for e in await run.wait_for("ray.connected", count=3)}
        hosts = {psutil.Process(pid).ppid() for pid in children}  # a child's parent is its host (a Ray worker)
        ours = children | hosts | {driver}
        assert live(ours) == ours
        assert sorted(await alive_hosts(cluster.address, namespace, keys)) == sorted(keys)
        theirs = cluster_pids(cluster)
        assert not theirs & ours
        run.process.kill()
        killed = time.monotonic()
        await wait_gone(*ours, timeout=LEFTOVER_BOUND + 10)
        took = time.monotonic() - killed
    finally:
        run.close()
    assert took < LEFTOVER_BOUND, f"the supervisor's processes outlived it by {took:.1f} s"
    with anyio.fail_after(30):  # the GCS drops the dead actors' names a moment after their processes end
        while await alive_hosts(cluster.address, namespace, keys):
            await anyio.sleep(0.5)
    assert live(theirs) == theirs
    print(f"SIGKILLed joined supervisor -> no host or child left: {took:.2f} s (bound {LEFTOVER_BOUND:.1f} s)")


async def test_silent_supervisor_loses_its_lease(cluster: LoopbackCluster, folder: Path) -> None:
    """A supervisor that goes silent without closing its connections (SIGSTOP: a partition): its hosts and
    children end themselves within lease_timeout + one lease period, not at once."""
    namespace = f"lease-{uuid.uuid4().hex[:8]}"
    run = Run(write(folder, cluster.address, namespace, 2), env_for())
    try:
        await run.wait_for("where", count=2)
        children = {e["pid"] for e in await run.wait_for("ray.connected", count=2)}
        ours = children | {psutil.Process(pid).ppid() for pid in children}
        run.process.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        await wait_gone(*ours, timeout=LEFTOVER_BOUND + 10)
        took = time.monotonic() - stopped
    finally:
        run.close()  # SIGKILL ends a stopped process too
    # not at once (they wait for the lease), and the bound
    assert LEASE_TIMEOUT / 2 < took < LEFTOVER_BOUND, f"hosts ended {took:.2f} s after the stop"
    print(f"silent supervisor -> hosts and children ended: {took:.2f} s (lease_timeout {LEASE_TIMEOUT:g} s)")


async def test_auto_joins_the_cluster_of_ray_address(cluster: LoopbackCluster, folder: Path) -> None:
    """address = "auto" with RAY_ADDRESS set: the supervisor joins that cluster and runs the actor; SIGTERM
    stops it cleanly."""
    run = Run(write(folder, "auto", f"auto-{uuid.uuid4().hex[:8]}", 1), env_for(RAY_ADDRESS=cluster.address))
    try:
        started = await run.wait_for("ray.started")
        assert (started[0]["address"], started[0]["nodes"]) == (cluster.address, len(cluster.raylets()))
        where = await run.wait_for("where")
        assert where[0]["raylet"] in cluster.raylets()
        run.process.send_signal(signal.SIGTERM)
        status = await anyio.to_thread.run_sync(lambda: run.process.wait(60))
    finally:
        run.close()
    assert status == 0


async def test_auto_without_a_cluster_is_one_line(folder: Path) -> None:
    """address = "auto" whose RAY_ADDRESS answers nothing: one line naming it, exit 2, within connect_timeout."""
    connect = 3.0
    run = Run(write(folder, "auto", "none", 1, connect=connect), env_for(RAY_ADDRESS="127.0.0.1:1"))
    began = time.monotonic()
    try:
        status = await anyio.to_thread.run_sync(lambda: run.process.wait(60))
        took = time.monotonic() - began
        assert run.process.stderr is not None
        err = run.process.stderr.read()
    finally:
        run.close()
    assert status == 2, err
    assert err == "actorsup: could not reach Ray at 127.0.0.1:1: Connection refused\n"
    assert took < connect + 5 + 3, f"took {took:.1f} s"  # + the driver's start + the supervisor's own


async def test_a_killed_host_is_restarted_by_actorsup_alone(cluster: LoopbackCluster, folder: Path) -> None:
    """SIGKILL of the Ray worker hosting an actor: actorsup starts generation 2, and Ray keeps no copy of the
    old host (none restarted, none dials back to be refused). test_ray_driver pins the options behind it."""
    namespace = f"restart-{uuid.uuid4().hex[:8]}"
    run = Run(write(folder, cluster.address, namespace, 1), env_for())
    try:
        (first,) = await run.wait_for("ray.host_created")
        (connected,) = await run.wait_for("ray.connected")
        host = psutil.Process(connected["pid"]).ppid()
        assert host not in cluster_pids(cluster)
        os.kill(host, signal.SIGKILL)  # the Ray worker this test's supervisor asked for
        second = (await run.wait_for("ray.host_created", count=2))[1]
        assert (first["key"], second["key"]) == ("j0#1", "j0#2")
        await run.wait_for("ray.connected", count=2)
        with anyio.fail_after(30):  # Ray marks the killed actor dead; a restarting one would stay listed
            while await alive_hosts(cluster.address, namespace, ["j0#1", "j0#2"]) != ["j0#2"]:
                await anyio.sleep(0.5)
        assert [e for e in run.events if e.get("event") == "ray.refused"] == []
        run.process.send_signal(signal.SIGTERM)
        status = await anyio.to_thread.run_sync(lambda: run.process.wait(60))
    finally:
        run.close()
    assert status == 0
