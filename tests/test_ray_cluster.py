"""The Ray driver on a three-node loopback cluster: placement, SPREAD, pending reasons, kills, a lost node."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import anyio
import pytest
import structlog.testing

from supervisor.config._schema import RayOptions, RaySettings
from supervisor.ray._backend import CreateRequest, HostTicket
from supervisor.ray._driverclient import RayDriverBackend
from tests.raycluster import LoopbackCluster, Reports, cluster, driver_env, needs_ray, no_leaked_processes, reports

pytestmark = [pytest.mark.anyio, pytest.mark.slow, needs_ray]
__all__ = ["cluster", "no_leaked_processes"]  # the fixtures, used by name

# Ray declares a lost node dead after its health checks fail (20-70 s); a replacement
# must be running well before that.
REPLACEMENT_BOUND = 10.0


@pytest.fixture
def anyio_backend() -> str:
    return "trio"  # Ray costs seconds per driver: the client code is the same on both (see test_ray_driver_client)


@contextlib.asynccontextmanager
async def backend_on(cluster: LoopbackCluster) -> AsyncIterator[tuple[RayDriverBackend, Reports]]:
    async with reports() as got, anyio.create_task_group() as tg:
        backend = RayDriverBackend(
            RaySettings(address=cluster.address, namespace="test", connect_timeout=30), env=driver_env()
        )
        info = await tg.start(backend.run)
        assert info.nodes >= 3
        try:
            yield backend, got
        finally:
            with anyio.fail_after(30):
                await backend.aclose()


def request(got: Reports, actor: str, generation: int = 1, **options: object) -> CreateRequest:
    ticket = HostTicket(actor=actor, generation=generation, token="t", address=got.address, lease_timeout=5.0)
    return CreateRequest(key=f"{actor}#{generation}", options=RayOptions(**options), ticket=ticket)  # type: ignore[arg-type]


async def test_resources_pick_the_node(cluster: LoopbackCluster) -> None:
    """An actor asking for a node's custom resource runs on that node, and a kill ends it."""
    async with backend_on(cluster) as (backend, got):
        await backend.create(request(got, "a", num_cpus=0, resources={"node_b": 0.1}))
        report = await got.next()
        assert (report.actor, report.node) == ("a", cluster.nodes["node_b"])
        await backend.kill("a#1")
        with anyio.fail_after(20):
            await report.ended.wait()


async def test_spread(cluster: LoopbackCluster) -> None:
    """Three SPREAD actors of one CPU each land on three different nodes."""
    async with backend_on(cluster) as (backend, got):
        for name in ("s1", "s2", "s3"):
            await backend.create(request(got, name, num_cpus=1, scheduling_strategy="SPREAD"))
        nodes = {(await got.next()).node for _ in range(3)}
        assert len(nodes) == 3


async def test_unsatisfiable_is_pending_with_reason(cluster: LoopbackCluster) -> None:
    """An actor no node can hold is pending with the missing resource; one created after it still starts."""
    async with backend_on(cluster) as (backend, got):
        await backend.create(request(got, "big", num_cpus=0, resources={"big_node": 1}))
        await backend.create(request(got, "small", num_cpus=0))
        report = await got.next()
        assert report.actor == "small"
        with anyio.fail_after(10):
            while backend.pending("big#1") is None:
                await anyio.sleep(0.1)
        assert backend.pending("big#1") == 'no node has {"big_node": 1}'
        assert backend.pending("small#1") is None
        await backend.kill("big#1")
        assert backend.pending("big#1") is None


async def test_lost_node_replacement_avoids_it(cluster: LoopbackCluster) -> None:
    """A host whose node died is replaced on another node at once, not after Ray's node-death delay."""
    name = cluster.fresh("node_c")
    node = cluster.add(name)
    dead = cluster.nodes[name]
    async with backend_on(cluster) as (backend, got):
        await backend.create(request(got, "v", num_cpus=0, resources={name: 0.1}))
        first = await got.next()
        assert first.node == dead
        cluster.cluster.remove_node(node, allow_graceful=False)
        lost = time.monotonic()
        # What the supervisor does on the host's heartbeat timeout: kill it as unresponsive, start another.
        with structlog.testing.capture_logs() as logs:
            await backend.kill("v#1", unresponsive=True)
            await backend.create(request(got, "v", generation=2, num_cpus=0, scheduling_strategy="SPREAD"))
            second = await got.next(timeout=REPLACEMENT_BOUND)
        took = time.monotonic() - lost
        assert (second.generation, second.node != dead) == (2, True)
        assert took < REPLACEMENT_BOUND, f"replacement took {took:.1f} s"
        assert {"event": "ray.node_suspect", "node": dead} in [
            {"event": e["event"], "node": e.get("node")} for e in logs if e["event"] == "ray.node_suspect"]
        created = [e for e in logs if e["event"] == "ray.host_created" and e.get("key") == "v#2"]
        assert created and created[0]["node"] not in (None, dead)  # pinned to a node that is not suspect
