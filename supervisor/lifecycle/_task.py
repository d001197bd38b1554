"""In-process task actors (``kind = "task"``): an Actor's ``run()`` on the supervisor's own loop.

No process, no channel: the run is one task, a stop cancels it, and a beat
loop stands in for the child's beats (it proves the shared loop runs).
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable

import anyio
import structlog

from ..config import ActorSpec, import_target
from ..core._clock import Clock
from ._machine import SpawnFailed, TaskEnded

__all__ = ["run_task"]

log = structlog.get_logger()


async def run_task(
    spec: ActorSpec,
    *,
    clock: Clock,
    stop: anyio.Event,
    on_running: Callable[[int], None],
    on_beat: Callable[[float], None],
) -> TaskEnded | SpawnFailed:
    """Build the actor and run it until it returns, raises, or ``stop`` is set."""
    pid = os.getpid()
    try:
        cls = import_target(spec.target, None)
        actor = cls(**spec.args)
        actor._bind(spec.name, structlog.get_logger().bind(actor=spec.name, pid=pid), spec.instance)
    except Exception as exc:
        return SpawnFailed("crash", "".join(traceback.format_exception(exc)))
    on_running(pid)
    ended: TaskEnded | None = None
    async with anyio.create_task_group() as tg:

        async def body() -> None:
            nonlocal ended
            try:
                await actor.run()
                ended = TaskEnded("completed")
            except Exception as exc:
                error = "".join(traceback.format_exception(exc))
                log.error("actor.run_failed", actor=spec.name, pid=pid, error=error)
                ended = TaskEnded("crash", error)
            tg.cancel_scope.cancel()

        async def beat() -> None:
            while True:
                on_beat(clock.now())
                await clock.sleep_until(clock.now() + spec.heartbeat_interval)

        tg.start_soon(body)
        tg.start_soon(beat)
        await stop.wait()
        tg.cancel_scope.cancel()
    return ended or TaskEnded(None)
