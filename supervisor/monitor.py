"""``HeartbeatMonitor``: the origin document's facade, with its flaws fixed.

It keeps the origin's names (``register_component``, ``get_system_status``,
...) and serves in-process components as well as the supervised actors that
the supervisor feeds into it. What changed, and why:

- Reads are pure. ``get_system_status`` applies timeouts *before* it counts
  (a component that stopped beating is counted as ``timeout``, not
  ``healthy``), and no read ever appends to an error list.
- Errors are kept in a bounded list (the last 10), with a total count.
- Health checks never block the event loop: a sync check runs in a worker
  thread, and every check is bounded by ``health_timeout``.
- For components registered directly it acts: one registered with a
  ``restart`` callback is restarted when its health check fails
  ``failure_threshold`` times in a row, or when it stops beating for
  ``timeout`` seconds.
- Supervised actors are a read model only: the monitor is an
  :class:`~supervisor.lifecycle._observers.Observer` of their handles, fed by
  transitions, beats and health results. Their handles judge hangs and
  restart them, so the monitor never times out or restarts a watched actor,
  and one hang is one ``actor.heartbeat_timeout``.
- Ticks fire at ``start + k * interval`` on an injected clock (no drift), and
  each one publishes a ``{"event": "heartbeat", ...}`` dict on the bus.
"""

from __future__ import annotations

import inspect
import math
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Literal

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus

from .core._bus import EventBus
from .core._clock import Clock, MonotonicClock
from .exceptions import SupervisorError, UnknownActor
from .lifecycle._health import HealthCheck, HealthProbe, HealthTracker
from .lifecycle._observers import BeatRecord, HealthRecord, Observer, TransitionRecord
from .lifecycle._states import ActorState
from .logs._time import iso_utc

__all__ = ["HeartbeatMonitor", "RestartCallback"]

log = structlog.get_logger("actorsup.monitor")

RestartCallback = Callable[[str, str], "Awaitable[None] | None"]  # (name, reason)


class _Component:
    __slots__ = (
        "error_count",
        "errors",
        "last_beat",
        "last_beat_wall",
        "name",
        "probe",
        "rearmed_at",
        "reports_health",
        "restart",
        "restarting",
        "restarts",
        "status",
        "timed_out",
        "timeout",
        "tracker",
        "watched",
    )

    def __init__(
        self, name: str, probe: HealthProbe | None, timeout: float,
        restart: RestartCallback | None, threshold: int, max_errors: int, now: float, wall: float,
    ) -> None:
        self.name = name
        self.probe = probe
        self.timeout = timeout
        self.restart = restart
        self.tracker = HealthTracker(threshold)
        self.last_beat = now  # registering counts as a first sign of life
        self.last_beat_wall = wall
        self.status: Literal["healthy", "error"] = "healthy"
        self.errors: deque[dict[str, str]] = deque(maxlen=max_errors)
        self.error_count = 0
        self.timed_out = False  # the timeout transition has been applied (logged once)
        self.rearmed_at = now  # a restart re-arms the timeout from here
        self.restarting = False
        self.restarts = 0
        self.watched = False  # a supervised actor: its handle judges timeouts, not us
        self.reports_health = False  # health results arrive from outside (an actor's checks)

    def effective(self, now: float) -> str:
        if not self.watched and now - self.last_beat >= self.timeout:
            return "timeout"
        return self.status


class HeartbeatMonitor(Observer):
    """Track components' heartbeats and health; publish a ``heartbeat`` event each interval."""

    def __init__(
        self,
        bus: EventBus | None,
        interval: float = 30,
        *,
        clock: Clock | None = None,
        timeout: float | None = None,
        health_timeout: float | None = None,
        failure_threshold: int = 3,
        max_errors: int = 10,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds (got {interval!r})")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds (got {timeout!r})")
        if health_timeout is not None and not health_timeout > 0:
            raise ValueError(f"health_timeout must be > 0 seconds (got {health_timeout!r})")
        if max_errors < 1:
            raise ValueError(f"max_errors must be >= 1 (got {max_errors!r})")
        HealthTracker(failure_threshold)  # validates the threshold now, not on first use
        self.bus = bus
        self.interval = float(interval)
        self.timeout = float(timeout) if timeout is not None else 2 * self.interval
        self.health_timeout = health_timeout if health_timeout is not None else min(5.0, self.interval)
        self.failure_threshold = failure_threshold
        self.max_errors = max_errors
        self._clock = clock or MonotonicClock()
        self._components: dict[str, _Component] = {}
        self._scope: anyio.CancelScope | None = None
        self._tg: TaskGroup | None = None
        self._stopped: anyio.Event | None = None
        self._exit_stack: AsyncExitStack | None = None
        self._own_tg: TaskGroup | None = None

    # --- the origin document's API ---------------------------------------
    def register_component(
        self,
        name: str,
        health_check: HealthCheck | None = None,
        *,
        timeout: float | None = None,
        restart: RestartCallback | None = None,
    ) -> None:
        """Start tracking ``name``; registering again replaces the old entry."""
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds (got {timeout!r})")
        probe = None
        if health_check is not None:
            probe = HealthProbe(health_check, self.health_timeout, clock=self._clock)
        self._components[name] = _Component(
            name, probe, timeout or self.timeout, restart, self.failure_threshold,
            self.max_errors, self._clock.now(), self._clock.wall(),
        )

    def unregister_component(self, name: str) -> bool:
        """Stop tracking ``name``; False if it was not registered."""
        return self._components.pop(name, None) is not None

    def update_component_heartbeat(self, name: str) -> None:
        """Record a sign of life; clears a timeout, and an error unless a health check is failing."""
        comp = self._get(name)
        now = self._clock.now()
        before = comp.effective(now)
        comp.last_beat = now
        comp.last_beat_wall = self._clock.wall()
        comp.timed_out = False
        if comp.tracker.failures == 0:
            comp.status = "healthy"
        self._changed(comp, before, now)

    def mark_component_error(self, name: str, error: str | BaseException) -> None:
        """Record an error (only the last ``max_errors`` are kept) and mark ``name`` errored."""
        comp = self._get(name)
        now = self._clock.now()
        before = comp.effective(now)
        self._record_error(comp, error)
        comp.status = "error"
        self._changed(comp, before, now)

    def get_component_status(self, name: str) -> dict[str, Any] | Literal["unknown"]:
        """A snapshot dict for ``name``, or ``"unknown"`` if it was never registered."""
        comp = self._components.get(name)
        if comp is None:
            return "unknown"
        return self._snapshot(comp, self._clock.now())

    def get_system_status(self) -> dict[str, Any]:
        """Overall ``healthy``/``error``/``unknown``, counts and every component; a pure read."""
        now = self._clock.now()
        components = {name: self._snapshot(c, now) for name, c in self._components.items()}
        counts = {"total": len(components), "healthy": 0, "error": 0, "timeout": 0}
        for snap in components.values():  # statuses already include timeouts
            counts[snap["status"]] += 1
        if not components:
            overall = "unknown"
        elif counts["healthy"] == counts["total"]:
            overall = "healthy"
        else:
            overall = "error"
        return {
            "status": overall,
            "timestamp": iso_utc(self._clock.wall()),
            "interval": self.interval,
            "counts": counts,
            "components": components,
        }

    async def start(self, task_group: TaskGroup | None = None) -> None:
        """Start the tick loop in ``task_group`` (or the one of ``async with monitor``)."""
        tg = task_group or self._own_tg
        if tg is None:
            raise SupervisorError(
                "HeartbeatMonitor.start() needs a task group: use `async with monitor:`, "
                "`await monitor.start(task_group)` or `await task_group.start(monitor.run)`"
            )
        await tg.start(self.run)

    async def stop(self) -> None:
        """Stop the tick loop and wait until it has ended; a no-op when not running."""
        if self._scope is not None:
            self._scope.cancel()
        if self._stopped is not None:
            await self._stopped.wait()

    def is_running(self) -> bool:
        """True while the tick loop runs."""
        return self._scope is not None

    # --- feeding results in ------------------------------------------------
    def record_health(self, name: str, ok: bool, error: str | None = None) -> bool:
        """Count one health-check result (e.g. an actor's Health frame).

        Returns True when this failure reaches ``failure_threshold``; the
        component's ``restart`` callback, if any, is then scheduled.
        """
        comp = self._get(name)
        now = self._clock.now()
        before = comp.effective(now)
        fire = comp.tracker.record(ok, error)
        if ok:
            comp.status = "healthy"
        else:
            self._record_error(comp, f"health check failed: {error or 'no reason given'}")
            comp.status = "error"
        self._changed(comp, before, now)
        if fire:
            log.warning("component.unhealthy", component=name, failures=comp.tracker.failures, error=error)
            self._publish({"event": "component.unhealthy", "component": name, "failures": comp.tracker.failures})
            self._schedule_restart(comp, "unhealthy")
        return fire

    # --- the read model of supervised actors -----------------------------------
    def on_transition(self, record: TransitionRecord) -> None:
        comp = self._components.get(record.actor)
        if record.new is ActorState.RUNNING:
            if comp is None or not comp.watched:
                self.register_component(record.actor, timeout=record.timeout)
                comp = self._components[record.actor]
                comp.watched = True
            else:
                comp.tracker.reset()
            comp.restarts = record.restarts
            comp.reports_health = record.has_health_check  # this child's code: it may have changed
            before = comp.effective(record.at)
            comp.status = "healthy"
            comp.last_beat, comp.last_beat_wall = record.at, self._clock.wall()
            self._changed(comp, before, record.at)
        elif comp is None or not comp.watched:
            return
        elif record.new is ActorState.STOPPED:
            self.unregister_component(record.actor)
        else:
            comp.restarts = record.restarts
            if record.new is ActorState.ERRORED:  # one entry per incident (failed adds none)
                self.mark_component_error(record.actor, record.error or str(record.fields.get("reason")))

    def on_beat(self, record: BeatRecord) -> None:
        comp = self._components.get(record.actor)
        if comp is not None and comp.watched:
            self.update_component_heartbeat(record.actor)

    def on_health(self, record: HealthRecord) -> None:
        comp = self._components.get(record.actor)
        if comp is None or not comp.watched:
            return
        comp.reports_health = True
        before = comp.effective(record.at)
        comp.tracker.record(record.ok, record.error)
        if record.ok:
            comp.status = "healthy"
        else:
            if comp.tracker.failures == 1:  # the first failure of a streak, not every repeat
                self._record_error(comp, f"health check failed: {record.error or 'no reason given'}")
            comp.status = "error"
        self._changed(comp, before, record.at)

    # --- running ------------------------------------------------------------
    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Tick every ``interval`` until cancelled or :meth:`stop` is called."""
        if self._scope is not None:
            raise SupervisorError("HeartbeatMonitor is already running: call stop() first")
        self._stopped = anyio.Event()
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    task_status.started()
                    start = self._clock.now()
                    k = 0
                    while True:
                        await self._clock.sleep_until(start + k * self.interval)
                        await self.tick()
                        # Skip ticks missed by a slow tick instead of bunching them up.
                        k = max(k + 1, math.floor((self._clock.now() - start) / self.interval) + 1)
        finally:
            self._scope = None
            self._tg = None
            self._stopped.set()

    async def tick(self) -> dict[str, Any]:
        """Run health checks, apply timeouts, publish and return one heartbeat event."""
        async with anyio.create_task_group() as tg:
            for comp in list(self._components.values()):
                if comp.probe is not None:
                    tg.start_soon(self._check, comp)
        now = self._clock.now()
        for comp in list(self._components.values()):
            self._apply_timeout(comp, now)
        status = self.get_system_status()
        event = {
            "event": "heartbeat",
            "timestamp": status["timestamp"],
            "status": status["status"],
            "counts": status["counts"],
            "components": {name: snap["status"] for name, snap in status["components"].items()},
        }
        self._publish(event)
        return event

    async def __aenter__(self) -> HeartbeatMonitor:
        async with AsyncExitStack() as stack:
            self._own_tg = await stack.enter_async_context(anyio.create_task_group())
            await self.start()
            self._exit_stack = stack.pop_all()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        stack, self._exit_stack = self._exit_stack, None
        await self.stop()
        self._own_tg = None
        assert stack is not None
        return await stack.__aexit__(exc_type, exc, tb)

    # --- internals ------------------------------------------------------------
    def _get(self, name: str) -> _Component:
        comp = self._components.get(name)
        if comp is None:
            raise UnknownActor(name)
        return comp

    def _record_error(self, comp: _Component, error: str | BaseException) -> None:
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        comp.errors.append({"timestamp": iso_utc(self._clock.wall()), "error": text})
        comp.error_count += 1

    def _snapshot(self, comp: _Component, now: float) -> dict[str, Any]:
        return {
            "name": comp.name,
            "status": comp.effective(now),
            "last_heartbeat": iso_utc(comp.last_beat_wall),
            "last_heartbeat_age": max(0.0, now - comp.last_beat),
            "timeout": comp.timeout,
            "errors": list(comp.errors),  # a copy: callers cannot grow ours
            "error_count": comp.error_count,
            "consecutive_failures": comp.tracker.failures,
            "has_health_check": comp.probe is not None or comp.reports_health,
            "restarts": comp.restarts,
        }

    def _changed(self, comp: _Component, before: str, now: float) -> None:
        after = comp.effective(now)
        if after != before:
            self._publish({
                "event": "component.status", "component": comp.name,
                "status": after, "previous": before,
            })

    def _publish(self, event: dict[str, Any]) -> None:
        if self.bus is not None:
            self.bus.publish(event)

    async def _check(self, comp: _Component) -> None:
        assert comp.probe is not None
        ok, error = await comp.probe()
        if self._components.get(comp.name) is not comp:  # unregistered meanwhile
            return
        self.record_health(comp.name, ok, error)
        if comp.probe.answered:
            # A check that answered (even "unhealthy") is a sign of life; failures
            # are the threshold's business, so they never also count as a timeout.
            self.update_component_heartbeat(comp.name)

    def _apply_timeout(self, comp: _Component, now: float) -> None:
        age = now - comp.last_beat
        if comp.watched or age < comp.timeout:
            return
        if not comp.timed_out:
            comp.timed_out = True
            self._record_error(comp, f"no heartbeat for {age:.3g}s (timeout {comp.timeout:g}s)")
            log.warning("component.heartbeat_timeout", component=comp.name, last_beat_age=age)
            self._publish({
                "event": "component.status", "component": comp.name,
                "status": "timeout", "previous": comp.status, "last_beat_age": age,
            })
        # A restart (for any reason) re-arms the timeout: wait a full period again.
        if now - comp.rearmed_at >= comp.timeout:
            self._schedule_restart(comp, "heartbeat_timeout")

    def _schedule_restart(self, comp: _Component, reason: str) -> None:
        # Restarts run in the tick loop's task group, so only while it runs.
        if comp.restart is None or comp.restarting or self._tg is None:
            return
        comp.restarting = True
        comp.rearmed_at = self._clock.now()
        self._tg.start_soon(self._restart, comp, reason)

    async def _restart(self, comp: _Component, reason: str) -> None:
        assert comp.restart is not None
        log.info("component.restarting", component=comp.name, reason=reason, attempt=comp.restarts + 1)
        try:
            result = comp.restart(comp.name, reason)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # a broken callback must not stop the monitor
            log.error("component.restart_failed", component=comp.name, reason=reason, error=repr(exc))
            self._record_error(comp, f"restart failed: {type(exc).__name__}: {exc}")
        else:
            comp.restarts += 1
            comp.tracker.reset()
        finally:
            comp.restarting = False
            comp.rearmed_at = self._clock.now()
