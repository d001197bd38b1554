"""The cron scheduler on a fake clock: rate, jitter, overlap, timeout, trigger, misfire."""

from __future__ import annotations

import random

import anyio
import pytest
from structlog.testing import capture_logs
from test_cron_fakes import FakeExecutor, QuickClock, events, make_spec, running

from supervisor.cron import CronRun, CronScheduler, TaskBusy, TaskNotRunning

pytestmark = pytest.mark.anyio

RUNS = 10_000


class TestFixedRate:
    async def test_no_drift_over_10000_runs_that_take_most_of_the_interval(self) -> None:
        """The k-th of 10,000 runs lasting 0.9 s starts at exactly start + k x 1 s."""
        clock = QuickClock()
        executor = FakeExecutor(clock, duration=0.9)
        with capture_logs():
            async with running(make_spec(interval=1.0), executor, clock):
                start = clock.now()
                await clock.run_until_idle(limit=RUNS + 0.5)
        assert len(executor.starts) == RUNS
        assert executor.starts == [start + k * 1.0 for k in range(1, RUNS + 1)]
        assert executor.starts[-1] - (start + RUNS * 1.0) == 0.0

    async def test_the_origin_sleep_after_run_loop_drifts_by_each_duration(self) -> None:
        """The origin document's loop (run, then sleep interval) drifts 0.9 s per run."""
        clock = QuickClock()
        executor = FakeExecutor(clock, duration=0.9)

        async def origin_loop() -> None:
            while True:
                await executor.execute(CronRun("seed", "job", clock.wall(), "schedule"))
                await clock.sleep_until(clock.now() + 1.0)

        async with anyio.create_task_group() as tg:
            tg.start_soon(origin_loop)
            await clock.advance(0)
            start = clock.now()
            await clock.run_until_idle(limit=190.5)
            tg.cancel_scope.cancel()
        drift = executor.starts[-1] - (start + (len(executor.starts) - 1) * 1.0)
        assert len(executor.starts) == 101
        assert drift == pytest.approx(100 * 0.9)

    async def test_first_run_comes_one_interval_after_start(self) -> None:
        """With no history, the first run is due at start + interval, not at once."""
        clock = QuickClock()
        executor = FakeExecutor(clock)
        with capture_logs():
            async with running(make_spec(interval=10.0), executor, clock) as sched:
                assert sched.next_due == clock.wall() + 10.0
                await clock.advance(9.9)
                assert executor.starts == []
                await clock.advance(0.1)
        assert executor.starts == [1010.0]

    async def test_started_and_finished_events_carry_run_id_outcome_and_lateness(self) -> None:
        """cron.run.started/finished name the run, its outcome, duration and lateness."""
        clock = QuickClock()
        executor = FakeExecutor(clock, duration=2.5)
        with capture_logs() as logs:
            async with running(make_spec(interval=10.0), executor, clock):
                await clock.advance(13)
        started, = events(logs, "cron.run.started")
        finished, = events(logs, "cron.run.finished")
        assert started["run_id"] == finished["run_id"] == executor.runs[0].run_id
        assert started["lateness"] == 0.0
        assert started["actor"] == "job"
        assert finished["outcome"] == "ok"
        assert finished["duration"] == 2.5
        assert started["scheduled_at"] == "2023-11-14T22:13:30.000+00:00"

    async def test_a_failing_run_is_recorded_and_the_next_run_still_happens(self) -> None:
        """A run that raises ends with outcome error and its traceback; the schedule goes on."""
        clock = QuickClock()
        executor = FakeExecutor(clock, fail="disk full")
        with capture_logs() as logs:
            async with running(make_spec(interval=10.0), executor, clock):
                await clock.advance(25)
        finished = events(logs, "cron.run.finished")
        assert executor.starts == [1010.0, 1020.0]
        assert [e["outcome"] for e in finished] == ["error", "error"]
        assert finished[0]["error"] == "RuntimeError: disk full"
        assert "Traceback (most recent call last)" in finished[0]["traceback"]
        assert finished[0]["log_level"] == "error"


class TestJitter:
    async def test_each_start_is_delayed_by_the_seeded_random_amount_within_bounds(self) -> None:
        """Run k starts at start + k x interval + U[0, jitter), from the injected RNG."""
        clock = QuickClock()
        executor = FakeExecutor(clock)
        with capture_logs():
            async with running(
                make_spec(interval=10.0, jitter=3.0), executor, clock, rng=random.Random(7)
            ):
                start = clock.now()
                await clock.run_until_idle(limit=505.0)
        expected_rng = random.Random(7)
        delays = [expected_rng.random() * 3.0 for _ in range(50)]
        assert executor.starts == [start + (k + 1) * 10.0 + d for k, d in enumerate(delays)]
        offsets = [s - (start + (k + 1) * 10.0) for k, s in enumerate(executor.starts)]
        assert all(0.0 <= o < 3.0 for o in offsets)
        assert max(offsets) - min(offsets) > 1.0  # really random, not a constant offset

    async def test_jitter_never_delays_a_run_past_the_next_due_time(self) -> None:
        """A jitter larger than the interval is capped by the interval, keeping the rate."""
        clock = QuickClock()
        executor = FakeExecutor(clock)
        with capture_logs() as logs:
            async with running(
                make_spec(interval=10.0, jitter=60.0), executor, clock, rng=random.Random(3)
            ):
                start = clock.now()
                await clock.run_until_idle(limit=300.0)
        offsets = [s - (start + (k + 1) * 10.0) for k, s in enumerate(executor.starts)]
        assert len(executor.starts) >= 29
        assert all(0.0 <= o < 10.0 for o in offsets)
        assert events(logs, "cron.misfire") == []


class TestOverlap:
    async def test_skip_drops_due_runs_while_one_is_running(self) -> None:
        """overlap=skip: dues during a 25 s run are skipped (reason overlap); the grid holds."""
        clock = QuickClock()
        executor = FakeExecutor(clock, duration=25.0)
        with capture_logs() as logs:
            async with running(make_spec(interval=10.0, overlap="skip"), executor, clock):
                await clock.advance(45)
        assert executor.starts == [1010.0, 1040.0]
        skipped = events(logs, "cron.run.skipped")
        assert [e["reason"] for e in skipped] == ["overlap", "overlap"]
        assert skipped[0]["running"] == executor.runs[0].run_id

    async def test_queue_starts_one_waiting_run_when_the_running_one_ends(self) -> None:
        """overlap=queue: one due run waits and starts at the end; further ones are skipped."""
        clock = QuickClock()
        executor = FakeExecutor(clock, duration=25.0)
        with capture_logs() as logs:
            async with running(make_spec(interval=10.0, overlap="queue"), executor, clock):
                base = clock.wall()
                await clock.advance(61)
        assert executor.starts == [1010.0, 1035.0, 1060.0]
        assert [r.scheduled_at - base for r in executor.runs] == [10.0, 20.0, 40.0]
        assert [e["reason"] for e in events(logs, "cron.run.skipped")] == [
            "queue_full", "queue_full",
        ]
        late = events(logs, "cron.run.started")[1]
        assert late["lateness"] == 15.0

    async def test_replace_kills_the_running_execution_and_starts_the_new_one(self) -> None:
        """overlap=replace: the running run is killed (outcome killed) and the due one starts."""
        clock = QuickClock()
        executor = FakeExecutor(clock, duration=25.0)
        with capture_logs() as logs:
            async with running(make_spec(interval=10.0, overlap="replace"), executor, clock):
                await clock.advance(35)
        assert executor.starts == [1010.0, 1020.0, 1030.0]
        assert executor.ended == []
        finished = events(logs, "cron.run.finished")
        assert [(e["outcome"], e["duration"]) for e in finished[:2]] == [
            ("killed", 10.0), ("killed", 10.0),
        ]
        assert "overlap" in finished[0]["error"]
        assert events(logs, "cron.run.skipped") == []


class TestTimeout:
    async def test_a_run_past_its_timeout_is_killed_with_outcome_timeout(self) -> None:
        """timeout=5: a 100 s run is cancelled at 5 s, outcome timeout; the next run happens."""
        clock = QuickClock()
        executor = FakeExecutor(clock, duration=100.0)
        with capture_logs() as logs:
            async with running(make_spec(interval=10.0, timeout=5.0), executor, clock):
                await clock.advance(21)
        assert executor.starts == [1010.0, 1020.0]
        first = events(logs, "cron.run.finished")[0]
        assert (first["outcome"], first["duration"]) == ("timeout", 5.0)
        assert first["error"] == "killed after timeout=5s"

    async def test_a_run_within_its_timeout_is_ok(self) -> None:
        """A run shorter than its timeout is not disturbed."""
        clock = QuickClock()
        executor = FakeExecutor(clock, duration=4.0)
        with capture_logs() as logs:
            async with running(make_spec(interval=10.0, timeout=5.0), executor, clock):
                await clock.advance(16)
        assert [e["outcome"] for e in events(logs, "cron.run.finished")] == ["ok"]


class TestTrigger:
    async def test_trigger_runs_at_once_outside_the_schedule(self) -> None:
        """trigger() starts a manual run immediately and returns its run_id."""
        clock = QuickClock()
        executor = FakeExecutor(clock, duration=1.0)
        with capture_logs():
            async with running(make_spec(interval=100.0), executor, clock) as sched:
                await clock.advance(3)
                run_id = await sched.trigger()
                await clock.advance(0)
                assert executor.starts == [1003.0]
                assert executor.runs[0].run_id == run_id
                assert executor.runs[0].trigger == "manual"
                await clock.advance(1)
                record = await sched.wait_run(run_id)
        assert record is not None and record.outcome == "ok"
        assert record.duration == 1.0

    async def test_trigger_while_running_with_skip_raises_task_busy(self) -> None:
        """overlap=skip refuses a manual run while one is in progress, naming it."""
        clock = QuickClock()
        executor = FakeExecutor(clock, duration=50.0)
        with capture_logs():
            async with running(make_spec(interval=100.0), executor, clock) as sched:
                first = await sched.trigger()
                await clock.advance(1)
                with pytest.raises(TaskBusy, match=f"still running run {first}"):
                    await sched.trigger()

    async def test_trigger_with_queue_runs_after_the_current_run(self) -> None:
        """overlap=queue: a manual run waits for the running one, then starts."""
        clock = QuickClock()
        executor = FakeExecutor(clock, duration=5.0)
        with capture_logs():
            async with running(make_spec(interval=100.0, overlap="queue"), executor, clock) as s:
                await s.trigger()
                await clock.advance(0)
                await clock.advance(1)
                await s.trigger()
                await clock.advance(5)
        assert executor.starts == [1000.0, 1005.0]
        assert [r.trigger for r in executor.runs] == ["manual", "manual"]

    async def test_trigger_of_a_stopped_scheduler_raises(self) -> None:
        """A scheduler that is not running refuses trigger() with a clear error."""
        clock = QuickClock()
        sched = CronScheduler(make_spec(), FakeExecutor(clock), clock=clock)
        with pytest.raises(TaskNotRunning, match=r"^cron task 'job' is not started; call start_task\('job'\) first$"):
            await sched.trigger()


class TestMisfire:
    async def test_an_executor_not_ready_within_grace_is_a_misfire_and_the_run_is_skipped(self) -> None:
        """An actor still restarting after misfire_grace: cron.misfire (not_ready), no run."""
        clock = QuickClock()
        executor = FakeExecutor(clock)
        executor.set_ready(False)
        with capture_logs() as logs:
            async with running(make_spec(interval=10.0, misfire_grace=1.0), executor, clock):
                await clock.advance(10.5)
                assert events(logs, "cron.misfire") == []
                await clock.advance(0.5)
                misfire, = events(logs, "cron.misfire")
                executor.set_ready(True)
                await clock.advance(9)
        assert misfire["reason"] == "not_ready"
        assert misfire["catch_up"] is False
        assert executor.starts == [1020.0]

    async def test_catch_up_runs_once_when_the_executor_is_ready_again(self) -> None:
        """catch_up: runs missed while the actor was down become one run when it is back."""
        clock = QuickClock()
        executor = FakeExecutor(clock)
        executor.set_ready(False)
        with capture_logs() as logs:
            async with running(
                make_spec(interval=10.0, misfire_grace=1.0, catch_up=True), executor, clock
            ):
                await clock.advance(25)
                executor.set_ready(True)
                await clock.advance(0)
                await clock.advance(6)
        assert executor.starts == [1025.0, 1030.0]
        assert [r.trigger for r in executor.runs] == ["catch_up", "schedule"]
        reasons = [(e["reason"], e.get("coalesced_into")) for e in events(logs, "cron.misfire")]
        assert reasons == [("not_ready", None), ("not_ready", executor.runs[0].run_id)]

    async def test_a_late_wakeup_past_grace_is_a_misfire_counting_every_missed_run(self) -> None:
        """A wall-clock jump of an hour (suspend) misses six 10-minute runs: one misfire, no run."""
        clock = QuickClock(wall_offset=1_704_067_205.0)  # 2024-01-01 00:00:05 UTC
        executor = FakeExecutor(clock)
        with capture_logs() as logs:
            async with running(
                make_spec(schedule="*/10 * * * *", timezone="UTC"), executor, clock
            ):
                await clock.advance(300)
                clock.set_wall(clock.wall() + 3600)  # 01:05:05
                await clock.advance(60)
                misfire, = events(logs, "cron.misfire")
                assert executor.starts == []
                await clock.advance(300)  # 01:11:05
        assert (misfire["reason"], misfire["missed"]) == ("late", 6)
        assert len(executor.starts) == 1
        assert executor.runs[0].scheduled_at == 1_704_071_400.0  # 01:10

    async def test_a_late_wakeup_with_catch_up_coalesces_the_missed_runs_into_one(self) -> None:
        """With catch_up the six missed runs become one run, at once, for the latest due time."""
        clock = QuickClock(wall_offset=1_704_067_205.0)
        executor = FakeExecutor(clock)
        with capture_logs() as logs:
            async with running(
                make_spec(schedule="*/10 * * * *", timezone="UTC", catch_up=True), executor, clock
            ):
                await clock.advance(300)
                clock.set_wall(clock.wall() + 3600)
                await clock.advance(60)
        assert len(events(logs, "cron.misfire")) == 1
        assert [r.trigger for r in executor.runs] == ["catch_up"]
        assert executor.runs[0].missed == 6
        assert executor.runs[0].scheduled_at == 1_704_070_800.0  # 01:00


class TestPause:
    async def test_paused_scheduler_has_no_due_times_and_refuses_a_trigger(self) -> None:
        """pause(): next_due is None, due times pass without a run or misfire, trigger raises; the run goes on."""
        clock = QuickClock()
        executor = FakeExecutor(clock, duration=5.0)
        with capture_logs() as logs:
            async with running(make_spec(interval=10.0, overlap="queue"), executor, clock) as sched:
                await clock.advance(10)  # the first run starts, lasting 5 s
                await sched.trigger()  # queued behind it
                sched.pause()
                assert sched.next_due is None and not sched.started
                with pytest.raises(TaskNotRunning):
                    await sched.trigger()
                await clock.advance(100)
        assert executor.starts == [1010.0]  # the queued run never started, nothing else was due
        assert [e["outcome"] for e in events(logs, "cron.run.finished")] == ["ok"]
        assert events(logs, "cron.misfire") == []
