"""A Ray cluster of three nodes on 127.0.0.1 for the driver's tests, and a small host actor.

``ray.cluster_utils.Cluster`` runs each node's raylet on loopback; custom
resources (``head``, ``node_a``, ``node_b``) tell the nodes apart. The cluster
is shared per module and always shut down. ``ReportingHost`` stands in for
``actors._rayhost.RayHost``: it dials the ticket's address and says which node
it runs on, and holds the connection open until Ray kills it.

Tests using these skip without Ray, unless ``CI`` is set (CI installs the extra,
so there a missing Ray fails them).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import msgspec
import psutil
import pytest
from anyio.abc import SocketStream

from actors import Actor

ROOT = Path(__file__).resolve().parent.parent
HOST_CLASS = "tests.raycluster:ReportingHost"

HAVE_RAY = importlib.util.find_spec("ray") is not None  # not imported here: actors import this module too
needs_ray = pytest.mark.skipif(not HAVE_RAY and not os.environ.get("CI"), reason="needs the ray extra")


class WhereAmI(Actor):
    """A ray actor that says which node it runs on: its host's parent is that node's raylet."""

    async def run(self) -> None:
        host = psutil.Process(os.getppid())
        self.log.info("where", raylet=host.ppid())
        await anyio.sleep_forever()


class ReportingHost:
    """A host actor that reports (key, node) to the ticket's address and keeps the connection."""

    def __init__(self, ticket: bytes) -> None:
        import ray as ray_in_worker

        fields = msgspec.msgpack.decode(ticket)
        host, port = fields["address"]
        self.sock = socket.create_connection((host, port), timeout=10)
        node = ray_in_worker.get_runtime_context().get_node_id()
        line = {"actor": fields["actor"], "generation": fields["generation"], "node": node, "pid": os.getpid()}
        self.sock.sendall(json.dumps(line).encode() + b"\n")

    def ping(self) -> int:
        return os.getpid()


@dataclass
class Report:
    actor: str
    generation: int
    node: str
    pid: int
    ended: anyio.Event = field(default_factory=anyio.Event, repr=False)  # the host's connection closed


class Reports:
    """A TCP listener on 127.0.0.1 that receives the hosts' reports."""

    def __init__(self) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[Report](100)
        self.address: tuple[str, int] = ("127.0.0.1", 0)

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self.address = ("127.0.0.1", listener.extra(anyio.abc.SocketAttribute.local_port))
        task_status.started()
        async with listener:
            await listener.serve(self._one)

    async def _one(self, stream: SocketStream) -> None:
        buffer = b""
        while b"\n" not in buffer:
            buffer += await stream.receive()
        report = Report(**json.loads(buffer.partition(b"\n")[0]))
        await self.send.send(report)
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            async with stream:
                while True:
                    await stream.receive()  # until Ray kills the host
        report.ended.set()

    async def next(self, timeout: float = 60.0) -> Report:
        with anyio.fail_after(timeout):
            return await self.receive.receive()


@contextlib.asynccontextmanager
async def reports() -> AsyncIterator[Reports]:
    got = Reports()
    async with got.send, got.receive, anyio.create_task_group() as tg:
        await tg.start(got.serve)
        yield got
        tg.cancel_scope.cancel()


def driver_env() -> dict[str, str]:
    """The driver's environment: the small host class, and this repository importable in workers."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "ACTORSUP_RAY_HOST": HOST_CLASS, "PYTHONPATH": path}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_args(resources: dict[str, float], cpus: int = 2) -> dict[str, Any]:
    """One loopback node; its own dashboard-agent port (the default one is shared by all nodes)."""
    return {
        "num_cpus": cpus, "resources": resources, "node_ip_address": "127.0.0.1",
        "dashboard_agent_listen_port": _free_port(),
    }


@dataclass
class LoopbackCluster:
    cluster: Any
    nodes: dict[str, str]  # resource name -> node id

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def add(self, name: str) -> Any:
        node = self.cluster.add_node(wait=True, **node_args({name: 1}))
        self.nodes[name] = node.node_id
        return node

    def fresh(self, prefix: str) -> str:
        """A resource name no node had: a removed node stays "alive" to Ray for a while, with its resources."""
        return f"{prefix}{sum(name.startswith(prefix) for name in self.nodes)}"

    def raylets(self) -> dict[int, str]:
        """raylet pid -> resource name of its node."""
        found = {}
        for node in [self.cluster.head_node, *self.cluster.worker_nodes]:
            name = next((n for n, node_id in self.nodes.items() if node_id == node.node_id), "?")
            found[node.all_processes["raylet"][0].process.pid] = name
        return found


def _ray_processes() -> set[int]:
    """Processes below this one that Ray started (its raylets and GCS, their workers and agents)."""
    me = psutil.Process()
    found = set()
    for proc in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if proc.name().startswith("ray::") or "/site-packages/ray/" in " ".join(proc.cmdline()[:3]):
                found.add(proc.pid)
    return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[LoopbackCluster]:
    """Three loopback nodes (head, node_a, node_b), two CPUs each; shut down after the module."""
    if not HAVE_RAY:
        pytest.fail("ray is not installed: pip install 'actorsup[ray]'")
    from ray.cluster_utils import Cluster

    with pytest.MonkeyPatch.context() as patch:
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
        patch.setenv("PYTHONPATH", path)  # the raylets' workers import tests.raycluster
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        made = Cluster(initialize_head=True, head_node_args={**node_args({"head": 1}), "include_dashboard": False})
        try:
            found = LoopbackCluster(made, {"head": made.head_node.node_id})
            found.add("node_a")
            found.add("node_b")
            yield found
        finally:
            made.shutdown()
            _kill_leftovers()


def _kill_leftovers() -> None:
    """Ray's agents can outlive a killed raylet: end what this module's cluster left."""
    procs = [psutil.Process(pid) for pid in _ray_processes() if psutil.pid_exists(pid)]
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(procs, timeout=5)


@pytest.fixture
def no_leaked_processes() -> Iterator[None]:
    """conftest's guard, but for the shared cluster: Ray's own pooled workers are its business."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    ray_owned = _ray_processes()
    leaked = {}
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if proc.pid not in before and proc.pid not in ray_owned and proc.status() != psutil.STATUS_ZOMBIE:
                leaked[proc.pid] = " ".join(proc.cmdline())
    if leaked:
        pytest.fail(f"test leaked processes: {leaked}")

