"""The blocks composed as the handle will compose them, on redis-server: spec, launch, notify, capture, probe."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor.command._capture import capture_event
from supervisor.command._launch import child_env, launch
from supervisor.command._notify import Notice, NotifySocket, Ready, Status, Stopping
from supervisor.command._probe import ProbeRunner
from supervisor.command._spec import parse_command_spec
from supervisor.core._clock import MonotonicClock
from supervisor.logs import LineAssembler
from supervisor.process._child import stop_process
from supervisor.process._popen import FdReader

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not (shutil.which("redis-server") and shutil.which("redis-cli")), reason="needs redis"),
]


async def _pump(reader: FdReader, stream: str, events: list[dict[str, Any]], done: anyio.Event) -> None:
    assembler = LineAssembler(stream, lambda e: events.append(capture_event(e)))
    try:
        while chunk := await reader.receive():
            assembler.feed(chunk)
    finally:
        assembler.close()
        done.set()


async def test_redis_as_a_command_actor(tmp_path: Path) -> None:
    """redis-server: running only after READY=1, STATUS kept, exec probe passes, SIGTERM stop is clean."""
    sock = tmp_path / "r.sock"
    spec = parse_command_spec({
        "command": f"redis-server --port 0 --unixsocket {sock} --supervised systemd --save '' --dir {tmp_path}",
        "notify": True,
        "probe": {"exec": ["redis-cli", "-s", str(sock), "ping"], "every": 0.2, "timeout": 0.2, "failures": 2},
    })
    ready = anyio.Event()
    stopping = anyio.Event()
    status: list[str] = []

    def on_notice(notice: Notice) -> None:  # the handle: READY -> RUNNING, STATUS -> status(), STOPPING -> logged
        if isinstance(notice, Ready):
            ready.set()
        elif isinstance(notice, Status):
            status.append(notice.text)
        elif isinstance(notice, Stopping):
            stopping.set()

    events: list[dict[str, Any]] = []
    results: list[bool] = []
    three_checks = anyio.Event()

    def on_result(ok: bool, why: str | None) -> None:
        results.append(ok)
        if len(results) == 3:
            three_checks.set()

    unhealthy: list[tuple[int, str]] = []
    with NotifySocket("cache", on_notice) as ns:
        env = child_env(os.environ, credentials=spec.credentials, notify=ns.env(None))
        proc = launch(spec.argv, env=env, credentials=spec.credentials)
        ns.watch(proc.pid, proc.create_time)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(ns.serve)
                drained = [anyio.Event(), anyio.Event()]
                tg.start_soon(_pump, proc.stdout, "stdout", events, drained[0])
                tg.start_soon(_pump, proc.stderr, "stderr", events, drained[1])
                with anyio.fail_after(15):
                    await ready.wait()
                assert status[-1] == "Ready to accept connections"
                assert spec.probe is not None
                runner = ProbeRunner.from_spec(spec.probe, on_unhealthy=lambda n, w: unhealthy.append((n, w)),
                                               on_result=on_result, env=env)
                tg.start_soon(runner.run)
                with anyio.fail_after(15):
                    await three_checks.wait()  # three real probe runs, at their own rhythm
                with anyio.fail_after(15):
                    rc = await stop_process(proc, stop_timeout=5, clock=MonotonicClock(), actor="cache")
                    await stopping.wait()
                    for done in drained:  # nothing lost on exit: both pipes read to EOF
                        await done.wait()
                tg.cancel_scope.cancel()
        finally:
            if proc.returncode is None:
                proc.signal_group(signal.SIGKILL)
                await proc.wait()
            await proc.aclose()
    assert rc == 0 and results[:3] == [True, True, True] and unhealthy == [] and ns.refused == 0
    logged = [e["event"] for e in events]
    assert any(f"ready to accept connections at {sock}" in line for line in logged), logged  # its own log lines
    assert "bye bye" in logged[-1]  # read to the last line after the exit
