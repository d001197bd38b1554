"""kind = "ray" end to end on a loopback cluster: a real Supervisor, the driver, RayHost and the channel."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from supervisor import Supervisor
from supervisor.config import parse_config
from supervisor.logs._router import LogRouter
from supervisor.logs._setup import configure_supervisor_logging
from supervisor.ray._driverclient import RayDriverBackend
from tests.harness import CaptureSink, state_dir
from tests.raycluster import LoopbackCluster, cluster, driver_env, needs_ray, no_leaked_processes

pytestmark = [pytest.mark.anyio, pytest.mark.slow, needs_ray]
__all__ = ["cluster", "no_leaked_processes"]  # the fixtures, used by name

WHERE = "tests.raycluster:WhereAmI"
# A lost node's actors must run again in about heartbeat_timeout (+ the kill bound), far below
# Ray's own node-death detection (20-70 s).
HEARTBEAT_TIMEOUT = 1.5
REPLACED_WITHIN = 10.0


@pytest.fixture
def anyio_backend() -> str:
    return "trio"  # each start costs a driver and Ray workers: the client code is the same on both backends


@asynccontextmanager
async def supervisor_on(cluster: LoopbackCluster, actors: dict[str, dict[str, Any]]
                        ) -> AsyncIterator[tuple[Supervisor, CaptureSink]]:
    data = {
        "supervisor": {"heartbeat_interval": 0.5, "heartbeat_timeout": HEARTBEAT_TIMEOUT, "start_timeout": 30.0,
                       "state_dir": state_dir()},
        "ray": {"address": cluster.address, "namespace": "e2e", "listen": "127.0.0.1"},
        "actors": actors,
    }
    config = parse_config(data, label="e2e.toml")
    env = {k: v for k, v in driver_env().items() if k != "ACTORSUP_RAY_HOST"}  # the real RayHost
    log = CaptureSink()
    router = LogRouter([log])
    configure_supervisor_logging(router)
    sup = Supervisor(config, router=router, ray_backend=lambda c: RayDriverBackend(c.ray, env=env))
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        try:
            yield sup, log
        finally:
            with anyio.CancelScope(shield=True):
                sup.shutdown_nowait()
                with anyio.move_on_after(60):
                    await sup.closed.wait()
                if not sup.closed.is_set():
                    pytest.fail("shutdown took over 60 s; last events: " + "\n".join(
                        f"{e.get('event')} {e.get('actor')} {e.get('state')} {e.get('reason')}"
                        for e in log.events[-40:]))


def spread() -> dict[str, Any]:
    return {"target": WHERE, "kind": "ray", "ray": {"num_cpus": 1, "scheduling_strategy": "SPREAD"},
            "backoff_initial": 0.05}


async def test_spread_and_pending(cluster: LoopbackCluster) -> None:
    """SPREAD actors run on three nodes; one no node can hold is pending with the reason, then starts on a
    node that has it."""
    actors = {f"s{i}": spread() for i in range(3)}
    actors["big"] = {"target": WHERE, "kind": "ray", "ray": {"num_cpus": 0, "resources": {"big_node": 1}}}
    async with supervisor_on(cluster, actors) as (sup, log):
        wheres = await log.wait_for("where", count=3, timeout=90)
        raylets = cluster.raylets()
        assert {raylets.get(e["raylet"]) for e in wheres} == {"head", "node_a", "node_b"}
        pending = await log.wait_for("actor.pending", actor="big", timeout=30)
        assert pending[0]["reason"] == 'no node has {"big_node": 1}'
        assert sup._actor_row("big", 0, 0.0)["pending"] == 'no node has {"big_node": 1}'  # what status shows
        assert not log.find("actor.started", actor="big")
        cluster.add("big_node")  # a node that has it joins: the pending actor starts there
        started = await log.wait_for("where", actor="big", timeout=60)
        assert cluster.raylets().get(started[0]["raylet"]) == "big_node"


async def test_lost_node_restarts_elsewhere_fast(cluster: LoopbackCluster) -> None:
    """An ungracefully removed node: its actor runs again on another node in about heartbeat_timeout."""
    name = cluster.fresh("node_c")
    node = cluster.add(name)
    count = len(cluster.raylets())
    actors = {f"v{i}": spread() for i in range(count)}  # one per node, one of them on the new node
    async with supervisor_on(cluster, actors) as (_, log):
        wheres = await log.wait_for("where", count=count, timeout=90)
        raylets = cluster.raylets()
        on_c = [e["actor"] for e in wheres if raylets.get(e["raylet"]) == name]
        assert len(on_c) == 1, wheres
        victim = on_c[0]
        cluster.cluster.remove_node(node, allow_graceful=False)
        removed = time.monotonic()
        again = await log.wait_for("where", count=2, actor=victim, timeout=REPLACED_WITHIN + 20)
        took = time.monotonic() - removed
        assert raylets.get(again[1]["raylet"]) not in (None, name)
        assert took < REPLACED_WITHIN, f"restarted after {took:.1f} s"
        print(f"lost node -> replacement running: {took:.2f} s")
