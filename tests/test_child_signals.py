"""Children start with no signal ignored or blocked that the supervisor inherited (``actorsup run &``, nohup)."""

from __future__ import annotations

import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import running_supervisor

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
# What the interpreter itself ignores at start-up (SIGPIPE, SIGXFSZ): a Python child keeps that.
PYTHON_IGNORES = (1 << (signal.SIGPIPE - 1)) | (1 << (signal.SIGXFSZ - 1))


@pytest.fixture
def inherited() -> Iterator[None]:
    """The supervisor as a non-interactive shell's background job: SIGINT and SIGQUIT ignored; SIGUSR1 blocked."""
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGQUIT)}
    for signum in before:
        signal.signal(signum, signal.SIG_IGN)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        for signum, handler in before.items():
            signal.signal(signum, handler)


def _script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("spawner", ["forkserver", "spawn"])
async def test_a_python_actor_starts_with_the_interpreters_defaults(inherited: None, spawner: str) -> None:
    """Forked from the template or spawned: nothing blocked, and only the interpreter's own ignores."""
    actors = {"s": {"target": "tests.sample_actors:SignalState"}}
    async with running_supervisor(actors, spawner=spawner) as (_sup, log):
        (state,) = await log.wait_for("signals", actor="s")
    assert (state["blocked"], state["ignored"]) == (0, PYTHON_IGNORES)


async def test_a_program_starts_with_nothing_ignored_or_blocked(inherited: None, tmp_path: Path) -> None:
    """A command actor's program sees SigBlk and SigIgn of zero, as systemd would exec it."""
    script = _script(tmp_path, "status.sh", """\
        #!/bin/sh
        exec grep -E '^Sig(Blk|Ign)' /proc/self/status
        """)
    actors = {"p": {"kind": "command", "command": [script], "restart": "temporary"}}
    async with running_supervisor(actors) as (_sup, log):
        await log.wait_for("actor.stopped", actor="p")
    lines = sorted(e["event"] for e in log.find(actor="p", stream="stdout"))
    assert lines == ["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"]


async def test_stop_signal_sigint_stops_a_program_gracefully(inherited: None, tmp_path: Path) -> None:
    """stop_signal = "SIGINT" under a supervisor that ignores SIGINT: the program's trap runs, no SIGKILL."""
    script = _script(tmp_path, "polite.sh", """\
        #!/bin/sh
        trap 'echo got INT; exit 0' INT
        echo trapped
        while :; do sleep 0.05; done
        """)
    actors = {"polite": {"kind": "command", "command": [script], "stop_signal": "SIGINT", "stop_timeout": 5.0}}
    async with running_supervisor(actors) as (sup, log):
        await log.wait_for("trapped", actor="polite")
        await sup.stop_actor("polite")
        await log.wait_for("got INT", actor="polite")
        (exited,) = await log.wait_for("actor.exited", actor="polite")
    assert (exited["reason"], exited["exit_code"]) == ("stopped", 0) and not log.find("actor.stop_timeout")
