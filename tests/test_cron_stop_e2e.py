"""`actorsup stop` pauses a cron task and `actorsup start` resumes it, through a real `actorsup run`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from tests.harness import CliSupervisor, cli_supervisor, running_supervisor

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CONFIG = """
[supervisor]
heartbeat_interval = 0.2
heartbeat_timeout = 5.0
control_socket = "ctl.sock"
state_dir = "state"

[cron.report]
target = "tests.sample_actors:CronOk"
interval = 0.3
isolation = "{isolation}"

[cron.tick]
target = "tests.sample_actors:CronOk"
interval = 0.3
"""


async def cli(config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    result = await anyio.run_process(
        [sys.executable, "-m", "supervisor", *args, "-c", str(config)],
        check=False, env=dict(os.environ, PYTHONPATH=os.getcwd()),
    )
    if check and result.returncode != 0:
        raise AssertionError(f"actorsup {' '.join(args)} -> {result.returncode}: {result.stderr.decode()}")
    return result


async def cron_row(config: Path, name: str) -> dict[str, object]:
    rows = json.loads((await cli(config, "cron", "list", "--json")).stdout)
    return next(row for row in rows if row["name"] == name)


def report_events(sup: CliSupervisor, after: int) -> list[str]:
    return [e["event"] for e in sup.log.events[after:]
            if e.get("actor") == "report" and str(e.get("event")).startswith("cron.")]


@pytest.mark.parametrize("isolation", ["resident", "per-run"])
async def test_stopped_cron_task_is_paused_until_started(tmp_path: Path, isolation: str) -> None:
    """A stopped cron task has no due times, shows stopped, refuses a trigger, and runs again once started."""
    config = tmp_path / "actorsup.toml"
    config.write_text(textwrap.dedent(CONFIG.format(isolation=isolation)))
    async with cli_supervisor(config) as sup:
        await sup.log.wait_for("cron.run.finished", actor="report")
        await cli(config, "stop", "report")
        stopped_at = len(sup.log.events)
        row = await cron_row(config, "report")
        assert row["started"] is False and row["next_run_at"] is None, row

        # Five of tick's due times pass: report, stopped, has none of its own.
        ticks = len(sup.log.find("cron.run.finished", actor="tick"))
        await sup.log.wait_for("cron.run.finished", actor="tick", count=ticks + 5)
        assert report_events(sup, stopped_at) == []

        refused = await cli(config, "cron", "trigger", "report", check=False)
        assert (refused.returncode, refused.stdout) == (1, b"")
        assert refused.stderr.decode() == ("actorsup: cron trigger: 'report' is stopped; start it first "
                                           "(`actorsup start report`), then trigger it\n")

        await cli(config, "start", "report")
        row = await cron_row(config, "report")
        assert row["started"] is True and row["next_run_at"] is not None, row
        runs = len(sup.log.find("cron.run.finished", actor="report"))
        await sup.log.wait_for("cron.run.finished", actor="report", outcome="ok", count=runs + 2)
        # What it missed while stopped is no misfire; the next trigger is not blocked.
        assert "cron.misfire" not in report_events(sup, stopped_at)
        triggered = await cli(config, "cron", "trigger", "report", check=False)
        assert triggered.returncode == 0 or b"still running" in triggered.stderr, triggered.stderr


async def test_unknown_name_lists_per_run_cron_tasks(tmp_path: Path) -> None:
    """A typo's known names include per-run cron tasks, which have no status row."""
    config = tmp_path / "actorsup.toml"
    config.write_text(textwrap.dedent(CONFIG.format(isolation="per-run")))
    async with cli_supervisor(config) as sup:
        await sup.log.wait_for("supervisor.started")
        typo = await cli(config, "stop", "reprot", check=False)
        assert typo.returncode == 1
        assert typo.stderr.decode() == ("actorsup: stop: no actor or cron task named 'reprot'; "
                                        "known names: tick, report\n")


async def test_restart_of_a_stopped_cron_task_schedules_it_again(tmp_path: Path) -> None:
    """`restart` of a stopped cron task (like `start`) starts its scheduler again."""
    cron = {"job": {"target": "tests.sample_actors:CronOk", "interval": 3600}}
    async with running_supervisor({}, cron, state_dir=str(tmp_path)) as (sup, log):
        await log.wait_for("actor.started", actor="job")
        await sup.stop_actor("job")
        assert sup.cron_list()[0]["started"] is False
        await sup.restart_actor("job")
        assert sup.cron_list()[0]["started"] is True
        await sup.cron_trigger("job")
        assert (await log.wait_for("cron.run.finished", actor="job"))[0]["outcome"] == "ok"


@pytest.mark.parametrize("isolation", ["resident", "per-run"])
async def test_stop_during_a_run_stops_it_gracefully(tmp_path: Path, isolation: str) -> None:
    """`stop` during a run: its process gets SIGTERM (its finally runs), the run is recorded, nothing restarts."""
    cron = {"f": {"target": "tests.sample_actors:CronFinally", "interval": 3600, "isolation": isolation,
                  "stop_timeout": 5}}
    async with running_supervisor({}, cron, state_dir=str(tmp_path)) as (sup, log):
        await sup.cron_trigger("f")
        await log.wait_for("cron.finally.begin", actor="f")
        with anyio.fail_after(4):  # well within stop_timeout: no SIGKILL
            await sup.stop_actor("f")
        assert log.find("cron.finally.ran", actor="f")
        assert [e["reason"] for e in log.find("actor.exited", actor="f")] == ["stopped"]
        assert (await log.wait_for("cron.run.finished", actor="f"))[0]["outcome"] in ("error", "killed")
        assert sup.cron_list()[0]["started"] is False
        stopped = log.find("actor.exited", actor="f")[0]["seq"]
        assert [e for e in log.find("actor.starting", actor="f") if e["seq"] > stopped] == []
