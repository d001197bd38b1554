"""The `actorsup` command as a real process: run, check, signals, and no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import anyio
import psutil
import pytest

from tests.harness import cli_supervisor

pytestmark = pytest.mark.slow

CONFIG = """
[supervisor]
heartbeat_interval = 0.2
control_socket = "ctl.sock"

[actors.first]
target = "tests.sample_actors:Steady"

[actors.second]
target = "tests.sample_actors:Grandparent"
"""


def _write(tmp_path, text: str = CONFIG):
    path = tmp_path / "actorsup.toml"
    path.write_text(textwrap.dedent(text))
    return path


def _actorsup(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env
    )


class TestCheck:
    def test_valid_config_exits_zero(self, tmp_path) -> None:
        """`check` on a good config prints a summary and exits 0."""
        result = _actorsup("check", str(_write(tmp_path)))
        assert result.returncode == 0, result.stderr
        assert "ok (2 actors, 0 cron tasks, 1 log sinks)" in result.stdout

    @pytest.mark.parametrize("command", ["check", "run"])
    def test_bad_value_exits_two_with_one_line(self, tmp_path, command: str) -> None:
        """A bad value gives one line naming file, key path and value, exit 2, no traceback."""
        path = _write(tmp_path, '[actors.fetcher]\ntarget = "tests.sample_actors:Steady"\nheartbeat_timeout = "soon"\n')
        result = _actorsup(command, path.name, cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr == (
            'actorsup: actorsup.toml: actors.fetcher.heartbeat_timeout: expected a number > 0, got "soon"\n'
        )

    def test_missing_file_exits_two(self, tmp_path) -> None:
        """A config that does not exist is a one-line error with exit 2."""
        result = _actorsup("check", str(tmp_path / "nope.toml"))
        assert result.returncode == 2
        assert result.stderr.strip().endswith("nope.toml: file not found")
        assert "Traceback" not in result.stderr

    def test_unimportable_target_exits_two(self, tmp_path) -> None:
        """A target that cannot be imported is a config error naming the key."""
        path = _write(tmp_path, '[actors.x]\ntarget = "no_such_module:Thing"\n')
        result = _actorsup("check", str(path))
        assert result.returncode == 2
        assert ("actors.x.target: cannot import \"no_such_module:Thing\": No module named 'no_such_module'"
                in result.stderr)


    def test_called_from_python_it_leaves_sigpipe_alone(self, tmp_path) -> None:
        """main(argv) from Python keeps the caller's SIGPIPE (only the program resets it for `| head`)."""
        from supervisor.app._cli import main

        before = signal.getsignal(signal.SIGPIPE)
        assert main(["check", str(_write(tmp_path))]) == 0
        assert signal.getsignal(signal.SIGPIPE) == before == signal.SIG_IGN


class TestRun:
    @pytest.mark.anyio
    async def test_sigterm_stops_everything_and_exits_zero(self, tmp_path) -> None:
        """SIGTERM stops all actors (independent ones concurrently), logs supervisor.stopped and exits 0."""
        async with cli_supervisor(_write(tmp_path)) as cli:
            await cli.log.wait_for("actor.started", actor="first")
            await cli.log.wait_for("actor.started", actor="second")
            grandchild = (await cli.log.wait_for("grandchild.started"))[0]["grandchild"]
            cli.process.send_signal(signal.SIGTERM)
            with anyio.fail_after(20):
                assert await cli.process.wait() == 0
            await cli.log.wait_for("supervisor.stopped")
            stopped = [e["actor"] for e in cli.log.find("actor.stopped")]
            assert sorted(stopped) == ["first", "second"]
            assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE

    @pytest.mark.anyio
    async def test_sigkill_of_supervisor_leaves_no_child(self, tmp_path) -> None:
        """Children and grandchildren die with a SIGKILLed supervisor (PDEATHSIG + channel EOF)."""
        async with cli_supervisor(_write(tmp_path)) as cli:
            pids = [(await cli.log.wait_for("actor.started", actor=a))[0]["pid"] for a in ("first", "second")]
            pids.append((await cli.log.wait_for("grandchild.started"))[0]["grandchild"])
            procs = [psutil.Process(p) for p in pids]
            spares = [c for c in psutil.Process(cli.process.pid).children() if c.pid not in pids]
            cli.process.kill()
            await cli.process.wait()
            _, alive = psutil.wait_procs(procs + spares, timeout=5)
            survivors = {p.pid: p.cmdline() for p in alive if p.status() != psutil.STATUS_ZOMBIE}
            assert survivors == {}, f"actors {pids[:2]}, grandchild {pids[2]}"

    @pytest.mark.anyio
    async def test_demo_shows_restarts(self, tmp_path) -> None:
        """`actorsup run` with no config runs the demo: a crash and a hang restart within seconds."""
        async with cli_supervisor("--socket", tmp_path / "demo.sock") as cli:
            await cli.log.wait_for("actor.restarting", actor="crashy", timeout=20)
            await cli.log.wait_for("actor.heartbeat_timeout", actor="hangs", timeout=20)
            await cli.log.wait_for("actor.started", actor="healthy")
            cli.process.send_signal(signal.SIGINT)
            with anyio.fail_after(20):
                assert await cli.process.wait() == 0
