"""Every CLI command end to end against a real `actorsup run` subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import anyio
import pytest

from tests.harness import cli_supervisor

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CONFIG = """
[supervisor]
heartbeat_interval = 0.2
heartbeat_timeout = 5.0
control_socket = "ctl.sock"

[actors.alpha]
target = "tests.sample_actors:Steady"

[actors.beta]
target = "tests.sample_actors:Steady"

[cron.job]
target = "tests.sample_actors:CronOk"
interval = 3600
"""


async def cli(config, *args: str, check: bool = True, by_socket: bool = False) -> subprocess.CompletedProcess[bytes]:
    where = ["--socket", str(config.parent / "ctl.sock")] if by_socket else ["-c", str(config)]
    result = await anyio.run_process(
        [sys.executable, "-m", "supervisor", *args, *where],
        check=False, env=dict(os.environ, PYTHONPATH=os.getcwd()),
    )
    if check and result.returncode != 0:
        raise AssertionError(f"actorsup {' '.join(args)} -> {result.returncode}: {result.stderr.decode()}")
    return result


async def cli_json(config, *args: str):
    return json.loads((await cli(config, *args, "--json")).stdout)


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "actorsup.toml"
    path.write_text(textwrap.dedent(CONFIG))
    return path


class TestControlEndToEnd:
    async def test_status_heartbeat_and_lifecycle_commands(self, config) -> None:
        """status/heartbeat status --json have their documented shapes; stop/start/restart work."""
        async with cli_supervisor(config) as sup:
            for name in ("alpha", "beta", "job"):
                await sup.log.wait_for("actor.started", actor=name)
            rows = {r["name"]: r for r in await cli_json(config, "status")}
            assert set(rows) == {"alpha", "beta", "job"}
            assert rows["job"]["kind"] == "cron" and rows["alpha"]["kind"] == "process"
            for row in rows.values():
                assert row["state"] == "running" and row["pid"] > 0
                assert set(row) >= {"uptime", "restarts", "last_beat_age", "cpu_percent", "rss", "last_error"}
            beat = await cli_json(config, "heartbeat", "status")
            assert beat["status"] == "healthy"
            assert set(beat["components"]) == {"alpha", "beta", "job"}
            assert beat["counts"]["healthy"] == 3

            await cli(config, "stop", "alpha")
            await sup.log.wait_for("actor.stopped", actor="alpha")
            rows = {r["name"]: r for r in await cli_json(config, "status")}
            assert rows["alpha"]["state"] == "stopped" and rows["alpha"]["pid"] is None
            await cli(config, "start", "alpha")
            await sup.log.wait_for("actor.started", actor="alpha", count=2)
            await cli(config, "restart", "beta")
            await sup.log.wait_for("actor.started", actor="beta", count=2)

            missing = await cli(config, "stop", "nope", check=False)
            assert missing.returncode == 1
            assert b"no actor or cron task named 'nope'" in missing.stderr

    async def test_logs_cron_and_shutdown(self, config) -> None:
        """logs tails the ring buffer, cron list/trigger drive the task, shutdown exits 0."""
        async with cli_supervisor(config) as sup:
            await sup.log.wait_for("actor.started", actor="job")
            await sup.log.wait_for("steady.up", actor="alpha")
            tail = (await cli(config, "logs", "-n", "50", "alpha", "--json")).stdout.decode().splitlines()
            events = [json.loads(line) for line in tail]
            assert events and all(e["actor"] == "alpha" for e in events)
            assert any(e["event"] == "steady.up" for e in events)

            listing = await cli_json(config, "cron", "list")
            assert [t["name"] for t in listing] == ["job"]
            await cli(config, "cron", "trigger", "job")
            finished = (await sup.log.wait_for("cron.run.finished", actor="job"))[0]
            assert finished["outcome"] == "ok"

            await cli(config, "shutdown")
            with anyio.fail_after(20):
                assert await sup.process.wait() == 0

    async def test_events_streams_state_changes(self, config) -> None:
        """`actorsup events` prints state changes as JSON lines while they happen."""
        async with cli_supervisor(config) as sup:
            await sup.log.wait_for("actor.started", actor="alpha")
            async with await anyio.open_process(
                [sys.executable, "-m", "supervisor", "events", "-c", str(config)],
                env=dict(os.environ, PYTHONPATH=os.getcwd()),
            ) as events:
                buffer = b""
                with anyio.fail_after(20):
                    await sup.log.wait_for("control.stream_opened", cmd="events")
                    await cli(config, "restart", "alpha")
                    while b'"actor.stopped"' not in buffer:
                        buffer += await events.stdout.receive()
                events.kill()
            lines = [json.loads(line) for line in buffer.splitlines() if line.strip()]
            assert any(e["event"] == "actor.stopping" and e["actor"] == "alpha" for e in lines)

    async def test_reload_added_removed_changed_and_invalid(self, config) -> None:
        """reload starts added, stops removed, restarts only changed; a bad config is refused."""
        async with cli_supervisor(config) as sup:
            for name in ("alpha", "beta", "job"):
                await sup.log.wait_for("actor.started", actor=name)
            beta_pid = sup.log.find("actor.started", actor="beta")[0]["pid"]
            text = CONFIG.replace("[actors.alpha]\ntarget = \"tests.sample_actors:Steady\"\n", "")
            text = text.replace('[actors.beta]\ntarget = "tests.sample_actors:Steady"',
                                '[actors.beta]\ntarget = "tests.sample_actors:Steady"\n\n'
                                '[actors.gamma]\ntarget = "tests.sample_actors:Steady"')
            text = text.replace("interval = 3600", "interval = 1800")
            config.write_text(textwrap.dedent(text))
            result = json.loads((await cli(config, "reload", "--json")).stdout)
            assert result == {"added": ["gamma"], "removed": ["alpha"], "changed": ["job"]}
            await sup.log.wait_for("actor.started", actor="gamma")
            await sup.log.wait_for("actor.stopped", actor="alpha")
            rows = {r["name"]: r for r in await cli_json(config, "status")}
            assert set(rows) == {"beta", "gamma", "job"}
            assert rows["beta"]["pid"] == beta_pid  # unchanged: not restarted

            config.write_text(text + '\n[actors.bad]\ntarget = "tests.sample_actors:Steady"\nstop_timeout = "x"\n')
            refused = await cli(config, "reload", check=False, by_socket=True)
            assert refused.returncode == 1
            assert b"actors.bad.stop_timeout: expected a number >= 0" in refused.stderr
            status = await cli(config, "status", "--json", by_socket=True)
            rows = {r["name"]: r for r in json.loads(status.stdout)}
            assert set(rows) == {"beta", "gamma", "job"}

    async def test_no_supervisor_is_a_clear_error(self, tmp_path) -> None:
        """With nothing at the socket the CLI says so in one line and exits 1."""
        path = tmp_path / "actorsup.toml"
        path.write_text(textwrap.dedent(CONFIG))
        result = await cli(path, "status", check=False)
        assert result.returncode == 1
        assert b"no supervisor is listening at" in result.stderr
        assert b"Traceback" not in result.stderr


class TestResourceLimits:
    async def test_rss_limit_restarts_an_allocating_actor(self) -> None:
        """An actor growing past max_rss is restarted with reason rss_limit."""
        from tests.harness import running_supervisor

        actors = {"hog": {"target": "tests.sample_actors:Allocates", "max_rss": "100MiB", "max_restarts": 10}}
        async with running_supervisor(actors) as (_sup, log):
            limit = (await log.wait_for("actor.resource_limit", actor="hog"))[0]
            assert limit["reason"] == "rss_limit" and limit["rss"] > 100 * 1024 * 1024
            exited = (await log.wait_for("actor.exited", actor="hog"))[0]
            assert exited["reason"] == "rss_limit"
            await log.wait_for("actor.started", actor="hog", count=2)


class TestRestartTellsTheTruth:
    async def test_restart_of_code_that_no_longer_imports_fails(self, tmp_path) -> None:
        """restart after the actor's module broke: exit 1 naming the error; a fixed module: exit 0."""
        module = tmp_path / "myactor.py"
        good = "from actors import Actor\nimport anyio\n\nclass Web(Actor):\n    async def run(self):\n" \
               "        await anyio.sleep_forever()\n"
        module.write_text(good)
        config = tmp_path / "actorsup.toml"
        config.write_text('[supervisor]\ncontrol_socket = "ctl.sock"\n\n[actors.web]\ntarget = "myactor:Web"\n')
        async with cli_supervisor(config) as sup:
            await sup.log.wait_for("actor.started", actor="web")
            module.write_text("import no_such_module_anywhere\n" + good)
            broken = await cli(config, "restart", "web", check=False)
            assert broken.returncode == 1, broken.stdout
            err = broken.stderr.decode()
            assert err.startswith("actorsup: restart web: it is ") and "no_such_module_anywhere" in err, err
            assert err.endswith("; see `actorsup logs web`\n")
            module.write_text(good)
            fixed = await cli(config, "restart", "web")
            assert fixed.stdout.decode().startswith("restarted web (pid ")


class TestStoppedCronTask:
    async def test_trigger_of_a_stopped_cron_task_is_refused(self, config) -> None:
        """After `stop job`, `cron trigger job` is refused with a message instead of a phantom run_id."""
        async with cli_supervisor(config) as sup:
            await sup.log.wait_for("supervisor.started")
            await cli(config, "stop", "job")
            refused = await cli(config, "cron", "trigger", "job", check=False)
            assert refused.returncode == 1
            assert refused.stderr.decode() == ("actorsup: cron trigger: 'job' is stopped; start it first "
                                               "(`actorsup start job`), then trigger it\n")
            await cli(config, "start", "job")
            triggered = await cli(config, "cron", "trigger", "job")
            assert triggered.stdout.decode().startswith("triggered job: run_id ")
