"""Built-in tasks (CleanupTask, HeartbeatTask) and the reminder example."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from actors.builtin import CleanupTask, HeartbeatTask
from supervisor.config import load_config

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "reminder"
DAY = 86400.0


def touch(path: Path, age: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * 10)
    when = time.time() - age
    os.utime(path, (when, when))
    return path


class TestCleanupTask:
    def test_defaults_match_the_origin_document(self) -> None:
        """CleanupTask runs every 3600 s unless told otherwise."""
        assert CleanupTask().get_interval() == 3600.0
        assert CleanupTask(60).get_interval() == 60.0

    @pytest.mark.anyio
    async def test_deletes_only_old_matching_files(self, tmp_path: Path) -> None:
        """Old files matching the pattern go; new ones, others, folders, links and subfolders stay."""
        logs, spool = tmp_path / "logs", tmp_path / "spool"
        old_log = touch(logs / "a.jsonl.1", 8 * DAY)
        new_log = touch(logs / "a.jsonl.2", 1 * DAY)
        old_other = touch(logs / "keep.txt", 8 * DAY)
        nested = touch(logs / "sub" / "b.jsonl.1", 8 * DAY)
        old_seg = touch(spool / "seg.jsonl.9", 30 * DAY)
        (logs / "link.jsonl.3").symlink_to(nested)
        (logs / "dir.jsonl.4").mkdir()
        task = CleanupTask(paths=[str(logs), str(spool), str(tmp_path / "gone")],
                           max_age=7 * DAY, pattern="*.jsonl.*")
        with capture_logs() as logs_seen:
            await task.run()
        assert not old_log.exists() and not old_seg.exists()
        assert new_log.exists() and old_other.exists() and nested.exists()
        assert (logs / "link.jsonl.3").is_symlink() and (logs / "dir.jsonl.4").is_dir()
        (event,) = [e for e in logs_seen if e["event"] == "cleanup.finished"]
        assert (event["removed"], event["kept"], event["bytes_freed"]) == (2, 1, 20)
        assert (event["missing"], event["errors"]) == (1, 0)

    def test_recursive_also_sweeps_subfolders(self, tmp_path: Path) -> None:
        """recursive=True removes old files below the folder too."""
        nested = touch(tmp_path / "a" / "b" / "old.log", 2 * DAY)
        counts = CleanupTask(paths=[tmp_path], max_age=DAY, recursive=True).sweep(time.time())
        assert not nested.exists()
        assert counts["removed"] == 1

    def test_a_single_string_for_paths_is_rejected(self) -> None:
        """paths must be a list; a bare string would be swept character by character."""
        with pytest.raises(TypeError, match=r"^paths must be a list of folders"):
            CleanupTask(paths="logs")  # type: ignore[arg-type]

    def test_unknown_args_are_rejected(self) -> None:
        """A misspelt config arg fails when the task is built, naming it."""
        with pytest.raises(TypeError, match="max_agee"):
            CleanupTask(max_agee=5)  # type: ignore[call-arg]


class TestHeartbeatTask:
    def test_defaults_match_the_origin_document(self) -> None:
        """HeartbeatTask runs every 30 s by default."""
        assert HeartbeatTask().get_interval() == 30.0

    @pytest.mark.anyio
    async def test_each_run_emits_a_system_heartbeat_summary(self) -> None:
        """A run logs system.heartbeat with process and host figures and the status hook."""
        async def status() -> dict[str, str]:
            return {"overall": "healthy"}

        task = HeartbeatTask(status=status)
        with capture_logs() as logs:
            await task.run()
            await task.run()
        beats = [e for e in logs if e["event"] == "system.heartbeat"]
        assert [b["beat"] for b in beats] == [1, 2]
        assert beats[0]["pid"] == os.getpid()
        assert beats[0]["rss"] > 0 and beats[0]["status"] == {"overall": "healthy"}
        assert {"uptime", "cpu_percent", "threads", "load1", "memory_percent"} <= set(beats[0])


class TestReminderExample:
    def test_the_example_config_is_valid(self) -> None:
        """examples/reminder/actorsup.toml loads, with the reminder's args."""
        config = load_config(EXAMPLE / "actorsup.toml")
        specs = {spec.name: spec for spec in config.cron}
        assert specs["reminder"].target == "reminder:Reminder"
        assert specs["reminder"].args["every_nth"] == 3
        assert specs["standup"].timezone == "Europe/Berlin"
        assert specs["cleanup"].isolation == "per-run"

    @pytest.mark.anyio
    async def test_the_reminder_logs_its_message_and_warns_every_nth_run(self) -> None:
        """Reminder(message, every_nth=2) logs each run and warns on the second."""
        import sys

        sys.path.insert(0, str(EXAMPLE))
        try:
            from reminder import Reminder
        finally:
            sys.path.remove(str(EXAMPLE))
        task = Reminder(message="drink water", every_nth=2)
        with capture_logs() as logs:
            await task.run()
            await task.run()
        assert [e["event"] for e in logs] == ["reminder.sent", "reminder.sent", "reminder.overdue"]
        assert logs[0]["message"] == "drink water"
