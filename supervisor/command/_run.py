"""One run of a command actor, from spawn to reaped exit, for the handle to call as it calls ``run_task``.

The handle keeps the state machine and the log events of transitions; this
runs the program and tells it what happened through :class:`CommandHooks`:
spawned, ready (at once, or at ``READY=1`` with ``notify``), beats
(``WATCHDOG=1``), probe results, and the verdicts (start timeout, heartbeat
timeout, unhealthy) on which the handle feeds ``KillRun`` or ``StopRun``.
The run ends when the program (or the descendant it named with ``MAINPID=``,
its main process from then on, as in systemd) has exited and its output has
been read to the end: :class:`~supervisor.lifecycle._machine.ChildExited`, or ``SpawnFailed``
when the program cannot be started at all.

The watchdog deadline (``heartbeat_timeout``) runs from ``READY=1`` when the
actor's table sets ``heartbeat_timeout``; otherwise from the first
``WATCHDOG=1``, so a program that never uses the watchdog (redis) is not
killed for silence it never promised to break.
"""

from __future__ import annotations

import errno as errno_codes
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import structlog

from ..core._clock import Clock
from ..lifecycle._heartbeat import HeartbeatDeadline, wait_for_expiry
from ..lifecycle._machine import ChildExited, SpawnFailed
from ..lifecycle._stall import LoopWatch
from ..logs import LineAssembler, LogRouter
from ..logs._lines import pump_lines
from ..process._child import stop_process, wait_until
from ..process._popen import FdReader
from ._capture import capture_event, may_hold_json
from ._errors import ProgramError
from ._launch import CommandProcess, child_env, launch
from ._notify import (
    Errno,
    MainPid,
    Notice,
    NotifySocket,
    Ready,
    Reloading,
    Status,
    Stopping,
    Watchdog,
    WatchdogTrigger,
)
from ._privileges import Credentials
from ._probe import ProbeRunner
from ._spec import CommandSpec

__all__ = ["CommandHooks", "CommandRun", "Launcher", "run_command"]

log = structlog.get_logger()

DRAIN_TIMEOUT = 2.0  # bound on reading a dead program's last output (as the handle's)


@dataclass(frozen=True, slots=True)
class CommandRun:
    """What one run needs: the command keys and the actor's common settings."""

    actor: str
    command: CommandSpec
    env: Mapping[str, str] = field(default_factory=dict)  # the actor's env table
    cwd: str | None = None
    start_timeout: float = 10.0
    stop_timeout: float = 5.0
    stop_signal: signal.Signals = signal.SIGTERM  # the actor's stop_signal key
    heartbeat_timeout: float | None = None  # WATCHDOG_USEC, and the deadline of WATCHDOG=1 beats
    watchdog_from_ready: bool = False  # heartbeat_timeout set in the actor's table: the deadline starts at READY
    restarts: int = 0
    base_env: Mapping[str, str] | None = None  # default: the supervisor's environment


class CommandHooks(Protocol):
    """How a run tells the handle what happened (all called in the loop, synchronously)."""

    def spawned(self, proc: CommandProcess) -> None: ...  # again when MAINPID= moves its main process
    def ready(self, pid: int) -> None: ...
    def beat(self, now: float) -> None: ...
    def status(self, text: str) -> None: ...
    def health(self, ok: bool, error: str | None) -> None: ...
    def unhealthy(self, failures: int, error: str) -> None: ...
    def heartbeat_timeout(self, age: float, timeout: float) -> None: ...  # already SIGKILLed: log, KillRun
    def start_timeout(self, timeout: float) -> None: ...  # no READY=1 in time, already SIGKILLed


class Launcher(Protocol):
    """:func:`~supervisor.command._launch.launch`'s signature (a spawner adds its reaper's cookie)."""

    def __call__(
        self, argv: Sequence[str], *, env: Mapping[str, str], cwd: str | None, credentials: Credentials | None
    ) -> CommandProcess: ...


async def run_command(
    run: CommandRun,
    *,
    router: LogRouter,
    clock: Clock,
    stop: anyio.Event,
    hooks: CommandHooks,
    launcher: Launcher = launch,
    loop_watch: LoopWatch | None = None,
) -> ChildExited | SpawnFailed:
    """Run the program once: until it exits by itself, or ``stop`` is set and it has been stopped.

    ``loop_watch``: the supervisor's stall detector, which moves the watchdog
    deadline by a stall of the supervisor's own loop (not the program's fault).
    """
    spec = run.command
    state = _State(run, clock, hooks, loop_watch)
    ns = NotifySocket(run.actor, state.on_notice) if spec.notify else None  # one per run: no stale senders
    try:
        notify_env = ns.env(run.heartbeat_timeout) if ns is not None else None
        env = child_env(os.environ if run.base_env is None else run.base_env, env=run.env,
                        credentials=spec.credentials, notify=notify_env)
        try:
            proc = launcher(spec.argv, env=env, cwd=run.cwd, credentials=spec.credentials)
        except ProgramError as exc:
            return SpawnFailed(exc.code, exc.reason, exited=True)
        if ns is not None:
            ns.watch(proc.pid, proc.create_time)  # before any await: it may notify at once
            proc.before_reap = ns.drain  # a MAINPID= sent just before the program exits still counts
        state.proc = proc
        hooks.spawned(proc)
        try:
            returncode = await _supervise(run, state, proc, ns, router=router, env=env, stop=stop)
        finally:
            with anyio.CancelScope(shield=True):
                await proc.aclose()
    finally:
        if ns is not None:
            ns.close()
        if loop_watch is not None and state.beats is not None:
            loop_watch.discard(state.beats)
    return ChildExited(returncode, None, state.errno_text, program=True)


class _State:
    """What the notices of one run have said."""

    def __init__(
        self, run: CommandRun, clock: Clock, hooks: CommandHooks, loop_watch: LoopWatch | None = None
    ) -> None:
        self.run = run
        self.loop_watch = loop_watch
        self.clock = clock
        self.hooks = hooks
        self.proc: CommandProcess | None = None
        self.ready = anyio.Event()
        self.beats: HeartbeatDeadline | None = None
        self.beating = anyio.Event()  # the deadline exists
        self.errno_text: str | None = None
        self.gave_up = False  # start_timeout passed: a late READY=1 no longer counts

    def mark_ready(self) -> None:
        if self.ready.is_set() or self.proc is None or self.gave_up:
            return
        if self.run.watchdog_from_ready and self.run.heartbeat_timeout is not None:
            self._arm()
        self.hooks.ready(self.proc.pid)
        self.ready.set()

    def _arm(self) -> None:
        assert self.run.heartbeat_timeout is not None
        self.beats = HeartbeatDeadline(self.run.heartbeat_timeout, self.clock.now())
        if self.loop_watch is not None:
            self.loop_watch.add(self.beats)
        self.beating.set()

    def kill_for_hang(self, age: float) -> None:
        """A hang (a missed deadline, WATCHDOG=trigger): SIGKILL now, as for a hung Python actor."""
        if self.proc is not None:
            self.proc.signal_group(signal.SIGKILL)
        self.hooks.heartbeat_timeout(age, self.run.heartbeat_timeout or 0.0)

    def on_notice(self, notice: Notice) -> None:
        actor, pid = self.run.actor, self.proc.pid if self.proc is not None else None
        if isinstance(notice, Ready):
            self.mark_ready()
        elif isinstance(notice, Watchdog):
            now = self.clock.now()
            if self.beats is None and self.run.heartbeat_timeout is not None and self.ready.is_set():
                self._arm()
            if self.beats is not None:
                self.beats.beat(now)
            self.hooks.beat(now)
        elif isinstance(notice, WatchdogTrigger):
            log.warning("notify.watchdog_trigger", actor=actor, pid=pid)
            self.kill_for_hang(0.0)
        elif isinstance(notice, Status):
            self.hooks.status(notice.text)
        elif isinstance(notice, Stopping):
            log.info("notify.stopping", actor=actor, pid=pid)
        elif isinstance(notice, Reloading):
            log.info("notify.reloading", actor=actor, pid=pid)
        elif isinstance(notice, MainPid):
            log.info("notify.mainpid", actor=actor, pid=pid, main_pid=notice.pid)
            if self.proc is not None and self.proc.follow(notice.pid, notice.create_time):
                self.hooks.spawned(self.proc)  # the actor's pid is the main process's from now on
        elif isinstance(notice, Errno):
            name = errno_codes.errorcode.get(notice.errno, str(notice.errno))
            self.errno_text = f"ERRNO={notice.errno} ({name}: {os.strerror(notice.errno)})"
            log.warning("notify.errno", actor=actor, pid=pid, errno=notice.errno, error=self.errno_text)


async def _supervise(
    run: CommandRun, state: _State, proc: CommandProcess, ns: NotifySocket | None, *,
    router: LogRouter, env: Mapping[str, str], stop: anyio.Event,
) -> int:
    drained = [anyio.Event(), anyio.Event()]
    async with anyio.create_task_group() as tg:
        if ns is not None:
            tg.start_soon(ns.serve)
        tg.start_soon(_pump, run, proc.pid, proc.stdout, "stdout", router, drained[0])
        tg.start_soon(_pump, run, proc.pid, proc.stderr, "stderr", router, drained[1])
        watchers = anyio.CancelScope()
        tg.start_soon(_watch, run, state, proc, ns, env, stop, watchers)
        returncode = await proc.wait()
        watchers.cancel()
        proc.signal_group(signal.SIGKILL)  # what it left in its group dies with it
        with anyio.move_on_after(DRAIN_TIMEOUT):
            for done in drained:
                await done.wait()
        tg.cancel_scope.cancel()
    return returncode


async def _watch(
    run: CommandRun, state: _State, proc: CommandProcess, ns: NotifySocket | None, env: Mapping[str, str],
    stop: anyio.Event, scope: anyio.CancelScope,
) -> None:
    clock, hooks = state.clock, state.hooks
    with scope:
        if ns is None:
            state.mark_ready()  # without notify, started once its process exists
        elif not await wait_until(lambda: _either(state.ready, stop), clock, clock.now() + run.start_timeout):
            state.gave_up = True
            proc.signal_group(signal.SIGKILL)  # no READY=1 within start_timeout
            hooks.start_timeout(run.start_timeout)
            return
        async with anyio.create_task_group() as tg:
            if state.ready.is_set():
                if run.heartbeat_timeout is not None:
                    tg.start_soon(_watch_watchdog, state, ns)
                if run.command.probe is not None:
                    runner = ProbeRunner.from_spec(
                        run.command.probe, on_unhealthy=hooks.unhealthy, on_result=hooks.health, clock=clock,
                        env=env, cwd=run.cwd,
                    )
                    tg.start_soon(runner.run)
            await stop.wait()
            tg.cancel_scope.cancel()
        await stop_process(proc, stop_timeout=run.stop_timeout, clock=clock, actor=run.actor,
                           stop_signal=run.stop_signal)


async def _watch_watchdog(state: _State, ns: NotifySocket | None) -> None:
    """Wait for the deadline to exist, then for a miss that no unread datagram excuses."""
    await state.beating.wait()
    beats = state.beats
    assert beats is not None
    while True:
        age = await wait_for_expiry(beats, state.clock)
        if state.loop_watch is not None:
            state.loop_watch.observe(state.clock.now())  # a stall of ours extends the deadline
        for _ in range(8):  # beats that arrived while the loop was busy are read first
            if ns is None or not ns.pending() or not beats.expired(state.clock.now()):
                break
            await anyio.sleep(0)
        if beats.expired(state.clock.now()):
            break
    state.kill_for_hang(age)


async def _either(a: anyio.Event, b: anyio.Event) -> None:
    """Return once ``a`` or ``b`` is set."""
    async with anyio.create_task_group() as tg:

        async def until(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(until, a)
        tg.start_soon(until, b)


async def _pump(
    run: CommandRun, pid: int, reader: FdReader, stream: str, router: LogRouter, done: anyio.Event
) -> None:
    """The program's output as log events: JSON object lines merged, plain lines through the fast path."""
    actor, restarts = run.actor, run.restarts

    def emit(event: dict[str, Any]) -> None:
        router.emit({**capture_event(event), "actor": actor, "pid": pid, "restarts": restarts})

    def emit_lines(timestamp: str, lines: bytes | memoryview) -> bool:
        if may_hold_json(lines):
            return False  # the per-line path merges it
        return router.emit_lines(assembler.level, stream, timestamp, lines, actor=actor, pid=pid, restarts=restarts)

    assembler = LineAssembler(stream, emit, emit_lines=emit_lines)
    await pump_lines(reader, assembler, done)
