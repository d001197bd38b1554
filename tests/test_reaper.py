"""No child outlives the supervisor: an actor inside C code, and descendants that left its process group."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from supervisor.process import _reaper
from supervisor.process._cgroup import open_tree
from supervisor.process._reaper import ENV_KEY, Reaper, own_children
from tests.harness import cli_supervisor, running_supervisor

pytestmark = pytest.mark.anyio

T = "tests.sample_actors:"
GONE_WITHIN = 10.0  # seconds; the kernel and the last reaper take milliseconds


def _procs(pids: list[int]) -> list[psutil.Process]:
    return [psutil.Process(pid) for pid in pids]


async def _all_gone(procs: list[psutil.Process]) -> dict[int, str]:
    """Wait (bounded) for the processes to end; the survivors that are not zombies."""
    _, alive = await anyio.to_thread.run_sync(lambda: psutil.wait_procs(procs, timeout=GONE_WITHIN))
    survivors = {}
    for proc in alive:
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                survivors[proc.pid] = " ".join(proc.cmdline())
                proc.kill()  # only what this test started: do not leave it for the next test
        except psutil.NoSuchProcess:
            pass
    return survivors


async def _computed(proc: psutil.Process, seconds: float) -> None:
    """Until ``proc`` has spent ``seconds`` more of CPU time than now (bounded): it is computing."""
    start = sum(proc.cpu_times()[:2])
    with anyio.fail_after(GONE_WITHIN):
        while sum(proc.cpu_times()[:2]) < start + seconds:
            await anyio.sleep(0.01)


def _deathwatch_of(pid: int) -> psutil.Process:
    (watch,) = [p for p in psutil.Process(pid).children() if any("_deathwatch" in a for a in p.cmdline())]
    return watch


def _config(tmp_path: Path, target: str) -> Path:
    path = tmp_path / "actorsup.toml"
    path.write_text(textwrap.dedent(f"""
        [supervisor]
        heartbeat_interval = 0.2
        heartbeat_timeout = 120
        control_socket = "ctl.sock"

        [actors.a]
        target = "{T}{target}"
    """))
    return path


class TestSupervisorKilled:
    @pytest.mark.slow
    async def test_actor_inside_a_c_call_dies_with_a_sigkilled_supervisor(self, tmp_path: Path) -> None:
        """An actor in sum(range(10**13)) dies with a SIGKILLed supervisor: PDEATHSIG is the kernel's SIGKILL.

        The last reaper is frozen first, so the kernel alone must do it.
        """
        async with cli_supervisor(_config(tmp_path, "BusyInC")) as cli:
            (event,) = await cli.log.wait_for("busy.computing", actor="a")
            actor = psutil.Process(event["pid"])
            watch = _deathwatch_of(cli.process.pid)
            watch.suspend()
            try:
                await _computed(actor, 0.1)  # well inside the C call by now
                assert actor.status() == psutil.STATUS_RUNNING
                cli.process.kill()
                await cli.process.wait()
                assert await _all_gone([actor]) == {}
            finally:
                watch.resume()  # it reads EOF now, cleans up (cgroups too) and exits

    @pytest.mark.slow
    async def test_escapees_die_with_a_sigkilled_supervisor(self, tmp_path: Path) -> None:
        """A setsid child and a double-forked daemon of an actor die with a SIGKILLed supervisor (the last reaper)."""
        async with cli_supervisor(_config(tmp_path, "Escapees")) as cli:
            (event,) = await cli.log.wait_for("escapees.started", actor="a")
            procs = _procs([event["pid"], event["session_child"], event["daemon"]])
            cli.process.kill()
            await cli.process.wait()
            assert await _all_gone(procs) == {}


class TestActorStopped:
    async def test_escapees_die_when_their_actor_is_stopped(self) -> None:
        """`stop NAME`: a setsid child and a double-forked setsid daemon go with the actor."""
        async with running_supervisor({"a": {"target": T + "Escapees"}}) as (sup, log):
            (event,) = await log.wait_for("escapees.started", actor="a")
            procs = _procs([event["session_child"], event["daemon"]])
            assert all(p.is_running() for p in procs)
            await sup.stop_actor("a")
            assert await _all_gone(procs) == {}
            killed = {e["pid"] for e in log.find("reaper.killed", actor="a", reason="owner_exited")}
            assert killed == {event["session_child"], event["daemon"]}

    async def test_escapees_die_when_their_actor_crashes(self) -> None:
        """An actor SIGKILLed from outside leaves nothing behind, and its next life is untouched."""
        async with running_supervisor({"a": {"target": T + "Escapees"}}) as (_sup, log):
            (first,) = await log.wait_for("escapees.started", actor="a")
            procs = _procs([first["session_child"], first["daemon"]])
            os.kill(first["pid"], 9)
            assert await _all_gone(procs) == {}
            second = (await log.wait_for("escapees.started", actor="a", count=2))[1]
            assert all(p.is_running() for p in _procs([second["session_child"], second["daemon"]]))

    async def test_escapees_die_at_shutdown(self) -> None:
        """A graceful shutdown leaves no escaped descendant."""
        procs: list[psutil.Process] = []
        async with running_supervisor({"a": {"target": T + "Escapees"}}) as (_sup, log):
            (event,) = await log.wait_for("escapees.started", actor="a")
            procs = _procs([event["session_child"], event["daemon"]])
        assert await _all_gone(procs) == {}


def _cgroups_writable() -> bool:
    tree = open_tree("probe")
    if tree is None:
        return False
    tree.prune()
    return True


needs_cgroups = pytest.mark.skipif(not _cgroups_writable(), reason="no writable cgroup v2 here")


@needs_cgroups
class TestCgroups:
    async def test_a_daemon_without_the_cookie_dies_with_its_actor(self) -> None:
        """A double-forked daemon that cleared its environment is killed through its cgroup on `stop`."""
        async with running_supervisor({"a": {"target": T + "CleanEnvDaemon"}}) as (sup, log):
            (event,) = await log.wait_for("cleanenv.started", actor="a")
            daemon = psutil.Process(event["daemon"])
            with anyio.fail_after(10):
                while ENV_KEY in daemon.environ() or "sleep" not in " ".join(daemon.cmdline()):
                    await anyio.sleep(0.02)  # until it has exec'd with the empty environment
            top = sup.spawner.reaper.cgroups.top  # type: ignore[attr-defined]
            await sup.stop_actor("a")
            assert await _all_gone([daemon]) == {}
            assert daemon.pid in {e["pid"] for e in log.find("reaper.killed", actor="a", reason="owner_exited")}
        assert not top.exists()  # every leaf and the top removed at shutdown

    @pytest.mark.slow
    async def test_a_daemon_without_the_cookie_dies_with_a_sigkilled_supervisor(self, tmp_path: Path) -> None:
        """The last reaper kills the cgroup: a daemon without the cookie dies with a SIGKILLed supervisor too."""
        async with cli_supervisor(_config(tmp_path, "CleanEnvDaemon")) as cli:
            (event,) = await cli.log.wait_for("cleanenv.started", actor="a")
            daemon = psutil.Process(event["daemon"])
            with anyio.fail_after(10):
                while "sleep" not in " ".join(daemon.cmdline()):
                    await anyio.sleep(0.02)
            cli.process.kill()
            await cli.process.wait()
            assert await _all_gone([daemon]) == {}


class TestReaper:
    async def test_a_hosts_own_children_are_left_alone(self) -> None:
        """A child the host application started itself (no cookie) is never adopted or killed."""
        reaper = Reaper()
        own = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(reaper.run)
                reaper.sweep(everything=True)
                tg.cancel_scope.cancel()
            assert own.poll() is None
        finally:
            own.kill()
            own.wait()

    async def test_cookie_appends_to_an_inherited_one(self) -> None:
        """A nested supervisor keeps the outer cookie, so the outer reaper still finds its descendants."""
        reaper = Reaper()
        token = reaper.new_token()
        env: dict[str, Any] = reaper.child_env({ENV_KEY: "outer-1.7", "PATH": "/bin"}, token)
        assert env[ENV_KEY] == f"outer-1.7 {token}"
        assert reaper.child_env({}, token)[ENV_KEY] == token

    async def test_a_killed_last_reaper_is_replaced(self) -> None:
        """The last reaper is restarted if it dies while the supervisor runs."""
        reaper = Reaper()
        async with anyio.create_task_group() as tg:
            await tg.start(reaper.run)
            with anyio.fail_after(10):
                while reaper._watch is None:
                    await anyio.sleep(0.01)
                first = reaper._watch
                first.kill()
                while reaper._watch is first:
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        assert reaper._watch is not None and reaper._watch.returncode is not None


class TestZombies:
    async def test_a_grandchild_killed_with_its_group_is_reaped(self) -> None:
        """SIGKILL of a program's group: its child dies as a zombie reparented here, and is reaped (no cookie left)."""
        from supervisor.command._launch import launch

        reaper = Reaper()
        async with anyio.create_task_group() as tg:
            await tg.start(reaper.run)
            token = reaper.new_token()
            proc = launch(["sh", "-c", "sleep 300 & echo $!; wait"], env=reaper.child_env(dict(os.environ), token))
            reaper.track(proc, token, "parent")  # type: ignore[arg-type]  # duck-typed: pid, token, on_exit
            line = await proc.stdout.receive()
            grandchild = int(line.split()[0])
            assert proc.signal_group(9)
            await proc.wait()  # reaps sh; its dead child is reparented to us as a zombie
            with anyio.fail_after(GONE_WITHIN):
                while grandchild in own_children():
                    reaper.sweep()
                    await anyio.sleep(0.01)
            await proc.aclose()
            tg.cancel_scope.cancel()


class _Exiting:
    """What Reaper.track needs of a child that is never started (its exit is all that matters here)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.token = ""
        self.on_exit: Any = None


async def test_a_burst_of_exits_shares_one_sweep_off_the_exit_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten exits in a row sweep once, from the reaper's task, not inside exited() (a sweep reads every child)."""
    interval = 0.2  # the periodic sweep after the burst's one is the event that ends the wait
    monkeypatch.setattr(_reaper, "SWEEP_INTERVAL", interval)
    reaper = Reaper()
    sweeps: list[float] = []
    swept = anyio.Event()
    real = reaper.sweep

    def counted(**kw: Any) -> None:
        sweeps.append(anyio.current_time())
        if len(sweeps) == 2:
            swept.set()
        real(**kw)

    monkeypatch.setattr(reaper, "sweep", counted)
    async with anyio.create_task_group() as tg:
        await tg.start(reaper.run)  # no sweep before the first exit or interval
        tokens = [reaper.new_token() for _ in range(10)]
        for token in tokens:
            reaper.track(_Exiting(999_999), token, "a", move=False)
        for token in tokens:
            reaper.exited(token)
        assert sweeps == []  # none inside exited()
        with anyio.fail_after(5):
            await swept.wait()
        tg.cancel_scope.cancel()
    first, periodic = sweeps[:2]
    assert periodic - first >= interval  # the burst's exits woke no second sweep before the periodic one
