"""When runs are due: fixed-rate intervals and calendar (cron expression) schedules.

A :class:`Due` names one due time. Interval schedules compute the k-th due
time as ``anchor + k * interval`` on the monotonic clock (never by adding up
intervals, so nothing accumulates and run durations cannot shift it), and
their wall times only label runs. Calendar schedules are defined in wall time
(a zone's local time), so their monotonic deadline is recomputed from the wall
clock whenever the scheduler wakes: a clock step moves the run with the calendar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..core._clock import Clock
from ._expr import CronSchedule

__all__ = ["CalendarTimeline", "Due", "IntervalTimeline", "Timeline"]

# Two wall readings this close count as equal (float rounding of Unix times).
_EPSILON = 1e-6


@dataclass(frozen=True, slots=True)
class Due:
    scheduled_at: float  # Unix seconds
    index: int = 0  # interval schedules: k in anchor + k * interval


class IntervalTimeline:
    """Due every ``interval`` seconds after an anchor: start, or the last due time on record."""

    follows_wall = False

    def __init__(self, interval: float, clock: Clock, last_due: float | None = None) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 (got {interval})")
        self.interval = interval
        self._clock = clock
        mono, wall = clock.now(), clock.wall()
        # Keep the phase of the previous supervisor run when history has it.
        anchor_wall = last_due if last_due is not None and last_due <= wall else wall
        self._anchor_wall = anchor_wall
        self._anchor_mono = mono - (wall - anchor_wall)

    def first(self) -> Due:
        return self._due(1)

    def next(self, due: Due) -> Due:
        return self._due(due.index + 1)

    def after_now(self) -> Due:
        """The first due time after the current time."""
        elapsed = self._clock.now() - self._anchor_mono
        k = max(1, math.floor(elapsed / self.interval))
        while self.deadline(self._due(k)) <= self._clock.now():
            k += 1
        return self._due(k)

    def deadline(self, due: Due) -> float:
        return self._anchor_mono + due.index * self.interval

    def overdue(self, due: Due) -> float:
        """Seconds since ``due`` (negative while it is still ahead)."""
        return self._clock.now() - self.deadline(due)

    def count_passed(self, due: Due, limit: int) -> tuple[int, Due]:
        """How many due times from ``due`` on have passed (up to ``limit``), and the last."""
        elapsed = self._clock.now() - self._anchor_mono
        last = max(due.index, math.floor(elapsed / self.interval))
        while last > due.index and self.deadline(self._due(last)) > self._clock.now():
            last -= 1
        return last - due.index + 1, self._due(last)

    def _due(self, k: int) -> Due:
        return Due(self._anchor_wall + k * self.interval, k)


class CalendarTimeline:
    """Due at the fire times of a cron expression in the task's time zone."""

    follows_wall = True

    def __init__(self, schedule: CronSchedule, clock: Clock, last_due: float | None = None) -> None:
        self.schedule = schedule
        self._clock = clock
        wall = clock.wall()
        self._start = last_due if last_due is not None and last_due <= wall else wall

    def first(self) -> Due:
        return Due(self.schedule.next_after(self._start))

    def next(self, due: Due) -> Due:
        return Due(self.schedule.next_after(due.scheduled_at))

    def after_now(self) -> Due:
        return Due(self.schedule.next_after(self._clock.wall()))

    def deadline(self, due: Due) -> float:
        return self._clock.now() + (due.scheduled_at - self._clock.wall())

    def overdue(self, due: Due) -> float:
        late = self._clock.wall() - due.scheduled_at
        return 0.0 if abs(late) < _EPSILON else late

    def count_passed(self, due: Due, limit: int) -> tuple[int, Due]:
        wall = self._clock.wall() + _EPSILON
        count, last = 1, due
        while count < limit:
            following = self.next(last)
            if following.scheduled_at > wall:
                break
            count, last = count + 1, following
        return count, last


Timeline = IntervalTimeline | CalendarTimeline
