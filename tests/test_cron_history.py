"""Run history in SQLite: records, limits, persistence, and catch-up after a restart."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs
from test_cron_fakes import FakeExecutor, QuickClock, events, make_spec, running, settle

from supervisor.cron import HISTORY_FILE, HistoryStore

W0 = 1_700_000_000.0


def record(store: HistoryStore, run_id: str, task: str = "job", at: float = 0.0,
           outcome: str = "ok", limit: int = 100) -> None:
    store.record_started(run_id, task, W0 + at, W0 + at + 0.5, "schedule")
    store.record_finished(run_id, task, W0 + at + 1.5, 1.0, outcome, None, limit)


class TestHistoryStore:
    def test_a_run_is_recorded_with_every_field(self, tmp_path: Path) -> None:
        """run_id, task, scheduled/started/finished times, duration, outcome, error, trigger."""
        with HistoryStore.in_dir(tmp_path) as store:
            store.record_started("r1", "job", W0, W0 + 0.25, "manual")
            store.record_finished("r1", "job", W0 + 2.25, 2.0, "error", "boom", 10)
            (row,) = store.history("job")
        assert (row.run_id, row.task, row.trigger) == ("r1", "job", "manual")
        assert (row.scheduled_at, row.started_at, row.finished_at) == (W0, W0 + 0.25, W0 + 2.25)
        assert (row.duration, row.outcome, row.error) == (2.0, "error", "boom")
        assert (tmp_path / HISTORY_FILE).is_file()

    def test_history_is_kept_to_the_limit_per_task_newest_first(self) -> None:
        """Only the newest history_limit runs of a task stay; other tasks are untouched."""
        with HistoryStore(None) as store:
            for i in range(8):
                record(store, f"a{i}", "a", at=i, limit=3)
            record(store, "b0", "b", limit=3)
            assert [r.run_id for r in store.history("a")] == ["a7", "a6", "a5"]
            assert [r.run_id for r in store.history("b")] == ["b0"]
            assert [r.run_id for r in store.history("a", limit=1)] == ["a7"]

    def test_history_survives_closing_and_reopening(self, tmp_path: Path) -> None:
        """A new store on the same folder sees the runs and the last due time."""
        with HistoryStore.in_dir(tmp_path) as store:
            record(store, "r1")
            store.set_last_due("job", W0 + 60)
        with HistoryStore.in_dir(tmp_path) as store:
            assert [r.run_id for r in store.history("job")] == ["r1"]
            assert store.last_due("job") == W0 + 60
            assert store.last_due("other") is None

    def test_a_run_open_when_the_supervisor_died_is_recorded_as_killed(self, tmp_path: Path) -> None:
        """A run started but never finished (a crash) reads as killed after reopening."""
        store = HistoryStore.in_dir(tmp_path)
        store.record_started("r1", "job", W0, W0, "schedule")
        store.flush()
        store._db.close()  # a crash: no orderly close
        with HistoryStore.in_dir(tmp_path) as store:
            (row,) = store.history("job")
        assert row.outcome == "killed"
        assert row.error == "interrupted: the supervisor stopped during the run"

    def test_the_last_due_time_never_moves_back(self) -> None:
        """set_last_due keeps the latest of the times it is given."""
        with HistoryStore(None) as store:
            store.set_last_due("job", W0 + 20)
            store.set_last_due("job", W0 + 10)
            assert store.last_due("job") == W0 + 20

    @pytest.mark.anyio
    async def test_the_writer_task_commits_queued_writes(self, tmp_path: Path) -> None:
        """Writes are queued, then committed by run_writer() in a thread, with no read forcing them."""
        store = HistoryStore.in_dir(tmp_path)
        reader = sqlite3.connect(tmp_path / HISTORY_FILE)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(store.run_writer)
                await settle()
                record(store, "r1")
                assert reader.execute("SELECT count(*) FROM runs").fetchone() == (0,)
                with anyio.fail_after(10):  # committed by a worker thread
                    while not reader.execute("SELECT outcome FROM runs").fetchall():
                        await anyio.sleep(0.01)
                assert reader.execute("SELECT outcome FROM runs").fetchall() == [("ok",)]
                tg.cancel_scope.cancel()
        finally:
            reader.close()
            store.close()


class TestRestart:
    async def _first_life(self, tmp_path: Path, **spec: object) -> None:
        """A supervisor that ran a 10 s task twice (due at W0+10, W0+20), then stopped."""
        clock = QuickClock(start=1000.0, wall_offset=W0)
        with HistoryStore.in_dir(tmp_path) as store, capture_logs():
            async with running(make_spec(interval=10.0, **spec), FakeExecutor(clock), clock, store):
                await clock.advance(25)

    @pytest.mark.anyio
    async def test_runs_missed_while_down_are_one_misfire_and_one_catch_up_run(self, tmp_path: Path) -> None:
        """Down from W0+25 to W0+125: ten runs missed, one cron.misfire, one catch-up run now."""
        await self._first_life(tmp_path, catch_up=True)
        clock = QuickClock(start=5000.0, wall_offset=W0 + 125)
        executor = FakeExecutor(clock)
        with HistoryStore.in_dir(tmp_path) as store, capture_logs() as logs:
            async with running(make_spec(interval=10.0, catch_up=True), executor, clock, store):
                await clock.advance(6)
            rows = store.history("job")
        misfire, = events(logs, "cron.misfire")
        assert (misfire["reason"], misfire["missed"]) == ("supervisor_down", 10)
        assert executor.starts == [5000.0, 5005.0]  # catch-up now, then on the old phase
        assert [(r.trigger, r.scheduled_at - W0) for r in executor.runs] == [
            ("catch_up", 120.0), ("schedule", 130.0),
        ]
        assert executor.runs[0].missed == 10
        assert len(rows) == 4  # two from each life

    @pytest.mark.anyio
    async def test_without_catch_up_missed_runs_are_skipped_and_the_phase_kept(self, tmp_path: Path) -> None:
        """catch_up = false: the misfire is logged, nothing runs until the next due time."""
        await self._first_life(tmp_path)
        clock = QuickClock(start=5000.0, wall_offset=W0 + 125)
        executor = FakeExecutor(clock)
        with HistoryStore.in_dir(tmp_path) as store, capture_logs() as logs:
            async with running(make_spec(interval=10.0), executor, clock, store):
                await clock.advance(6)
        assert [e["reason"] for e in events(logs, "cron.misfire")] == ["supervisor_down"]
        assert executor.starts == [5005.0]

    @pytest.mark.anyio
    async def test_a_run_due_within_grace_of_the_restart_runs_normally(self, tmp_path: Path) -> None:
        """Back 0.5 s after a due time (grace 1 s): it runs at once, with no misfire."""
        await self._first_life(tmp_path)
        clock = QuickClock(start=5000.0, wall_offset=W0 + 30.5)
        executor = FakeExecutor(clock)
        with HistoryStore.in_dir(tmp_path) as store, capture_logs() as logs:
            async with running(make_spec(interval=10.0), executor, clock, store):
                await clock.advance(0)
        assert events(logs, "cron.misfire") == []
        assert executor.starts == [5000.0]
        assert events(logs, "cron.run.started")[0]["lateness"] == 0.5

    @pytest.mark.anyio
    async def test_a_run_cut_short_by_a_stop_is_recorded_as_killed(self, tmp_path: Path) -> None:
        """Stopping the scheduler mid-run kills the run and records outcome killed."""
        clock = QuickClock(wall_offset=W0)
        with HistoryStore.in_dir(tmp_path) as store, capture_logs() as logs:
            async with running(make_spec(interval=10.0), FakeExecutor(clock, 100.0), clock, store):
                await clock.advance(15)
            (row,) = store.history("job")
        assert (row.outcome, row.duration) == ("killed", 5.0)
        assert row.error == "the task was stopped during the run"
        assert events(logs, "cron.run.finished")[0]["outcome"] == "killed"
