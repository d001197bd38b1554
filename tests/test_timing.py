"""Timing logic on a fake clock: heartbeat deadlines, backoff, intensity, stop escalation."""

from __future__ import annotations

import signal

import anyio
import pytest

from actors._runtime import beat_delay
from supervisor.lifecycle._heartbeat import HeartbeatDeadline, wait_for_expiry
from supervisor.lifecycle._policy import backoff_delay, intensity_allows, should_restart
from supervisor.process._child import stop_process
from tests.fakeclock import FakeClock


class TestBeatAlignment:
    @pytest.mark.parametrize("interval", [0.25, 1.0, 30.0])
    def test_beats_land_on_the_shared_grid(self, interval: float) -> None:
        """Whatever the phase a child starts at, its next beat falls on a multiple of the interval."""
        for now in (1000.0, 1000.0 + interval / 3, 1000.0 + interval * 0.999, 5e5 + 0.123):
            delay = beat_delay(now, interval)
            assert 0 < delay <= interval
            assert (now + delay) / interval == pytest.approx(round((now + delay) / interval), abs=1e-6)

    def test_two_children_out_of_phase_beat_together(self) -> None:
        """Children started 0.37 s apart send their second beat at the same instant."""
        a, b = 100.0, 100.37
        assert a + beat_delay(a, 1.0) == pytest.approx(b + beat_delay(b, 1.0)) == pytest.approx(101.0)

    def test_gap_never_exceeds_interval(self) -> None:
        """Beating on the grid never leaves more than one interval between beats (timeout > interval)."""
        now = 7.9999999
        assert beat_delay(now, 2.0) <= 2.0
        assert beat_delay(8.0, 2.0) == 2.0


class TestHeartbeatDeadline:
    def test_deadline_follows_last_beat(self) -> None:
        """The deadline is the last beat plus the timeout."""
        beats = HeartbeatDeadline(2.0, now=10.0)
        assert beats.deadline == 12.0
        beats.beat(11.5)
        assert beats.deadline == 13.5
        assert not beats.expired(13.49)
        assert beats.expired(13.5)

    def test_rejects_non_positive_timeout(self) -> None:
        """A zero timeout is refused with the bad value in the message."""
        with pytest.raises(ValueError, match=r"^heartbeat timeout must be > 0 \(got 0\)$"):
            HeartbeatDeadline(0, now=0.0)

    @pytest.mark.anyio
    async def test_detects_hang_exactly_at_deadline(self) -> None:
        """With beats every second and a 2 s timeout, a hang is seen exactly 2 s after the last beat."""
        clock = FakeClock(start=100.0)
        beats = HeartbeatDeadline(2.0, now=clock.now())
        result: list[float] = []

        async def watch() -> None:
            result.append(await wait_for_expiry(beats, clock))

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await anyio.wait_all_tasks_blocked()
            for _ in range(5):  # five healthy beats, one per second
                await clock.advance(1.0)
                beats.beat(clock.now())
            last_beat = clock.now()
            await clock.advance(1.999)
            assert result == []
            await clock.advance(0.001)
            assert result == [2.0]
            assert clock.now() - last_beat == pytest.approx(2.0)


class TestBackoff:
    def test_doubles_up_to_the_maximum(self) -> None:
        """Without jitter the ceiling doubles per attempt and stops at backoff_max."""
        delays = [backoff_delay(n, 0.1, 1.0, jitter=1.0) for n in range(1, 7)]
        assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])

    def test_jitter_stays_within_half_to_full(self) -> None:
        """Equal jitter keeps each delay in [ceiling/2, ceiling]."""
        for attempt in range(1, 5):
            ceiling = min(8.0, 2 ** (attempt - 1))
            assert backoff_delay(attempt, 1.0, 8.0, jitter=0.0) == pytest.approx(ceiling / 2)
            assert ceiling / 2 <= backoff_delay(attempt, 1.0, 8.0, jitter=0.999999) <= ceiling

    def test_huge_attempts_do_not_overflow(self) -> None:
        """Attempt 10_000 is capped at the maximum, not an OverflowError."""
        assert backoff_delay(10_000, 0.1, 30.0, jitter=1.0) == 30.0


class TestRestartIntensity:
    def test_allows_max_restarts_within_window(self) -> None:
        """max_restarts=3 allows three restarts in the window and refuses the fourth."""
        times: tuple[float, ...] = ()
        verdicts = []
        for t in (0.0, 1.0, 2.0, 3.0):
            allowed, times = intensity_allows(times, t, 3, 10.0)
            verdicts.append(allowed)
        assert verdicts == [True, True, True, False]

    def test_old_restarts_leave_the_window(self) -> None:
        """Restarts older than the window no longer count."""
        allowed, times = intensity_allows((0.0, 5.0), 10.0, 2, 10.0)
        assert allowed and times == (5.0, 10.0)  # the one at 0.0 has left the window

    def test_zero_means_never_restart(self) -> None:
        """max_restarts=0 fails on the first crash."""
        assert intensity_allows((), 0.0, 0, 60.0)[0] is False


class TestShouldRestart:
    @pytest.mark.parametrize(
        ("restart", "abnormal", "expected"),
        [
            ("permanent", True, True),
            ("permanent", False, True),
            ("transient", True, True),
            ("transient", False, False),
            ("temporary", True, False),
            ("temporary", False, False),
        ],
    )
    def test_otp_semantics(self, restart: str, abnormal: bool, expected: bool) -> None:
        """permanent always restarts, transient only after an abnormal exit, temporary never."""
        assert should_restart(restart, abnormal) is expected


class FakeProcess:
    """A process that exits on the signals it is told to honour."""

    def __init__(self, honours: set[int]) -> None:
        self.pid = 4242
        self.honours = honours
        self.signals: list[int] = []
        self.returncode: int | None = None
        self._exited = anyio.Event()

    def signal_group(self, sig: int) -> bool:
        self.signals.append(sig)
        if sig in self.honours and self.returncode is None:
            self.returncode = -sig
            self._exited.set()
        return True

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode


class TestStopEscalation:
    @pytest.mark.anyio
    async def test_sigterm_suffices(self) -> None:
        """A process that honours SIGTERM is reaped without SIGKILL escalation."""
        clock = FakeClock()
        proc = FakeProcess({signal.SIGTERM})
        code = await stop_process(proc, stop_timeout=5.0, clock=clock, actor="a")
        assert code == -signal.SIGTERM
        assert proc.signals[0] == signal.SIGTERM
        assert clock.now() == 1000.0

    @pytest.mark.anyio
    async def test_escalates_to_sigkill_after_stop_timeout(self) -> None:
        """A process ignoring SIGTERM gets SIGKILL exactly stop_timeout later."""
        clock = FakeClock()
        proc = FakeProcess({signal.SIGKILL})
        result: list[int | None] = []

        async def stop() -> None:
            result.append(await stop_process(proc, stop_timeout=5.0, clock=clock, actor="a"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(stop)
            await anyio.wait_all_tasks_blocked()
            assert proc.signals == [signal.SIGTERM]
            await clock.advance(4.999)
            assert proc.signals == [signal.SIGTERM]
            await clock.advance(0.001)
        assert proc.signals[:2] == [signal.SIGTERM, signal.SIGKILL]
        assert result == [-signal.SIGKILL]
        assert clock.now() == 1005.0
