"""kind = "ray" actors over the network channel, with RayHost in plain subprocesses (tests/raylocal.py)."""

from __future__ import annotations

import io
import math
import os
import signal
from typing import Any

import anyio
import msgspec
import psutil
import pytest
from rich.console import Console

from actors._raymux import Handshake, encode_handshake
from supervisor.control._render import status_table
from supervisor.lifecycle._states import ActorState
from supervisor.ray._backend import CreateRequest, HostTicket
from supervisor.ray._spawner import PENDING_POLL
from tests.harness import CaptureSink, wait_gone
from tests.raylocal import LocalRayBackend, ray_supervisor, reap, start_host

pytestmark = pytest.mark.anyio
T = "tests.sample_actors:"
HANG = {"heartbeat_interval": 0.1, "heartbeat_timeout": 1.0}


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class TestRestarts:
    async def test_crash_restarts_the_actor(self, tmp_path) -> None:
        """An actor that raises in its first life is restarted on a new host, and its second life runs."""
        actors = {"c": {"target": T + "CrashOnce", "kind": "ray", "args": {"marker": str(tmp_path / "m")}}}
        async with ray_supervisor(actors) as (sup, log, backend):
            await log.wait_for("crashonce.second_life", actor="c")
            assert log.find("actor.exited", actor="c")[0]["reason"] == "crash"
            assert list(backend.requests) == ["c#1", "c#2"]
            assert sup.handle("c").state is ActorState.RUNNING
            await wait_gone(backend.hosts["c#1"].pid, timeout=10)  # the first host ended with its child

    async def test_blocked_loop_is_a_heartbeat_timeout(self, tmp_path) -> None:
        """A blocked loop stops the beats over the network: heartbeat_timeout, SIGKILL through the host, restart."""
        actors = {"b": {"target": T + "BlockLoop", "kind": "ray", "args": {"marker": str(tmp_path / "m")}, **HANG}}
        async with ray_supervisor(actors) as (_sup, log, _backend):
            first = (await log.wait_for("actor.started", actor="b"))[0]["pid"]
            await log.wait_for("blockloop.second_life", actor="b")
            timeout = log.find("actor.heartbeat_timeout", actor="b")[0]
            assert 1.0 <= timeout["last_beat_age"] < 1.0 + 0.1 + 0.5
            exited = log.find("actor.exited", actor="b")[0]
            assert exited["reason"] == "heartbeat_timeout" and exited["signal"] == "SIGKILL"
            assert log.find("ray.kill_timeout") == []  # the host answered the SIGKILL with EXIT
            assert gone(first)

    async def test_a_host_that_stops_answering_is_given_up_after_the_kill_bound(self, tmp_path) -> None:
        """A frozen host (a lost node): the beats stop, the SIGKILL gets no EXIT, the run ends by the bound."""
        actors = {"s": {"target": T + "Steady", "kind": "ray", **HANG}}
        async with ray_supervisor(actors) as (_sup, log, backend):
            first = (await log.wait_for("actor.started", actor="s"))[0]["pid"]
            host = backend.hosts["s#1"]
            os.kill(host.pid, signal.SIGSTOP)
            await log.wait_for("actor.heartbeat_timeout", actor="s")
            (lost,) = await log.wait_for("ray.kill_timeout", actor="s")
            assert lost["kill_bound"] == 2.0
            await log.wait_for("actor.started", actor="s", count=2)
            assert "s#1" in backend.killed  # ray.kill of the frozen host
            await wait_gone(first, timeout=5)  # PDEATHSIG: the child went with its host


class TestLogs:
    async def test_every_line_arrives_before_os_exit(self) -> None:
        """10,000 events through self.log, then print, stdlib logging and fd 1 and 2, then os._exit: all arrive."""
        n = 10_000
        actors = {"l": {"target": T + "LinesThenExit", "kind": "ray", "args": {"n": n}, "restart": "temporary"}}
        async with ray_supervisor(actors) as (_sup, log, _backend):
            await log.wait_for("actor.stopped", actor="l")
            lines = log.find("line", actor="l")
            assert [e["i"] for e in lines] == list(range(n))
            assert {e["pid"] for e in lines} == {log.find("actor.started", actor="l")[0]["pid"]}
            assert log.find("printed line", actor="l", stream="stdout")
            assert log.find("raw fd1 line", actor="l", stream="stdout")
            assert log.find("raw fd2 line", actor="l", stream="stderr")
            assert log.find("stdlib line", actor="l")
            assert log.find("actor.exited", actor="l")[0]["exit_code"] == 7

    async def test_the_event_before_garbage_is_never_lost(self) -> None:
        """Five lives that each log an event and then write garbage on the channel: all five events arrive."""
        lives = 5
        actors = {"g": {"target": T + "LogsThenGarbage", "kind": "ray", "max_restarts": lives,
                        "backoff_initial": 0.01, "backoff_max": 0.01}}
        async with ray_supervisor(actors) as (_sup, log, _backend):
            errors = await log.wait_for("actor.protocol_error", actor="g", count=lives)
            assert {e["pid"] for e in errors} <= {e["pid"] for e in log.find("garbage.next", actor="g")}


class TestGarbage:
    async def test_garbage_on_the_channel_errors_only_that_actor(self) -> None:
        """Bytes that are not a frame, relayed from a remote child: protocol error; the other actor carries on."""
        actors = {"g": {"target": T + "GarbageWriter", "kind": "ray", "max_restarts": 0},
                  "s": {"target": T + "Steady", "kind": "ray"}}
        async with ray_supervisor(actors) as (sup, log, _backend):
            await log.wait_for("actor.protocol_error", actor="g")
            await log.wait_for("actor.failed", actor="g")
            assert log.find("actor.exited", actor="g")[0]["reason"] == "protocol_error"
            await sup.wait_for_state("s", ActorState.RUNNING)
            assert log.find("actor.exited", actor="s") == []

    async def test_garbage_mux_frames_are_a_protocol_error(self) -> None:
        """A host that passes the handshake and then sends garbage frames: protocol error, the supervisor goes on."""
        backend = ScriptedBackend()
        actors = {"g": {"target": T + "Steady", "kind": "ray", "max_restarts": 0, "start_timeout": 5.0},
                  "s": {"target": T + "Steady"}}
        async with ray_supervisor(actors, backend) as (sup, log, _backend):
            with anyio.fail_after(10):
                await backend.created.wait()
            t = backend.requests["g#1"].ticket
            async with await anyio.connect_tcp(*t.address) as stream:
                hs = Handshake(actor=t.actor, generation=t.generation, token=t.token, pid=1, node="fake")
                await stream.send(encode_handshake(hs) + b"\xff\x00\x00\x00\x00")
                await sup.wait_for_state("g", ActorState.FAILED)
            (errored,) = log.find("actor.errored", actor="g")
            assert errored["reason"] == "protocol_error"
            assert "unknown mux frame kind 255" in sup.handle("g").last_error
            await sup.wait_for_state("s", ActorState.RUNNING)


class ScriptedBackend(LocalRayBackend):
    """Starts no host: the test speaks for it."""

    def __init__(self) -> None:
        super().__init__()
        self.created = anyio.Event()

    async def create(self, request: CreateRequest) -> None:
        self.requests[request.key] = request
        self.created.set()


async def refused_host(ticket: HostTicket, log: CaptureSink, actor: str) -> dict[str, Any]:
    """Start a host with ``ticket``; its ``ray.refused`` event, once the refused host has ended (it must)."""
    host = start_host(ticket)
    try:
        (refused,) = await log.wait_for("ray.refused", actor=actor)
        await reap(host, timeout=10)
    finally:
        if host.poll() is None:
            host.kill()
            await reap(host)
    return refused


class TestRefusals:
    async def test_a_stale_generation_is_refused_and_its_host_ends(self, tmp_path) -> None:
        """A host of the first generation that dials again (a node back from a partition) is refused; it ends."""
        actors = {"c": {"target": T + "CrashOnce", "kind": "ray", "args": {"marker": str(tmp_path / "m")}}}
        async with ray_supervisor(actors) as (_sup, log, backend):
            await log.wait_for("crashonce.second_life", actor="c")
            refused = await refused_host(backend.requests["c#1"].ticket, log, "c")
            assert refused["reason"] == "stale_generation"
            assert (refused["generation"], refused["current"]) == (1, 2)
            assert log.find("actor.exited", actor="c", count=None) == log.find("actor.exited", actor="c")
            assert len(log.find("actor.started", actor="c")) == 2  # the running generation is untouched

    async def test_a_wrong_token_is_refused(self) -> None:
        """A host with the right actor and generation but another token (another supervisor's) is refused."""
        backend = LocalRayBackend()
        backend.hold("s", "held by the test")
        actors = {"s": {"target": T + "Steady", "kind": "ray"}}
        async with ray_supervisor(actors, backend) as (sup, log, _backend):
            await log.wait_for("actor.pending", actor="s")
            ticket = msgspec.structs.replace(backend.requests["s#1"].ticket, token="another-run.secret")
            assert (await refused_host(ticket, log, "s"))["reason"] == "bad_token"
            backend.release("s")
            await sup.wait_for_state("s", ActorState.RUNNING)  # the real host still gets in

    async def test_garbage_instead_of_a_handshake_is_refused(self) -> None:
        """Bytes that are no handshake, and an unknown actor, are refused; the actor still starts."""
        actors = {"s": {"target": T + "Steady", "kind": "ray"}}
        async with ray_supervisor(actors) as (sup, log, _backend):
            await sup.wait_for_state("s", ActorState.RUNNING)
            address = sup.ray.listener.address  # type: ignore[union-attr]
            async with await anyio.connect_tcp(*address) as stream:
                await stream.send(b"GET / HTTP/1.0\r\n\r\n")
                await log.wait_for("ray.refused", reason="bad_handshake")
            async with await anyio.connect_tcp(*address) as stream:
                hs = Handshake(actor="nobody", generation=1, token="x", pid=1, node="n")
                await stream.send(encode_handshake(hs))
                await log.wait_for("ray.refused", reason="unknown_actor", actor="nobody")
            assert sup.handle("s").state is ActorState.RUNNING


class TestPending:
    async def test_a_pending_actor_waits_without_start_timeout_and_holds_up_nobody(self) -> None:
        """Unplaced by Ray: actor.pending with the reason, status shows it, start_timeout does not run, others start."""
        backend = LocalRayBackend()
        backend.hold("p", "no node has {'big_node': 1.0}")
        start_timeout = 0.5
        actors = {"p": {"target": T + "Steady", "kind": "ray", "start_timeout": start_timeout},
                  "s": {"target": T + "Steady", "kind": "ray"}}
        async with ray_supervisor(actors, backend) as (sup, log, _backend):
            (pending,) = await log.wait_for("actor.pending", actor="p")
            assert pending["reason"] == "no node has {'big_node': 1.0}"
            await sup.wait_for_state("s", ActorState.RUNNING)
            # The spawner asks Ray every PENDING_POLL s: so many asks span twice p's start_timeout on its clock.
            await backend.wait_asked("p#1", math.ceil(2 * start_timeout / PENDING_POLL))
            (row,) = [r for r in sup.status() if r["name"] == "p"]
            assert (row["state"], row["pending"]) == ("starting", "no node has {'big_node': 1.0}")
            out = io.StringIO()
            Console(file=out, width=300, color_system=None).print(status_table(sup.status()))
            assert "pending: no node has {'big_node': 1.0}" in out.getvalue()
            assert log.find("actor.exited", actor="p") == []
            backend.release("p")
            await sup.wait_for_state("p", ActorState.RUNNING)
            (row,) = [r for r in sup.status() if r["name"] == "p"]
            assert row["pending"] is None
            assert len(log.find("actor.pending", actor="p")) == 1

    async def test_stopping_a_pending_actor_ends_its_wait(self) -> None:
        """A stop while Ray has not placed the actor: stopped at once, its request withdrawn, nothing restarts."""
        backend = LocalRayBackend()
        backend.hold("p", "no node has {'big_node': 1.0}")
        actors = {"p": {"target": T + "Steady", "kind": "ray"}}
        async with ray_supervisor(actors, backend) as (sup, log, _backend):
            await log.wait_for("actor.pending", actor="p")
            with anyio.fail_after(5):
                await sup.stop_actor("p")
            assert sup.handle("p").state is ActorState.STOPPED
            assert backend.pending("p#1") is None  # the request was withdrawn: nothing starts it later
            assert list(backend.hosts) == [] and log.find("actor.errored", actor="p") == []

