"""Run a real Supervisor in-process and wait on its log events."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from supervisor._supervisor import Supervisor
from supervisor.config import SinkSpec, parse_config
from supervisor.logs import LogRecord, LogRouter, configure_supervisor_logging

Match = Callable[[dict[str, Any]], bool]
# Each config's state_dir (cron history) in a folder of its own, never the repository's .actorsup/
# that two test workers would share; removed when the worker exits.
_STATE_ROOT = tempfile.TemporaryDirectory(prefix="actorsup-tests-")


class CaptureSink:
    """A sink that keeps every event as a dict and wakes waiters."""

    def __init__(self) -> None:
        self.spec = SinkSpec(type="stdout")
        self.events: list[dict[str, Any]] = []
        self.raw: list[bytes] = []  # the lines as the router made them
        self._changed = anyio.Event()

    def write(self, record: LogRecord) -> None:
        self.raw.append(record.line)
        self.events.append(json.loads(record.line))
        self._changed.set()
        self._changed = anyio.Event()

    async def run(self, *, task_status: Any) -> None:
        task_status.started()

    async def aclose(self) -> None:
        pass

    def find(self, event: str | None = None, **fields: Any) -> list[dict[str, Any]]:
        return [
            e for e in self.events
            if (event is None or e.get("event") == event) and all(e.get(k) == v for k, v in fields.items())
        ]

    async def wait_for(
        self, event: str | None = None, count: int = 1, timeout: float = 45.0, **fields: Any
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` matching events exist; fail with the recent log otherwise."""
        try:
            with anyio.fail_after(timeout):
                while len(found := self.find(event, **fields)) < count:
                    await self._changed.wait()
        except TimeoutError:
            recent = "\n".join(json.dumps(e) for e in self.events[-30:])
            problem = f"timed out waiting for {count} x {event} {fields}"
            raise AssertionError(f"{problem}; recent events:\n{recent}") from None
        return found


def state_dir() -> str:
    """A fresh state_dir for one test's config."""
    return tempfile.mkdtemp(dir=_STATE_ROOT.name)


def make_config(
    actors: dict[str, dict[str, Any]], cron: dict[str, dict[str, Any]] | None = None, **supervisor: Any
) -> Any:
    settings = {"heartbeat_interval": 0.2, "heartbeat_timeout": 5.0, "start_timeout": 20.0,
                "state_dir": state_dir(), **supervisor}
    return parse_config({"supervisor": settings, "actors": actors, "cron": cron or {}}, label="test.toml")


@asynccontextmanager
async def running_supervisor(
    actors: dict[str, dict[str, Any]], cron: dict[str, dict[str, Any]] | None = None, **supervisor: Any
) -> AsyncIterator[tuple[Supervisor, CaptureSink]]:
    """A started Supervisor; on exit it shuts down gracefully (bounded)."""
    async with serving(make_config(actors, cron, **supervisor)) as running:
        yield running


@asynccontextmanager
async def serving(config: Any) -> AsyncIterator[tuple[Supervisor, CaptureSink]]:
    """A Supervisor of ``config``, started, its events captured; shut down gracefully (bounded) on exit."""
    sink = CaptureSink()
    router = LogRouter([sink])
    configure_supervisor_logging(router)
    sup = Supervisor(config, router=router)
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        try:
            yield sup, sink
        finally:
            with anyio.CancelScope(shield=True), anyio.fail_after(30):
                sup.shutdown_nowait()
                await sup.closed.wait()


class CliSupervisor:
    """`actorsup run CONFIG` as a real subprocess, its JSON stdout collected."""

    def __init__(self, process: Any) -> None:
        self.process = process
        self.log = CaptureSink()

    async def _pump(self) -> None:
        buffer = b""
        async for chunk in self.process.stdout:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                self.log.events.append(json.loads(line))
            self.log._changed.set()
            self.log._changed = anyio.Event()


@asynccontextmanager
async def cli_supervisor(*run_args: Any, shell_setup: str = "") -> AsyncIterator[CliSupervisor]:
    """``python -m supervisor run *run_args``; killed by pid if the test leaves it running.

    ``shell_setup``: shell commands (``ulimit -Sn 512``) run first, then ``exec`` the supervisor (same pid)."""
    import subprocess
    import sys

    argv = [sys.executable, "-m", "supervisor", "run", *map(str, run_args)]
    if shell_setup:
        argv = ["/bin/sh", "-c", f'{shell_setup} && exec "$@"', "sh", *argv]
    process = await anyio.open_process(
        argv,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
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


async def wait_gone(*pids: int, timeout: float = 10.0) -> None:
    """Until each of ``pids`` has exited (a zombie counts): its pidfd turns readable, no polling."""
    with anyio.fail_after(timeout):
        for pid in pids:
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            try:
                await anyio.wait_readable(fd)
            finally:
                os.close(fd)
