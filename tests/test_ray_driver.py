"""The driver's decisions without Ray: versions, reachability, host options, pending reasons, suspects, the loop."""

from __future__ import annotations

import io
import socket
import time
import types

import pytest

from supervisor.config._schema import RayOptions
from supervisor.ray._backend import CreateRequest, HostTicket
from supervisor.ray._driver import Driver, _unreachable, check_version, serve
from supervisor.ray._placement import Placement, demand, node_resources
from supervisor.ray._wire import (
    Create,
    Done,
    Failed,
    Init,
    Kill,
    Pending,
    Reasons,
    Shutdown,
    decode_reply,
    encode,
)

NODES = [
    {"NodeID": "h", "Alive": True, "Resources": {"CPU": 2.0, "head": 1.0, "memory": 8e9}},
    {"NodeID": "a", "Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}},
    {"NodeID": "x", "Alive": False, "Resources": {"CPU": 64.0, "big_node": 1.0}},
]
FREE = {"h": {"CPU": 2.0, "head": 1.0}, "a": {"CPU": 4.0, "GPU": 1.0}}


def _never() -> dict[str, dict[str, float]]:
    raise AssertionError("free resources read without a suspect node")


class TestVersion:
    @pytest.mark.parametrize("version", ["2.40.0", "2.60.0", "2.99.1"])
    def test_supported(self, version: str) -> None:
        """Ray 2.40 up to (not including) 3 is supported."""
        assert check_version(version) is None

    @pytest.mark.parametrize("version", ["2.39.9", "3.0.0", "1.13.0", "nightly"])
    def test_unsupported(self, version: str) -> None:
        """Any other version is one line naming it and the range."""
        assert check_version(version) == (
            f"Ray {version} is not supported: install ray>=2.40,<3 (pip install 'actorsup[ray]')")

    def test_init_refuses_unsupported_version(self) -> None:
        """Init with an unsupported Ray fails fatally before connecting."""
        fake = types.SimpleNamespace(__version__="2.30.0")
        reply = Driver(fake).init(Init(id=3, address="local", namespace="n", connect_timeout=1))
        assert reply == Failed(id=3, error=check_version("2.30.0") or "", fatal=True)

    def test_init_without_ray(self) -> None:
        """Without Ray installed, Init says which extra to install."""
        reply = Driver(None).init(Init(id=1, address="local", namespace="n", connect_timeout=1))
        assert reply == Failed(id=1, error="Ray is not installed: pip install 'actorsup[ray]'", fatal=True)


class TestUnreachable:
    def test_refused(self) -> None:
        """A closed port is named at once, with the system's reason."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # bound, not listening: refused
            started = time.monotonic()
            problem = _unreachable(f"127.0.0.1:{port}", 5.0)
        assert problem == f"could not reach Ray at 127.0.0.1:{port}: Connection refused"
        assert time.monotonic() - started < 1.0

    def test_listening_port_passes(self) -> None:
        """A port that accepts connections is left to ray.init."""
        with socket.create_server(("127.0.0.1", 0)) as server:
            assert _unreachable(f"127.0.0.1:{server.getsockname()[1]}", 1.0) is None

    @pytest.mark.parametrize("address", ["local", "auto"])
    def test_not_probed(self, address: str) -> None:
        """local and auto have no address to probe."""
        assert _unreachable(address, 1.0) is None


class TestPlacement:
    def test_demand(self) -> None:
        """An actor with no num_cpus needs Ray's one CPU; zero amounts are no demand."""
        assert demand(RayOptions()) == {"CPU": 1.0}
        assert demand(RayOptions(num_cpus=0, num_gpus=1, memory=1024, resources={"big_node": 1, "z": 0})) == {
            "GPU": 1.0, "memory": 1024.0, "big_node": 1.0}

    def test_dead_nodes_do_not_count(self) -> None:
        """Only alive nodes are candidates."""
        assert [n for n, _ in node_resources(NODES)] == ["h", "a"]

    def test_missing_resource(self) -> None:
        """A resource that only a dead node had is reported missing, as JSON."""
        reason = Placement().why_waiting({"CPU": 1.0, "big_node": 1.0}, node_resources(NODES))
        assert reason == 'no node has {"big_node": 1}'

    def test_not_together(self) -> None:
        """Resources that exist, but not on one node, are named as a whole."""
        reason = Placement().why_waiting({"GPU": 1.0, "head": 1.0}, node_resources(NODES))
        assert reason == 'no node has all of {"GPU": 1, "head": 1} at once'

    def test_fits_somewhere(self) -> None:
        """A host some node could hold is waiting for Ray."""
        assert Placement().why_waiting({"CPU": 2.0}, node_resources(NODES)) == "waiting for Ray to place it"

    def test_no_suspect_leaves_it_to_ray(self) -> None:
        """Without a suspect node, Ray's own strategy places the host (free resources are not even read)."""
        assert Placement().avoiding_suspects({"CPU": 1.0}, node_resources(NODES), _never) is None

    def test_suspect_avoided(self) -> None:
        """With a suspect node, the host is pinned to a node that is not suspect and has it free."""
        placement = Placement()
        placement.suspect("a", object())
        assert placement.avoiding_suspects({"CPU": 1.0}, node_resources(NODES), lambda: FREE) == "h"

    def test_most_free_cpu_wins(self) -> None:
        """Among fitting nodes, the one with the most free CPU; a full node is not chosen."""
        placement = Placement()
        placement.suspect("x2", object())
        nodes = [("h", {"CPU": 8.0}), ("a", {"CPU": 2.0}), ("x2", {"CPU": 2.0})]
        free = {"h": {"CPU": 0.5}, "a": {"CPU": 1.0}, "x2": {"CPU": 2.0}}
        assert placement.avoiding_suspects({"CPU": 1.0}, nodes, lambda: free) == "a"
        assert placement.avoiding_suspects({"CPU": 1.5}, nodes, lambda: free) is None

    def test_suspect_but_nowhere_else(self) -> None:
        """If only the suspect node fits, the choice stays Ray's."""
        placement = Placement()
        placement.suspect("a", object())
        assert placement.avoiding_suspects({"GPU": 1.0}, node_resources(NODES), lambda: FREE) is None

    def test_probe_answer_clears(self) -> None:
        """A suspect node whose probe answered is trusted again."""
        placement, probe = Placement(), object()
        placement.suspect("a", probe)
        assert placement.settle([probe]) == ["a"]
        assert placement.avoiding_suspects({"CPU": 1.0}, node_resources(NODES), _never) is None

    def test_dead_suspect_forgotten(self) -> None:
        """A suspect node that Ray declared dead is no longer tracked."""
        placement = Placement()
        placement.suspect("x", object())
        assert placement.avoiding_suspects({"CPU": 1.0}, node_resources(NODES), _never) is None
        assert placement.suspects == {}


class _RecordingHostClass:
    """Stands in for ``ray.remote(RayHost)``: records the options each host is created with."""

    def __init__(self) -> None:
        self.created: list[dict[str, object]] = []

    def options(self, **options: object) -> _RecordingHostClass:
        self.created.append(options)
        return self

    def remote(self, ticket: bytes) -> object:
        return object()


class TestCreate:
    def test_ray_never_restarts_or_retries_a_host(self) -> None:
        """Each host is created named, in the namespace, non-detached, with Ray's restarts and retries off, and
        with the actor's resources: restarts are actorsup's alone."""
        driver = Driver(types.SimpleNamespace(nodes=lambda: NODES))
        driver.namespace = "ns"
        driver._host_class = hosts = _RecordingHostClass()
        ticket = HostTicket(actor="a", generation=3, token="t", address=("127.0.0.1", 1), lease_timeout=5.0)
        options = RayOptions(num_cpus=0.5, resources={"head": 1.0})
        reply = driver.create(Create(id=7, request=CreateRequest(key="a#3", options=options, ticket=ticket)))
        assert reply == Done(id=7)
        assert hosts.created == [{"name": "a#3", "namespace": "ns", "max_restarts": 0, "max_task_retries": 0,
                                  "lifetime": None, "num_cpus": 0.5, "resources": {"head": 1.0}}]


class TestServe:
    def test_requests_in_order_until_shutdown(self) -> None:
        """Each request gets its reply with its id; a garbled line is skipped; Shutdown ends the loop."""
        driver = Driver(types.SimpleNamespace(is_initialized=lambda: False))
        lines = b"".join([encode(Pending(id=1)), b"{not json\n", encode(Kill(id=2, key="k")), encode(Shutdown(id=3)),
                          encode(Pending(id=4))])
        out = io.BytesIO()
        assert serve(driver, io.BytesIO(lines), out) == 0
        replies = [decode_reply(line) for line in out.getvalue().splitlines()]
        assert replies == [Reasons(id=1, reasons={}), Done(id=2), Done(id=3)]

    def test_fatal_failure_ends(self) -> None:
        """A fatal Init failure is answered, then the loop ends with status 1."""
        out = io.BytesIO()
        status = serve(Driver(None), io.BytesIO(encode(Init(id=1, address="local", namespace="n",
                                                            connect_timeout=1))), out)
        assert status == 1
        assert isinstance(decode_reply(out.getvalue()), Failed)
