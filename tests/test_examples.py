"""The README's examples really run: configs validate, Python examples finish."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted(ROOT.glob("examples/*/actorsup.toml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.parent.name)
def test_example_config_is_valid(config: Path) -> None:
    """Each example config passes `actorsup check`."""
    result = subprocess.run(
        [sys.executable, "-m", "supervisor", "check", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("script", ["embed.py", "cron_api.py", "supervisor_api.py"])
def test_python_example_runs(script: str) -> None:
    """The Python API examples run to completion from the repository root."""
    result = subprocess.run(
        [sys.executable, f"examples/quickstart/{script}"], capture_output=True, text=True, timeout=90, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
def test_embed_example_shows_the_restart_and_a_running_fetcher() -> None:
    """embed.py prints fetcher's restart (stopping .. started), then a status with fetcher running."""
    result = subprocess.run(
        [sys.executable, "examples/quickstart/embed.py"], capture_output=True, text=True, timeout=90, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    events = [line for line in lines if line.startswith("actor.")]
    assert events[0] == "actor.stopping fetcher stopping" and events[-1] == "actor.started fetcher running"
    status = next(line for line in lines if line.startswith("[("))
    assert "('fetcher', 'running')" in status
    assert any(line.startswith("the control socket ") and line.endswith(" answers: 4 rows") for line in lines)


@pytest.mark.slow
def test_serve_example_answers_the_cli_and_shuts_down() -> None:
    """examples/quickstart/serve.py serves the control socket: `status` sees its actors, `shutdown` ends it."""
    config = "examples/quickstart/actorsup.toml"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cli = [sys.executable, "-m", "supervisor"]
    with subprocess.Popen(
        [sys.executable, "examples/quickstart/serve.py"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            seen = []
            for line in proc.stdout:  # the stdout sink: wait for the supervisor's start, not a sleep
                seen.append(line)
                if '"event":"supervisor.started"' in line:
                    break
            else:
                pytest.fail("serve.py ended before supervisor.started: " + "".join(seen)[-2000:])
            status = subprocess.run([*cli, "status", "--json", "-c", config], capture_output=True,
                                    text=True, timeout=30, cwd=ROOT, env=env)
            assert status.returncode == 0, status.stderr
            assert '"name": "fetcher"' in status.stdout
            down = subprocess.run([*cli, "shutdown", "-c", config], capture_output=True, text=True,
                                  timeout=30, cwd=ROOT, env=env)
            assert down.returncode == 0, down.stderr
            proc.stdout.read()  # drain, so the supervisor never blocks on a full pipe while it stops
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
