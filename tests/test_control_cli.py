"""The CLI commands, called in-process against a fake supervisor on a real socket."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from supervisor.control import ControlServer, add_control_commands
from supervisor.control._commands import resolve_socket
from supervisor.control.testing import FakeTarget, make_rows
from supervisor.exceptions import ConfigError

pytestmark = pytest.mark.anyio


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="actorsup")
    add_control_commands(main.add_subparsers(dest="command", required=True))
    return main


@pytest.fixture
def sock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.delenv("ACTORSUP_SOCKET", raising=False)
    with tempfile.TemporaryDirectory(prefix="ctl-", dir="/tmp") as d:
        yield Path(d) / "s.sock"


@asynccontextmanager
async def serving(target: FakeTarget, path: Path, **kw: Any) -> AsyncIterator[anyio.abc.TaskGroup]:
    # capture_logs: structlog's default logger would print into the captured stdout.
    with capture_logs():
        async with anyio.create_task_group() as tg:
            await tg.start(ControlServer(target, path, **kw).serve)
            yield tg
            tg.cancel_scope.cancel()


async def cli(*argv: str) -> int:
    """Parse and run one command in a worker thread (the CLI blocks on its socket)."""
    args = parser().parse_args(argv)
    with anyio.fail_after(10):
        return await anyio.to_thread.run_sync(args.func, args)


class ReadsCounted(FakeTarget):
    """A FakeTarget that announces each status read (the CLI polls status while an actor comes up)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads_after_start = 0
        self._read = anyio.Event()

    def status(self) -> list[dict[str, Any]]:
        if self.calls:  # a lifecycle request came
            self.reads_after_start += 1
            self._read.set()
            self._read = anyio.Event()
        return super().status()

    async def wait_reads_after_start(self, n: int) -> None:
        with anyio.fail_after(10):
            while self.reads_after_start < n:
                await self._read.wait()


async def poll(predicate: Any) -> None:
    with anyio.fail_after(5):
        while not predicate():
            await anyio.sleep(0.005)


class TestStatus:
    async def test_table(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """status prints one table row per actor with humanised columns."""
        target = FakeTarget(make_rows(3))
        target.rows["actor-001"].update(state="backoff", last_error="exit code 1", pid=None)
        async with serving(target, sock):
            assert await cli("status", "--socket", str(sock)) == 0
        out = capsys.readouterr().out
        assert out.split("\n")[0].split() == ["NAME", "KIND", "STATE", "PID", "UPTIME", "RESTARTS",
                                              "BEAT", "AGE", "CPU", "%", "RSS", "LAST", "ERROR"]
        assert "actor-000  process  running  10000     12s         0      0.2s    1.5  30.0 MiB" in out
        assert "actor-001  process  backoff      -" in out and "exit code 1" in out

    async def test_json(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """status --json prints the rows exactly as the supervisor sent them."""
        target = FakeTarget(make_rows(5))
        async with serving(target, sock):
            assert await cli("status", "--json", "--socket", str(sock)) == 0
        assert json.loads(capsys.readouterr().out) == make_rows(5)

    async def test_watch_json(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """status --watch --json prints one JSON document per refresh."""
        async with serving(FakeTarget(), sock):
            assert await cli("status", "--watch", "--json", "--count", "3", "--interval", "0",
                             "--socket", str(sock)) == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 3 and all(len(json.loads(line)) == 3 for line in lines)

    async def test_watch_outlasts_the_idle_timeout(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """status --watch with an interval longer than the server's idle timeout keeps working."""
        async with serving(FakeTarget(), sock, idle_timeout=0.05):
            assert await cli("status", "--watch", "--json", "--count", "2", "--interval", "0.3",
                             "--socket", str(sock)) == 0
        assert len(capsys.readouterr().out.splitlines()) == 2

    async def test_watch_table(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """status --watch redraws the table with rich.live until the count is reached."""
        async with serving(FakeTarget(), sock):
            assert await cli("status", "--watch", "--count", "2", "--interval", "0",
                             "--socket", str(sock)) == 0
        assert "actor-002" in capsys.readouterr().out


class TestHeartbeat:
    async def test_json_shape(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """heartbeat status --json prints status, counts and components."""
        target = FakeTarget()
        target.rows["actor-002"]["state"] = "errored"
        async with serving(target, sock):
            assert await cli("heartbeat", "status", "--json", "--socket", str(sock)) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["status"] == "error"
        assert report["counts"] == {"total": 3, "healthy": 2, "error": 1, "unknown": 0}
        assert set(report["components"]) == {"actor-000", "actor-001", "actor-002"}

    async def test_human(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """heartbeat status prints the overall status, the counts and a row per component."""
        async with serving(FakeTarget(), sock):
            assert await cli("heartbeat", "status", "--socket", str(sock)) == 0
        out = capsys.readouterr().out
        assert out.startswith("status: healthy  total=3  healthy=3  error=0  unknown=0\n")
        assert "actor-001  healthy" in out


    @pytest.mark.parametrize("state, code", [("running", 0), ("errored", 1)])
    async def test_check_exits_non_zero_unless_healthy(self, sock: Path, state: str, code: int,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
        """heartbeat status --check exits 1 when the overall status is not healthy (a HEALTHCHECK)."""
        target = FakeTarget()
        target.rows["actor-001"]["state"] = state
        async with serving(target, sock):
            assert await cli("heartbeat", "status", "--check", "--json", "--socket", str(sock)) == code
            assert await cli("heartbeat", "status", "--socket", str(sock)) == 0  # without --check: 0
        assert json.loads(capsys.readouterr().out.splitlines()[0])["status"] == ("healthy" if code == 0 else "error")

    async def test_check_with_no_components_is_not_healthy(self, sock: Path) -> None:
        """An unknown overall status (nothing reported yet) fails --check too."""
        async with serving(FakeTarget([]), sock):
            assert await cli("heartbeat", "status", "--check", "--json", "--socket", str(sock)) == 1


class TestLifecycle:
    @pytest.mark.parametrize("cmd, word", [("start", "started"), ("stop", "stopped"), ("restart", "restarted")])
    async def test_commands(self, sock: Path, capsys: pytest.CaptureFixture[str], cmd: str, word: str) -> None:
        """start/stop/restart NAME act on the named actor and confirm it."""
        target = FakeTarget()
        async with serving(target, sock):
            assert await cli(cmd, "actor-001", "--socket", str(sock)) == 0
        pid = "" if cmd == "stop" else " (pid 10001)"
        assert capsys.readouterr().out == f"{word} actor-001{pid}\n"
        assert target.calls == [(cmd, "actor-001")]

    @pytest.mark.parametrize("cmd", ["start", "restart"])
    async def test_an_actor_that_does_not_come_up_is_a_failure(
            self, sock: Path, capsys: pytest.CaptureFixture[str], cmd: str) -> None:
        """start/restart of an actor whose code no longer imports: exit 1 with its error, not success."""
        target = FakeTarget()
        target.start_outcome["actor-001"] = {
            "state": "backoff", "pid": None,
            "last_error": {"error": "ModuleNotFoundError: No module named 'gone'", "exit_code": 1}}
        async with serving(target, sock):
            assert await cli(cmd, "actor-001", "--socket", str(sock)) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err == (f"actorsup: {cmd} actor-001: it is backoff: ModuleNotFoundError: No module "
                                "named 'gone'; see `actorsup logs actor-001`\n")

    async def test_starting_a_failed_actor_waits_for_it_to_leave_failed(
            self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """start of a failed actor is not judged by the failed state it still shows just after."""
        target = ReadsCounted()
        target.rows["actor-001"]["state"] = "failed"
        target.start_outcome["actor-001"] = {"state": "failed"}  # the handle has not moved yet
        async with serving(target, sock):
            async def comes_up() -> None:  # once the CLI has read "failed" after its start, and read again
                await target.wait_reads_after_start(2)
                target.rows["actor-001"]["state"] = "running"

            async with anyio.create_task_group() as tg:
                tg.start_soon(comes_up)
                assert await cli("start", "actor-001", "--socket", str(sock)) == 0
        assert capsys.readouterr().out == "started actor-001 (pid 10001)\n"

    async def test_an_actor_still_starting_at_the_timeout(
            self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """An actor that stays starting past --timeout is reported as such (exit 1)."""
        target = FakeTarget()
        target.start_outcome["actor-001"] = {"state": "starting"}
        async with serving(target, sock):
            assert await cli("restart", "actor-001", "--timeout", "0.2", "--socket", str(sock)) == 1
        assert capsys.readouterr().err == ("actorsup: restart actor-001: it is still starting after 0.2s; "
                                           "see `actorsup logs actor-001`\n")

    @pytest.mark.parametrize("value", ["0", "-1", "soon", "inf", "nan"])
    def test_timeout_must_be_positive(self, capsys: pytest.CaptureFixture[str], value: str) -> None:
        """--timeout 0 (or negative, or not a number) is a usage error that says what is accepted."""
        with pytest.raises(SystemExit) as info:
            parser().parse_args(["status", "--timeout", value])
        assert info.value.code == 2
        assert (f"argument --timeout: must be a number of seconds > 0, such as 5 or 0.5 (got {value!r})"
                in capsys.readouterr().err)

    async def test_unknown_name(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """An unknown actor is one line on stderr and exit 1."""
        async with serving(FakeTarget(), sock):
            assert await cli("restart", "ghost", "--socket", str(sock)) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err == ("actorsup: restart: no actor or cron task named 'ghost'; known names: "
                                "actor-000, actor-001, actor-002\n")


class TestLogs:
    async def test_tail(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """logs prints the buffered lines, -n limits them, NAME filters them."""
        target = FakeTarget()
        target.log("one", actor="actor-000", n=1)
        target.log("two", actor="actor-001")
        target.log("three", actor="actor-000")
        async with serving(target, sock):
            assert await cli("logs", "--socket", str(sock)) == 0
            everything = capsys.readouterr().out
            assert await cli("logs", "-n", "1", "actor-000", "--json", "--socket", str(sock)) == 0
            last = capsys.readouterr().out
        assert everything.splitlines() == [
            "2024-01-01T00:00:00Z info    actor-000 one n=1",
            "2024-01-01T00:00:00Z info    actor-001 two",
            "2024-01-01T00:00:00Z info    actor-000 three",
        ]
        assert [json.loads(line)["event"] for line in last.splitlines()] == ["three"]

    async def test_follow(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """logs -f prints the tail, then new lines, and exits 0 when the supervisor ends the stream."""
        target = FakeTarget()
        target.log("before")
        async with serving(target, sock), anyio.create_task_group() as tg:
            codes: list[int] = []

            async def run() -> None:
                codes.append(await cli("logs", "-f", "--json", "--socket", str(sock)))

            tg.start_soon(run)
            await poll(lambda: target._followers)
            target.log("after")
            target.end_streams()
        assert codes == [0]
        assert [json.loads(line)["event"] for line in capsys.readouterr().out.splitlines()] == ["before", "after"]


class TestEvents:
    async def test_events_stream_json_lines(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """events prints each bus event as one JSON line, and exits 0 when the supervisor goes away."""
        target = FakeTarget()
        seen: list[Any] = []
        codes: list[int] = []

        def printed(n: int) -> bool:
            seen.extend(json.loads(line) for line in capsys.readouterr().out.splitlines())
            return len(seen) >= n

        async with anyio.create_task_group() as outer, serving(target, sock) as server:
            async def run() -> None:
                codes.append(await cli("events", "--socket", str(sock)))

            outer.start_soon(run)
            await poll(lambda: target.bus._subscribers)
            target.bus.publish({"event": "actor.started", "actor": "a", "pid": 1})
            target.bus.publish({"event": "actor.exited", "actor": "a", "signal": "SIGKILL"})
            await poll(lambda: printed(2))
            server.cancel_scope.cancel()
        assert codes == [0]
        assert seen == [{"event": "actor.started", "actor": "a", "pid": 1},
                        {"event": "actor.exited", "actor": "a", "signal": "SIGKILL"}]


class TestCron:
    async def test_list(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """cron list prints a table, or the rows with --json."""
        async with serving(FakeTarget(make_rows(10)), sock):
            assert await cli("cron", "list", "--socket", str(sock)) == 0
            table = capsys.readouterr().out
            assert await cli("cron", "list", "--json", "--socket", str(sock)) == 0
            rows = json.loads(capsys.readouterr().out)
        assert table.split("\n")[0].split() == ["NAME", "SCHEDULE", "NEXT", "RUN", "IN", "LAST", "OUTCOME", "RUNNING"]
        assert "actor-009" in table
        assert [row["name"] for row in rows] == ["actor-009"]

    async def test_list_empty(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """With no cron tasks, cron list says so."""
        async with serving(FakeTarget(), sock):
            assert await cli("cron", "list", "--socket", str(sock)) == 0
        assert capsys.readouterr().out == "no cron tasks\n"

    async def test_trigger(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """cron trigger NAME prints the run id."""
        target = FakeTarget(make_rows(10))
        async with serving(target, sock):
            assert await cli("cron", "trigger", "actor-009", "--socket", str(sock)) == 0
            assert await cli("cron", "trigger", "actor-009", "--json", "--socket", str(sock)) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0] == "triggered actor-009: run_id actor-009-1"
        assert json.loads(out[1]) == {"run_id": "actor-009-2"}

    async def test_trigger_unknown(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Triggering a task that does not exist is exit 1 with the command as the user typed it."""
        async with serving(FakeTarget(), sock):
            assert await cli("cron", "trigger", "nightly", "--socket", str(sock)) == 1
        assert capsys.readouterr().err == ("actorsup: cron trigger: no actor or cron task named 'nightly'; "
                                           "known names: actor-000, actor-001, actor-002\n")

    async def test_trigger_an_actor(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Triggering an actor says it is not a cron task (exit 1), once, in the user's words."""
        async with serving(FakeTarget(make_rows(10)), sock):
            assert await cli("cron", "trigger", "actor-000", "--socket", str(sock)) == 1
        assert capsys.readouterr().err == ("actorsup: cron trigger: 'actor-000' is an actor (process), "
                                           "not a cron task; cron tasks: actor-009\n")

    async def test_logs_of_an_unknown_name(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """`logs nosuch` is exit 1 with the known names, not silence and exit 0."""
        async with serving(FakeTarget(), sock):
            assert await cli("logs", "nosuch", "--socket", str(sock)) == 1
        assert capsys.readouterr().err.startswith("actorsup: logs: no actor or cron task named 'nosuch'")


class TestReloadShutdown:
    async def test_reload(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """reload prints what was added, removed and changed (or --json the diff)."""
        target = FakeTarget()
        target.reload_result = {"added": ["new"], "removed": [], "changed": ["a", "b"]}
        async with serving(target, sock):
            assert await cli("reload", "--socket", str(sock)) == 0
            assert await cli("reload", "--json", "--socket", str(sock)) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0] == "reloaded: added new; removed -; changed a, b"
        assert json.loads(out[1]) == target.reload_result

    async def test_reload_no_changes(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A reload that changes nothing says so."""
        async with serving(FakeTarget(), sock):
            assert await cli("reload", "--socket", str(sock)) == 0
        assert capsys.readouterr().out == "reloaded: no changes\n"

    async def test_reload_rejected(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """An invalid new config is printed on stderr with exit 1; the running one is kept."""
        target = FakeTarget()
        target.reload_error = ConfigError("actorsup.toml", "actors.web.restart", 'invalid value "sometimes"')
        async with serving(target, sock):
            assert await cli("reload", "--socket", str(sock)) == 1
        assert capsys.readouterr().err == ('actorsup: reload rejected: actorsup.toml: actors.web.restart: '
                                           'invalid value "sometimes"; the running config is kept\n')

    async def test_reload_rejected_json(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """reload --json reports a rejected config as one JSON object on stdout, exit 1."""
        target = FakeTarget()
        target.reload_error = ConfigError("actorsup.toml", "actors.web.restart", 'invalid value "sometimes"')
        async with serving(target, sock):
            assert await cli("reload", "--json", "--socket", str(sock)) == 1
        captured = capsys.readouterr()
        assert json.loads(captured.out) == {
            "ok": False, "code": "config_error", "error": 'reload rejected: actorsup.toml: actors.web.restart: '
            'invalid value "sometimes"; the running config is kept'}
        assert captured.err == ""

    async def test_json_errors_are_json(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """With --json every failure, even no supervisor at all, is one JSON object on stdout."""
        assert await cli("status", "--json", "--socket", str(sock)) == 1
        reply = json.loads(capsys.readouterr().out)
        assert (reply["ok"], reply["code"]) == (False, "not_listening")

    async def test_shutdown(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """shutdown asks the supervisor to stop and confirms."""
        target = FakeTarget()
        async with serving(target, sock):
            assert await cli("shutdown", "--socket", str(sock)) == 0
        assert target.shutdown_requested
        assert capsys.readouterr().out == f"supervisor at {sock} is shutting down\n"


class TestFindingTheSocket:
    async def test_no_supervisor(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """With nothing at the socket every command prints one line on stderr and exits 1."""
        for argv in (["status"], ["heartbeat", "status"], ["stop", "x"], ["logs", "-f"], ["events"],
                     ["cron", "list"], ["reload"], ["shutdown"]):
            assert await cli(*argv, "--socket", str(sock)) == 1
            err = capsys.readouterr().err
            assert err == (f"actorsup: no supervisor is listening at {sock} (no socket file); start one "
                           "with `actorsup run CONFIG`, or point --socket / -c at a running one\n")

    async def test_config_names_the_socket(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """-c CONFIG uses its control_socket (relative to the file) without importing actor targets."""
        config = sock.parent / "actorsup.toml"
        config.write_text('[supervisor]\ncontrol_socket = "s.sock"\n\n'
                          '[actors.web]\ntarget = "not_installed_anywhere:Web"\n')
        async with serving(FakeTarget(), sock):
            assert await cli("status", "--json", "-c", str(config)) == 0
        assert len(json.loads(capsys.readouterr().out)) == 3

    def test_config_without_socket_uses_state_dir(self, sock: Path) -> None:
        """A config with no control_socket means state_dir/actorsup.sock."""
        config = sock.parent / "a.toml"
        config.write_text('[supervisor]\nstate_dir = "state"\n')
        args = parser().parse_args(["status", "-c", str(config)])
        assert resolve_socket(args) == sock.parent / "state" / "actorsup.sock"

    def test_default_config_in_current_folder(self, sock: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """With neither --socket nor -c, ./actorsup.toml is used."""
        (sock.parent / "actorsup.toml").write_text('[supervisor]\ncontrol_socket = "x.sock"\n')
        monkeypatch.chdir(sock.parent)
        assert resolve_socket(parser().parse_args(["status"])) == sock.parent / "x.sock"

    def test_environment_variable(self, sock: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """$ACTORSUP_SOCKET comes after --socket and -c but before ./actorsup.toml."""
        monkeypatch.setenv("ACTORSUP_SOCKET", "/run/x.sock")
        assert resolve_socket(parser().parse_args(["status"])) == Path("/run/x.sock")
        assert resolve_socket(parser().parse_args(["status", "--socket", "/y"])) == Path("/y")

    async def test_nothing_given(self, sock: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
        """With no socket, config, variable or ./actorsup.toml, the command is a usage error (exit 2)."""
        monkeypatch.chdir(sock.parent)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(sock.parent))  # and no demo runs
        assert await cli("status") == 2
        assert capsys.readouterr().err == ("actorsup: no control socket given: pass --socket PATH or -c "
                                           "CONFIG (or set ACTORSUP_SOCKET; there is no ./actorsup.toml here, "
                                           "and no demo is running)\n")

    @pytest.mark.parametrize("command", [["status", "--json"], ["logs"], ["shutdown"]])
    async def test_an_invalid_config_does_not_lock_the_cli_out(
            self, sock: Path, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
        """A config with a bad value still names its socket: status, logs and shutdown reach the supervisor."""
        config = sock.parent / "bad.toml"
        config.write_text('[supervisor]\ncontrol_socket = "s.sock"\nheartbeat_interval = "soon"\n')
        async with serving(FakeTarget(), sock):
            assert await cli(*command, "-c", str(config)) == 0
        assert capsys.readouterr().err == ""

    @pytest.mark.parametrize("command", [["status", "--json"], ["logs"], ["shutdown"]])
    async def test_a_config_mid_edit_does_not_lock_the_cli_out(
            self, sock: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
            command: list[str]) -> None:
        """./actorsup.toml that is not even TOML: its [supervisor] control_socket line is still found."""
        (sock.parent / "actorsup.toml").write_text(
            "[supervisor]\ncontrol_socket = 's.sock'  # here\n\n[actors.web\ntarget = \n")
        monkeypatch.chdir(sock.parent)
        async with serving(FakeTarget(), sock):
            assert await cli(*command) == 0
        assert capsys.readouterr().err == ""

    async def test_an_unparseable_config_is_named_when_nobody_answers(
            self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """When the socket from a broken config does not answer, the parse error is shown too."""
        config = sock.parent / "bad.toml"
        config.write_text("[supervisor\n")
        assert await cli("status", "-c", str(config)) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"actorsup: no supervisor is listening at {sock.parent}/.actorsup/actorsup.sock")
        assert f" (the socket path comes from a config that does not parse: {config}: invalid TOML: " in err

    @pytest.mark.parametrize("kind", ["folder", "file"])
    async def test_a_socket_path_that_is_not_a_socket(
            self, sock: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
        """--socket naming a folder or a regular file says so (exit 2), not "connection refused"."""
        if kind == "folder":
            sock.mkdir()
            expected = (f"actorsup: control socket {sock}: it is a folder, not a socket (the socket itself is "
                        f"usually {sock}/actorsup.sock); point --socket or -c at a running supervisor's socket\n")
        else:
            sock.write_text("")
            expected = (f"actorsup: control socket {sock}: it is a regular file, not a socket; point --socket "
                        "or -c at a running supervisor's socket\n")
        assert await cli("status", "--socket", str(sock)) == 2
        assert capsys.readouterr().err == expected

    async def test_a_missing_config_is_a_usage_error(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """-c naming a file that does not exist exits 2 with one line."""
        assert await cli("status", "-c", str(sock.parent / "nope.toml")) == 2
        assert capsys.readouterr().err == (f"actorsup: {sock.parent}/nope.toml: file not found; "
                                           "pass -c CONFIG or --socket PATH\n")

    @pytest.mark.parametrize("table", [
        "", '[supervisor]\ncontrol_socket = "run/a.sock"\n', "[supervisor]\ncontrol_socket = '/abs/a.sock'\n",
        '[supervisor]\ncontrol_socket = "~/a.sock"\n', '[supervisor]\nstate_dir = "var"\n',
        '[supervisor]\nstate_dir = "/abs/var"\ncontrol_socket = "s.sock"\n',
    ])
    def test_locating_agrees_with_the_config(self, sock: Path, table: str) -> None:
        """The lenient reader finds the path socket_path_for(load_config(...)) gives, valid TOML or not."""
        from supervisor.config import load_config
        from supervisor.control import socket_path_for
        from supervisor.control._locate import locate_socket

        config = sock.parent / "actorsup.toml"
        config.write_text(table + '\n[actors.web]\ntarget = "x:Y"\n')
        expected = socket_path_for(load_config(config, import_targets=False))
        assert locate_socket(config) == (expected, None)
        config.write_text(table + "\n[actors.web\n")  # the same, mid-edit
        assert locate_socket(config).path == expected

    def test_socket_and_config_exclude_each_other(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--socket and -c together are a usage error."""
        with pytest.raises(SystemExit) as info:
            parser().parse_args(["status", "--socket", "a", "-c", "b"])
        assert info.value.code == 2

    def test_group_commands_need_a_subcommand(self) -> None:
        """`heartbeat` and `cron` alone are usage errors."""
        for argv in (["heartbeat"], ["cron"]):
            with pytest.raises(SystemExit) as info:
                parser().parse_args(argv)
            assert info.value.code == 2

    def test_bad_argument_reply_is_exit_2(self, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A request the server refuses as malformed (here -n -1) exits 2."""
        os.environ.pop("ACTORSUP_SOCKET", None)

        async def main() -> int:
            async with serving(FakeTarget(), sock):
                return await cli("logs", "-n", "-1", "--socket", str(sock))

        assert anyio.run(main) == 2
        assert capsys.readouterr().err == "actorsup: logs: argument 'n' must be an integer >= 0, got -1\n"
