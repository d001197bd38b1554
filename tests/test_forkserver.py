"""The fork-server spawner with real processes: ownership, fds, a dead or hung template, preload, reload."""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import subprocess
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import psutil
import pytest
import structlog

from supervisor.config import parse_config
from supervisor.exceptions import ConfigError
from supervisor.process import _forkserver
from supervisor.process._child import ChildProcess
from supervisor.process._forkserver import ForkServerSpawner
from supervisor.process._popen import PIPE_SIZE
from supervisor.process._reaper import Reaper
from tests.harness import cli_supervisor, make_config, running_supervisor

pytestmark = pytest.mark.anyio

T = "tests.sample_actors:"
GONE_WITHIN = 10.0


async def _until(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Poll a cheap condition, bounded; the spawner has no event for these states."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


def _ready(spawner: ForkServerSpawner) -> bool:
    return spawner.template is not None and spawner.template.ready.is_set()


@asynccontextmanager
async def running(spawner: ForkServerSpawner) -> AsyncIterator[ForkServerSpawner]:
    async with anyio.create_task_group() as tg:
        await tg.start(spawner.run)
        await _until(lambda: _ready(spawner))
        try:
            yield spawner
        finally:
            tg.cancel_scope.cancel()


async def _kill(child: ChildProcess) -> None:
    child.signal_group(signal.SIGKILL)
    await child.wait()
    await child.aclose()


def _forked(pid: int) -> bool:
    """Made by the template (its command line), not spawned as `python -m actors._runtime`."""
    return "actors._template" in psutil.Process(pid).cmdline()


class TestOwnership:
    async def test_a_forked_child_is_the_supervisors_own(self) -> None:
        """A forked child is reparented here, leads its own group, runs child_nice lower, and said Hello."""
        async with running(ForkServerSpawner(spares=0, child_nice=3)) as spawner:
            child = await spawner.spawn(actor="a", start_timeout=20)
            try:
                assert _forked(child.pid)
                assert psutil.Process(child.pid).ppid() == os.getpid()
                assert os.getpgid(child.pid) == child.pid and os.getsid(child.pid) == child.pid
                assert os.getpriority(os.PRIO_PROCESS, child.pid) == os.getpriority(os.PRIO_PROCESS, 0) + 3
                assert child.hello is not None and child.hello.pid == child.pid and child.is_ours()
                assert fcntl.fcntl(child.process.stdout.fd, fcntl.F_GETPIPE_SZ) == PIPE_SIZE  # as when spawned
            finally:
                await _kill(child)
            assert child.returncode == -signal.SIGKILL
            assert not psutil.pid_exists(child.pid)  # reaped here: no zombie left

    async def test_the_double_fork_fallback_gives_the_same_child(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Where clone3 is refused: the child, forked twice, is reparented here, leads its group and is reaped here."""
        monkeypatch.setenv("ACTORSUP_FORK", "double")
        async with running(ForkServerSpawner(spares=0)) as spawner:
            child = await spawner.spawn(actor="a", start_timeout=20)
            try:
                assert _forked(child.pid) and psutil.Process(child.pid).ppid() == os.getpid()
                assert os.getpgid(child.pid) == child.pid and child.hello is not None
                spawner.reaper.sweep()  # its cookie is its own: not adopted as the template's orphan
                assert child.pid not in spawner.reaper._adopted
            finally:
                await _kill(child)
            assert child.returncode == -signal.SIGKILL and not psutil.pid_exists(child.pid)

    async def test_a_forked_child_has_only_its_own_fds(self) -> None:
        """/proc/PID/fd of a forked child: stdin, its two pipes, its channel and its ring; nothing else."""
        async with running(ForkServerSpawner(spares=0)) as spawner:
            assert spawner.template is not None
            template_pid = spawner.template.child.pid
            # Its own fds, before it holds a request's (which it closes once it has forked).
            template_fds = {os.readlink(f"/proc/{template_pid}/fd/{n}") for n in os.listdir(f"/proc/{template_pid}/fd")}
            child = await spawner.spawn(actor="a", start_timeout=20)
            try:
                fds = {int(n): os.readlink(f"/proc/{child.pid}/fd/{n}") for n in os.listdir(f"/proc/{child.pid}/fd")}
                pipes = {os.readlink(f"/proc/self/fd/{r.fd}") for r in (child.process.stdout, child.process.stderr)}
                assert fds[0] == "/dev/null"
                assert {fds.pop(1), fds.pop(2)} == pipes
                channel = fds.pop(3)
                assert channel.startswith("socket:")
                others = [link for n, link in fds.items() if n != 0]
                assert all("actorsup-ring" in link for link in others) and len(others) <= 1, fds
                # None of the template's fds (its socket to us, its pipes) leaked in.
                assert not (set(fds.values()) | {channel} | pipes) & (template_fds - {"/dev/null"})
            finally:
                await _kill(child)

    async def test_a_reserved_token_is_not_swept(self) -> None:
        """A child with a reserved token, not yet tracked, is neither adopted nor killed by a sweep."""
        reaper = Reaper()
        async with anyio.create_task_group() as tg:
            await tg.start(reaper.run)
            token = reaper.new_token()
            reaper.reserve(token)
            proc = subprocess.Popen(["sleep", "30"], env=reaper.child_env({}, token))
            try:
                reaper.sweep()
                assert proc.pid not in reaper._adopted and proc.poll() is None
            finally:
                proc.kill()
                proc.wait()
                reaper.exited(token)
            tg.cancel_scope.cancel()


class TestSpares:
    async def test_a_forked_spare_is_handed_out_and_a_renewed_templates_spares_retire(self) -> None:
        """The pool holds a forked spare; spawn() hands it out; after renew() a spare of the old template is not."""
        async with running(ForkServerSpawner(spares=1)) as spawner:
            await _until(lambda: len(spawner._pool) == 1)
            spare = spawner._pool[0]
            assert _forked(spare.pid)
            child = await spawner.spawn(actor="a", start_timeout=20)
            await _kill(child)
            assert child is spare
            await _until(lambda: len(spawner._pool) == 1)
            stale = spawner._pool[0]
            first = spawner.template
            spawner.renew()
            await _until(lambda: _ready(spawner) and spawner.template is not first)
            child = await spawner.spawn(actor="a", start_timeout=20)
            try:
                assert child is not stale and _forked(child.pid)
                assert stale.returncode == -signal.SIGKILL
            finally:
                await _kill(child)


class TestTemplateFailures:
    async def test_a_killed_template_is_replaced_and_spawning_goes_on(self) -> None:
        """SIGKILL of the template: spawns fall back to plain spawn, `spawner.restarted` is logged, a new one forks."""
        with structlog.testing.capture_logs() as logs:
            async with running(ForkServerSpawner(spares=0)) as spawner:
                first = spawner.template
                assert first is not None
                os.kill(first.child.pid, signal.SIGKILL)
                child = await spawner.spawn(actor="a", start_timeout=20)  # at once: no wait on a dead template
                await _kill(child)
                await _until(lambda: _ready(spawner) and spawner.template is not first)
                child = await spawner.spawn(actor="a", start_timeout=20)
                try:
                    assert _forked(child.pid)
                finally:
                    await _kill(child)
        restarted = [e for e in logs if e["event"] == "spawner.restarted"]
        assert restarted[0]["reason"] == "exited" and restarted[0]["exit_code"] == -signal.SIGKILL

    async def test_a_hung_template_is_replaced(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A stopped template: the spawn goes cold after FORK_TIMEOUT, and the template is replaced."""
        monkeypatch.setattr(_forkserver, "FORK_TIMEOUT", 0.3)
        with structlog.testing.capture_logs() as logs:
            async with running(ForkServerSpawner(spares=0)) as spawner:
                first = spawner.template
                assert first is not None
                os.kill(first.child.pid, signal.SIGSTOP)
                with anyio.fail_after(15):
                    child = await spawner.spawn(actor="a", start_timeout=20)
                try:
                    assert not _forked(child.pid)
                finally:
                    await _kill(child)
                await _until(lambda: _ready(spawner) and spawner.template is not first)
        assert [e["reason"] for e in logs if e["event"] == "spawner.restarted"][:1] == ["hung"]

    async def test_a_failing_preload_falls_back_to_spawn(self) -> None:
        """A preload module that does not import: logged once, and every spawn is plain."""
        with structlog.testing.capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                spawner = ForkServerSpawner(spares=0, preload=["no_such_module_here"])
                await tg.start(spawner.run)
                child = await spawner.spawn(actor="a", start_timeout=20)
                try:
                    assert not _forked(child.pid)
                finally:
                    await _kill(child)
                tg.cancel_scope.cancel()
        failed = [e for e in logs if e["event"] == "spawner.template_failed"]
        assert "no_such_module_here" in failed[0]["error"]


def _write(path: Path, text: str) -> None:
    path.write_text(textwrap.dedent(text))
    os.utime(path, (0, path.stat()[stat.ST_MTIME] + 2))  # a new mtime: the old .pyc is stale for sure


class TestPreloadAndReload:
    async def test_preload_is_imported_once_by_the_template_and_renewed(self, tmp_path: Path) -> None:
        """A preload module is imported in the template, not in each child; renew() imports it anew."""
        marks = tmp_path / "imports"
        _write(tmp_path / "heavy_mod.py", f"import os\nopen({str(marks)!r}, 'a').write(f'{{os.getpid()}}\\n')\n")
        spawner = ForkServerSpawner(spares=0, preload=["heavy_mod"], pythonpath=[str(tmp_path)])
        async with running(spawner):
            first = spawner.template
            assert first is not None
            children = [await spawner.spawn(actor="a", start_timeout=20) for _ in range(2)]
            for child in children:
                await _kill(child)
            assert marks.read_text().split() == [str(first.child.pid)]
            spawner.renew()
            await _until(lambda: _ready(spawner) and spawner.template is not first)
            assert marks.read_text().split() == [str(first.child.pid), str(spawner.template.child.pid)]  # type: ignore[union-attr]

    async def test_a_forked_childs_stdout_is_its_own_pipe(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The template configured logging before forking; a child's print() still goes to its pipe."""
        _write(tmp_path / "stdout_actor.py", """
            import sys
            import anyio
            from actors import Actor

            class Report(Actor):
                async def run(self) -> None:
                    self.log.info("stdout.type", kind=type(sys.stdout).__name__)
                    print("printed", flush=True)
                    await anyio.sleep_forever()
        """)
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
        async with running_supervisor({"r": {"target": "stdout_actor:Report"}}, spawner="forkserver") as (_, log):
            event = (await log.wait_for("stdout.type", actor="r"))[0]
            assert event["kind"] == "TextIOWrapper" and _forked(event["pid"])
            printed = (await log.wait_for("printed", actor="r"))[0]
            assert printed["stream"] == "stdout" and printed["pid"] == event["pid"]

    async def test_an_edited_actor_module_loads_at_restart(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An actor module that is not preloaded is imported in the forked child: edit + restart loads it."""
        source = tmp_path / "edited_actor.py"
        body = """
            import anyio
            from actors import Actor

            class Versioned(Actor):
                async def run(self) -> None:
                    self.log.info("version.running", version={version!r})
                    await anyio.sleep_forever()
        """
        _write(source, body.format(version="one"))
        monkeypatch.syspath_prepend(str(tmp_path))  # the config check imports the target here too
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
        actors = {"v": {"target": "edited_actor:Versioned"}}
        async with running_supervisor(actors, spawner="forkserver") as (sup, log):
            first = (await log.wait_for("version.running", actor="v"))[0]
            assert first["version"] == "one" and _forked(first["pid"])
            _write(source, body.format(version="two, edited"))
            await sup.restart_actor("v")
            second = (await log.wait_for("version.running", actor="v", count=2))[1]
            assert second["version"] == "two, edited" and _forked(second["pid"])


    async def test_reload_renews_the_template(self) -> None:
        """`actorsup reload` starts a fresh template (reason "renewed"); actors keep running and restart forked."""
        actors = {"s": {"target": T + "Steady"}}
        async with running_supervisor(actors, spawner="forkserver") as (sup, log):
            (started,) = await log.wait_for("actor.started", actor="s")
            first = sup.spawner.template  # type: ignore[attr-defined]
            await sup.reload(make_config(actors, spawner="forkserver"))
            (restarted,) = await log.wait_for("spawner.restarted")
            assert restarted["reason"] == "renewed"
            await _until(lambda: _ready(sup.spawner) and sup.spawner.template is not first)  # type: ignore[arg-type, attr-defined]
            assert psutil.Process(started["pid"]).is_running()
            await sup.restart_actor("s")
            second = (await log.wait_for("actor.started", actor="s", count=2))[1]
            assert _forked(second["pid"]) and second["pid"] != started["pid"]


class TestStartAtScale:
    async def test_spawns_run_concurrently_within_the_limit(self) -> None:
        """12 spawns at once: all forked, never more than `concurrency` in flight, but more than one."""
        spawner = ForkServerSpawner(spares=0, concurrency=3)
        fork = spawner._fork
        in_flight, most = 0, 0

        async def counting(*args):  # type: ignore[no-untyped-def]
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            try:
                return await fork(*args)
            finally:
                in_flight -= 1

        spawner._fork = counting  # type: ignore[method-assign]
        children: list[ChildProcess] = []
        async with running(spawner):

            async def one() -> None:
                children.append(await spawner.spawn(actor="a", start_timeout=20))

            try:
                async with anyio.create_task_group() as tg:
                    for _ in range(12):
                        tg.start_soon(one)
            finally:
                for child in children:
                    await _kill(child)
        assert len(children) == 12 and all(c.returncode == -signal.SIGKILL for c in children)
        assert 1 < most <= 3


class TestSupervisorKilled:
    @pytest.mark.slow
    async def test_forked_children_and_grandchildren_die_with_a_sigkilled_supervisor(self, tmp_path: Path) -> None:
        """SIGKILL of `supervisor run`: the template, forked actors and their escaped grandchildren all end."""
        config = tmp_path / "actorsup.toml"
        config.write_text(textwrap.dedent(f"""
            [supervisor]
            spawner = "forkserver"
            heartbeat_interval = 0.2
            heartbeat_timeout = 120
            control_socket = "ctl.sock"

            [actors.e]
            target = "{T}Escapees"

            [actors.g]
            target = "{T}Grandparent"
        """))
        async with cli_supervisor(config) as cli:
            (escapees,) = await cli.log.wait_for("escapees.started", actor="e")
            (grand,) = await cli.log.wait_for("grandchild.started", actor="g")
            assert _forked(escapees["pid"]) and _forked(grand["pid"])
            (started,) = await cli.log.wait_for("spawner.template_started")
            template = [psutil.Process(started["pid"])]
            pids = [escapees["pid"], escapees["session_child"], escapees["daemon"], grand["pid"], grand["grandchild"]]
            procs = [psutil.Process(pid) for pid in pids] + template
            cli.process.kill()
            await cli.process.wait()
            _, alive = await anyio.to_thread.run_sync(lambda: psutil.wait_procs(procs, timeout=GONE_WITHIN))
            survivors = [p.pid for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
            for proc in alive:
                proc.kill()  # only what this test started
            assert survivors == []


class TestConfigKeys:
    def test_defaults_and_one_line_errors(self) -> None:
        """spawner defaults to forkserver on Linux, child_nice to 5; bad values are one-line errors."""
        config = parse_config({"supervisor": {}, "actors": {}})
        assert (config.supervisor.spawner, config.supervisor.preload, config.supervisor.child_nice) == (
            "forkserver", (), 5)
        cases = [
            ({"spawner": "fork"}, 'a.toml: supervisor.spawner: expected one of "forkserver", "spawn", got "fork"'),
            ({"preload": ["not a module"]},
             'a.toml: supervisor.preload[0]: expected a module name such as "myapp.models", got "not a module"'),
            ({"child_nice": 40}, "a.toml: supervisor.child_nice: expected an integer from 0 to 19, got 40"),
        ]
        for settings, message in cases:
            with pytest.raises(ConfigError) as info:
                parse_config({"supervisor": settings, "actors": {}}, label="a.toml")
            assert str(info.value) == message
