"""The shared Timer on a fake clock: order, exactness, cancellation, re-arming."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from supervisor.core._timer import Timer
from tests.fakeclock import FakeClock

pytestmark = pytest.mark.anyio


class CountingClock(FakeClock):
    """Counts the sleeps the timer asks for."""

    def __init__(self) -> None:
        super().__init__(start=100.0)
        self.sleeps = 0

    async def sleep_until(self, deadline: float) -> None:
        self.sleeps += 1
        await super().sleep_until(deadline)


@asynccontextmanager
async def running(clock: FakeClock) -> AsyncIterator[Timer]:
    timer = Timer(clock)
    async with anyio.create_task_group() as tg:
        await tg.start(timer.run)
        yield timer
        tg.cancel_scope.cancel()


async def test_fires_each_alarm_at_its_deadline_in_order() -> None:
    """Alarms fire at their exact deadline, earliest first, whatever order they were armed in."""
    clock = FakeClock(start=100.0)
    fired: list[tuple[str, float]] = []
    async with running(clock) as timer:
        for name, at in [("c", 103.0), ("a", 101.0), ("b", 102.5)]:
            timer.call_at(at, lambda name=name: fired.append((name, clock.now())))
        await clock.advance(1.0)
        assert fired == [("a", 101.0)]
        await clock.advance(5.0)
    assert fired == [("a", 101.0), ("b", 102.5), ("c", 103.0)]


async def test_cancelled_alarm_never_fires() -> None:
    """cancel() before the deadline drops the callback; pending says so."""
    clock = FakeClock(start=100.0)
    fired: list[str] = []
    async with running(clock) as timer:
        alarm = timer.call_at(101.0, lambda: fired.append("x"))
        keep = timer.call_at(102.0, lambda: fired.append("y"))
        alarm.cancel()
        assert not alarm.pending and keep.pending
        assert timer.next_deadline == 102.0
        await clock.advance(5.0)
        assert not keep.pending  # fired alarms are spent
    assert fired == ["y"]


async def test_earlier_alarm_cuts_a_long_sleep_short() -> None:
    """Armed while the timer sleeps toward a later deadline, an earlier alarm still fires on time."""
    clock = FakeClock(start=100.0)
    fired: list[float] = []
    async with running(clock) as timer:
        timer.call_at(200.0, lambda: fired.append(clock.now()))
        await clock.advance(1.0)
        timer.call_at(102.0, lambda: fired.append(clock.now()))
        await clock.advance(1.0)
        assert fired == [102.0]
        assert clock.next_deadline == 200.0  # the cut-short sleep left no stale deadline
        await clock.advance(100.0)
    assert fired == [102.0, 200.0]


async def test_an_idle_timer_wakes_for_its_first_alarm() -> None:
    """With nothing armed the timer waits; the first call_at wakes it."""
    clock = FakeClock(start=100.0)
    fired: list[float] = []
    async with running(clock) as timer:
        await clock.advance(10.0)
        timer.call_at(115.0, lambda: fired.append(clock.now()))
        await clock.advance(10.0)
    assert fired == [115.0]


async def test_alarms_due_together_cost_one_sleep() -> None:
    """100 alarms at one instant are served by a single sleep of the timer task."""
    clock = CountingClock()
    fired: list[int] = []
    async with running(clock) as timer:
        for i in range(100):
            timer.call_at(101.0, lambda i=i: fired.append(i))
        await clock.advance(2.0)
    assert fired == list(range(100))  # arming order within a deadline
    assert clock.sleeps == 1


async def test_callback_may_arm_an_alarm_that_is_already_due() -> None:
    """A callback that re-arms at a passed deadline fires it in the same pass, and later ones on time."""
    clock = FakeClock(start=100.0)
    fired: list[tuple[str, float]] = []
    async with running(clock) as timer:

        def first() -> None:
            fired.append(("first", clock.now()))
            timer.call_at(clock.now() - 1, lambda: fired.append(("overdue", clock.now())))
            timer.call_at(clock.now() + 1, lambda: fired.append(("next", clock.now())))

        timer.call_at(101.0, first)
        await clock.advance(5.0)
    assert fired == [("first", 101.0), ("overdue", 101.0), ("next", 102.0)]


async def test_callback_error_ends_the_timer() -> None:
    """What a callback raises is not swallowed: it ends the timer's task group."""
    clock = FakeClock(start=100.0)
    caught: list[BaseException] = []
    try:
        async with running(clock) as timer:
            timer.call_at(101.0, lambda: 1 / 0)
            await clock.advance(2.0)
            await anyio.sleep_forever()
    except* ZeroDivisionError as group:
        caught.extend(group.exceptions)
    assert len(caught) == 1
