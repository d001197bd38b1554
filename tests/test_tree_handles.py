"""The tree's worker with real handles on a fake spawner and clock: who restarts a member, and how often."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from supervisor.config import parse_config
from supervisor.core._bus import EventBus
from supervisor.lifecycle._handle import ActorHandle
from supervisor.lifecycle._observers import Observer
from supervisor.lifecycle._states import ActorState
from supervisor.logs import LogRouter
from supervisor.tree._shell import TreeRunner
from tests.fakeclock import FakeClock
from tests.fakespawner import FakeSpawner

pytestmark = pytest.mark.anyio
S = ActorState
ZERO = {"target": "tests.sample_actors:Steady", "backoff_initial": 0.0, "backoff_max": 0.0, "max_restarts": 100}


class Rig:
    def __init__(self, strategy: str, names: tuple[str, ...]) -> None:
        actors = {n: {**ZERO, "group": "g"} for n in names}
        self.config = parse_config({"groups": {"g": {"strategy": strategy, "max_restarts": 100}}, "actors": actors})
        self.clock = FakeClock()
        self.bus = EventBus()
        self.events: list[dict[str, Any]] = []
        self.bus.add_callback(self.events.append)
        self.spawner = FakeSpawner()
        self.handles: dict[str, ActorHandle] = {}
        self.runner = TreeRunner(self.config, self.handles, self.bus, self.clock.now, lambda: None)
        for spec in self.config.actors:
            self.handles[spec.name] = ActorHandle(
                spec, spawner=self.spawner, router=LogRouter(), bus=self.bus, clock=self.clock,
                observers=[self.runner], jitter=lambda: 1.0,
            )

    def starts(self) -> Counter[str]:
        return Counter(e["actor"] for e in self.events if e["event"] == "actor.starting")

    def child_of(self, name: str) -> Any:
        pid = self.handles[name].pid
        return next(c for c in self.spawner.children if c.pid == pid)


@asynccontextmanager
async def rig(strategy: str, names: tuple[str, ...]) -> AsyncIterator[Rig]:
    r = Rig(strategy, names)
    async with anyio.create_task_group() as tg:
        await tg.start(r.runner.run)
        for handle in r.handles.values():
            await tg.start(handle.run)
        with anyio.fail_after(5):
            await r.runner.start_all(list(names))
            await anyio.wait_all_tasks_blocked()
        yield r
        r.runner.close()
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
async def test_a_member_waits_for_its_group_to_restart_it(strategy: str) -> None:
    """backoff_initial = 0: a killed member is started once, by its group, never first by its own handle."""
    names = ("a", "b", "c")
    async with rig(strategy, names) as r:
        for round_ in range(1, 7):
            victim = names[round_ % 3]
            taken = names if strategy == "one_for_all" else names[names.index(victim):]
            before = r.starts()
            r.child_of(victim).exit(-9)
            with anyio.fail_after(5):
                for name in names:
                    await r.handles[name].wait_for(S.RUNNING)
                await anyio.wait_all_tasks_blocked()
            assert r.starts() - before == Counter(taken), f"round {round_}: {victim} killed"


async def test_a_one_for_one_member_restarts_itself_and_the_group_counts_it() -> None:
    """one_for_one: the group claims nothing; the member restarts alone, once, and the group counts it."""
    async with rig("one_for_one", ("a", "b")) as r:
        assert not r.runner.decides_restart("a")
        r.child_of("a").exit(1)
        with anyio.fail_after(5):
            await r.handles["a"].wait_for(S.RUNNING)
            await anyio.wait_all_tasks_blocked()
        assert r.starts() == Counter({"a": 2, "b": 1})
        assert r.runner.state.intensity["g"].recent == 1


class Claims(Observer):
    """An observer that claims an actor's restarts and never answers (a group still deciding)."""

    def decides_restart(self, actor: str) -> bool:
        return True


async def test_a_claimed_restart_is_not_taken_by_the_handle() -> None:
    """While its group decides, a member stays in backoff however long: its handle starts nothing itself."""
    spec = parse_config({"actors": {"a": ZERO}}).actors[0]
    clock, spawner = FakeClock(), FakeSpawner()
    handle = ActorHandle(spec, spawner=spawner, router=LogRouter(), bus=EventBus(), clock=clock,
                         observers=[Claims()], jitter=lambda: 1.0)
    async with anyio.create_task_group() as tg:
        await tg.start(handle.run)
        handle.start()
        await anyio.wait_all_tasks_blocked()
        spawner.children[0].exit(-9)
        await clock.advance(3600.0)
        assert handle.state is S.BACKOFF and len(spawner.children) == 1
        handle.resume(handle.restarts)  # the group leaves it to its own backoff (0 s)
        with anyio.fail_after(5):
            await handle.wait_for(S.RUNNING)
        assert len(spawner.children) == 2
        tg.cancel_scope.cancel()
