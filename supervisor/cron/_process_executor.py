"""Run cron executions in child actor processes (crash isolation for config tasks).

``ResidentExecutor``: one long-lived child per task (``isolation = "resident"``),
supervised by an :class:`ActorHandle` in ``cron`` mode; each run is a RunNow
frame answered by a RunDone frame. ``PerRunExecutor``: a fresh child per run
(``isolation = "per-run"``), built from the same handle with ``restart =
"temporary"``. Either way a crash, a hang or a kill ends the run, the outcome
is recorded, and the core restart policy brings the resident child back.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import msgspec

from actors._protocol import RunDone, RunNow, encode

from ..lifecycle._handle import ActorHandle
from ..lifecycle._states import ActorState
from ._model import CronRun, RunResult

__all__ = ["PerRunExecutor", "ResidentExecutor", "run_on_handle"]

_DONE_STATES = (ActorState.STOPPED, ActorState.FAILED)


async def run_on_handle(handle: ActorHandle, run: CronRun) -> RunResult:
    """Send one RunNow to the handle's running child and wait for its RunDone.

    Cancellation (timeout, overlap "replace", task stopped) kills the child's
    process group: the loop of a run that is still going cannot be trusted
    to stop by itself.
    """
    child = handle.child
    if handle.state is not ActorState.RUNNING or child is None:
        return RunResult("error", f"actor process not running (state {handle.state.value})")
    done = anyio.Event()
    result: list[RunDone] = []

    def on_frame(frame: RunDone) -> None:
        if frame.run_id == run.run_id:
            result.append(frame)
            done.set()

    handle.frame_listeners.append(on_frame)
    try:
        if not await child.send(encode(RunNow(run_id=run.run_id))):
            return RunResult("error", "could not send the run request: the actor process is gone")
        async with anyio.create_task_group() as tg:

            async def child_ended() -> None:
                await child.wait()
                tg.cancel_scope.cancel()

            async def run_done() -> None:
                await done.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(child_ended)
            tg.start_soon(run_done)
    except BaseException:
        # A graceful stop already under way (shutdown, stop, reload) is left to finish.
        if not done.is_set() and handle.child is child and not handle.life.stop_requested:
            handle.kill_now("run_killed")
        raise
    finally:
        handle.frame_listeners.remove(on_frame)
    if result:
        frame = result[0]
        return RunResult(frame.outcome, frame.error)
    await _settled(handle)
    ended = handle.last_exit
    if ended is not None and ended.reason == "stopped":
        return RunResult("error", "the run was stopped gracefully: the supervisor shut down or the task was stopped")
    if ended is not None and ended.reason == "heartbeat_timeout":
        return RunResult("killed", "the run blocked the actor's event loop: heartbeat timeout, process killed")
    how = f"signal {ended.signal}" if ended and ended.signal else f"exit status {ended.exit_code if ended else '?'}"
    error = (ended.error if ended and ended.error else None) or f"the actor process died during the run ({how})"
    return RunResult("error", error)


async def _settled(handle: ActorHandle) -> None:
    """Wait (bounded) until the handle has processed its child's exit."""
    with anyio.move_on_after(5):
        await handle.wait_for(*(s for s in ActorState if s not in (ActorState.RUNNING, ActorState.STOPPING)))


class ResidentExecutor:
    def __init__(self, handle: ActorHandle) -> None:
        self.handle = handle
        self.closing = False

    def is_ready(self) -> bool:
        return not self.closing and self.handle.state is ActorState.RUNNING and self.handle.child is not None

    async def shutdown(self) -> None:
        """Start no new run; stop the child gracefully (a run in progress is cancelled, then stop_timeout)."""
        self.closing = True
        await self.handle.stop()

    async def wait_ready(self) -> None:
        if self.closing:
            await anyio.sleep_forever()
        while not self.is_ready():
            await self.handle.wait_for(ActorState.RUNNING)
            await anyio.lowlevel.checkpoint()  # the child may be gone again: look once more

    async def execute(self, run: CronRun) -> RunResult:
        return await run_on_handle(self.handle, run)


class PerRunExecutor:
    """A fresh child for every run; it is stopped once the run has ended."""

    def __init__(self, make_handle: Callable[[], ActorHandle]) -> None:
        self._make_handle = make_handle
        self.current: ActorHandle | None = None
        self.closing = False

    def is_ready(self) -> bool:
        return not self.closing

    async def wait_ready(self) -> None:
        if self.closing:
            await anyio.sleep_forever()

    async def shutdown(self) -> None:
        """Start no new run; stop a run in progress gracefully."""
        self.closing = True
        if self.current is not None:
            await self.current.stop()

    async def execute(self, run: CronRun) -> RunResult:
        if self.closing:
            return RunResult("error", "not started: the supervisor is shutting down")
        handle = self._make_handle()
        handle.reconfigure(msgspec.structs.replace(handle.spec, restart="temporary"))
        self.current = handle
        result = RunResult("error", "the run was cancelled")

        async def live(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            # Shielded: a cancelled run must still see its child's exit, or stop() below
            # would wait out its whole bound. close() ends it.
            with anyio.CancelScope(shield=True):
                await handle.run(task_status=task_status)

        try:
            async with anyio.create_task_group() as tg:
                await tg.start(live)
                try:
                    handle.start()
                    # start() moved it to STARTING: wait until it runs, or its one life ended.
                    await handle.wait_for(ActorState.RUNNING, *_DONE_STATES)
                    if handle.state is not ActorState.RUNNING:
                        result = RunResult("error", handle.last_error or "the run's process did not start")
                    else:
                        result = await run_on_handle(handle, run)
                finally:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(handle.spec.stop_timeout + 5):
                        await handle.stop()
                    handle.close()
        finally:
            self.current = None
        return result
