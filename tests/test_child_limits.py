"""The supervisor raises its own open-files limit for 1,000 actors; its children get the original back."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from supervisor.process import _fdlimit
from tests.harness import cli_supervisor

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent
SOFT = 512


def test_raise_goes_to_the_hard_limit_and_remembers_the_original() -> None:
    """In a process started with a low soft limit: raised to the hard one, the original kept for children."""
    code = textwrap.dedent(f"""
        import resource
        from supervisor.process import _fdlimit
        resource.setrlimit(resource.RLIMIT_NOFILE, ({SOFT}, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        now = _fdlimit.raise_open_files()
        print(now, resource.getrlimit(resource.RLIMIT_NOFILE)[0], _fdlimit.original_open_files())
        print(_fdlimit.raise_open_files(), _fdlimit.original_open_files())  # a second call changes nothing
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert out.split("\n")[:2] == [f"{hard} {hard} {SOFT}", f"{hard} {SOFT}"]


def test_fds_needed_covers_a_thousand_actors() -> None:
    """The estimate behind supervisor.fd_limit_low: 1,000 actors need more than the usual 1,024."""
    assert _fdlimit.fds_needed(1000) > 1024 * 5
    assert _fdlimit.fds_needed(0) == _fdlimit.BASE


@pytest.mark.parametrize("spawner", ["forkserver", "spawn"])
async def test_children_start_with_the_limit_the_supervisor_started_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spawner: str
) -> None:
    """`actorsup run` under `ulimit -Sn 512`: it raises its own soft limit to the hard one; a Python actor
    (forked from the template, or spawned) and a program each get 512 back."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard <= SOFT:
        pytest.fail(f"the hard open-files limit ({hard}) must exceed {SOFT} for this test")
    config = tmp_path / "limits.toml"
    config.write_text(textwrap.dedent(f"""
        [supervisor]
        control_socket = "{tmp_path / 'ctl.sock'}"
        spawner = "{spawner}"
        [actors.python]
        target = "tests.sample_actors:OpenFilesLimit"
        [actors.program]
        kind = "command"
        command = ["/bin/sh", "-c", "echo program $(ulimit -Sn); exec sleep 60"]
    """))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the actor imports tests.sample_actors
    async with cli_supervisor(config, shell_setup=f"ulimit -Sn {SOFT}") as cli:
        (started,) = await cli.log.wait_for("supervisor.started")
        (python,) = await cli.log.wait_for("open_files", actor="python")
        (program,) = await cli.log.wait_for(f"program {SOFT}", actor="program")
        cli.process.send_signal(signal.SIGTERM)
        await cli.process.wait()
    assert started["open_files"] == hard
    assert (python["soft"], python["hard"]) == (SOFT, hard)
    assert program["stream"] == "stdout"


async def test_too_few_descriptors_fail_starts_with_the_fix_not_the_supervisor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hard limit of 160 for 40 actors: a warning at start, EMFILE starts fail with a one-line hint, and the
    supervisor keeps running (SIGTERM: exit 0, no traceback)."""
    config = tmp_path / "few.toml"
    actors = "".join(f'[actors.a{i}]\ntarget = "tests.sample_actors:Steady"\nmax_restarts = 1\n'
                     'backoff_initial = 0.05\n' for i in range(40))
    config.write_text(f'[supervisor]\ncontrol_socket = "{tmp_path / "ctl.sock"}"\n' + actors)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    async with cli_supervisor(config, shell_setup="ulimit -Sn 160 && ulimit -Hn 160") as cli:
        (low,) = await cli.log.wait_for("supervisor.fd_limit_low")
        (errored, *_) = await cli.log.wait_for("actor.errored", reason="spawn_error")
        await cli.log.wait_for("actor.failed")
        cli.process.send_signal(signal.SIGTERM)
        status = await cli.process.wait()
        assert cli.process.stderr is not None
        stderr = (await cli.process.stderr.receive()).decode() if status else ""
    assert (low["limit"], low["actors"], low["needed"]) == (160, 40, _fdlimit.fds_needed(40))
    assert "Too many open files" in errored["error"] and "ulimit -Hn" in errored["error"]
    assert status == 0, stderr
    assert cli.log.find("supervisor.stopped")
