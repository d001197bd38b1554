"""Config cron tasks in real child processes: errors, crashes, timeouts, history, trigger."""

from __future__ import annotations

import anyio
import pytest

from tests.harness import running_supervisor

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
T = "tests.sample_actors:"
FAR = 3600  # an interval long enough that only trigger() runs the task


class TestCronInProcesses:
    async def test_raising_run_is_logged_and_next_run_happens(self, tmp_path) -> None:
        """A run that raises is recorded with its traceback; the schedule goes on."""
        cron = {"r": {"target": T + "CronRaisesOnce", "interval": 0.3, "args": {"marker": str(tmp_path / "m")}}}
        async with running_supervisor({}, cron, state_dir=str(tmp_path)) as (sup, log):
            finished = await log.wait_for("cron.run.finished", actor="r", count=2)
            assert finished[0]["outcome"] == "error"
            assert "ValueError: first run fails" in finished[0]["traceback"]
            assert finished[1]["outcome"] == "ok"
            outcomes = [r.outcome for r in sup.cron.history("r")]
            assert "error" in outcomes and "ok" in outcomes

    @pytest.mark.parametrize("how", ["exit", "segfault"])
    async def test_dying_interpreter_leaves_other_tasks_untouched(self, tmp_path, how: str) -> None:
        """os._exit or a segfault in one task's run is an error for it alone; other tasks keep running."""
        cron = {
            "dies": {"target": T + "CronDies", "interval": FAR, "args": {"how": how}},
            "ok": {"target": T + "CronOk", "interval": FAR},
        }
        async with running_supervisor({}, cron, state_dir=str(tmp_path)) as (sup, log):
            await log.wait_for("actor.started", actor="dies")
            await log.wait_for("actor.started", actor="ok")
            ok_pid = sup.handles["ok"].pid
            await sup.cron_trigger("dies")
            died = (await log.wait_for("cron.run.finished", actor="dies"))[0]
            assert died["outcome"] == "error"
            assert ("exit status 9" if how == "exit" else "SIGSEGV") in died["error"]
            await sup.cron_trigger("ok")
            assert (await log.wait_for("cron.run.finished", actor="ok"))[0]["outcome"] == "ok"
            assert sup.handles["ok"].pid == ok_pid
            await log.wait_for("actor.started", actor="dies", count=2)  # restarted by the core policy

    async def test_run_past_timeout_is_killed(self, tmp_path) -> None:
        """A run longer than its timeout ends with outcome timeout, and its process is replaced."""
        cron = {"slow": {"target": T + "CronSlow", "interval": FAR, "timeout": 0.5}}
        async with running_supervisor({}, cron, state_dir=str(tmp_path)) as (sup, log):
            await log.wait_for("actor.started", actor="slow")
            await sup.cron_trigger("slow")
            finished = (await log.wait_for("cron.run.finished", actor="slow"))[0]
            assert finished["outcome"] == "timeout", (finished.get("error"), [e["event"] for e in log.events])
            assert 0.5 <= finished["duration"] < 3
            assert (await log.wait_for("actor.exited", actor="slow"))[0]["reason"] == "run_killed"
            await log.wait_for("actor.started", actor="slow", count=2)

    async def test_trigger_runs_at_once_and_history_survives_restart(self, tmp_path) -> None:
        """trigger() runs a task now; its history is still there for the next supervisor."""
        cron = {"ok": {"target": T + "CronOk", "interval": FAR, "isolation": "per-run"}}
        async with running_supervisor({}, cron, state_dir=str(tmp_path)) as (sup, log):
            run_id = await sup.cron_trigger("ok")
            finished = (await log.wait_for("cron.run.finished", actor="ok"))[0]
            assert finished["run_id"] == run_id
            assert finished["outcome"] == "ok", finished
            assert log.find("cron.sample.ok", actor="ok")
        async with running_supervisor({}, cron, state_dir=str(tmp_path)) as (sup, log):
            history = sup.cron.history("ok")
            assert [r.run_id for r in history] == [run_id]
            assert history[0].outcome == "ok"


class TestShutdownDuringARun:
    async def test_resident_run_gets_the_graceful_stop(self, tmp_path) -> None:
        """Shutdown cancels a resident run in progress (its finally runs), SIGTERM first, nothing restarts."""
        cron = {"f": {"target": T + "CronFinally", "interval": FAR, "stop_timeout": 5}}
        async with running_supervisor({}, cron, state_dir=str(tmp_path)) as (sup, log):
            await log.wait_for("actor.started", actor="f")
            await sup.cron_trigger("f")
            await log.wait_for("cron.finally.begin", actor="f")
        assert log.find("cron.finally.ran", actor="f")
        assert [e["signal"] for e in log.find("actor.signalled", actor="f")] == ["SIGTERM"]
        assert log.find("actor.stop_timeout", actor="f") == []
        assert [e["reason"] for e in log.find("actor.exited", actor="f")] == ["stopped"]
        began = log.find("supervisor.stopping")[0]["seq"]
        assert [e for e in log.find("actor.restarting") if e["seq"] > began] == []
        assert [e for e in log.find("actor.starting") if e["seq"] > began] == []

    async def test_per_run_run_does_not_hold_up_shutdown(self, tmp_path) -> None:
        """A per-run run in progress at shutdown is stopped gracefully, well within stop_timeout."""
        cron = {"f": {"target": T + "CronFinally", "interval": FAR, "isolation": "per-run", "stop_timeout": 5}}
        async with running_supervisor({}, cron, state_dir=str(tmp_path)) as (sup, log):
            await sup.cron_trigger("f")
            await log.wait_for("cron.finally.begin", actor="f")
            began = anyio.current_time()
        took = anyio.current_time() - began
        assert log.find("cron.finally.ran", actor="f")
        assert took < 3, f"shutdown took {took:.2f}s"
        assert [e["reason"] for e in log.find("actor.exited", actor="f")] == ["stopped"]
