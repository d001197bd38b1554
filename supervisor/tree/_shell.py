"""The tree's I/O shell: start and stop in dependency order, carry out group decisions.

:class:`TreeRunner` owns the :class:`~._strategy.TreeState` and the order
:class:`~._order.Graph` of the running config. It watches the leaves' handles
(an :class:`Observer`), queues what the strategy must hear (a member going to
``backoff``, or to ``failed``), and worker tasks feed those events to the
strategy and carry out its actions through the handles' public API
(``start``, ``stop``, ``wait_for``, ``abandon``, ``resume``). Events that a
group action overtook (the leaf was stopped or started by the tree after the
event) are dropped, as OTP flushes the exits of the children it terminates itself.

There is one worker per top-level subtree (a top-level group with everything
under it, or a top-level leaf), as each OTP supervisor is its own process: a
subtree's events are handled in order, and a slow stop in one subtree (a member
that ignores SIGTERM for ``stop_timeout``) does not hold up a restart in
another. Every decision stays within one subtree (failure climbs only to
ancestors), so the workers share the one :class:`TreeState` without
interleaving inside it; a give-up ends every worker's deciding.

A member of a ``one_for_all`` or ``rest_for_one`` group does not restart on
its own (``decides_restart``): after an exit its handle waits in ``backoff``
until its subtree's worker has heard the exit. The strategy then stops and starts it
(once, in its place in the order), or, where it does not take the member down
(held, an ancestor gave up, an overtaken event), the worker lets the handle's
own backoff run (``resume``). Otherwise a zero backoff would race the worker:
the member would start itself and then once more in the group restart.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

import anyio
import msgspec
import structlog
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..config import ActorSpec, Config, GroupSpec
from ..core._bus import EventBus
from ..lifecycle._handle import ActorHandle
from ..lifecycle._observers import Observer, TransitionRecord
from ..lifecycle._states import ActorState
from ._instances import instance_names
from ._model import Tree, build_tree
from ._order import Graph, build_graph
from ._strategy import Action, Emit, GiveUp, MarkFailed, StartLeaves, StopLeaves, TreeState

__all__ = ["TreeRunner", "leaf_specs"]

log = structlog.get_logger()
S = ActorState
SETTLED = (S.RUNNING, S.FAILED, S.STOPPED)  # where a started leaf ends up, one way or the other


def leaf_specs(actors: Iterable[ActorSpec]) -> list[ActorSpec]:
    """One spec per leaf: an actor with ``instances`` becomes ``NAME.i`` specs with their index.

    An instance's spec drops the count, so scaling changes no surviving instance.
    """
    out: list[ActorSpec] = []
    for spec in actors:
        if spec.instances is None:
            out.append(spec)
            continue
        for i, name in enumerate(instance_names(spec.name, spec.instances)):
            out.append(msgspec.structs.replace(spec, name=name, instance=i, instances=None))
    return out


def tree_of(
    groups: Iterable[GroupSpec], actors: Iterable[ActorSpec], table_order: tuple[str, ...] = ()
) -> tuple[Tree, Graph]:
    actors = list(actors)
    tree = build_tree(groups, actors, table_order)
    return tree, build_graph(tree, {a.name: a.depends_on for a in actors})


@dataclass(frozen=True)
class _Exited:
    leaf: str
    abnormal: bool
    seq: int
    restarts: int  # the handle's restart count at this exit: which backoff a resume answers


@dataclass(frozen=True)
class _GaveUp:
    leaf: str
    seq: int


@dataclass(frozen=True)
class _Revived:
    leaf: str
    seq: int


_Event = _Exited | _GaveUp | _Revived


class TreeRunner(Observer):
    def __init__(
        self, config: Config, handles: Mapping[str, ActorHandle], bus: EventBus, clock: Callable[[], float],
        on_give_up: Callable[[], None],
    ) -> None:
        self.tree, self.graph = tree_of(config.groups, config.actors, config.table_order)
        self.state = TreeState(self.tree)
        self._handles = handles
        self._bus = bus
        self._now = clock
        self._on_give_up = on_give_up
        self._seq = itertools.count()
        self._touched: dict[str, int] = {}  # leaf -> seq of the tree's last stop or start of it
        self._workers: TaskGroup | None = None  # while run() runs
        self._queues: dict[str, MemoryObjectSendStream[_Event]] = {}  # top-level subtree -> its worker's queue
        self._closing = False
        self._acting: set[anyio.CancelScope] = set()  # around the workers' actions; cancelled by close()
        self._closed: anyio.Event | None = None  # run() ends on it
        self.gave_up = False

    def retree(self, config: Config) -> None:
        """Adopt a changed config (reload, scale, dynamic children)."""
        before = {leaf: self._subtree(leaf) for leaf in self.tree.leaves}
        self.tree, self.graph = tree_of(config.groups, config.actors, config.table_order)
        self.state = self.state.retree(self.tree)
        # A leaf now in another top-level subtree has a new worker: an event still queued for it in the old
        # one is stale (its group is gone from under it) and must not overtake the new worker's. Touching the
        # leaf drops it; _work still hands a deferred restart back to the handle.
        self._touch(leaf for leaf, top in before.items() if leaf in self.tree.leaves and self._subtree(leaf) != top)

    def _subtree(self, leaf: str) -> str:
        """The top-level subtree ``leaf`` is in: its outermost group, or itself."""
        above = self.tree.ancestors(leaf)
        return above[-1] if above else leaf

    # --- the observer side: never blocks, never decides ------------------------------
    def _hears(self, leaf: str) -> bool:
        return not self._closing and self._workers is not None and leaf in self.tree.leaves

    def decides_restart(self, actor: str) -> bool:
        """A member of a one_for_all or rest_for_one group: the worker restarts it, not its handle."""
        return self._hears(actor) and self._defers(actor)

    def _defers(self, leaf: str) -> bool:
        spec = self.tree.leaves.get(leaf)  # None for a cron task's handle
        return spec is not None and spec.group is not None and self.tree.groups[spec.group].strategy != "one_for_one"

    def on_transition(self, record: TransitionRecord) -> None:
        if not self._hears(record.actor):
            return
        seq = next(self._seq)
        if record.new is S.BACKOFF:
            abnormal = record.fields.get("reason") not in ("completed", "stopped")
            self._queue(_Exited(record.actor, abnormal, seq, record.restarts))
        elif record.new is S.FAILED and record.old is S.ERRORED:
            self._queue(_GaveUp(record.actor, seq))
        elif record.old is S.FAILED and record.new is S.STARTING:
            self._queue(_Revived(record.actor, seq))

    def _queue(self, event: _Event) -> None:
        """To the worker of the leaf's top-level subtree, started on its first event."""
        assert self._workers is not None  # _hears
        subtree = self._subtree(event.leaf)
        send = self._queues.get(subtree)
        if send is None:
            send, receive = anyio.create_memory_object_stream[_Event](math.inf)
            self._queues[subtree] = send
            self._workers.start_soon(self._work, receive)
        send.send_nowait(event)

    # --- the workers ---------------------------------------------------------------
    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Host the workers; ends once close() was called and they have drained their queues."""
        self._closed = closed = anyio.Event()
        if self._closing:
            closed.set()
        try:
            async with anyio.create_task_group() as self._workers:
                task_status.started()
                await closed.wait()
        finally:
            self._workers = None  # cancelled or closed: no worker takes an event from here on

    async def _work(self, receive: MemoryObjectReceiveStream[_Event]) -> None:
        with receive:
            async for event in receive:
                if self._closing or self.gave_up:
                    continue
                await self._hear(event)
                if isinstance(event, _Exited) and not (self._closing or self.gave_up):
                    handle = self._handles.get(event.leaf)
                    if handle is not None and handle.state is S.BACKOFF:  # the group left the restart to it
                        handle.resume(event.restarts)

    async def _hear(self, event: _Event) -> None:
        if self._touched.get(event.leaf, -1) > event.seq or event.leaf not in self.tree.leaves:
            return  # a group action already took care of this leaf
        if isinstance(event, _Revived):
            self.state.started_by_user(event.leaf)
            return
        now = self._now()
        if isinstance(event, _Exited):
            actions = self.state.exited(event.leaf, event.abnormal, now)
        else:
            actions = self.state.gave_up(event.leaf, now)
        with anyio.CancelScope() as acting:
            self._acting.add(acting)
            try:
                await self.carry_out(actions)
            finally:
                self._acting.discard(acting)

    def close(self) -> None:
        """A shutdown began: decide nothing more."""
        self._closing = True
        for acting in self._acting:  # a group restart under way ends here: the shutdown stops everything
            acting.cancel()
        for send in self._queues.values():
            send.close()  # each worker ends once it has drained its queue
        if self._closed is not None:
            self._closed.set()

    async def carry_out(self, actions: list[Action]) -> None:
        for action in actions:
            if self._closing:
                return
            if isinstance(action, Emit):
                log.log(action.level, action.event, **action.fields)
                self._bus.publish({"event": action.event, **action.fields})
            elif isinstance(action, StopLeaves):
                await self.stop_leaves(action.leaves)
            elif isinstance(action, StartLeaves):
                await self.start_leaves(action.leaves)
            elif isinstance(action, MarkFailed):
                for leaf in action.leaves:
                    self._handle(leaf).abandon(action.group)
            elif isinstance(action, GiveUp):
                self.gave_up = True
                self._on_give_up()
                return

    # --- starting and stopping in order --------------------------------------------
    def _handle(self, leaf: str) -> ActorHandle:
        return self._handles[leaf]

    def _touch(self, leaves: Iterable[str]) -> None:
        seq = next(self._seq)
        for leaf in leaves:
            self._touched[leaf] = seq

    async def start_leaves(self, leaves: Iterable[str]) -> None:
        """Start ``leaves`` wave by wave; each wave settles (running, or given up) before the next."""
        leaves = [leaf for leaf in leaves if leaf in self._handles]
        self._touch(leaves)
        for wave in self.graph.start_waves(leaves):
            if self._closing:
                return
            for leaf in wave:
                self._handle(leaf).start()
            async with anyio.create_task_group() as tg:
                for leaf in wave:
                    # a member down again waits for this worker (its exit is queued): settled too
                    settled = (*SETTLED, S.BACKOFF) if self._defers(leaf) else SETTLED
                    tg.start_soon(self._handle(leaf).wait_for, *settled)
        # no touch here: a leaf that went down again while it started is news for the strategy

    async def stop_leaves(self, leaves: Iterable[str]) -> None:
        """Stop ``leaves``, each once everything among them that needs it has stopped."""
        leaves = [leaf for leaf in leaves if leaf in self._handles]
        self._touch(leaves)
        down = [leaf for leaf in leaves if self._handle(leaf).state is S.BACKOFF]
        for leaf in down:  # a leaf waiting out its backoff is down already: end the wait now
            await self._handle(leaf).stop()

        async def stop(leaf: str) -> None:
            if leaf not in down:
                await self._handle(leaf).stop()

        await self._eagerly(leaves, self.graph.dependents, stop)
        self._touch(leaves)

    async def start_all(self, leaves: Iterable[str]) -> None:
        """The first start: each leaf as soon as everything it needs is running."""
        leaves = [leaf for leaf in leaves if leaf in self._handles]

        async def start(leaf: str) -> None:
            for needed in self.graph.needs.get(leaf, ()):
                if needed in self._handles:
                    await self._handle(needed).wait_for(S.RUNNING)
            if not self._closing:  # a shutdown began while it waited: it stays down
                self._handle(leaf).start()

        async with anyio.create_task_group() as tg:
            for leaf in leaves:
                tg.start_soon(start, leaf)

    async def stop_all(self, handles: Iterable[ActorHandle]) -> None:
        """The last stop: every handle concurrently, each after the leaves that need it."""
        by_name = {h.name: h for h in handles}

        await self._eagerly(list(by_name), self.graph.dependents, lambda name: by_name[name].stop())

    async def _eagerly(
        self, names: list[str], before: Mapping[str, frozenset[str]], act: Callable[[str], Awaitable[object]]
    ) -> None:
        """Run ``act`` on every name once the ones in ``before[name]`` (among ``names``) are done."""
        done = {name: anyio.Event() for name in names}

        async def one(name: str) -> None:
            for other in before.get(name, ()):
                if other in done:
                    await done[other].wait()
            await act(name)
            done[name].set()

        async with anyio.create_task_group() as tg:
            for name in names:
                tg.start_soon(one, name)
