"""Health checks: the failure threshold, and running checks without blocking the loop."""

from __future__ import annotations

import threading

import anyio
import pytest
from fakeclock import FakeClock

from supervisor.lifecycle._health import HealthProbe, HealthTracker


class TestHealthTracker:
    def test_threshold_must_be_positive(self) -> None:
        """A threshold below one is rejected with the bad value in the message."""
        with pytest.raises(ValueError, match=r"^threshold must be an integer >= 1 \(got 0\)$"):
            HealthTracker(0)

    def test_fires_exactly_at_threshold(self) -> None:
        """record() is True only for the failure that reaches the threshold."""
        tracker = HealthTracker(3)
        results = [tracker.record(False, f"e{i}") for i in range(5)]
        assert results == [False, False, True, False, False]
        assert tracker.failures == 5
        assert tracker.last_error == "e4"

    def test_success_resets_the_count(self) -> None:
        """A passing check in between means the failures are not consecutive."""
        tracker = HealthTracker(2)
        assert tracker.record(False, "x") is False
        assert tracker.record(True) is False
        assert tracker.failures == 0
        assert tracker.record(False, "x") is False
        assert tracker.record(False, "x") is True

    def test_reset_rearms(self) -> None:
        """After reset() (a restart) a new incident fires again."""
        tracker = HealthTracker(1)
        assert tracker.record(False, "x") is True
        assert tracker.record(False, "x") is False
        tracker.reset()
        assert (tracker.failures, tracker.last_error) == (0, None)
        assert tracker.record(False, "x") is True


async def _run_probe(probe: HealthProbe, into: list) -> None:
    into.append(await probe())


class TestHealthProbe:
    @pytest.mark.anyio
    async def test_async_check_passes(self) -> None:
        """An async check returning True (or None) passes."""

        async def ok() -> bool:
            return True

        async def silent() -> None:
            return None

        assert await HealthProbe(ok, 1.0)() == (True, None)
        assert await HealthProbe(silent, 1.0)() == (True, None)

    @pytest.mark.anyio
    async def test_false_and_exceptions_fail(self) -> None:
        """Returning False or raising is a failure with a reason, never a crash."""

        async def bad() -> bool:
            return False

        def boom() -> bool:
            raise RuntimeError("db down")

        assert await HealthProbe(bad, 1.0)() == (False, "health check returned False")
        assert await HealthProbe(boom, 1.0)() == (False, "RuntimeError: db down")

    @pytest.mark.anyio
    async def test_sync_check_runs_in_worker_thread(self) -> None:
        """A sync check never runs on the event loop's thread."""
        loop_thread = threading.get_ident()
        seen: list[int] = []

        def check() -> bool:
            seen.append(threading.get_ident())
            return True

        assert await HealthProbe(check, 1.0)() == (True, None)
        assert seen and seen[0] != loop_thread

    @pytest.mark.anyio
    async def test_async_check_times_out_on_clock(self) -> None:
        """An async check that hangs fails exactly at its timeout on the injected clock."""
        clock = FakeClock()
        hang = anyio.Event()

        async def stuck() -> bool:
            await hang.wait()
            return True

        probe = HealthProbe(stuck, 5.0, clock=clock)
        results: list = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_run_probe, probe, results)
            await anyio.wait_all_tasks_blocked()
            await clock.advance(4.999)
            assert results == []
            await clock.advance(0.001)
        assert results == [(False, "health check timed out after 5s")]

    @pytest.mark.anyio
    async def test_hung_sync_check_is_abandoned_not_repeated(self) -> None:
        """A sync check stuck in its thread times out, and later calls fail fast until it returns."""
        clock = FakeClock()
        release, entered = threading.Event(), threading.Event()
        calls: list[int] = []

        def stuck() -> bool:
            calls.append(1)
            entered.set()
            release.wait(10)
            return True

        probe = HealthProbe(stuck, 2.0, clock=clock)
        results: list = []
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_run_probe, probe, results)
                assert await anyio.to_thread.run_sync(entered.wait, 5)  # the worker thread is in the check
                await clock.advance(2.0)
            assert results == [(False, "health check timed out after 2s")]
            assert probe.busy
            assert await probe() == (False, "previous health check is still running")
            assert len(calls) == 1
        finally:
            release.set()
        with anyio.fail_after(5):
            while probe.busy:
                await anyio.sleep(0.001)
        assert await probe() == (True, None)

    def test_timeout_must_be_positive(self) -> None:
        """A zero timeout is rejected when the probe is built."""
        with pytest.raises(ValueError, match=r"^timeout must be > 0 \(got 0\)$"):
            HealthProbe(lambda: True, 0)
