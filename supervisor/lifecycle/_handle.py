"""ActorHandle: the I/O shell around one actor's pure lifecycle.

Every decision is made by :func:`~supervisor.lifecycle._machine.decide`; the
handle turns what happens (a command, a Ready frame, a hang, an exit) into an
event, feeds it in, and carries out the actions that come back: spawn a
child, stop or kill it, arm the backoff timer, log, and tell its observers.
Everything that lives and dies with one child sits in one :class:`_Run`.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import random
import select
import signal
import socket
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from actors._protocol import Beat, Exiting, FrameError, Health, Init, Log, Ready, RunDone, encode

from ..config import ActorSpec
from ..core._bus import EventBus
from ..core._clock import Clock
from ..exceptions import HandshakeTimeout, ProtocolError
from ..logs import LogRouter
from ..logs._lines import LineAssembler, pump_lines
from ..process._child import ChildProcess, stop_process, wait_until
from ..process._resources import LimitChecker, ResourceSample, ResourceSampler
from ..process._spawn import Spawner
from . import _machine as m
from ._health import HealthTracker
from ._heartbeat import HeartbeatDeadline, wait_for_expiry
from ._machine import Exit, Life, Policy, decide
from ._observers import BeatRecord, BusPublisher, HealthRecord, Observer, TransitionRecord
from ._stall import LoopWatch
from ._states import TRANSITION_EVENTS, ActorState
from ._task import run_task

if TYPE_CHECKING:
    from ..command._launch import CommandProcess

__all__ = ["ActorHandle", "Exit"]

log = structlog.get_logger()
DRAIN_TIMEOUT = 2.0  # bound on reading a dead child's last output
STATUS_SAMPLE_INTERVAL = 10.0  # psutil period when no limit or metric needs every beat (~0.5 ms a sample)
_DRAIN_YIELDS = 50  # bound on letting the pump read beats that wait in the channel
_LEVELS = {ActorState.ERRORED: "warning", ActorState.BACKOFF: "warning", ActorState.FAILED: "error"}


def _readable(sock: socket.socket) -> bool:
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):  # closed
        return False


class _Run:
    """One run of a child (or of a task actor): created at spawn, dropped at exit."""

    __slots__ = (
        "beats", "child", "exiting", "handshake_over", "health", "limits", "program", "ready", "status_text", "stop",
    )

    def __init__(self, spec: ActorSpec) -> None:
        self.child: ChildProcess | None = None
        self.program: CommandProcess | None = None  # a command actor's process (no channel)
        self.stop = anyio.Event()  # end the run gracefully (SIGTERM, or cancel a task)
        self.ready = anyio.Event()
        self.handshake_over = anyio.Event()  # Ready arrived, or a stop came first
        self.beats: HeartbeatDeadline | None = None  # exists from Ready on
        self.exiting: Exiting | None = None
        self.health = HealthTracker(spec.health_failure_threshold)
        self.limits = LimitChecker(spec.max_rss, spec.max_cpu, spec.cpu_window)
        self.status_text: str | None = None  # a command actor's last STATUS=


class ActorHandle:
    def __init__(
        self,
        spec: ActorSpec,
        *,
        spawner: Spawner,
        router: LogRouter,
        bus: EventBus,
        clock: Clock,
        backend: str = "trio",
        mode: str = "actor",
        sampler: ResourceSampler | None = None,
        observers: Iterable[Observer] = (),
        loop_watch: LoopWatch | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self._spawner = spawner
        self._router = router
        self._bus = bus
        self._clock = clock
        self._backend = backend
        self.mode = mode
        self._sampler = sampler or ResourceSampler()
        self._loop_watch = loop_watch
        self._jitter = jitter
        self.observers: list[Observer] = [BusPublisher(bus), *observers]  # read models: bus, monitor, metrics
        self._policy = Policy.of(spec, jitter)
        self.life = Life()
        self.resources: ResourceSample | None = None
        self.has_health_check = False  # from the child's Ready frame
        self._sampled_at = float("-inf")
        self._run: _Run | None = None
        self._todo: m.Spawn | m.StartTimer | None = None
        self._kick = anyio.Event()
        self._timer: anyio.CancelScope | None = None
        self.frame_listeners: list[Any] = []  # callables(frame) for cron executors
        self.closed = anyio.Event()
        self._life_scope = anyio.CancelScope()
        self._state_changed: anyio.Event | None = None

    # --- what the outside reads -------------------------------------------------
    @property
    def state(self) -> ActorState:
        return self.life.state

    @property
    def pid(self) -> int | None:
        return self.life.pid

    @property
    def restarts(self) -> int:
        return self.life.restarts

    @property
    def started_at(self) -> float | None:
        return self.life.started_at

    @property
    def last_error(self) -> str | None:
        return self.life.last_error

    @property
    def last_exit(self) -> Exit | None:
        return self.life.last_exit

    @property
    def child(self) -> ChildProcess | None:
        """The running child with a channel (None for a command actor's program)."""
        return self._run.child if self._run is not None else None

    @property
    def _process(self) -> ChildProcess | CommandProcess | None:
        """The running child or program: what is signalled and sampled."""
        run = self._run
        return None if run is None else run.child or run.program

    @property
    def status_text(self) -> str | None:
        """What a command actor's program last said with ``STATUS=`` (sd_notify)."""
        return self._run.status_text if self._run is not None else None

    @property
    def beats(self) -> HeartbeatDeadline | None:
        return self._run.beats if self._run is not None else None

    async def wait_for(self, *states: ActorState) -> ActorState:
        """Return the state once the actor is in one of ``states``."""
        while self.state not in states:
            if self._state_changed is None:
                self._state_changed = anyio.Event()
            await self._state_changed.wait()
        return self.state

    # --- commands --------------------------------------------------------------
    def reconfigure(self, spec: ActorSpec) -> None:
        """Adopt a changed spec (while stopped): fresh policy state, same restart count."""
        self.spec = spec
        self._policy = Policy.of(spec, self._jitter)
        self.life = dataclasses.replace(self.life, attempt=0, restart_times=())

    def start(self) -> None:
        """Ask for the actor to run (also revives a failed actor)."""
        self._feed(m.Start())

    async def stop(self) -> None:
        """Stop the actor and wait until it is stopped (or failed)."""
        self._feed(m.Stop())
        await self.wait_for(ActorState.STOPPED, ActorState.FAILED)

    def retire(self) -> None:
        """A shutdown began: let the current run end, never start another (no restarts)."""
        self._feed(m.Retire())

    def abandon(self, group: str) -> None:
        """The actor's top-level group gave up: a stopped actor becomes ``failed``."""
        self._feed(m.Abandon(group))

    async def restart(self) -> None:
        await self.stop()
        self.start()

    def resume(self, restarts: int) -> None:
        """Its group leaves the restart after exit number ``restarts`` to the actor's own backoff."""
        self._feed(m.Resume(restarts))

    def kill_now(self, reason: str) -> None:
        """SIGKILL the running child's group at once (a run that must not go on)."""
        if self._process is not None:
            self._feed(m.KillRun(reason))

    def request_kill(self, reason: str) -> None:
        """Restart the running child gracefully (unhealthy, resource limit)."""
        if self._process is not None:
            self._feed(m.StopRun(reason))

    # --- feeding the machine ------------------------------------------------------
    def _feed(self, event: m.Event) -> None:
        policy = self._policy
        if isinstance(event, m.ChildExited | m.TaskEnded | m.SpawnFailed) and any(
            o.decides_restart(self.name) for o in self.observers
        ):  # its group restarts it (one_for_all, rest_for_one): no restart of its own before the group's
            policy = dataclasses.replace(policy, deferred=True)
        self.life, actions = decide(self.life, event, policy, self._clock.now())
        moved = False
        for action in actions:
            moved |= isinstance(action, m.Transition)
            self._carry_out(action)
        if moved:
            changed, self._state_changed = self._state_changed, None
            if changed is not None:
                changed.set()

    def _carry_out(self, action: m.Action) -> None:
        run = self._run
        if isinstance(action, m.Transition):
            self._announce(action)
        elif isinstance(action, m.Emit):
            fields = {"actor": self.name, **action.fields}
            log.log(action.level, action.event, **fields)
            if action.publish:
                self._bus.publish({"event": action.event, **fields})
        elif isinstance(action, m.Spawn | m.StartTimer):
            self._todo = action
            self._kick.set()
        elif isinstance(action, m.CancelTimer):
            self._todo = None
            if self._timer is not None:
                self._timer.cancel()
        elif isinstance(action, m.StopChild):
            if run is not None:
                run.stop.set()
                run.handshake_over.set()
        elif isinstance(action, m.KillChild) and run is not None and (proc := run.child or run.program) is not None:
            proc.signal_group(signal.SIGKILL)

    def _announce(self, t: m.Transition) -> None:
        event = TRANSITION_EVENTS[t.new]
        fields = {"actor": self.name, "state": t.new.value, "previous": t.old.value, **t.fields}
        getattr(log, _LEVELS.get(t.new, "info"))(event, **fields)
        record = TransitionRecord(
            self.name, t.old, t.new, event, fields, self.life.restarts, self.life.last_error,
            self._clock.now(), self.spec.heartbeat_timeout, self.has_health_check,
        )
        for observer in self.observers:
            observer.on_transition(record)

    # --- resources ----------------------------------------------------------------
    def sample(self, max_age: float = 1.0) -> ResourceSample | None:
        """A fresh-enough psutil sample of the running child (None for tasks or no child)."""
        child = self._process
        now = self._clock.now()
        if child is None or child.create_time is None:
            return None
        if now - self._sampled_at >= max_age:
            self._sampled_at = now
            self.resources = self._sampler.sample(child.pid, child.create_time)
        return self.resources

    def _on_beat(self, run: _Run, now: float) -> None:
        # Every beat when a limit or an observer needs it; otherwise status() only
        # needs a recent figure, and psutil costs ~0.1 ms a process.
        every = self.spec.heartbeat_interval * 0.9
        if not (run.limits.active or any(o.wants_samples for o in self.observers)):
            every = max(every, STATUS_SAMPLE_INTERVAL)
        before = self._sampled_at
        sample = self.sample(max_age=every)
        record = BeatRecord(self.name, now, self.restarts, sample if self._sampled_at != before else None)
        for observer in self.observers:
            observer.on_beat(record)
        self._check_limits(run, now, sample)

    def _check_limits(self, run: _Run, now: float, sample: ResourceSample | None) -> None:
        if sample is None:
            return
        reason = run.limits.check(now, sample)
        if reason is not None and self.life.kill_reason is None:
            log.warning(
                "actor.resource_limit", actor=self.name, pid=self.pid, reason=reason, rss=sample.rss,
                max_rss=self.spec.max_rss, max_cpu=self.spec.max_cpu, cpu_window=self.spec.cpu_window,
            )
            self.request_kill(reason)

    # --- the life loop ----------------------------------------------------------
    def close(self) -> None:
        """End the life loop for good (the actor was removed by a reload)."""
        self._life_scope.cancel()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            with self._life_scope:
                await self._live()
        finally:
            self.closed.set()

    async def _live(self) -> None:
        """Carry out the two long actions, a run and a backoff, one at a time."""
        while True:
            todo, self._todo = self._todo, None
            if todo is None:
                self._kick = anyio.Event()
                await self._kick.wait()
            elif isinstance(todo, m.Spawn):
                self._feed(await self._run_once())
            else:
                with anyio.CancelScope() as self._timer:
                    await self._clock.sleep_until(todo.deadline)
                cancelled, self._timer = self._timer.cancel_called, None
                if not cancelled:
                    self._feed(m.BackoffElapsed())

    async def _run_once(self) -> m.ChildExited | m.TaskEnded | m.SpawnFailed:
        run = self._run = _Run(self.spec)
        if self.life.stop_requested:  # stopped before this loop got to the spawn
            run.stop.set()
            run.handshake_over.set()
        self.resources = None
        self._sampled_at = float("-inf")
        try:
            if self.spec.kind == "task":
                return await run_task(
                    self.spec, clock=self._clock, stop=run.stop,
                    on_running=lambda pid: self._on_task_running(run, pid),
                    on_beat=lambda now: self._on_task_beat(run, now),
                )
            if self.spec.kind == "command":
                return await self._run_command(run)
            try:
                spawned = await self._spawn(run)
            except HandshakeTimeout as exc:
                return m.SpawnFailed("handshake_timeout", str(exc))
            except ProtocolError as exc:
                return m.SpawnFailed("protocol_error", str(exc))
            except OSError as exc:
                return m.SpawnFailed("spawn_error", f"cannot start a child process: {exc}{_os_hint(exc)}")
            if spawned is None:  # stopped while Ray had not placed it
                return m.SpawnFailed("stopped", "")
            child = run.child = spawned
            self._feed(m.Spawned(child.pid))
            try:
                return await self._supervise(run, child)
            finally:
                run.child = None
                self._sampler.forget(child.pid)
                await child.aclose()
        finally:
            if self._loop_watch is not None and run.beats is not None:
                self._loop_watch.discard(run.beats)
                self._loop_watch.discard_sweep(run)
            self._run = None
            self.resources = None  # a stopped actor has no RSS

    async def _spawn(self, run: _Run) -> ChildProcess | None:
        """The spawner's child; None if the run is stopped first.

        A local spawn is bounded by start_timeout, but a Ray actor waits
        unbounded while Ray cannot place it (``actor.pending``), so a stop
        must cancel that wait (the Ray spawner kills the host it asked for).
        """
        spawn = functools.partial(self._spawner.spawn, actor=self.name, start_timeout=self.spec.start_timeout)
        if self.spec.kind != "ray":
            return await spawn()
        outcome: list[ChildProcess | Exception] = []
        async with anyio.create_task_group() as tg:
            async def attempt() -> None:
                try:
                    outcome.append(await spawn())
                except (HandshakeTimeout, ProtocolError, OSError) as exc:
                    outcome.append(exc)  # re-raised below, not as an ExceptionGroup
                tg.cancel_scope.cancel()

            tg.start_soon(attempt)
            await run.stop.wait()
            tg.cancel_scope.cancel()
        if not outcome:
            return None
        if isinstance(outcome[0], Exception):
            raise outcome[0]
        return outcome[0]

    async def _run_command(self, run: _Run) -> m.ChildExited | m.SpawnFailed:
        from ..command._run import CommandRun, run_command

        spec = self.spec
        command = CommandRun(
            actor=self.name, command=spec.command_spec, env=spec.env, cwd=spec.cwd,
            start_timeout=spec.start_timeout, stop_timeout=spec.stop_timeout,
            stop_signal=signal.Signals[spec.stop_signal],
            heartbeat_timeout=spec.heartbeat_timeout, watchdog_from_ready=spec.watchdog_from_ready,
            restarts=self.restarts,
        )
        hooks = _CommandHooks(self, run)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(hooks.sample_while_running)
                ended = await run_command(
                    command, router=self._router, clock=self._clock, stop=run.stop, hooks=hooks,
                    launcher=functools.partial(self._spawner.spawn_command, actor=self.name),
                    loop_watch=self._loop_watch,
                )
                tg.cancel_scope.cancel()
            return ended
        finally:
            if run.program is not None:
                self._sampler.forget(run.program.pid)
                self._sampler.forget(run.program.leader)  # differs after MAINPID=
                run.program = None

    def _on_task_running(self, run: _Run, pid: int) -> None:
        run.beats = HeartbeatDeadline(self.spec.heartbeat_timeout, self._clock.now())
        self._feed(m.Ready(pid))

    def _on_task_beat(self, run: _Run, now: float) -> None:
        # A task actor shares the supervisor's loop: its beat proves that loop runs.
        if run.beats is not None:
            run.beats.beat(now)
        record = BeatRecord(self.name, now, self.restarts, None)
        for observer in self.observers:
            observer.on_beat(record)

    async def _supervise(self, run: _Run, child: ChildProcess) -> m.ChildExited:
        readers_done = [anyio.Event() for _ in range(3)]
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._pump_channel, run, child, readers_done[0])
            tg.start_soon(self._pump_pipe, child, "stdout", readers_done[1])
            tg.start_soon(self._pump_pipe, child, "stderr", readers_done[2])
            watchers = anyio.CancelScope()
            tg.start_soon(self._watch, run, child, watchers)
            returncode = await child.wait()
            watchers.cancel()
            child.signal_group(signal.SIGKILL)  # grandchildren die with the actor
            with anyio.move_on_after(DRAIN_TIMEOUT):
                for done in readers_done:
                    await done.wait()
            tg.cancel_scope.cancel()
        exiting = run.exiting
        return m.ChildExited(returncode, exiting.reason if exiting else None, exiting.error if exiting else None)

    async def _watch(self, run: _Run, child: ChildProcess, scope: anyio.CancelScope) -> None:
        with scope:
            init = Init(
                name=self.name,
                target=self.spec.target,
                args=self.spec.args,
                mode=self.mode,
                heartbeat_interval=self.spec.heartbeat_interval,
                health_interval=self.spec.health_interval,
                health_timeout=self.spec.health_timeout,
                backend=self._backend,
                env=self.spec.env,
                cwd=self.spec.cwd,
                instance=self.spec.instance,
                lazy_beats=self._loop_watch is not None and self._loop_watch.sweeping,
            )
            if not await child.send(encode(init)):
                return
            deadline = self._clock.now() + self.spec.start_timeout
            if not await wait_until(run.handshake_over.wait, self._clock, deadline):
                log.warning(
                    "actor.handshake_timeout", actor=self.name, pid=child.pid,
                    start_timeout=self.spec.start_timeout,
                    hint="the actor's import or constructor took too long; raise start_timeout",
                )
                self._feed(m.KillRun("handshake_timeout"))
                return
            async with anyio.create_task_group() as tg:
                if run.ready.is_set():
                    tg.start_soon(self._watch_heartbeat, run, child)
                await run.stop.wait()
                await stop_process(
                    child, stop_timeout=self.spec.stop_timeout, clock=self._clock, actor=self.name,
                    stop_signal=signal.Signals[self.spec.stop_signal],
                )

    async def _watch_heartbeat(self, run: _Run, child: ChildProcess) -> None:
        beats = run.beats
        assert beats is not None
        while True:
            watch = self._loop_watch  # judges every actor's deadline from one task, when it runs
            if watch is not None and watch.sweeping:
                age = await watch.expiry(beats)
            else:
                age = await wait_for_expiry(beats, self._clock)
            self._sweep(run, child)  # beats written without a doorbell since the last round
            if not await self._excused(child, beats):
                break
        log.warning(
            "actor.heartbeat_timeout", actor=self.name, pid=child.pid,
            last_beat_age=round(age, 6), heartbeat_timeout=beats.timeout,
        )
        self._bus.publish({"event": "actor.heartbeat_timeout", "actor": self.name, "pid": child.pid})
        self._feed(m.KillRun("heartbeat_timeout"))  # a hung loop cannot handle SIGTERM

    async def _excused(self, child: ChildProcess, beats: HeartbeatDeadline) -> bool:
        """True if a missed deadline is the supervisor's fault, not the actor's.

        Beats that arrived while the supervisor was busy are read first (the
        channel pump runs once the socket stays readable), and a stall of the
        supervisor's own loop moves every deadline by its length.
        """
        if self._loop_watch is not None:
            self._loop_watch.observe(self._clock.now())
        for _ in range(_DRAIN_YIELDS):
            if not beats.expired(self._clock.now()) or not (child.backlog or _readable(child.channel)):
                break
            await anyio.sleep(0)
        return not beats.expired(self._clock.now())

    async def _pump_channel(self, run: _Run, child: ChildProcess, done: anyio.Event) -> None:
        try:
            while True:
                try:
                    frames = await child.receive_frames()
                except ValueError as exc:
                    # What arrived before the garbage is delivered before the verdict.
                    if isinstance(exc, FrameError) and exc.frames:
                        self._on_frames(run, exc.frames)
                    self._protocol_error(child, str(exc))
                    return
                if not frames:
                    return
                self._on_frames(run, frames)
        finally:
            done.set()

    def _on_frames(self, run: _Run, frames: list[Any]) -> None:
        """The frames of one read, in order; runs of Log frames go to the router as blocks."""
        assert run.child is not None
        pid = run.child.pid
        logs: list[Log] = []
        for frame in frames:
            if type(frame) is Log:
                logs.append(frame)
                continue
            if logs:
                self._router.emit_child_many(logs, actor=self.name, pid=pid, restarts=self.restarts)
                logs = []
            self._on_frame(run, frame)
        if logs:
            self._router.emit_child_many(logs, actor=self.name, pid=pid, restarts=self.restarts)

    def _on_frame(self, run: _Run, frame: Any) -> None:
        child = run.child
        assert child is not None
        if isinstance(frame, Log):
            self._router.emit_child(frame.level, frame.body, actor=self.name, pid=child.pid, restarts=self.restarts)
        elif run.beats is not None and not isinstance(frame, Ready):
            now = self._clock.now()
            if type(frame) is Beat and frame.at is not None:  # read in a later round: dated when sent
                now -= max(0.0, time.monotonic() - frame.at)
            run.beats.beat(now)  # any frame proves the loop is alive
            if isinstance(frame, Beat):
                self._on_beat(run, now)
            elif isinstance(frame, Health):
                self._on_health(run, frame)
            elif isinstance(frame, Exiting):
                run.exiting = frame
            elif isinstance(frame, RunDone):
                for listener in list(self.frame_listeners):
                    listener(frame)
        elif isinstance(frame, Ready):
            # Beats and the actor's first log lines may follow in the same read: the
            # deadline must exist, and actor.started be logged, before them.
            run.beats = HeartbeatDeadline(self.spec.heartbeat_timeout, self._clock.now())
            if self._loop_watch is not None:
                self._loop_watch.add(run.beats)
                self._loop_watch.add_sweep(run, self.spec.heartbeat_interval, lambda: self._sweep(run, child))
            self.has_health_check = frame.has_health_check  # the monitor knows it from RUNNING on
            self._feed(m.Ready(child.pid))
            run.ready.set()
            run.handshake_over.set()
        elif isinstance(frame, Exiting):
            run.exiting = frame  # failed before Ready (import error)
        else:
            self._protocol_error(child, f"unexpected {type(frame).__name__} frame before Ready")

    def _sweep(self, run: _Run, child: ChildProcess) -> None:
        """Read what waits in a parked ring: the lazy beats of one round."""
        if run.child is not child:  # exited: its pump has read the rest
            return
        try:
            frames = child.sweep()
        except ValueError as exc:  # a broken ring: the pump reports it too, once
            if self._loop_watch is not None:
                self._loop_watch.discard_sweep(run)
            self._protocol_error(child, str(exc))
            return
        if frames:
            self._on_frames(run, frames)

    def _on_health(self, run: _Run, frame: Health) -> None:
        record = HealthRecord(self.name, self._clock.now(), frame.ok, frame.error)
        for observer in self.observers:
            observer.on_health(record)
        if run.health.record(frame.ok, frame.error):
            log.warning(
                "actor.unhealthy", actor=self.name, pid=self.pid, failures=run.health.failures, error=frame.error
            )
            self._bus.publish({"event": "actor.unhealthy", "actor": self.name, "failures": run.health.failures})
            self.request_kill("unhealthy")

    def _protocol_error(self, child: ChildProcess, reason: str) -> None:
        log.error(
            "actor.protocol_error", actor=self.name, pid=child.pid, error=reason,
            hint="the child wrote something that is not a channel frame to the channel fd; it is restarted",
        )
        self._feed(m.KillRun("protocol_error"))

    async def _pump_pipe(self, child: ChildProcess, stream_name: str, done: anyio.Event) -> None:
        stream = getattr(child.process, stream_name)
        pid, restarts = child.pid, self.restarts

        def emit(event: dict[str, Any]) -> None:
            self._router.emit({**event, "actor": self.name, "pid": pid, "restarts": restarts})

        def emit_lines(timestamp: str, lines: bytes | memoryview) -> bool:
            # Plain lines, a whole chunk at once: the router renders them without dicts.
            return self._router.emit_lines(
                assembler.level, stream_name, timestamp, lines, actor=self.name, pid=pid, restarts=restarts
            )

        assembler = LineAssembler(stream_name, emit, emit_lines=emit_lines)
        await pump_lines(stream, assembler, done)


class _CommandHooks:
    """What a command actor's run reports, turned into the handle's events, logs and observers."""

    def __init__(self, handle: ActorHandle, run: _Run) -> None:
        self.handle = handle
        self.run = run
        self.spawned_event = anyio.Event()

    def spawned(self, proc: CommandProcess) -> None:
        self.run.program = proc
        self.handle._feed(m.Spawned(proc.pid))
        self.spawned_event.set()

    def ready(self, pid: int) -> None:
        self.handle._feed(m.Ready(pid))
        self.run.ready.set()
        self.run.handshake_over.set()

    def beat(self, now: float) -> None:
        # A mirror of the run's watchdog deadline, for status' last_beat_age (the LoopWatch has the real one).
        if self.run.beats is None:
            self.run.beats = HeartbeatDeadline(self.handle.spec.heartbeat_timeout, now)
        self.run.beats.beat(now)
        self.handle._on_beat(self.run, now)

    def status(self, text: str) -> None:
        self.run.status_text = text

    def health(self, ok: bool, error: str | None) -> None:
        h = self.handle
        record = HealthRecord(h.name, h._clock.now(), ok, error)
        for observer in h.observers:
            observer.on_health(record)

    def unhealthy(self, failures: int, error: str) -> None:
        h = self.handle
        log.warning("actor.unhealthy", actor=h.name, pid=h.pid, failures=failures, error=error)
        h._bus.publish({"event": "actor.unhealthy", "actor": h.name, "failures": failures})
        h.request_kill("unhealthy")

    def heartbeat_timeout(self, age: float, timeout: float) -> None:
        h = self.handle
        log.warning(
            "actor.heartbeat_timeout", actor=h.name, pid=h.pid, last_beat_age=round(age, 6), heartbeat_timeout=timeout
        )
        h._bus.publish({"event": "actor.heartbeat_timeout", "actor": h.name, "pid": h.pid})
        h._feed(m.KillRun("heartbeat_timeout"))

    def start_timeout(self, timeout: float) -> None:
        h = self.handle
        log.warning(
            "actor.handshake_timeout", actor=h.name, pid=h.pid, start_timeout=timeout,
            hint="no READY=1 within start_timeout (notify = true): raise start_timeout, or check that the "
            "program sends READY=1 to $NOTIFY_SOCKET",
        )
        h._feed(m.KillRun("handshake_timeout"))

    async def sample_while_running(self) -> None:
        """RSS and CPU of the program for status and the limits: a program may never beat."""
        h = self.handle
        await self.spawned_event.wait()
        while True:
            now = h._clock.now()
            every = min(h.spec.heartbeat_interval * 0.9, STATUS_SAMPLE_INTERVAL)  # a sample is ~0.1 ms
            self.handle._check_limits(self.run, now, h.sample(max_age=0.0))
            await h._clock.sleep_until(now + every)


def _os_hint(exc: OSError) -> str:
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        return " (the open-files limit is exhausted: raise it with ulimit -Hn, or LimitNOFILE= in the systemd unit)"
    return ""
