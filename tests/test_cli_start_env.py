"""`actorsup run` in odd start environments: stdin, stdout and stderr closed (`>&-`, a bare launcher); the
current folder deleted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def anyio_backend() -> str:
    return "trio"  # the supervisor is a subprocess: the test only reads its file sink


@pytest.fixture
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fds-", dir="/tmp") as d:  # short: AF_UNIX paths
        yield Path(d)


def _events(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_run_with_the_standard_fds_closed(folder: Path) -> None:
    """0, 1 and 2 closed: the actor starts, `status` answers on the control socket, SIGTERM exits 0."""
    out = folder / "out.jsonl"
    config = folder / "c.toml"
    config.write_text(f'[supervisor]\ncontrol_socket = "{folder / "ctl.sock"}"\n'
                      '[actors.s]\ntarget = "tests.sample_actors:Steady"\n'
                      f'[[logs.sinks]]\ntype = "file"\npath = "{out}"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(["/bin/sh", "-c", 'exec "$@" <&- >&- 2>&-', "sh", sys.executable, "-m", "supervisor",
                             "run", str(config)], cwd=ROOT, env=env)
    try:
        with anyio.fail_after(30):  # the file sink is the only output there is: read it until the start
            while not any(e["event"] == "actor.started" for e in _events(out)):
                await anyio.sleep(0.05)
        status = subprocess.run([sys.executable, "-m", "supervisor", "status", "--json", "--socket",
                                 str(folder / "ctl.sock")], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=30)
        assert status.returncode == 0, status.stderr
        assert [(r["name"], r["state"]) for r in json.loads(status.stdout)] == [("s", "running")]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert [e["event"] for e in _events(out)][-2:] == ["supervisor.stopped", "control.stopped"]


@pytest.mark.parametrize("command", [["run"], ["check", "actorsup.toml"]])
def test_a_deleted_current_folder_is_one_line(folder: Path, command: list[str]) -> None:
    """Started from a folder that was deleted: one line that says so and what to do, exit 2, no traceback."""
    gone = folder / "gone"
    gone.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(["/bin/sh", "-c", 'cd "$1" && rmdir "$1" && shift && exec "$@"', "sh", str(gone),
                           sys.executable, "-m", "supervisor", *command], env=env, capture_output=True, text=True,
                          timeout=60)
    assert (done.returncode, done.stderr) == (2, "actorsup: the current folder no longer exists (it was deleted): "
                                                 "cd to one that does and run again\n")
