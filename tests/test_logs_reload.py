"""A reload applies `[logs]` changes: sinks added, removed and re-filtered live, no event lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor.config import SinkSpec
from supervisor.logs import FileSink, LogRouter
from supervisor.logs._build import plan_sinks
from tests.harness import cli_supervisor

pytestmark = pytest.mark.anyio


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def emit(router: LogRouter, i: int, level: str = "info") -> None:
    router.emit({"timestamp": "t", "level": level, "event": "n", "i": i})


class TestReplaceSinks:
    async def test_swap_under_load_loses_no_event(self, tmp_path: Path) -> None:
        """Events emitted while a file sink is rebuilt (new max_bytes) all land in the file, once each."""
        path = tmp_path / "a.jsonl"
        router = LogRouter([FileSink(SinkSpec(type="file", path=path))])
        async with anyio.create_task_group() as tg:
            await tg.start(router.run)
            emitted = 0

            async def emit_all() -> None:
                nonlocal emitted
                for i in range(3000):
                    emit(router, i)
                    emitted += 1
                    if i % 50 == 0:
                        await anyio.lowlevel.checkpoint()

            tg.start_soon(emit_all)
            while emitted < 1000:
                await anyio.lowlevel.checkpoint()
            plan = await plan_sinks(router.sinks, (SinkSpec(type="file", path=path, max_bytes=1 << 30),))
            assert [type(s) for s in plan.added] == [FileSink] and len(plan.removed) == 1
            await router.replace_sinks(plan)
            assert 1000 <= emitted < 3000  # the swap happened mid-stream
            while emitted < 3000:
                await anyio.lowlevel.checkpoint()
            await router.aclose()
            tg.cancel_scope.cancel()
        assert sorted(e["i"] for e in lines_of(path)) == list(range(3000))

    async def test_level_change_keeps_the_sink_and_filters_from_then_on(self, tmp_path: Path) -> None:
        """A new level keeps the open sink; info events after the switch stop reaching it."""
        path = tmp_path / "a.jsonl"
        sink = FileSink(SinkSpec(type="file", path=path))
        router = LogRouter([sink])
        async with anyio.create_task_group() as tg:
            await tg.start(router.run)
            emit(router, 0)
            plan = await plan_sinks(router.sinks, (SinkSpec(type="file", path=path, level=30),))
            assert plan.sinks == [sink] and plan.added == [] and plan.removed == []
            assert plan.changes == [f"changed file:{path}"]
            await router.replace_sinks(plan)
            emit(router, 1)
            emit(router, 2, "warning")
            await router.aclose()
            tg.cancel_scope.cancel()
        assert [e["i"] for e in lines_of(path)] == [0, 2]

    async def test_added_sink_starts_and_removed_sink_is_closed(self, tmp_path: Path) -> None:
        """An added sink gets the events from the switch on; a removed one keeps all before, none after."""
        a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
        router = LogRouter([FileSink(SinkSpec(type="file", path=a))])
        async with anyio.create_task_group() as tg:
            await tg.start(router.run)
            for i in range(5):
                emit(router, i)
            plan = await plan_sinks(router.sinks, (SinkSpec(type="file", path=b),))
            await router.replace_sinks(plan)
            assert plan.changes == [f"added file:{b}", f"removed file:{a}"]
            for i in range(5, 10):
                emit(router, i)
            await router.aclose()
            tg.cancel_scope.cancel()
        assert [e["i"] for e in lines_of(a)] == list(range(5))  # flushed when it was closed
        assert [e["i"] for e in lines_of(b)] == list(range(5, 10))


CONFIG = """
[supervisor]
heartbeat_interval = 0.2
control_socket = "ctl.sock"

[actors.alpha]
target = "tests.sample_actors:Steady"

[[logs.sinks]]
type = "stdout"

[[logs.sinks]]
type = "file"
path = "{sink}"
level = "{level}"
"""


async def cli(config: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    result = await anyio.run_process(
        [sys.executable, "-m", "supervisor", *args, "-c", str(config)],
        check=False, env=dict(os.environ, PYTHONPATH=os.getcwd()),
    )
    assert result.returncode == 0, result.stderr.decode()
    return result


async def wait_in_file(path: Path, event: str, **fields: Any) -> list[dict[str, Any]]:
    """The file's events once one matching ``event``/``fields`` is there (file sinks flush every 50 ms)."""
    with anyio.fail_after(20):
        while True:
            events = lines_of(path)
            if any(e.get("event") == event and all(e.get(k) == v for k, v in fields.items()) for e in events):
                return events
            await anyio.sleep(0.05)


@pytest.mark.slow
async def test_reload_applies_a_file_sinks_new_level(tmp_path: Path) -> None:
    """`actorsup reload` with a file sink's level raised to info: its debug events stop, info ones go on."""
    config = tmp_path / "actorsup.toml"
    sink = tmp_path / "a.jsonl"
    config.write_text(textwrap.dedent(CONFIG.format(sink=sink, level="debug")))
    async with cli_supervisor(config) as sup:
        await sup.log.wait_for("actor.started", actor="alpha")
        await cli(config, "status")
        await wait_in_file(sink, "control.request", cmd="status")  # debug: written
        config.write_text(textwrap.dedent(CONFIG.format(sink=sink, level="info")))
        reloaded = await cli(config, "reload")
        assert reloaded.stdout.decode() == f"reloaded: added -; removed -; changed -; logs changed file:{sink}\n"
        reload_seq = (await sup.log.wait_for("supervisor.reloaded"))[0]["seq"]
        await cli(config, "status")
        await cli(config, "restart", "alpha")
        events = await wait_in_file(sink, "control.command", cmd="restart")  # info: still written
        after = [e for e in events if e["seq"] > reload_seq]
        assert after and all(e["level"] != "debug" for e in after), after
        # stdout kept its sink (and its debug events): nothing was lost on it either.
        seqs = [e["seq"] for e in sup.log.events]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
