"""Command actors end to end: real programs under a real Supervisor (and one under `actorsup run`)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from harness import cli_supervisor, running_supervisor
from supervisor.lifecycle._states import ActorState

pytestmark = pytest.mark.anyio


def _command(command: Any, **keys: Any) -> dict[str, Any]:
    return {"kind": "command", "command": command, "stop_timeout": 2.0, **keys}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def continued() -> Iterator[list[int]]:
    """Pids a test SIGSTOPped: SIGCONTed at teardown, so a kill that raced the stop still ends them."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


class TestAProgram:
    async def test_status_shows_the_programs_own_pid_rss_and_cpu(self) -> None:
        """status of a command actor: the program's pid (not a wrapper's), its RSS and CPU."""
        async with running_supervisor({"s": _command(["sleep", "60"])}) as (sup, sink):
            started = (await sink.wait_for("actor.started", actor="s"))[0]
            assert psutil.Process(started["pid"]).name() == "sleep"
            with anyio.fail_after(10):
                while (row := sup.status()[0])["rss"] is None:
                    await anyio.sleep(0.05)
            assert row["pid"] == started["pid"] and row["kind"] == "command"
            assert 0 < row["rss"] < psutil.Process(os.getpid()).memory_info().rss  # sleep's, not a Python's
