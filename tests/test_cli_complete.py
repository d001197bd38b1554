"""Shell completion: commands, options, values and actor names from the running supervisor."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from supervisor.app._cli import build_parser
from supervisor.app._complete import SCRIPTS, candidates
from supervisor.control import ControlServer
from supervisor.control.testing import FakeTarget, make_rows


def complete(line: str) -> list[str]:
    """Candidates for the last word of ``line`` (a trailing space starts a new, empty word)."""
    words = line.split() + ([""] if line.endswith(" ") else [])
    return candidates(build_parser(), words, len(words) - 1)


@asynccontextmanager
async def serving() -> AsyncIterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cmp-", dir="/tmp") as d, capture_logs():
        path = Path(d) / "s.sock"
        async with anyio.create_task_group() as tg:
            await tg.start(ControlServer(FakeTarget(make_rows(10)), path).serve)
            yield path
            tg.cancel_scope.cancel()


class TestCandidates:
    def test_commands(self) -> None:
        """The first word completes to commands; the hidden hook is never offered."""
        assert complete("actorsup re") == ["restart", "reload"]
        assert "_complete" not in complete("actorsup ")
        assert complete("actorsup cron ") == ["list", "trigger"]

    def test_options_and_their_values(self) -> None:
        """Options complete by prefix; an option with choices completes to them."""
        assert complete("actorsup status --j") == ["--json"]
        assert complete("actorsup run --log-format ") == ["auto", "json", "console"]
        assert complete("actorsup logs --socket ") == []  # a path: the shell's own file completion

    @pytest.mark.anyio
    async def test_actor_names_from_the_running_supervisor(self) -> None:
        """NAME completes to the supervisor's actors; cron trigger only to cron tasks."""
        async with serving() as path:
            restart = await anyio.to_thread.run_sync(complete, f"actorsup restart --socket {path} actor-00")
            trigger = await anyio.to_thread.run_sync(complete, f"actorsup cron trigger --socket {path} ")
        assert restart == [f"actor-00{i}" for i in range(10)]
        assert trigger == ["actor-009"]

    def test_no_supervisor_means_no_names(self, tmp_path: Path) -> None:
        """With nobody listening, names complete to nothing, quickly and quietly."""
        assert complete(f"actorsup stop --socket {tmp_path}/none.sock ") == []


@pytest.mark.anyio
async def test_bash_completes_through_the_real_script(tmp_path: Path) -> None:
    """bash, with the script from `actorsup completion bash`, completes commands and actor names."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "actorsup").write_text(f"#!/bin/sh\nexec {sys.executable} -m supervisor \"$@\"\n")
    (bin_dir / "actorsup").chmod(0o755)
    env = dict(os.environ, PYTHONPATH=os.getcwd(), PATH=f"{bin_dir}:{os.environ['PATH']}")
    script = subprocess.run([sys.executable, "-m", "supervisor", "completion", "bash"], capture_output=True,
                            text=True, env=env, timeout=30, check=True).stdout
    assert script == SCRIPTS["bash"]
    probe = ('eval "$(actorsup completion bash)"; COMP_WORDS=({words}); COMP_CWORD={cword}; _actorsup; '
             'printf "%s\\n" "${{COMPREPLY[@]}}"')
    async with serving() as path:
        async def bash(words: str, cword: int) -> list[str]:
            result = await anyio.run_process(["bash", "-c", probe.format(words=words, cword=cword)], env=env)
            return result.stdout.decode().splitlines()

        assert await bash("actorsup res", 1) == ["restart"]
        assert await bash(f"actorsup logs --socket {path} actor-00", 4) == [f"actor-00{i}" for i in range(10)]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_use_the_hook(shell: str) -> None:
    """The zsh and fish scripts hand the words and the cursor to `actorsup _complete`."""
    result = subprocess.run([sys.executable, "-m", "supervisor", "completion", shell], capture_output=True,
                            text=True, timeout=30, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert result.returncode == 0 and result.stdout == SCRIPTS[shell]
    assert "actorsup _complete --cword" in result.stdout
