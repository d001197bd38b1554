"""The Supervisor: owns the actor handles, the spawner and the log router.

It starts the actors in dependency order (each once what it ``depends_on``
runs; independent ones at once), lets the supervision tree (``tree/``) restart
groups, serves commands (start, stop, restart, scale, reload, shutdown) and,
on shutdown, stops every actor concurrently, each after what depends on it. From the moment
a shutdown begins nothing is restarted (or started).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

import anyio
import msgspec
import structlog
from anyio.abc import TaskGroup, TaskStatus

from .app._sdnotify import SystemdNotifier
from .config import ActorSpec, Config, CronSpec, SinkSpec, load_config
from .core._bus import EventBus
from .core._clock import Clock, MonotonicClock
from .cron import CronManager
from .cron._process_executor import PerRunExecutor, ResidentExecutor
from .exceptions import ConfigError, ControlError, UnknownActor
from .lifecycle._handle import ActorHandle
from .lifecycle._stall import LoopWatch
from .lifecycle._states import ActorState
from .logs import LogRouter, Sink, build_sinks
from .logs._build import SinkPlan, plan_sinks
from .logs._native import loaded as native_loaded
from .metrics import Metrics
from .monitor import HeartbeatMonitor
from .process._fdlimit import fds_needed, raise_open_files
from .process._forkserver import ForkServerSpawner, spawner_for
from .process._resources import ResourceSampler
from .process._spawn import Spawner
from .ray._backend import RayBackend
from .tree._instances import scale_plan
from .tree._order import DependencyError
from .tree._shell import TreeRunner, leaf_specs, tree_of

if TYPE_CHECKING:
    from .ray._spawner import RaySpawner

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
        sink_builder: Callable[[tuple[SinkSpec, ...]], list[Sink]] = build_sinks,
        ray_backend: Callable[[Config], RayBackend] | None = None,
    ) -> None:
        """``sink_builder`` makes the sinks a reload adds (`actorsup run` passes one that
        honours ``--log-format``); ``ray_backend`` the backend of ``kind = "ray"`` actors
        (default: Ray itself, through ``supervisor/ray``)."""
        self.config = config
        self._sink_builder = sink_builder
        self.clock = clock or MonotonicClock()
        self.router = router or LogRouter(ring_size=config.supervisor.log_buffer)
        self.bus = bus or EventBus()
        self.open_files = raise_open_files()  # before the spawner: it hands children the original limit
        self.spawner = spawner or spawner_for(config, self.clock)
        self._ray_backend = ray_backend
        self.ray: RaySpawner | None = None  # from the first kind = "ray" actor on
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
        self.exit_status = 0  # 3 once something critical gave up
        self.tree = TreeRunner(config, self.handles, self.bus, self.clock.now, self._give_up)

    # --- lifetime ------------------------------------------------------------------
    async def run(self, *, task_status: TaskStatus[Supervisor] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`shutdown`; then stop every actor."""
        cfg = self.config
        names = [s.name for s in (*leaf_specs(cfg.actors), *cfg.cron)]
        try:
            await self._run(cfg, names, task_status)
        finally:
            self.closed.set()

    def _check_open_files(self, actors: int) -> None:
        """Say so at start if the open-files limit cannot hold every actor (EMFILE would fail their starts)."""
        needed = fds_needed(actors)
        if self.open_files < needed:
            log.warning("supervisor.fd_limit_low", limit=self.open_files, actors=actors, needed=needed,
                        hint="raise the hard limit: ulimit -Hn, or LimitNOFILE= in the systemd unit")

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
            await tg.start(self.tree.run)
            leaves = leaf_specs(cfg.actors)
            for spec in leaves:
                await self._add(spec, start=False)
            tg.start_soon(self.tree.start_all, [spec.name for spec in leaves])
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
                open_files=self.open_files,
            )
            self._check_open_files(len(names))
            task_status.started(self)
            await self._shutdown.wait()
            self.notifier.stopping()
            log.info("supervisor.stopping", actors=list(self._order))
            self.tree.close()  # no group restarts from here on
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
            # The handle asks a ray actor's spawner for spawn() alone (spawn_command is for commands).
            spawner=cast(Spawner, self.ray) if spec.kind == "ray" and self.ray is not None else self.spawner,
            router=self.router,
            bus=self.bus,
            clock=self.clock,
            backend=self.config.supervisor.backend,
            mode=mode,
            sampler=self.sampler,
            observers=[o for o in (self.monitor, self.metrics, self.tree) if o is not None],
            loop_watch=self.loop_watch,
        )

    async def _add(self, spec: ActorSpec, mode: str = "actor", start: bool = True) -> ActorHandle:
        assert self._tg is not None
        if spec.kind == "ray" and self.ray is None:
            await self._start_ray()
        handle = self._new_handle(spec, mode)
        self.handles[spec.name] = handle
        self._order.append(spec.name)
        await self._tg.start(handle.run)
        if start:
            handle.start()
        return handle

    async def _start_ray(self) -> None:
        """The Ray spawner and its listener: only a config with a ray actor pays for them."""
        from .ray._spawner import RaySpawner, default_backend

        assert self._tg is not None
        reaper = getattr(self.spawner, "reaper", None)  # the driver and its Ray carry the tree cookie
        backend = self._ray_backend(self.config) if self._ray_backend else default_backend(self.config, reaper)
        self.ray = RaySpawner(self.config, backend, self.clock, spec_of=lambda name: self.handles[name].spec)
        await self._tg.start(self.ray.run)

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
        await self.tree.stop_all(list(self.handles.values()))

    def _give_up(self) -> None:
        """Something critical gave up (supervisor.give_up is logged): stop everything, exit 3."""
        self.exit_status = 3
        self.shutdown_nowait()

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

    def leaves(self, name: str) -> list[str]:
        """The actors ``name`` stands for: ``all``, a glob (``'reader*'``), a group's leaves,
        an actor's instances, or itself; raise :class:`UnknownActor` if it names nothing."""
        tree = self.tree.tree
        # per-run cron tasks have no handle: only a scheduler to stop and start
        per_run = [n for n in self.cron.list_tasks() if n not in self.handles]
        if name == "all":
            return [*self._order, *per_run]
        if any(c in name for c in "*?["):
            names = [*self._order, *per_run, *tree.groups, *{leaf.base for leaf in tree.leaves.values()}]
            found = [leaf for n in names if fnmatch.fnmatchcase(n, name) for leaf in self.leaves(n)]
            if not found:
                raise UnknownActor(name)
            return list(dict.fromkeys(found))
        if name in tree.groups:
            return list(tree.leaves_of(name))
        instances = [leaf for leaf in tree.instances_of(name) if leaf != name]
        if instances:
            return instances
        if name not in per_run:
            self.handle(name)
        return [name]

    def _in_tree(self, leaves: list[str]) -> list[str]:
        return [leaf for leaf in leaves if leaf in self.tree.tree.leaves]

    async def start_actor(self, name: str) -> None:
        """Start an actor, an actor's instances, a group or a glob's matches (in start order)."""
        leaves = self.leaves(name)
        self._refuse_while_shutting_down(f"start {name}")
        for leaf in self._in_tree(leaves):
            self.tree.state.started_by_user(leaf)
        if len(leaves) == 1 and leaves[0] in self.handles:
            self.handle(leaves[0]).start()
        else:
            await self.tree.start_leaves(leaves)
        await self._schedule_crons(leaves)

    async def stop_actor(self, name: str) -> None:
        """Stop them (in stop order); group restarts leave them stopped until started again.

        A cron task's scheduler stops too (no due times, triggers refused) until it is started.
        """
        leaves = self.leaves(name)
        crons = [leaf for leaf in leaves if leaf in self.cron.list_tasks()]
        for leaf in crons:  # first: nothing is due while its process stops
            self.cron.pause_task(leaf)
        for leaf in self._in_tree(leaves):
            self.tree.state.stopped_by_user(leaf)
        await self.tree.stop_leaves(leaves)  # graceful: a run in progress gets the stop signal
        for leaf in crons:
            executor = self._executors.get(leaf)
            if isinstance(executor, PerRunExecutor) and executor.current is not None:
                await executor.current.stop()
            await self.cron.stop_task(leaf)

    async def restart_actor(self, name: str) -> None:
        leaves = self.leaves(name)
        self._refuse_while_shutting_down(f"restart {name}")
        await self.tree.stop_leaves(leaves)
        for leaf in self._in_tree(leaves):
            self.tree.state.started_by_user(leaf)
        await self.tree.start_leaves(leaves)
        await self._schedule_crons(leaves)  # a stopped cron task is scheduled again

    async def _schedule_crons(self, leaves: list[str]) -> None:
        for leaf in leaves:
            if leaf in self.cron.list_tasks():
                await self.cron.start_task(leaf)

    async def scale(self, name: str, count: int) -> dict[str, list[str]]:
        """Run ``count`` instances of actor ``name``: start the new ones, stop the highest."""
        spec = next((a for a in self.config.actors if a.name == name), None)
        if spec is None:
            raise UnknownActor(name)
        if spec.instances is None:
            raise ControlError(f"{name} has no instances key; set instances = 1 in its table to scale it")
        plan = scale_plan(name, spec.instances, count)
        actors = tuple(msgspec.structs.replace(a, instances=count) if a is spec else a for a in self.config.actors)
        await self.reload(msgspec.structs.replace(self.config, actors=actors))
        log.info("supervisor.scaled", actor=name, instances=count, started=list(plan.start), stopped=list(plan.stop))
        return {"started": list(plan.start), "stopped": list(plan.stop)}

    async def add_actor(self, spec: ActorSpec) -> None:
        """Add a child at run time (a dynamic child): it starts once its dependencies run."""
        if any(a.name == spec.name for a in (*self.config.actors, *self.config.cron)):
            raise ControlError(f"an actor named {spec.name} exists already; remove it first")
        await self.reload(msgspec.structs.replace(self.config, actors=(*self.config.actors, spec)))

    async def remove_actor(self, name: str) -> None:
        """Stop and forget a child added in code or read from the config."""
        if not any(a.name == name for a in self.config.actors):
            raise UnknownActor(name)
        actors = tuple(a for a in self.config.actors if a.name != name)
        await self.reload(msgspec.structs.replace(self.config, actors=actors))

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
            try:  # a bad tree (a config built in code) raises before anything changes
                tree_of(config.groups, config.actors, config.table_order)
            except DependencyError as exc:
                raise ConfigError("<config>", f"actors.{exc.actor}.depends_on", str(exc)) from None
            sinks = await self._plan_sinks(config)
            try:
                return await self._apply(config, sinks)
            except BaseException:
                if sinks is not None and self.config is not config:  # not swapped in: close them
                    with anyio.CancelScope(shield=True):
                        for sink in sinks.added:
                            await sink.aclose()
                raise

    async def _plan_sinks(self, config: Config) -> SinkPlan | None:
        """The new sinks of a changed ``[logs]`` (built, not yet running); None if unchanged."""
        if config.logs == self.config.logs:
            return None
        try:
            return await plan_sinks(self.router.sinks, config.logs.sinks, self._sink_builder)
        except (OSError, ValueError) as exc:
            where = str(config.source) if config.source else "<config>"
            raise ConfigError(where, "logs.sinks", f"{exc}; the sinks are unchanged") from None

    async def _apply(self, config: Config, sinks: SinkPlan | None) -> dict[str, list[str]]:
        old = {s.name: s for s in (*leaf_specs(self.config.actors), *self.config.cron)}
        new = {s.name: s for s in (*leaf_specs(config.actors), *config.cron)}
        added = [n for n in new if n not in old]
        removed = [n for n in old if n not in new]
        changed = [n for n in new if n in old and new[n] != old[n]]
        self.notifier.reloading()
        gone = [n for n in (*removed, *changed) if n in self.handles]
        await self.tree.stop_leaves(gone)  # in stop order, before the old tree goes
        self.tree.retree(config)  # raises on a bad tree before anything else changed
        self.config = config
        if isinstance(self.spawner, ForkServerSpawner):
            self.spawner.renew(config.supervisor.preload)  # preloaded modules re-imported
        if sinks is not None:
            await self.router.replace_sinks(sinks)
        for name in (*removed, *changed):
            await self._remove(name)
        for name in (*changed, *added):
            await self._add_spec(new[name])
        self._tg_start_all([n for n in (*changed, *added) if n in self.handles and n not in self._cron_names()])
        result = {"added": added, "removed": removed, "changed": changed}
        if sinks is not None:
            result["logs"] = sinks.changes
        log.info("supervisor.reloaded", **result)
        self.notifier.ready()
        return result

    async def _add_spec(self, spec: ActorSpec) -> None:
        if isinstance(spec, CronSpec):
            await self._add_cron(spec)
        else:
            await self._add(spec, start=False)

    def _cron_names(self) -> set[str]:
        return {spec.name for spec in self.config.cron}

    def _tg_start_all(self, leaves: list[str]) -> None:
        assert self._tg is not None
        self._tg.start_soon(self.tree.start_all, leaves)

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
        """One row per actor and cron task, in tree order: a group's row (``kind: "group"``,
        its ``strategy`` and ``members``) comes before its members; ``depth`` is the nesting."""
        now = self.clock.now()
        rows: list[dict[str, Any]] = []
        tree = self.tree.tree

        def visit(name: str, depth: int) -> None:
            if name in tree.groups:
                rows.append(self._group_row(name, depth))
                for member in tree.groups[name].members:
                    visit(member, depth + 1)
            elif name in self.handles:
                rows.append(self._actor_row(name, depth, now))

        for name in tree.top:
            visit(name, 0)
        shown = {row["name"] for row in rows}
        rows += [self._actor_row(name, 0, now) for name in self._order if name not in shown]
        return rows

    def _group_row(self, name: str, depth: int) -> dict[str, Any]:
        group = self.tree.tree.groups[name]
        states = {self.handles[leaf].state for leaf in self.tree.tree.leaves_of(name) if leaf in self.handles}
        state = ("failed" if name in self.tree.state.failed
                 else next(iter(states)).value if len(states) == 1 else "partial" if states else "stopped")
        return {
            "name": name, "kind": "group", "state": state, "group": group.parent, "depth": depth,
            "strategy": group.strategy, "members": list(group.members), "critical": group.critical,
            "restarts": self.tree.state.intensity[name].recent, "max_restarts": group.max_restarts,
            "restart_window": group.restart_window,
        }

    def _actor_row(self, name: str, depth: int, now: float) -> dict[str, Any]:
        h = self.handles[name]
        sample = h.resources  # sampled on the beat; never psutil on a request
        return {
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
            "pending": self.ray.pending.get(name) if self.ray is not None else None,  # why Ray has not placed it
            "group": h.spec.group,
            "depth": depth,
        }

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
