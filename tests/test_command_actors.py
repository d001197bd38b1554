"""Command actors end to end: real programs under a real Supervisor (and one under `actorsup run`)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from harness import CaptureSink, cli_supervisor, running_supervisor, state_dir, wait_gone
from rich.console import Console

from supervisor._supervisor import Supervisor
from supervisor.config import parse_config
from supervisor.control._render import status_table
from supervisor.lifecycle._states import ActorState
from supervisor.logs import LogRouter, configure_supervisor_logging

pytestmark = pytest.mark.anyio
needs_systemd_notify = pytest.mark.skipif(not shutil.which("systemd-notify"), reason="needs systemd-notify")


def _command(command: Any, **keys: Any) -> dict[str, Any]:
    return {"kind": "command", "command": command, "stop_timeout": 2.0, **keys}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def continued() -> Iterator[list[int]]:
    """Pids a test SIGSTOPped: SIGCONTed at teardown, so a kill that raced the stop still ends them."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def _nice_of(pid: int) -> int:
    """The nice value of ``pid``, from /proc (field 19 of stat; the name in field 2 may hold spaces)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


class TestAProgram:
    async def test_child_nice_reaches_the_program(self) -> None:
        """[supervisor] child_nice: the program runs that many nice steps below the supervisor."""
        async with running_supervisor({"s": _command(["sleep", "60"])}, child_nice=7) as (_sup, sink):
            started = (await sink.wait_for("actor.started", actor="s"))[0]
            assert _nice_of(started["pid"]) == min(19, os.nice(0) + 7)

    async def test_status_shows_the_programs_own_pid_rss_and_cpu(self) -> None:
        """status of a command actor: the program's pid (not a wrapper's), its RSS and CPU."""
        async with running_supervisor({"s": _command(["sleep", "60"])}) as (sup, sink):
            started = (await sink.wait_for("actor.started", actor="s"))[0]
            assert psutil.Process(started["pid"]).name() == "sleep"
            with anyio.fail_after(10):
                while (row := sup.status()[0])["cpu_percent"] is None:
                    await anyio.sleep(0.05)
            assert row["pid"] == started["pid"] and row["kind"] == "command"
            assert row["cpu_percent"] >= 0.0
            assert 0 < row["rss"] < psutil.Process(os.getpid()).memory_info().rss  # sleep's, not a Python's

    async def test_json_lines_become_fields_and_plain_lines_text_events(self, tmp_path: Path) -> None:
        """A program's JSON object lines are merged as fields; other lines are text events; none lost on exit."""
        script = _script(tmp_path, "talk.sh", """\
            #!/bin/sh
            echo '{"msg": "order placed", "level": "warn", "order": 17, "pid": 7, "actor": "spoof"}'
            echo 'a plain line'
            echo '{"event": "on stderr", "severity": "error"}' >&2
            echo 'last words'
            """)
        async with running_supervisor({"talk": _command([script], restart="temporary")}) as (_sup, sink):
            await sink.wait_for("actor.exited", actor="talk")
            placed = (await sink.wait_for("order placed", actor="talk"))[0]
            fields = (placed["level"], placed["order"], placed["app_pid"], placed["stream"])
            assert fields == ("warning", 17, 7, "stdout")
            assert placed["pid"] != 7 and placed["actor"] == "talk"  # our keys are never overwritten
            assert (await sink.wait_for("on stderr"))[0]["level"] == "error"
            plain = (await sink.wait_for("a plain line", actor="talk"))[0]
            assert plain["stream"] == "stdout" and "order" not in plain
            await sink.wait_for("last words", actor="talk")

    async def test_a_program_that_ignores_sigterm_is_sigkilled_at_stop_timeout(self, tmp_path: Path) -> None:
        """Stopping a program that ignores SIGTERM escalates to SIGKILL of its group after stop_timeout."""
        script = _script(tmp_path, "stubborn.sh", """\
            #!/bin/sh
            trap '' TERM
            echo trapped
            while :; do sleep 0.05; done
            """)
        spec = _command([script], stop_timeout=0.5)
        async with running_supervisor({"stubborn": spec}) as (sup, sink):
            await sink.wait_for("trapped", actor="stubborn")
            with anyio.fail_after(10):
                await sup.stop_actor("stubborn")
            timeout = (await sink.wait_for("actor.stop_timeout", actor="stubborn"))[0]
            assert timeout["signal"] == "SIGKILL"
            exited = (await sink.wait_for("actor.exited", actor="stubborn"))[0]
            assert (exited["reason"], exited["signal"]) == ("stopped", "SIGKILL")

    async def test_stop_signal_is_what_stops_the_program(self, tmp_path: Path) -> None:
        """stop_signal = "SIGINT": the program gets SIGINT at stop (and exits by itself, no SIGKILL)."""
        script = _script(tmp_path, "polite.sh", """\
            #!/bin/sh
            trap 'echo got INT; exit 0' INT
            echo trapped
            while :; do sleep 0.05; done
            """)
        async with running_supervisor({"polite": _command([script], stop_signal="SIGINT")}) as (sup, sink):
            await sink.wait_for("trapped", actor="polite")
            with anyio.fail_after(10):
                await sup.stop_actor("polite")
            assert (await sink.wait_for("actor.signalled", actor="polite"))[0]["signal"] == "SIGINT"
            await sink.wait_for("got INT", actor="polite")
            exited = (await sink.wait_for("actor.exited", actor="polite"))[0]
            assert (exited["reason"], exited["exit_code"]) == ("stopped", 0) and not sink.find("actor.stop_timeout")

    async def test_a_daemon_grandchild_dies_with_the_program(self, tmp_path: Path) -> None:
        """What the program forked (in its group, or setsid'ed away from it) is killed when it stops."""
        script = _script(tmp_path, "forker.sh", """\
            #!/bin/sh
            sleep 300 &
            echo "in_group $!"
            setsid sleep 301 &
            echo "daemon $!"
            exec sleep 302
            """)
        async with running_supervisor({"forker": _command([script])}) as (sup, sink):
            await sink.wait_for("actor.started", actor="forker")
            lines = [(await sink.wait_for(actor="forker", stream="stdout", count=2))[i]["event"] for i in (0, 1)]
            pids = [int(line.split()[1]) for line in lines]
            assert all(_alive(pid) for pid in pids)
            with anyio.fail_after(10):
                await sup.stop_actor("forker")
            await wait_gone(*pids)

    async def test_exit_0_under_permanent_restarts_then_fails_by_intensity(self) -> None:
        """`true` under permanent: restarted (reason exit) until the restart intensity is exceeded, then failed."""
        spec = _command(["true"], max_restarts=2, restart_window=60.0, backoff_initial=0.01, backoff_max=0.01)
        async with running_supervisor({"once": spec}) as (sup, sink):
            failed = (await sink.wait_for("actor.failed", actor="once"))[0]
            exits = sink.find("actor.exited", actor="once")
            assert [(e["reason"], e["exit_code"]) for e in exits] == [("exit", 0)] * 3
            assert failed["max_restarts"] == 2 and sup.handle("once").state is ActorState.FAILED
            assert sup.status()[0]["last_error"] == "exited with status 0"


class TestInATree:
    async def test_a_one_for_all_group_of_programs_restarts_together_in_dependency_order(self) -> None:
        """Command actors in a one_for_all group with depends_on: one crash restarts both, db before app."""
        actors = {"db": _command(["sleep", "60"], group="g", backoff_initial=0.01),
                  "app": _command(["sleep", "61"], group="g", depends_on=["db"], backoff_initial=0.01)}
        settings = {"heartbeat_interval": 0.2, "heartbeat_timeout": 5.0, "state_dir": state_dir()}
        config = parse_config({"supervisor": settings,
                               "groups": {"g": {"strategy": "one_for_all"}}, "actors": actors}, label="t.toml")
        sink = CaptureSink()
        router = LogRouter([sink])
        configure_supervisor_logging(router)
        sup = Supervisor(config, router=router)
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            try:
                first = {n: (await sink.wait_for("actor.started", actor=n))[0]["pid"] for n in ("db", "app")}
                os.kill(first["db"], signal.SIGKILL)
                await sink.wait_for("group.restarting", group="g", trigger="db")
                again = {n: (await sink.wait_for("actor.started", actor=n, count=2))[1] for n in ("db", "app")}
                assert again["db"]["pid"] != first["db"] and again["app"]["pid"] != first["app"]
                assert again["db"]["timestamp"] < again["app"]["timestamp"]
                assert not _alive(first["app"])
            finally:
                with anyio.CancelScope(shield=True), anyio.fail_after(30):
                    sup.shutdown_nowait()
                    await sup.closed.wait()


class TestAProgramThatCannotRun:
    @pytest.mark.parametrize("kind", ["missing", "not_executable"])
    async def test_is_an_exit_with_the_reason_then_the_restart_policy(self, tmp_path: Path, kind: str) -> None:
        """A missing or non-executable program: actor.exited saying so, restarts, then failed; no traceback."""
        if kind == "missing":
            argv, code, words = ["no-such-program-actorsup"], "program_not_found", "not found"
        else:
            path = tmp_path / "plain.txt"
            path.write_text("echo hi\n")
            argv, code, words = [str(path)], "program_not_executable", "not executable"
        spec = _command(argv, max_restarts=1, backoff_initial=0.01, backoff_max=0.01)
        async with running_supervisor({"ghost": spec, "other": _command(["sleep", "60"])}) as (sup, sink):
            await sink.wait_for("actor.started", actor="other")
            await sink.wait_for("actor.failed", actor="ghost")
            exits = sink.find("actor.exited", actor="ghost")
            assert len(exits) == 2 and all(e["reason"] == code and words in e["error"] for e in exits)
            assert len(sink.find("actor.restarting", actor="ghost")) == 1
            assert not [e for e in sink.events if "exception" in e or "Traceback" in str(e.get("error", ""))]
            assert sup.handle("other").state is ActorState.RUNNING  # the supervisor carries on


class TestNotify:
    @needs_systemd_notify
    async def test_started_only_at_ready(self, tmp_path: Path) -> None:
        """With notify = true a program is started at its READY=1, not when its process exists."""
        gate = tmp_path / "gate"
        script = _script(tmp_path, "slow.sh", f"""\
            #!/bin/sh
            echo 'up, no READY=1 yet'
            while [ ! -e {gate} ]; do sleep 0.01; done
            systemd-notify --ready
            exec sleep 60
            """)
        async with running_supervisor({"slow": _command([script], notify=True)}) as (sup, sink):
            await sink.wait_for("up, no READY=1 yet", actor="slow")  # its process runs and is heard
            assert sup.handle("slow").state is ActorState.STARTING
            assert sink.find("actor.started", actor="slow") == []
            gate.touch()  # READY=1 only from here on
            await sink.wait_for("actor.started", actor="slow")

    @pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")
    async def test_redis_is_started_at_its_ready_and_its_status_shows(self, tmp_path: Path) -> None:
        """redis-server --supervised systemd: started after READY=1 (it then answers), STATUS= in status."""
        sock = tmp_path / "r.sock"
        command = f"redis-server --port 0 --unixsocket {sock} --supervised systemd --save '' --dir {tmp_path}"
        async with running_supervisor({"cache": _command(command, notify=True)}) as (sup, sink):
            started = (await sink.wait_for("actor.started", actor="cache"))[0]
            assert psutil.Process(started["pid"]).name().startswith("redis-server")
            with socket.socket(socket.AF_UNIX) as client:  # READY=1 comes once it accepts connections
                client.connect(str(sock))
                client.sendall(b"PING\r\n")
                assert client.recv(16) == b"+PONG\r\n"
            with anyio.fail_after(10):
                while not (sup.status()[0]["status_text"] or "").startswith("Ready to accept"):
                    await anyio.sleep(0.02)
            out = io.StringIO()  # as `actorsup status` shows it
            Console(file=out, width=300, color_system=None).print(status_table(sup.status()))
            assert "STATUS=Ready to accept connections" in out.getvalue()

    @needs_systemd_notify
    async def test_a_program_that_stops_sending_watchdog_is_restarted(self, tmp_path: Path) -> None:
        """WATCHDOG=1 beats, then silence: actor.heartbeat_timeout after heartbeat_timeout, then a restart."""
        script = _script(tmp_path, "pinger.sh", """\
            #!/bin/sh
            systemd-notify --ready
            for i in 1 2 3; do systemd-notify WATCHDOG=1; sleep 0.1; done
            echo silent
            exec sleep 60
            """)
        spec = _command([script], notify=True, heartbeat_timeout=1.0, backoff_initial=0.01)
        async with running_supervisor({"pinger": spec}) as (_sup, sink):
            first = (await sink.wait_for("actor.started", actor="pinger"))[0]
            await sink.wait_for("silent", actor="pinger")
            timeout = (await sink.wait_for("actor.heartbeat_timeout", actor="pinger", timeout=15))[0]
            assert timeout["pid"] == first["pid"] and timeout["last_beat_age"] >= 1.0
            assert timeout["heartbeat_timeout"] == 1.0
            exited = (await sink.wait_for("actor.exited", actor="pinger"))[0]
            assert exited["reason"] == "heartbeat_timeout"
            second = (await sink.wait_for("actor.started", actor="pinger", count=2))[1]
            assert second["pid"] != first["pid"]


# Sends its datagram, then BARRIER=1 with a pipe end, and returns once the supervisor has handled
# both (it closes the received descriptor then), as systemd-notify does.
NOTIFIER = """
import array, os, socket, sys
address = os.environ["NOTIFY_SOCKET"]
address = "\\0" + address[1:] if address.startswith("@") else address
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(sys.argv[1].replace(";", "\\n").encode(), address)
r, w = os.pipe()
s.sendmsg([b"BARRIER=1"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [w]).tobytes())], 0, address)
os.close(w)
os.read(r, 1)
"""


class TestMainPid:
    async def test_mainpid_of_a_forked_child_becomes_the_main_process(self, tmp_path: Path) -> None:
        """A script forks a daemon, reports MAINPID=its pid, exits: the actor runs on; the daemon's exit ends it."""
        (tmp_path / "notify.py").write_text(NOTIFIER)
        script = _script(tmp_path, "forking.sh", f"""\
            #!/bin/sh
            sleep 60 &
            {sys.executable} {tmp_path / "notify.py"} "MAINPID=$!;READY=1"
            echo forked
            exit 0
            """)
        async with running_supervisor({"d": _command([script], notify=True, backoff_initial=0.01)}) as (sup, sink):
            moved = (await sink.wait_for("notify.mainpid", actor="d", timeout=15))[0]
            script_pid, daemon = moved["pid"], moved["main_pid"]
            started = (await sink.wait_for("actor.started", actor="d"))[0]
            assert started["pid"] == daemon and psutil.Process(daemon).name() == "sleep"
            await sink.wait_for("forked", actor="d")
            await wait_gone(script_pid)  # the script exits (nothing in the log says so: the run goes on)
            assert sup.handle("d").state is ActorState.RUNNING and sink.find("actor.exited", actor="d") == []
            assert _alive(daemon) and sup.status()[0]["pid"] == daemon
            os.kill(daemon, signal.SIGKILL)
            exited = (await sink.wait_for("actor.exited", actor="d"))[0]
            assert exited["pid"] == daemon and exited["signal"] == "SIGKILL"
            second = (await sink.wait_for("actor.started", actor="d", count=2))[1]
            assert second["pid"] not in (daemon, script_pid) and psutil.Process(second["pid"]).name() == "sleep"

    async def test_mainpid_after_ready_moves_the_actors_pid(self, tmp_path: Path) -> None:
        """MAINPID= in a datagram after READY=1: status and the exit name the new main process."""
        (tmp_path / "notify.py").write_text(NOTIFIER)
        notify = f"{sys.executable} {tmp_path / 'notify.py'}"
        script = _script(tmp_path, "late.sh", f"""\
            #!/bin/sh
            sleep 60 &
            {notify} "READY=1"
            {notify} "MAINPID=$!"
            exit 0
            """)
        async with running_supervisor({"d": _command([script], notify=True)}) as (sup, sink):
            started = (await sink.wait_for("actor.started", actor="d"))[0]
            daemon = (await sink.wait_for("notify.mainpid", actor="d", timeout=15))[0]["main_pid"]
            assert started["pid"] != daemon and sup.status()[0]["pid"] == daemon
            os.kill(daemon, signal.SIGKILL)
            assert (await sink.wait_for("actor.exited", actor="d"))[0]["pid"] == daemon

    async def test_the_main_process_exiting_ends_the_run_while_the_program_still_runs(self, tmp_path: Path) -> None:
        """MAINPID='s process dies while the program lives on: actor.exited for it, and the program goes too."""
        (tmp_path / "notify.py").write_text(NOTIFIER)
        script = _script(tmp_path, "wrapper.sh", f"""\
            #!/bin/sh
            sleep 60 &
            {sys.executable} {tmp_path / "notify.py"} "MAINPID=$!;READY=1"
            exec {sys.executable} -c "import time; print('execed', flush=True); time.sleep(300)"
            """)
        async with running_supervisor({"d": _command([script], notify=True, backoff_initial=0.01)}) as (_sup, sink):
            moved = (await sink.wait_for("notify.mainpid", actor="d", timeout=15))[0]
            program, daemon = moved["pid"], moved["main_pid"]
            await sink.wait_for("actor.started", actor="d")
            await sink.wait_for("execed", actor="d")  # the shell, which would reap the daemon itself, is gone
            os.kill(daemon, signal.SIGKILL)
            exited = (await sink.wait_for("actor.exited", actor="d"))[0]
            assert exited["pid"] == daemon and exited["signal"] == "SIGKILL"  # read once the program went
            await wait_gone(program)
            await sink.wait_for("actor.started", actor="d", count=2)

    async def test_a_stop_reaches_a_main_process_in_a_session_of_its_own(self, tmp_path: Path) -> None:
        """MAINPID= of a daemon that left the program's group (setsid): the stop signal still reaches it."""
        (tmp_path / "notify.py").write_text(NOTIFIER)
        script = _script(tmp_path, "daemon.sh", f"""\
            #!/bin/sh
            setsid sleep 60 &
            {sys.executable} {tmp_path / "notify.py"} "MAINPID=$!;READY=1"
            exit 0
            """)
        async with running_supervisor({"d": _command([script], notify=True, stop_timeout=10.0)}) as (sup, sink):
            moved = (await sink.wait_for("notify.mainpid", actor="d", timeout=15))[0]
            daemon = moved["main_pid"]
            await sink.wait_for("actor.started", actor="d")
            assert os.getsid(daemon) == daemon
            await wait_gone(moved["pid"])
            with anyio.fail_after(5):  # well within stop_timeout: SIGTERM ended it, no SIGKILL needed
                await sup.stop_actor("d")
            assert not _alive(daemon) and sink.find("actor.stop_timeout", actor="d") == []
            (exited,) = sink.find("actor.exited", actor="d")
            assert exited["pid"] == daemon and exited["reason"] == "stopped" and exited["signal"] == "SIGTERM"


class TestProbe:
    async def test_http_server_stopped_by_sigstop_is_caught_by_its_probe_and_restarted(
        self, continued: list[int]
    ) -> None:
        """python3 -m http.server with an http probe: SIGSTOP it, actor.unhealthy, then a new pid is started."""
        port = _free_port()
        probe = {"http": f"http://127.0.0.1:{port}/", "every": 0.3, "timeout": 0.3, "failures": 2,
                 "initial_delay": 0.5}
        argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
        spec = _command(argv, probe=probe, stop_timeout=0.5, backoff_initial=0.01, cwd="/")
        async with running_supervisor({"web": spec}) as (_sup, sink):
            first = (await sink.wait_for("actor.started", actor="web"))[0]
            with anyio.fail_after(10):
                while True:  # serving
                    try:
                        with socket.create_connection(("127.0.0.1", port), timeout=1):
                            break
                    except OSError:
                        await anyio.sleep(0.05)
            continued.append(first["pid"])
            os.kill(first["pid"], signal.SIGSTOP)
            unhealthy = (await sink.wait_for("actor.unhealthy", actor="web", timeout=15))[0]
            assert unhealthy["failures"] == 2 and unhealthy["pid"] == first["pid"]
            second = (await sink.wait_for("actor.started", actor="web", count=2, timeout=20))[1]
            assert second["pid"] != first["pid"]
            assert (await sink.wait_for("actor.exited", actor="web"))[0]["reason"] == "unhealthy"


class TestActorsupRun:
    async def test_a_command_actor_under_actorsup_run(self, tmp_path: Path) -> None:
        """`python -m supervisor run CONFIG` runs a command actor; its JSON line is merged; SIGTERM stops it."""
        script = _script(tmp_path, "hello.sh", """\
            #!/bin/sh
            printf '{"msg": "%s", "n": 1}\\n' "$1"
            exec sleep 60
            """)
        config = tmp_path / "actorsup.toml"
        config.write_text(textwrap.dedent(f"""\
            [supervisor]
            control_socket = "{tmp_path / 's.sock'}"

            [actors.shell]
            kind = "command"
            command = "{script} 'hello from sh'"
            """))
        async with cli_supervisor(config) as cli:
            started = (await cli.log.wait_for("actor.started", actor="shell"))[0]
            hello = (await cli.log.wait_for("hello from sh", actor="shell"))[0]
            assert hello["n"] == 1 and hello["pid"] == started["pid"]
            cli.process.send_signal(signal.SIGTERM)
            with anyio.fail_after(20):
                assert await cli.process.wait() == 0
            exited = (await cli.log.wait_for("actor.exited", actor="shell"))[0]
            assert exited["reason"] == "stopped" and not _alive(started["pid"])
