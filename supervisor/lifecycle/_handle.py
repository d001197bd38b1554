"""ActorHandle: one supervised actor's whole life, and its one state machine.

The handle's ``run()`` loop starts the actor, supervises it, and on exit asks
the restart policy what next. A crash, a heartbeat timeout, a handshake
timeout, a protocol error and a failed health check all end up at the same
place: :meth:`_after_exit`. Every state change goes through
:meth:`_transition`, which emits one log event and publishes it on the bus.
"""

from __future__ import annotations

import os
import signal
import traceback
from dataclasses import dataclass
from typing import Any

import anyio
import structlog

from actors._protocol import Beat, Exiting, Health, Init, Log, Ready, RunDone, encode

from ..config import ActorSpec, import_target
from ..core._bus import EventBus
from ..core._clock import Clock
from ..exceptions import HandshakeTimeout, ProtocolError
from ..logs import LogRouter
from ..logs._lines import LineAssembler
from ..metrics import Metrics
from ..monitor import HeartbeatMonitor
from ..process._child import ChildProcess, signal_name, stop_process, wait_until
from ..process._resources import LimitChecker, ResourceSample, ResourceSampler
from ..process._spawn import Spawner
from ._health import HealthTracker
from ._heartbeat import HeartbeatDeadline, wait_for_expiry
from ._policy import Backoff, RestartIntensity, should_restart
from ._states import ALLOWED, TRANSITION_EVENTS, ActorState, IllegalTransition

__all__ = ["ActorHandle", "Exit"]

log = structlog.get_logger()
DRAIN_TIMEOUT = 2.0  # bound on reading a dead child's last output
PIPE_IDLE_FLUSH = 0.2  # seconds of pipe silence after which partial output is released
STATUS_SAMPLE_INTERVAL = 10.0  # psutil period when no limit or metric needs every beat (~0.5 ms a sample)


@dataclass
class Exit:
    """How one run of an actor ended."""

    reason: str  # completed | exit | crash | heartbeat_timeout | handshake_timeout | ...
    exit_code: int | None = None
    signal: str | None = None
    error: str | None = None

    @property
    def abnormal(self) -> bool:
        return self.reason not in ("completed", "stopped")


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
        base_dir: str | None = None,
        mode: str = "actor",
        monitor: HeartbeatMonitor | None = None,
        sampler: ResourceSampler | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self._spawner = spawner
        self._router = router
        self._bus = bus
        self._clock = clock
        self._backend = backend
        self._base_dir = base_dir
        self.mode = mode
        self._monitor = monitor
        self._sampler = sampler or ResourceSampler()
        self._metrics = metrics
        self.resources: ResourceSample | None = None
        self._sampled_at = float("-inf")
        self.state = ActorState.STOPPED
        self.pid: int | None = None
        self.child: ChildProcess | None = None
        self.restarts = 0
        self.started_at: float | None = None
        self.beats: HeartbeatDeadline | None = None
        self.last_error: str | None = None
        self.last_exit: Exit | None = None
        self._backoff = Backoff(spec.backoff_initial, spec.backoff_max, spec.backoff_reset)
        self._intensity = RestartIntensity(spec.max_restarts, spec.restart_window)
        self._health = HealthTracker(spec.health_failure_threshold)
        self._limits = LimitChecker(spec.max_rss, spec.max_cpu, spec.cpu_window)
        self._want_running = False
        self._stop_requested = anyio.Event()
        self._wake = anyio.Event()
        self._kill_reason: str | None = None
        self._exiting: Exiting | None = None
        self.frame_listeners: list[Any] = []  # callables(frame) for cron executors
        self.closed = anyio.Event()
        self._life = anyio.CancelScope()
        self._state_changed: anyio.Event | None = None

    # --- commands --------------------------------------------------------------
    def reconfigure(self, spec: ActorSpec) -> None:
        """Adopt a changed spec (while stopped): fresh policy state, same restart count."""
        self.spec = spec
        self._backoff = Backoff(spec.backoff_initial, spec.backoff_max, spec.backoff_reset)
        self._intensity = RestartIntensity(spec.max_restarts, spec.restart_window)
        self._health = HealthTracker(spec.health_failure_threshold)
        self._limits = LimitChecker(spec.max_rss, spec.max_cpu, spec.cpu_window)

    def start(self) -> None:
        """Ask for the actor to run (also revives a failed actor)."""
        if self.state is ActorState.FAILED:
            self._intensity.reset()
            self._backoff.attempt = 0
        self._want_running = True
        self._wake.set()

    async def stop(self) -> None:
        """Stop the actor and wait until it is stopped (or failed)."""
        self._want_running = False
        self._stop_requested.set()
        self._wake.set()
        while self.state not in (ActorState.STOPPED, ActorState.FAILED):
            await self._changed()

    async def restart(self) -> None:
        await self.stop()
        self.start()

    async def _changed(self) -> None:
        if self._state_changed is None:
            self._state_changed = anyio.Event()
        await self._state_changed.wait()

    def kill_now(self, reason: str) -> None:
        """SIGKILL the running child's group at once (a run that must not go on)."""
        child = self.child
        if child is not None:
            if self._kill_reason is None:
                self._kill_reason = reason
            child.signal_group(signal.SIGKILL)

    def request_kill(self, reason: str) -> None:
        """Restart the running child gracefully (unhealthy, resource limit)."""
        if self.child is not None and self._kill_reason is None:
            self._kill_reason = reason
            self._stop_requested.set()

    # --- the state machine ------------------------------------------------------
    def _transition(self, new: ActorState, **fields: Any) -> None:
        old = self.state
        if new not in ALLOWED[old]:
            raise IllegalTransition(f"{self.name}: {old.value} -> {new.value}")
        self.state = new
        event = TRANSITION_EVENTS[new]
        fields = {"actor": self.name, "state": new.value, "previous": old.value, **fields}
        level = "warning" if new in (ActorState.ERRORED, ActorState.BACKOFF) else "info"
        if new is ActorState.FAILED:
            level = "error"
        getattr(log, level)(event, **fields)
        self._bus.publish({"event": event, **fields})
        self._report(new)
        changed, self._state_changed = self._state_changed, None
        if changed is not None:
            changed.set()

    def _report(self, new: ActorState) -> None:
        """Mirror a transition into the HeartbeatMonitor and the metrics."""
        if self._monitor is not None:
            if new is ActorState.RUNNING:
                self._monitor.register_component(self.name, timeout=self.spec.heartbeat_timeout)
            elif new is ActorState.STOPPED:
                self._monitor.unregister_component(self.name)
            elif new in (ActorState.ERRORED, ActorState.FAILED) and self._monitor.get_component_status(self.name) != "unknown":
                self._monitor.mark_component_error(self.name, self.last_error or new.value)
        if self._metrics is not None:
            self._metrics.set_actor(self.name, new is ActorState.RUNNING, self.restarts)

    # --- resources ----------------------------------------------------------------
    def sample(self, max_age: float = 1.0) -> ResourceSample | None:
        """A fresh-enough psutil sample of the running child (None for tasks or no child)."""
        child = self.child
        now = self._clock.now()
        if child is None or child.create_time is None:
            return None
        if now - self._sampled_at >= max_age:
            self._sampled_at = now
            self.resources = self._sampler.sample(child.pid, child.create_time)
        return self.resources

    def _on_beat(self, now: float) -> None:
        if self._monitor is not None and self.state is ActorState.RUNNING:  # registered then
            self._monitor.update_component_heartbeat(self.name)
        # Every beat when a limit or the metrics need it; otherwise status() only
        # needs a recent figure, and psutil costs ~0.1 ms a process.
        every = self.spec.heartbeat_interval * 0.9
        if not (self._limits.active or self._metrics is not None):
            every = max(every, STATUS_SAMPLE_INTERVAL)
        sample = self.sample(max_age=every)
        if sample is None:
            return
        if self._metrics is not None and self.beats is not None:
            self._metrics.set_actor(self.name, True, self.restarts, beat_age=0.0, rss=sample.rss,
                                    cpu_percent=sample.cpu_percent)
        reason = self._limits.check(now, sample)
        if reason is not None and self._kill_reason is None:
            log.warning(
                "actor.resource_limit", actor=self.name, pid=self.pid, reason=reason, rss=sample.rss,
                max_rss=self.spec.max_rss, max_cpu=self.spec.max_cpu, cpu_window=self.spec.cpu_window,
            )
            self.request_kill(reason)

    # --- the life loop ----------------------------------------------------------
    def close(self) -> None:
        """End the life loop for good (the actor was removed by a reload)."""
        self._life.cancel()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            with self._life:
                await self._live()
        finally:
            self.closed.set()

    async def _live(self) -> None:
        while True:
            if not self._want_running:
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            self._stop_requested = anyio.Event()
            ended = await self._run_once()
            await self._after_exit(ended)

    async def _run_once(self) -> Exit:
        self._transition(ActorState.STARTING, attempt=self._backoff.attempt, kind=self.spec.kind)
        self._kill_reason = None
        self._exiting = None
        self._health.reset()
        self._limits.reset()
        self.resources = None
        self._sampled_at = float("-inf")
        if self.spec.kind == "task":
            return await self._run_task()
        try:
            child = await self._spawner.spawn(actor=self.name, start_timeout=self.spec.start_timeout)
        except HandshakeTimeout as exc:
            return Exit("handshake_timeout", error=str(exc))
        except ProtocolError as exc:
            return Exit("protocol_error", error=str(exc))
        except OSError as exc:
            return Exit("spawn_error", error=f"cannot start a child process: {exc}")
        self.child = child
        self.pid = child.pid
        try:
            return await self._supervise(child)
        finally:
            self.child = None
            self._sampler.forget(child.pid)
            await child.aclose()

    async def _supervise(self, child: ChildProcess) -> Exit:
        readers_done = [anyio.Event() for _ in range(3)]
        ready = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._pump_channel, child, ready, readers_done[0])
            tg.start_soon(self._pump_pipe, child, "stdout", readers_done[1])
            tg.start_soon(self._pump_pipe, child, "stderr", readers_done[2])
            watchers = anyio.CancelScope()
            tg.start_soon(self._watch, child, ready, watchers)
            returncode = await child.wait()
            watchers.cancel()
            child.signal_group(signal.SIGKILL)  # grandchildren die with the actor
            with anyio.move_on_after(DRAIN_TIMEOUT):
                for done in readers_done:
                    await done.wait()
            tg.cancel_scope.cancel()
        return self._exit_for(returncode)

    async def _watch(self, child: ChildProcess, ready: anyio.Event, scope: anyio.CancelScope) -> None:
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
            )
            if not await child.send(encode(init)):
                return
            if not await wait_until(ready.wait, self._clock, self._clock.now() + self.spec.start_timeout):
                self._kill_reason = "handshake_timeout"
                log.warning(
                    "actor.handshake_timeout", actor=self.name, pid=child.pid,
                    start_timeout=self.spec.start_timeout,
                    hint="the actor's import or constructor took too long; raise start_timeout",
                )
                child.signal_group(signal.SIGKILL)
                return
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch_heartbeat, child)
                await self._stop_requested.wait()
                if self._kill_reason is None:
                    self._transition(ActorState.STOPPING, pid=child.pid)
                await stop_process(child, stop_timeout=self.spec.stop_timeout, clock=self._clock, actor=self.name)

    async def _watch_heartbeat(self, child: ChildProcess) -> None:
        assert self.beats is not None
        age = await wait_for_expiry(self.beats, self._clock)
        self._kill_reason = "heartbeat_timeout"
        log.warning(
            "actor.heartbeat_timeout", actor=self.name, pid=child.pid,
            last_beat_age=round(age, 6), heartbeat_timeout=self.beats.timeout,
        )
        self._bus.publish({"event": "actor.heartbeat_timeout", "actor": self.name, "pid": child.pid})
        child.signal_group(signal.SIGKILL)  # a hung loop cannot handle SIGTERM

    async def _pump_channel(self, child: ChildProcess, ready: anyio.Event, done: anyio.Event) -> None:
        try:
            while True:
                try:
                    frames = await child.receive_frames()
                except ValueError as exc:
                    self._protocol_error(child, str(exc))
                    return
                if not frames:
                    return
                self._on_frames(child, frames, ready)
        finally:
            done.set()

    def _on_frames(self, child: ChildProcess, frames: list[Any], ready: anyio.Event) -> None:
        """The frames of one read, in order; runs of Log frames go to the router as blocks."""
        logs: list[Log] = []
        for frame in frames:
            if type(frame) is Log:
                logs.append(frame)
                continue
            if logs:
                self._router.emit_child_many(logs, actor=self.name, pid=child.pid, restarts=self.restarts)
                logs = []
            self._on_frame(child, frame, ready)
        if logs:
            self._router.emit_child_many(logs, actor=self.name, pid=child.pid, restarts=self.restarts)

    def _on_frame(self, child: ChildProcess, frame: Any, ready: anyio.Event) -> None:
        if isinstance(frame, Log):
            self._router.emit_child(frame.level, frame.body, actor=self.name, pid=child.pid, restarts=self.restarts)
        elif self.beats is not None and not isinstance(frame, Ready):
            now = self._clock.now()
            self.beats.beat(now)  # any frame proves the loop is alive
            if isinstance(frame, Beat):
                self._on_beat(now)
            elif isinstance(frame, Health):
                self._on_health(frame)
            elif isinstance(frame, Exiting):
                self._exiting = frame
            elif isinstance(frame, RunDone):
                for listener in list(self.frame_listeners):
                    listener(frame)
        elif isinstance(frame, Ready):
            # Beats and the actor's first log lines may follow in the same read: the
            # deadline must exist, and actor.started be logged, before them.
            self.started_at = self._clock.now()
            self.beats = HeartbeatDeadline(self.spec.heartbeat_timeout, self.started_at)
            self._transition(ActorState.RUNNING, pid=child.pid, kind=self.spec.kind, restarts=self.restarts)
            ready.set()
        elif isinstance(frame, Exiting):
            self._exiting = frame  # failed before Ready (import error)
        else:
            self._protocol_error(child, f"unexpected {type(frame).__name__} frame before Ready")

    def _on_health(self, frame: Health) -> None:
        if self._health.record(frame.ok, frame.error):
            log.warning("actor.unhealthy", actor=self.name, pid=self.pid, failures=self._health.failures, error=frame.error)
            self._bus.publish({"event": "actor.unhealthy", "actor": self.name, "failures": self._health.failures})
            self.request_kill("unhealthy")

    def _protocol_error(self, child: ChildProcess, reason: str) -> None:
        log.error(
            "actor.protocol_error", actor=self.name, pid=child.pid, error=reason,
            hint="the child wrote something that is not a channel frame to the channel fd; it is restarted",
        )
        if self._kill_reason is None:
            self._kill_reason = "protocol_error"
        child.signal_group(signal.SIGKILL)

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
        try:
            while True:
                if assembler.holding:
                    # A quiet pipe releases a held-back traceback (it may have no
                    # more lines); the timer is armed only then, so a flood of
                    # plain lines pays for no cancel scope.
                    with anyio.move_on_after(PIPE_IDLE_FLUSH) as idle:
                        chunk = await stream.receive()
                    if idle.cancelled_caught:
                        assembler.flush()
                        continue
                else:
                    chunk = await stream.receive()
                if not chunk:
                    break
                assembler.feed(chunk)
        except OSError:
            pass
        finally:
            assembler.close()
            done.set()

    def _exit_for(self, returncode: int) -> Exit:
        sig = signal_name(-returncode) if returncode < 0 else None
        code = returncode if returncode >= 0 else None
        error = self._exiting.error if self._exiting else None
        if self._kill_reason is not None:
            ended = Exit(self._kill_reason, code, sig, error)
        elif self._stop_requested.is_set():
            ended = Exit("stopped", code, sig)
        elif self._exiting is not None and self._exiting.reason == "completed" and returncode == 0:
            ended = Exit("completed", code)
        elif returncode == 0:
            ended = Exit("exit", code, error="exited with status 0 without returning from run()")
        else:
            ended = Exit("crash", code, sig, error)
        fields: dict[str, Any] = {"exit_code": code} if sig is None else {"signal": sig}
        log.log(
            20 if not ended.abnormal else 30,
            "actor.exited", actor=self.name, pid=self.pid, reason=ended.reason, **fields,
        )
        self._bus.publish({"event": "actor.exited", "actor": self.name, "pid": self.pid, "reason": ended.reason, **fields})
        return ended

    # --- in-process task actors --------------------------------------------------
    async def _run_task(self) -> Exit:
        try:
            cls = import_target(self.spec.target, None)
            actor = cls(**self.spec.args)
            actor._bind(self.name, structlog.get_logger().bind(actor=self.name, pid=os.getpid()))
        except Exception as exc:
            return Exit("crash", error="".join(traceback.format_exception(exc)))
        self.pid = os.getpid()
        self.started_at = self._clock.now()
        self.beats = HeartbeatDeadline(self.spec.heartbeat_timeout, self._clock.now())
        self._transition(ActorState.RUNNING, pid=self.pid, kind="task", restarts=self.restarts)
        ended: Exit | None = None
        async with anyio.create_task_group() as tg:

            async def body() -> None:
                nonlocal ended
                try:
                    await actor.run()
                    ended = Exit("completed")
                except Exception as exc:
                    error = "".join(traceback.format_exception(exc))
                    log.error("actor.run_failed", actor=self.name, pid=self.pid, error=error)
                    ended = Exit("crash", error=error)
                tg.cancel_scope.cancel()

            async def beat() -> None:
                # A task actor shares the supervisor's loop: its beat proves that loop runs.
                while True:
                    if self.beats is not None:
                        self.beats.beat(self._clock.now())
                    if self._monitor is not None:
                        self._monitor.update_component_heartbeat(self.name)
                    await self._clock.sleep_until(self._clock.now() + self.spec.heartbeat_interval)

            tg.start_soon(body)
            tg.start_soon(beat)
            await self._stop_requested.wait()
            if self._kill_reason is None:
                self._transition(ActorState.STOPPING, pid=self.pid)
            tg.cancel_scope.cancel()
        if ended is None:
            ended = Exit(self._kill_reason or "stopped")
        log.info("actor.exited", actor=self.name, pid=self.pid, reason=ended.reason)
        return ended

    # --- what next ---------------------------------------------------------------
    async def _after_exit(self, ended: Exit) -> None:
        self.last_exit = ended
        ran_for = self._clock.now() - self.started_at if self.started_at is not None else 0.0
        self.started_at = None
        self.beats = None
        self.pid = None
        if ended.error:
            self.last_error = ended.error.strip().splitlines()[-1][:500]
        elif ended.abnormal:
            self.last_error = ended.reason + (f" ({ended.signal})" if ended.signal else "")
        stopping = not self._want_running or ended.reason == "stopped"
        if stopping or not should_restart(self.spec.restart, ended.abnormal):
            if ended.abnormal and not stopping:
                self._transition(ActorState.ERRORED, reason=ended.reason)
            self._want_running = False
            self._transition(ActorState.STOPPED, reason=ended.reason)
            return
        self._transition(ActorState.ERRORED, reason=ended.reason, exit_code=ended.exit_code, signal=ended.signal)
        now = self._clock.now()
        if not self._intensity.allow(now):
            self._want_running = False
            self._transition(
                ActorState.FAILED, restarts=self.restarts, window=self.spec.restart_window,
                max_restarts=self.spec.max_restarts,
                hint="restart intensity exceeded; fix the actor, then `actorsup start NAME`",
            )
            return
        delay = self._backoff.next_delay(ran_for)
        self.restarts += 1
        self._transition(ActorState.BACKOFF, attempt=self._backoff.attempt, delay=round(delay, 6), reason=ended.reason)
        self._stop_requested = anyio.Event()
        if await wait_until(self._stop_requested.wait, self._clock, now + delay):
            self._want_running = False
            self._transition(ActorState.STOPPED, reason="stopped")
