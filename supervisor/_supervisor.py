"""The Supervisor: owns the actor handles, the spawner and the log router.

It starts every actor in config order, serves commands (start, stop,
restart, reload, shutdown) and, on shutdown, stops the actors (concurrently:
they are independent) before it returns. From the moment a shutdown begins
nothing is restarted.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus

from .app._sdnotify import SystemdNotifier
from .config import ActorSpec, Config, CronSpec, load_config
from .core._bus import EventBus
from .core._clock import Clock, MonotonicClock
from .cron import CronManager
from .cron._process_executor import PerRunExecutor, ResidentExecutor
from .exceptions import ControlError, UnknownActor
from .lifecycle._handle import ActorHandle
from .lifecycle._stall import LoopWatch
from .lifecycle._states import ActorState
from .logs import LogRouter
from .logs._native import loaded as native_loaded
from .metrics import Metrics
from .monitor import HeartbeatMonitor
from .process._resources import ResourceSampler
from .process._spawn import Spawner, WarmSpawner

__all__ = ["Supervisor"]

log = structlog.get_logger()


class Supervisor:
    def __init__(
        self,
        config: Config,
        *,
        router: LogRouter | None = None,
        clock: Clock | None = None,
        spawner: Spawner | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or MonotonicClock()
        self.router = router or LogRouter(ring_size=config.supervisor.log_buffer)
        self.bus = bus or EventBus()
        self.spawner = spawner or WarmSpawner(
            spares=config.supervisor.spare_processes,
            pythonpath=[str(config.base_dir)],
            clock=self.clock,
            ring_size=config.supervisor.channel_ring,
            backend=config.supervisor.backend,
        )
        self.monitor = HeartbeatMonitor(
            self.bus, interval=config.supervisor.heartbeat_interval, clock=self.clock
        )
        self.sampler = ResourceSampler()
        self.loop_watch = LoopWatch(self.clock)
        self.metrics = Metrics() if config.supervisor.metrics_port is not None else None
        self.notifier = SystemdNotifier(clock=self.clock)
        self.cron = CronManager(state_dir=config.supervisor.state_dir, clock=self.clock)
        self.handles: dict[str, ActorHandle] = {}
        self._executors: dict[str, ResidentExecutor | PerRunExecutor] = {}
        self._order: list[str] = []
        self._shutdown = anyio.Event()
        self._reload_lock = anyio.Lock()
        self._tg: TaskGroup | None = None
        self.started_at: float | None = None
        self.closed = anyio.Event()

    # --- lifetime ------------------------------------------------------------------
    async def run(self, *, task_status: TaskStatus[Supervisor] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`shutdown`; then stop every actor."""
        cfg = self.config
        names = [s.name for s in (*cfg.actors, *cfg.cron)]
        try:
            await self._run(cfg, names, task_status)
        finally:
            self.closed.set()

    async def _run(self, cfg: Config, names: list[str], task_status: TaskStatus[Supervisor]) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await tg.start(self.spawner.run)
            await tg.start(self.monitor.run)
            await tg.start(self.loop_watch.run)
            if self.metrics is not None:
                await tg.start(self.metrics.serve, cfg.supervisor.metrics_port)  # logs metrics.listening
            self.started_at = self.clock.now()
            await tg.start(self.cron.serve)
            for spec in cfg.actors:
                await self._add(spec)
            for cron_spec in cfg.cron:
                await self._add_cron(cron_spec)
            tg.start_soon(self._notify_ready)
            if self.notifier.watchdog_period is not None:
                tg.start_soon(self.notifier.watchdog_loop)
            log.info(
                "supervisor.started",
                config=str(cfg.source) if cfg.source else "<demo>",
                actors=names,
                pid=os.getpid(),
                native=native_loaded(),
            )
            task_status.started(self)
            await self._shutdown.wait()
            self.notifier.stopping()
            log.info("supervisor.stopping", actors=list(self._order))
            for handle in self.handles.values():
                handle.retire()  # nothing restarts from here on
            # Cron runs in progress get the graceful stop before their schedulers go.
            async with anyio.create_task_group() as stops:
                for executor in self._executors.values():
                    stops.start_soon(executor.shutdown)
            await self.cron.stop_all_tasks()
            await self._stop_all()
            log.info("supervisor.stopped", config=str(cfg.source) if cfg.source else "<demo>", actors=names)
            tg.cancel_scope.cancel()

    async def _notify_ready(self) -> None:
        """READY=1 once every actor has started (or given up), for Type=notify units."""
        for name in list(self._order):
            if name in self.handles:
                await self.wait_for_state(name, ActorState.RUNNING, ActorState.FAILED, ActorState.STOPPED)
        self.notifier.ready(status=f"{len(self.handles)} actors running")

    def _new_handle(self, spec: ActorSpec, mode: str = "actor") -> ActorHandle:
        return ActorHandle(
            spec,
            spawner=self.spawner,
            router=self.router,
            bus=self.bus,
            clock=self.clock,
            backend=self.config.supervisor.backend,
            mode=mode,
            sampler=self.sampler,
            observers=[o for o in (self.monitor, self.metrics) if o is not None],
            loop_watch=self.loop_watch,
        )

    async def _add(self, spec: ActorSpec, mode: str = "actor") -> ActorHandle:
        assert self._tg is not None
        handle = self._new_handle(spec, mode)
        self.handles[spec.name] = handle
        self._order.append(spec.name)
        await self._tg.start(handle.run)
        handle.start()
        return handle

    async def _add_cron(self, spec: CronSpec) -> None:
        """A config cron task: a scheduler plus a child-process executor."""
        executor: ResidentExecutor | PerRunExecutor
        if spec.isolation == "resident":
            executor = ResidentExecutor(await self._add(spec, mode="cron"))
        else:
            executor = PerRunExecutor(lambda: self._new_handle(spec, mode="cron"))
        self._executors[spec.name] = executor
        self.cron.register_task(spec.name, spec=spec, executor=executor)
        if self.metrics is not None:
            self.metrics.add_cron_task(spec.name)
        await self.cron.start_task(spec.name)

    async def _stop_all(self) -> None:
        """Stop every actor at once: none depends on another, so shutdown takes one stop, not N."""
        async with anyio.create_task_group() as tg:
            for name in reversed(self._order):
                tg.start_soon(self.handles[name].stop)

    def shutdown_nowait(self) -> None:
        self._shutdown.set()

    async def shutdown(self) -> None:
        self._shutdown.set()

    # --- commands --------------------------------------------------------------------
    def handle(self, name: str) -> ActorHandle:
        try:
            return self.handles[name]
        except KeyError:
            raise UnknownActor(name) from None

    def _refuse_while_shutting_down(self, what: str) -> None:
        if self._shutdown.is_set():
            raise ControlError(f"cannot {what}: the supervisor is shutting down")

    async def start_actor(self, name: str) -> None:
        handle = self.handle(name)
        self._refuse_while_shutting_down(f"start {name}")
        handle.start()

    async def stop_actor(self, name: str) -> None:
        await self.handle(name).stop()

    async def restart_actor(self, name: str) -> None:
        handle = self.handle(name)
        self._refuse_while_shutting_down(f"restart {name}")
        await handle.restart()

    async def wait_for_state(self, name: str, *states: ActorState) -> None:
        """Return once actor ``name`` is in one of ``states`` (for tests and tools)."""
        await self.handle(name).wait_for(*states)

    async def reload(self, config: Config | None = None) -> dict[str, list[str]]:
        """Apply a new config: start added actors, stop removed, restart changed ones.

        An invalid config raises :class:`ConfigError` before anything changes,
        so the running config stays. Unchanged actors are not touched.
        """
        self._refuse_while_shutting_down("reload")
        async with self._reload_lock:
            if config is None:
                if self.config.source is None:
                    raise ControlError("the demo has no config file to reload; run `actorsup run CONFIG`")
                config = load_config(self.config.source)
            old = {s.name: s for s in (*self.config.actors, *self.config.cron)}
            new = {s.name: s for s in (*config.actors, *config.cron)}
            added = [n for n in new if n not in old]
            removed = [n for n in old if n not in new]
            changed = [n for n in new if n in old and new[n] != old[n]]
            self.notifier.reloading()
            self.config = config
            for name in (*removed, *changed):
                await self._remove(name)
            for name in (*changed, *added):
                await self._add_spec(new[name])
            log.info("supervisor.reloaded", added=added, removed=removed, changed=changed)
            self.notifier.ready()
            return {"added": added, "removed": removed, "changed": changed}

    async def _add_spec(self, spec: ActorSpec) -> None:
        if isinstance(spec, CronSpec):
            await self._add_cron(spec)
        else:
            await self._add(spec)

    async def _remove(self, name: str) -> None:
        """Stop and forget one actor or cron task (its scheduler and its process)."""
        self._executors.pop(name, None)
        if name in self.cron.list_tasks():
            self.cron.unregister_task(name)  # stops the scheduler, kills a run in progress
            if self.metrics is not None:
                self.metrics.remove_cron_task(name)
        handle = self.handles.pop(name, None)
        if handle is not None:
            self._order.remove(name)
            await handle.stop()
            handle.close()
            if self.metrics is not None:
                self.metrics.remove_actor(name)

    # --- views ---------------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        now = self.clock.now()
        rows = []
        for name in self._order:
            h = self.handles[name]
            sample = h.resources  # sampled on the beat; never psutil on a request
            rows.append(
                {
                    "name": name,
                    "kind": "cron" if h.mode == "cron" else h.spec.kind,
                    "state": h.state.value,
                    "pid": h.pid,
                    "uptime": round(now - h.started_at, 3) if h.started_at is not None else None,
                    "restarts": h.restarts,
                    "last_beat_age": round(h.beats.age(now), 3) if h.beats is not None else None,
                    "cpu_percent": round(sample.cpu_percent, 1) if sample and sample.cpu_percent is not None else None,
                    "rss": sample.rss if sample else None,
                    "last_error": h.last_error,
                    "status_text": h.status_text,  # a command actor's STATUS= (sd_notify)
                }
            )
        return rows

    def heartbeat_status(self) -> dict[str, Any]:
        """The origin document's get_system_status, over every running actor."""
        return self.monitor.get_system_status()

    @asynccontextmanager
    async def subscribe_events(self) -> AsyncIterator[Any]:
        async with self.bus.subscribe() as receive:
            yield receive

    def cron_list(self) -> list[dict[str, Any]]:
        return self.cron.describe_all()

    async def cron_trigger(self, name: str) -> str:
        if name not in self.cron.list_tasks():
            raise UnknownActor(name)
        return await self.cron.trigger(name)

    def log_tail(self, n: int | None, actor: str | None) -> list[bytes]:
        return [r.line for r in self.router.tail(n, actor)]

    @asynccontextmanager
    async def follow_logs(self, actor: str | None) -> AsyncIterator[Any]:
        send, receive = anyio.create_memory_object_stream[bytes](10000)

        async def forward(records: Any) -> None:
            async with send:
                async for record in records:
                    if actor is None or record.actor == actor:
                        await send.send(record.line)

        async with self.router.follow(actor=actor) as records, anyio.create_task_group() as tg:
            tg.start_soon(forward, records)
            async with receive:
                yield receive
            tg.cancel_scope.cancel()
