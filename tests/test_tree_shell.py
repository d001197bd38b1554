"""The tree's I/O shell on fake handles: order of stops and starts, stale events, give-up."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from supervisor.config import parse_config
from supervisor.core._bus import EventBus
from supervisor.lifecycle._observers import TransitionRecord
from supervisor.lifecycle._states import ActorState
from supervisor.tree._shell import TreeRunner

pytestmark = pytest.mark.anyio
S = ActorState
T = "tests.sample_actors:Steady"


class FakeHandle:
    """Just the public API the shell uses; every call is recorded, states change at once."""

    def __init__(self, name: str, calls: list[tuple[str, str]], runner: list[TreeRunner]) -> None:
        self.name = name
        self.state = S.STOPPED
        self._calls = calls
        self._runner = runner
        self._moved = anyio.Event()

    def move(self, *states: ActorState, reason: str = "crash") -> None:
        for new in states:
            old, self.state = self.state, new
            record = TransitionRecord(self.name, old, new, "x", {"reason": reason}, 0, None, 0.0, 1.0)
            self._runner[0].on_transition(record)
        self._moved.set()
        self._moved = anyio.Event()

    def start(self) -> None:
        self._calls.append(("start", self.name))
        if self.state in (S.STOPPED, S.FAILED):
            self.move(S.STARTING, S.RUNNING)

    async def stop(self) -> None:
        self._calls.append(("stop", self.name))
        await anyio.sleep(0)
        if self.state is not S.FAILED:
            self.move(S.STOPPED)

    async def wait_for(self, *states: ActorState) -> ActorState:
        while self.state not in states:
            await self._moved.wait()
        return self.state

    def abandon(self, group: str) -> None:
        self._calls.append(("abandon", self.name))
        self.move(S.FAILED)

    def resume(self, restarts: int) -> None:
        self._calls.append(("resume", self.name))
        self.move(S.STARTING, S.RUNNING)


def setup(groups: dict[str, Any], actors: dict[str, Any]) -> tuple[TreeRunner, dict[str, FakeHandle], list[Any]]:
    config = parse_config({"groups": groups, "actors": {n: {"target": T, **a} for n, a in actors.items()}})
    calls: list[tuple[str, str]] = []
    holder: list[TreeRunner] = []
    handles = {name: FakeHandle(name, calls, holder) for name in actors}
    gave_up: list[bool] = []
    runner = TreeRunner(config, handles, EventBus(), lambda: 0.0, lambda: gave_up.append(True))  # type: ignore[arg-type]
    holder.append(runner)
    return runner, handles, [calls, gave_up]


async def settle() -> None:
    await anyio.wait_all_tasks_blocked()


async def test_start_all_waits_for_dependencies() -> None:
    """The first start starts a leaf only once everything it needs runs."""
    runner, _handles, (calls, _) = setup({}, {"web": {"depends_on": ["db"]}, "db": {}, "solo": {}})
    with anyio.fail_after(5):
        await runner.start_all(["web", "db", "solo"])
    assert calls.index(("start", "db")) < calls.index(("start", "web"))


async def test_stop_all_stops_dependents_first() -> None:
    """The last stop stops a leaf only after what depends on it."""
    runner, handles, (calls, _) = setup({}, {"web": {"depends_on": ["db"]}, "db": {}})
    await runner.start_all(["web", "db"])
    calls.clear()
    with anyio.fail_after(5):
        await runner.stop_all(list(handles.values()))  # type: ignore[arg-type]
    assert calls == [("stop", "web"), ("stop", "db")]


async def test_one_for_all_crash_is_carried_out_in_order() -> None:
    """A member going to backoff: it stops first, then the others in reverse, then all start in order."""
    runner, handles, (calls, _) = setup({"g": {"strategy": "one_for_all"}}, {"a": {"group": "g"}, "b": {"group": "g"},
                                                                             "c": {"group": "g"}})
    async with anyio.create_task_group() as tg:
        await tg.start(runner.run)
        await runner.start_all(["a", "b", "c"])
        calls.clear()
        handles["b"].move(S.ERRORED, S.BACKOFF)
        await settle()
        assert calls == [("stop", "b"), ("stop", "c"), ("stop", "a"), ("start", "a"), ("start", "b"), ("start", "c")]
        runner.close()


async def test_an_overtaken_event_is_dropped() -> None:
    """Two members down at once: the first group restart covers the second, which restarts nothing more."""
    runner, handles, (calls, _) = setup({"g": {"strategy": "one_for_all"}}, {"a": {"group": "g"}, "b": {"group": "g"}})
    async with anyio.create_task_group() as tg:
        await tg.start(runner.run)
        await runner.start_all(["a", "b"])
        handles["a"].move(S.ERRORED, S.BACKOFF)
        handles["b"].move(S.ERRORED, S.BACKOFF)  # queued before the worker takes the first
        await settle()
        assert calls.count(("start", "a")) == 2  # the first start, and one group restart
        assert runner.state.intensity["g"].recent == 1
        runner.close()


async def test_a_top_level_group_that_gives_up_abandons_its_members() -> None:
    """Past its intensity, a top-level group stops its members and leaves them failed."""
    runner, handles, (calls, _) = setup({"g": {"max_restarts": 0}}, {"a": {"group": "g"}, "b": {"group": "g"}})
    async with anyio.create_task_group() as tg:
        await tg.start(runner.run)
        await runner.start_all(["a", "b"])
        handles["a"].move(S.ERRORED, S.BACKOFF)
        await settle()
        assert {h.state for h in handles.values()} == {S.FAILED}
        assert ("abandon", "a") in calls and ("abandon", "b") in calls
        runner.close()


async def test_critical_give_up_calls_back_and_decides_nothing_more() -> None:
    """A critical actor that fails: the give-up callback runs once, and later events are ignored."""
    runner, handles, (_calls, gave_up) = setup({}, {"db": {"critical": True}, "x": {}})
    async with anyio.create_task_group() as tg:
        await tg.start(runner.run)
        await runner.start_all(["db", "x"])
        handles["db"].move(S.ERRORED, S.FAILED)
        await settle()
        assert gave_up == [True] and runner.gave_up
        runner.close()
        handles["x"].move(S.ERRORED, S.FAILED)
        await settle()
        assert gave_up == [True]


async def test_after_a_give_up_no_subtree_decides_anything() -> None:
    """A critical actor gives up in one subtree: a crash in another group, before the shutdown, restarts nothing."""
    runner, handles, (calls, gave_up) = setup(
        {"g": {"strategy": "one_for_all"}}, {"db": {"critical": True}, "a": {"group": "g"}, "b": {"group": "g"}}
    )
    async with anyio.create_task_group() as tg:
        await tg.start(runner.run)
        await runner.start_all(["db", "a", "b"])
        handles["db"].move(S.ERRORED, S.FAILED)
        await settle()
        assert gave_up == [True]
        calls.clear()
        handles["a"].move(S.ERRORED, S.BACKOFF)
        await settle()
        assert calls == [] and runner.state.intensity["g"].recent == 0
        runner.close()


async def test_run_ends_once_closed_and_drained() -> None:
    """close() ends run(): every subtree's worker drains its queue and returns."""
    runner, handles, _ = setup({"g": {}, "h": {}}, {"a": {"group": "g"}, "b": {"group": "h"}})
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(runner.run)
            await runner.start_all(["a", "b"])
            handles["a"].move(S.ERRORED, S.BACKOFF)
            handles["b"].move(S.ERRORED, S.BACKOFF)
            runner.close()


async def test_a_cancelled_run_hears_nothing_more() -> None:
    """run() cancelled without close(): later transitions are ignored and each handle restarts itself."""
    runner, handles, (calls, _) = setup({"g": {"strategy": "one_for_all"}}, {"a": {"group": "g"}, "b": {"group": "g"}})
    async with anyio.create_task_group() as tg:
        await tg.start(runner.run)
        await runner.start_all(["a", "b"])
        tg.cancel_scope.cancel()
    calls.clear()
    handles["a"].move(S.ERRORED, S.BACKOFF)  # no worker to take it: must not raise
    assert not runner.decides_restart("a") and calls == []


async def test_an_event_queued_before_a_reload_moved_its_leaf_is_dropped() -> None:
    """A leaf's exit still queued in its old subtree's worker when a reload moves it to another top-level group:
    no group acts on it (its old group is gone from under it), and the handle gets its restart back."""
    groups = {"g": {"strategy": "one_for_all"}, "h": {"strategy": "one_for_all"}}
    runner, handles, (calls, _) = setup(groups, {"a": {"group": "g"}, "b": {"group": "g"}, "c": {"group": "h"}})
    members = {"a": "h", "b": "g", "c": "h"}  # a moves from g to h
    moved = parse_config({"groups": groups, "actors": {n: {"target": T, "group": g} for n, g in members.items()}})
    async with anyio.create_task_group() as tg:
        await tg.start(runner.run)
        await runner.start_all(["a", "b", "c"])
        calls.clear()
        handles["a"].move(S.ERRORED, S.BACKOFF)  # queued for g's worker, not yet taken
        runner.retree(moved)
        await settle()
        assert calls == [("resume", "a")]
        assert runner.state.intensity["g"].recent == runner.state.intensity["h"].recent == 0
        runner.close()
