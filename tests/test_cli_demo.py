"""The demo (`actorsup run` with no config) as a newcomer meets it, twice in a row."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.harness import CliSupervisor

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent
TICK = 2.0  # the demo's tick task: interval = 2.0 (supervisor/app/_demo.py)


@pytest.fixture
def anyio_backend() -> str:
    return "trio"  # the test drives subprocesses; one backend is enough


@asynccontextmanager
async def demo(cwd: Path, env: dict[str, str]) -> AsyncIterator[CliSupervisor]:
    process = await anyio.open_process([sys.executable, "-m", "supervisor", "run"], cwd=cwd, env=env,
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cli = CliSupervisor(process)
    async with process, anyio.create_task_group() as tg:
        tg.start_soon(cli._pump)
        try:
            yield cli
        finally:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    process.kill()  # only the pid this test started
                with anyio.move_on_after(10):
                    await process.wait()
            tg.cancel_scope.cancel()


async def stop(cli: CliSupervisor) -> None:
    cli.process.send_signal(signal.SIGTERM)
    with anyio.fail_after(30):
        assert await cli.process.wait() == 0


async def test_second_run_is_clean_and_status_finds_the_demo(tmp_path: Path) -> None:
    """A second demo run has no misfire from the first; `actorsup status` finds it from any folder."""
    runtime, here, elsewhere = tmp_path / "run", tmp_path / "here", tmp_path / "elsewhere"
    for folder in (runtime, here, elsewhere):
        folder.mkdir(mode=0o700)
    env = dict(os.environ, PYTHONPATH=str(ROOT), XDG_RUNTIME_DIR=str(runtime))
    env.pop("ACTORSUP_SOCKET", None)
    async with demo(here, env) as first:
        await first.log.wait_for("cron.run.finished", actor="tick", timeout=30)
        await stop(first)
    # The scenario: the demo is down while a tick (every 2 s) falls due, i.e. until the wall clock passes it.
    last = max(datetime.fromisoformat(e["scheduled_at"]).timestamp()
               for e in first.log.find("cron.run.started", actor="tick"))
    await anyio.sleep(max(0.0, last + TICK + 0.2 - time.time()))
    async with demo(here, env) as second:
        await second.log.wait_for("cron.run.finished", actor="tick", timeout=30)
        status = await anyio.run_process([sys.executable, "-m", "supervisor", "status", "--json"],
                                         cwd=elsewhere, env=env, check=False)
        await stop(second)
    assert second.log.find("cron.misfire") == []
    assert status.returncode == 0, status.stderr.decode()
    rows: list[dict[str, Any]] = json.loads(status.stdout)
    assert {row["name"] for row in rows} == {"healthy", "crashy", "hangs", "tick"}
    assert list(here.iterdir()) == []  # nothing left in the folder the demo ran in
