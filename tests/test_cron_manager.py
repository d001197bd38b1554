"""The CronManager facade: the origin document's names, trigger, history."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs
from test_cron_fakes import FakeExecutor, QuickClock, events, make_spec, settle

from actors import CronTask
from supervisor.cron import HISTORY_FILE, CronError, CronManager, CronScheduler, InvalidCronTask
from supervisor.exceptions import UnknownActor

pytestmark = pytest.mark.anyio


class Counter(CronTask):
    """Counts its runs; a run can be held open until released."""

    interval = 10.0

    def __init__(self, hold: bool = False, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.count = 0
        self.hold = hold
        self.release: anyio.Event | None = None
        self.seen_running: list[bool] = []

    async def run(self) -> None:
        self.count += 1
        self.seen_running.append(self.is_running())
        self.log.info("counter.ran", count=self.count)
        if self.hold:
            self.release = anyio.Event()
            await self.release.wait()


class TestCronManager:
    async def test_registered_task_runs_in_process_on_its_interval(self) -> None:
        """register_task + start_all_tasks runs a CronTask every interval, bound to its name."""
        clock = QuickClock()
        task = Counter()
        with capture_logs() as logs:
            async with CronManager(clock=clock) as cron:
                cron.register_task("counter", task)
                await cron.start_all_tasks()
                await clock.advance(35)
                assert [r.outcome for r in cron.history("counter")] == ["ok"] * 3
        assert task.count == 3
        assert task.name == "counter"
        assert task.seen_running == [True] * 3
        assert {e["actor"] for e in events(logs, "counter.ran")} == {"counter"}

    async def test_is_running_is_true_only_during_a_run(self) -> None:
        """CronTask.is_running() reflects a run in progress, also after a stop kills it."""
        clock = QuickClock()
        task = Counter(hold=True)
        with capture_logs():
            async with CronManager(clock=clock) as cron:
                cron.register_task("counter", task)
                await cron.start_task("counter")
                assert not task.is_running()
                await clock.advance(10)
                assert task.is_running()
                await cron.stop_task("counter")
                assert not task.is_running()
                assert not cron.is_started("counter")
                (row,) = cron.history("counter")
        assert row.outcome == "killed"

    async def test_registry_methods_keep_the_origin_names(self) -> None:
        """get_task, list_tasks and unregister_task behave like the origin's."""
        task = Counter()
        async with CronManager(clock=QuickClock()) as cron:
            cron.register_task("a", task)
            cron.register_task("b", Counter())
            assert cron.list_tasks() == ["a", "b"]
            assert cron.get_task("a") is task
            assert cron.get_task("nope") is None
            cron.unregister_task("a")
            assert cron.list_tasks() == ["b"]
            with pytest.raises(UnknownActor, match="no actor or cron task named 'a'"):
                cron.unregister_task("a")
            with pytest.raises(CronError, match="already registered"):
                cron.register_task("b", Counter())

    async def test_unregistering_a_started_task_stops_it(self) -> None:
        """unregister_task on a started task stops its schedule."""
        clock = QuickClock()
        task = Counter()
        with capture_logs():
            async with CronManager(clock=clock) as cron:
                cron.register_task("a", task)
                await cron.start_task("a")
                cron.unregister_task("a")
                await clock.advance(30)
        assert task.count == 0

    async def test_trigger_runs_now_and_history_records_it(self) -> None:
        """trigger(name) starts a run at once; history(name) lists it with outcome ok."""
        clock = QuickClock()
        task = Counter()
        with capture_logs():
            async with CronManager(clock=clock) as cron:
                cron.register_task("counter", task)
                await cron.start_task("counter")
                run_id = await cron.trigger("counter")
                record = await cron.wait_run("counter", run_id)
                assert task.count == 1
                assert record is not None and record.trigger == "manual"
                assert [r.run_id for r in cron.history("counter")] == [run_id]

    async def test_a_task_schedule_and_timezone_come_from_the_cron_task(self) -> None:
        """A CronTask with schedule/timezone is scheduled by its cron expression."""
        task = Counter(schedule="30 1 * * *", timezone="America/New_York")
        async with CronManager(clock=QuickClock()) as cron:
            spec = cron.register_task("nightly", task)
            assert (spec.schedule, spec.timezone, spec.interval) == (
                "30 1 * * *", "America/New_York", None,
            )
            assert cron.describe("nightly")["schedule"] == "30 1 * * * (America/New_York)"

    async def test_options_override_spec_keys_and_unknown_ones_are_rejected(self) -> None:
        """register_task(..., overlap="queue") sets spec keys; a misspelt key is an error."""
        async with CronManager(clock=QuickClock()) as cron:
            spec = cron.register_task("a", Counter(), overlap="queue", timeout=5.0)
            assert (spec.overlap, spec.timeout) == ("queue", 5.0)
            with pytest.raises(InvalidCronTask, match=r"^cron task 'b': "):
                cron.register_task("b", Counter(), overlapp="queue")
            never = r'^cron task \'c\': overlap: expected one of "queue", "replace", "skip", got "never"$'
            with pytest.raises(InvalidCronTask, match=never):
                cron.register_task("c", Counter(), overlap="never")

    async def test_a_config_task_runs_through_the_given_executor(self) -> None:
        """register_task(name, spec=..., executor=...) runs a config task without a CronTask."""
        clock = QuickClock()
        executor = FakeExecutor(clock)
        with capture_logs():
            async with CronManager(clock=clock) as cron:
                cron.register_task("remote", spec=make_spec("remote", interval=5.0), executor=executor)
                assert cron.get_task("remote") is None
                await cron.start_all_tasks()
                await clock.advance(11)
                row = cron.describe("remote")
                await cron.stop_all_tasks()
        assert executor.starts == [1005.0, 1010.0]
        assert row["last_outcome"] == "ok" and row["started"] and not row["running"]
        assert row["next_run_in"] == 4.0

    async def test_history_is_kept_in_the_state_dir_across_managers(self, tmp_path: Path) -> None:
        """With state_dir, a second manager sees the first one's runs."""
        clock = QuickClock()
        with capture_logs():
            async with CronManager(clock=clock, state_dir=tmp_path) as cron:
                cron.register_task("counter", Counter())
                await cron.start_task("counter")
                await clock.advance(10)
            async with CronManager(clock=clock, state_dir=tmp_path) as cron:
                cron.register_task("counter", Counter())
                assert [r.outcome for r in cron.history("counter")] == ["ok"]
        assert (tmp_path / HISTORY_FILE).is_file()

    async def test_starting_before_the_manager_runs_is_an_error(self) -> None:
        """start_task outside `async with CronManager()` says how to run it."""
        cron = CronManager(clock=QuickClock())
        cron.register_task("a", Counter())
        with pytest.raises(CronError, match="the CronManager is not running"):
            await cron.start_task("a")
        cron.history_store.close()

    async def test_the_manager_can_be_hosted_in_a_task_group(self) -> None:
        """await tg.start(cron.serve) works like `async with`."""
        clock = QuickClock()
        task = Counter()
        cron = CronManager(clock=clock)
        with capture_logs():
            async with anyio.create_task_group() as tg:
                await tg.start(cron.serve)
                cron.register_task("a", task)
                await cron.start_task("a")
                await settle()
                await clock.advance(10)
                tg.cancel_scope.cancel()
        assert task.count == 1


class TestSpecValidation:
    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"interval": 0.0}, r"^cron task '.+': interval: expected a number > 0, got 0.0$"),
            ({"interval": 5.0, "schedule": "* * * * *"}, "set either interval or schedule, not both$"),
            ({"interval": None}, r"set interval \(seconds\) or schedule \(a cron expression"),
            ({"schedule": "61 * * * *"}, r'schedule: invalid minute field "61", got "61 \* \* \* \*"$'),
            ({"interval": 5.0, "timezone": "Nowhere/City"}, 'timezone: unknown time zone "Nowhere/City"'),
            ({"jitter": -1.0}, r"jitter: expected a number >= 0, got -1.0$"),
            ({"timeout": 0.0}, r"timeout: expected a number > 0, got 0.0$"),
        ],
    )
    def test_bad_timing_settings_are_rejected_with_the_reason(self, fields: dict, message: str) -> None:
        """A scheduler refuses inconsistent or out-of-range settings, naming the task."""
        clock = QuickClock()
        with pytest.raises(ValueError, match=message):
            CronScheduler(make_spec(**fields), FakeExecutor(clock), clock=clock)


class _CountingClock(QuickClock):
    def __init__(self) -> None:
        super().__init__()
        self.sleeps = 0

    async def sleep_until(self, deadline: float) -> None:
        self.sleeps += 1
        await super().sleep_until(deadline)


async def test_tasks_due_together_share_one_timer_wake_up() -> None:
    """100 tasks due at the same instant: every one starts on time, and the clock saw one sleep per due time."""
    clock = _CountingClock()
    executors = [FakeExecutor(clock) for _ in range(100)]
    with capture_logs():
        async with CronManager(clock=clock) as cron:
            for i, executor in enumerate(executors):
                cron.register_task(f"t{i}", spec=make_spec(f"t{i}"), executor=executor)
            await cron.start_all_tasks()
            await clock.advance(10)
            await settle()
            assert [e.starts for e in executors] == [[1010.0]] * 100
            assert clock.sleeps <= 2  # until 1010, and now until 1020
            await clock.advance(10)
            await settle()
            assert [e.starts for e in executors] == [[1010.0, 1020.0]] * 100
            assert clock.sleeps <= 3
