"""`actorsup top` in a real terminal (tmux): it draws, follows the selection, and quits cleanly."""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from supervisor.control import ControlServer
from supervisor.control.testing import FakeTarget

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent


class Tmux:
    """One private tmux server (its socket in the test's folder), killed at the end."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket

    async def run(self, *args: str) -> str:
        result = await anyio.run_process(["tmux", "-S", str(self.socket), *args], check=False)
        return result.stdout.decode("utf-8", "replace")

    async def screen(self) -> str:
        return await self.run("capture-pane", "-p", "-t", "top")

    async def wait_for(self, *texts: str, seconds: float = 20) -> str:
        screen = ""
        with anyio.move_on_after(seconds):
            while True:
                screen = await self.screen()
                if all(t in screen for t in texts):
                    return screen
                await anyio.sleep(0.05)
        pytest.fail(f"{texts} never all on screen; last screen:\n{screen}")


@asynccontextmanager
async def top_in_tmux(folder: Path) -> AsyncIterator[tuple[Tmux, FakeTarget, Path]]:
    target = FakeTarget()
    target.log("hello from zero", actor="actor-000")
    target.log("hello from one", actor="actor-001")
    sock, done = folder / "s.sock", folder / "exit"
    # trap: the wrapping shell outlives the Ctrl-C to report top's exit status (a handler, not SIG_IGN,
    # which top would inherit).
    command = (f"trap : INT; cd {shlex.quote(str(ROOT))} && PYTHONPATH=. {shlex.quote(sys.executable)} "
               f"-m supervisor top --socket {sock} --interval 0.2; echo $? > {done}")
    tmux = Tmux(folder / "tmux.sock")
    with capture_logs():
        async with anyio.create_task_group() as tg:
            await tg.start(ControlServer(target, sock).serve)
            await tmux.run("new-session", "-d", "-s", "top", "-x", "100", "-y", "30", "sh", "-c", command)
            try:
                yield tmux, target, done
            finally:
                await tmux.run("kill-server")
                tg.cancel_scope.cancel()


async def exit_status(done: Path) -> str:
    with anyio.fail_after(20):
        while not done.exists() or not done.read_text().strip():
            await anyio.sleep(0.05)
    return done.read_text().strip()


@pytest.fixture
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="top-", dir="/tmp") as d:
        yield Path(d)


@pytest.fixture
def anyio_backend() -> str:
    return "trio"  # the terminal is the subject here, not the event loop


async def test_top_draws_follows_the_selection_and_quits_on_q(folder: Path) -> None:
    """top shows every actor and the selected one's logs; j moves the selection; q exits 0."""
    async with top_in_tmux(folder) as (tmux, target, done):
        screen = await tmux.wait_for("actor-000", "actor-002", "STATE", "RESTARTS", "logs of actor-000",
                                     "hello from zero")
        assert "hello from one" not in screen
        await tmux.run("send-keys", "-t", "top", "j")
        await tmux.wait_for("logs of actor-001", "hello from one")
        target.rows["actor-001"]["state"] = "backoff"  # the next refresh shows it
        await tmux.wait_for("backoff")
        await tmux.run("send-keys", "-t", "top", "q")
        assert await exit_status(done) == "0"


async def test_top_quits_cleanly_on_ctrl_c(folder: Path) -> None:
    """Ctrl-C leaves top with exit 0 and no traceback on the screen."""
    async with top_in_tmux(folder) as (tmux, _, done):
        await tmux.wait_for("logs of actor-000")
        await tmux.run("send-keys", "-t", "top", "C-c")
        assert await exit_status(done) == "0"
        assert "Traceback" not in await tmux.screen()


def test_top_needs_a_terminal(tmp_path: Path) -> None:
    """Piped, top refuses with one line (exit 2) and points at status --watch --json."""
    import subprocess

    result = subprocess.run([sys.executable, "-m", "supervisor", "top", "--socket", str(tmp_path / "s")],
                            capture_output=True, text=True, timeout=30, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 2
    assert result.stderr == ("actorsup: top needs a terminal (stdin and stdout); piped, use "
                             "`actorsup status --watch --json`\n")
