"""Launching a command actor's program: env, cwd, user, session, PDEATHSIG, and the stop escalation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from supervisor.command._errors import ProgramError
from supervisor.command._launch import CommandProcess, child_env, launch
from supervisor.command._privileges import Credentials, resolve_credentials
from supervisor.config import parse_config
from supervisor.core._clock import MonotonicClock
from supervisor.process._child import stop_process
from supervisor.process._popen import FdReader
from supervisor.process._reaper import Reaper
from tests.harness import wait_gone

pytestmark = pytest.mark.anyio
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")

_ENV = {"PATH": os.defpath, "LANG": "C.UTF-8"}


async def _read_all(proc: CommandProcess) -> tuple[bytes, bytes]:
    out, err = bytearray(), bytearray()

    async def drain(reader: FdReader, into: bytearray) -> None:
        while chunk := await reader.receive():
            into += chunk

    async with anyio.create_task_group() as tg:
        tg.start_soon(drain, proc.stdout, out)
        tg.start_soon(drain, proc.stderr, err)
    return bytes(out), bytes(err)


async def _first_line(proc: CommandProcess) -> bytes:
    data = b""
    while b"\n" not in data:
        chunk = await proc.stdout.receive()
        assert chunk, "EOF before a line"
        data += chunk
    return data.split(b"\n", 1)[0]


class TestChildEnv:
    def test_precedence(self) -> None:
        """Base < the user's USER/HOME < the actor's env < the notify socket; systemd's own variables dropped."""
        creds = resolve_credentials("nobody", euid=0, egid=0)
        base = {"PATH": "/bin", "HOME": "/root", "USER": "root", "NOTIFY_SOCKET": "/run/systemd/notify",
                "WATCHDOG_USEC": "1", "WATCHDOG_PID": "1"}
        env = child_env(base, env={"LANG": "C", "HOME": "/srv"}, credentials=creds,
                        notify={"NOTIFY_SOCKET": "@actorsup/x"})
        assert env == {"PATH": "/bin", "HOME": "/srv", "USER": "nobody", "LOGNAME": "nobody", "LANG": "C",
                       "NOTIFY_SOCKET": "@actorsup/x"}

    def test_no_notify_means_no_socket(self) -> None:
        """Without notify the supervisor's NOTIFY_SOCKET never reaches the program."""
        assert "NOTIFY_SOCKET" not in child_env({"NOTIFY_SOCKET": "/run/systemd/notify"})


class TestLaunchFailures:
    @pytest.mark.parametrize(
        ("argv", "cwd", "code", "reason"),
        [
            (["no-such-program-x"], None, "program_not_found",
             f"program not found: 'no-such-program-x' is not in PATH ({os.defpath})"),
            (["sleep", "1"], "/nonexistent/dir", "cwd_not_found", "working directory not found: /nonexistent/dir"),
            (["/etc/passwd"], None, "program_not_executable", "not executable (no execute permission): /etc/passwd"),
            (["/etc"], None, "program_not_executable", "not executable (a directory): /etc"),
        ],
    )
    def test_reasons(self, argv: list[str], cwd: str | None, code: str, reason: str) -> None:
        """A program that cannot run is a ProgramError: a reason code and a text for actor.exited."""
        with pytest.raises(ProgramError) as info:
            launch(argv, env=_ENV, cwd=cwd)
        assert (info.value.code, info.value.reason) == (code, reason)

    def test_missing_interpreter(self, tmp_path: Path) -> None:
        """A script whose #! interpreter is missing is reported as such, at spawn time."""
        script = tmp_path / "s"
        script.write_text("#!/nonexistent/python\n")
        script.chmod(0o755)
        with pytest.raises(ProgramError) as info:
            launch(["./s"], env=_ENV, cwd=tmp_path)
        assert info.value.reason == f"interpreter not found: /nonexistent/python (from the #! line of {script})"
        assert info.value.code == "program_not_found"


class TestLaunch:
    async def test_output_exit_code_env_and_cwd(self, tmp_path: Path) -> None:
        """stdout and stderr arrive on their pipes, in the given cwd and env, and the exit code is kept."""
        script = tmp_path / "run.sh"
        script.write_text('#!/bin/sh\necho "out $PWD $FOO $0"\necho err >&2\nexit 3\n')
        script.chmod(0o755)
        proc = launch(["./run.sh"], env={**_ENV, "FOO": "bar"}, cwd=tmp_path)
        try:
            with anyio.fail_after(10):
                out, err = await _read_all(proc)
                assert await proc.wait() == 3
        finally:
            await proc.aclose()
        assert out == f"out {tmp_path} bar {script}\n".encode() and err == b"err\n"  # $0: the path exec'd

    async def test_nice_lowers_the_programs_priority(self) -> None:
        """nice = 3: the program's nice value is the caller's plus 3; 0 leaves it equal."""
        for nice in (3, 0):
            proc = launch(["sleep", "30"], env=_ENV, nice=nice)
            try:
                assert os.getpriority(os.PRIO_PROCESS, proc.pid) == min(19, os.nice(0) + nice)
            finally:
                proc.signal_group(signal.SIGKILL)
                with anyio.fail_after(10):
                    await proc.wait()
                await proc.aclose()

    async def test_own_session_and_stop_escalation(self) -> None:
        """The program leads its own session; it ignores SIGTERM, so stop_process escalates to SIGKILL."""
        proc = launch(["sh", "-c", "trap '' TERM; echo ready; exec sleep 30"], env=_ENV)
        try:
            with anyio.fail_after(10):
                assert await _first_line(proc) == b"ready"
            assert os.getsid(proc.pid) == proc.pid and os.getpgid(proc.pid) == proc.pid
            with anyio.fail_after(10):
                rc = await stop_process(proc, stop_timeout=0.3, clock=MonotonicClock(), actor="t")
            assert rc == -signal.SIGKILL
        finally:
            await proc.aclose()

    async def test_daemon_grandchild_is_killed_with_the_group(self) -> None:
        """A grandchild forked into the background dies with the group when the program is stopped."""
        proc = launch(["sh", "-c", "sleep 30 & echo $!; wait"], env=_ENV)
        try:
            with anyio.fail_after(10):
                grandchild = int(await _first_line(proc))
                assert await stop_process(proc, stop_timeout=5, clock=MonotonicClock(), actor="t") == -signal.SIGTERM
        finally:
            await proc.aclose()
        await wait_gone(grandchild)

    async def test_signal_group_refuses_a_reaped_and_reused_identity(self) -> None:
        """After the program exited and was reaped, its identity no longer matches: is_ours is False."""
        proc = launch(["true"], env=_ENV)
        try:
            with anyio.fail_after(10):
                assert await proc.wait() == 0
            assert not proc.is_ours() and not proc.signal_group(0)
        finally:
            await proc.aclose()


async def _output_as(creds: Credentials | None, script: str) -> bytes:
    """What ``sh -c script`` prints when launched with ``creds``; it must exit 0."""
    proc = launch(["sh", "-c", script], env=child_env(_ENV, credentials=creds), credentials=creds)
    try:
        with anyio.fail_after(10):
            out, _ = await _read_all(proc)
            assert await proc.wait() == 0
    finally:
        await proc.aclose()
    return out


@needs_root
class TestPrivilegesAndParentDeath:
    async def test_runs_as_the_user(self) -> None:
        """With user = "nobody", the program's uid, gid and HOME are nobody's."""
        out = await _output_as(resolve_credentials("nobody"), 'echo "$(id -u) $(id -g) $HOME"')
        assert out == b"65534 65534 /nonexistent\n"

    async def test_runs_in_the_group_of_user_name_colon_group(self) -> None:
        """user = "nobody:daemon" from a config: the program's uid is nobody's, its gid daemon, its only group."""
        config = parse_config({"actors": {"a": {"kind": "command", "command": "x", "user": "nobody:daemon"}}})
        out = await _output_as(config.actors[0].command_spec.credentials, 'echo "$(id -u) $(id -g) $(id -G)"')
        assert out == b"65534 1 1\n"

    async def test_program_dies_with_a_sigkilled_supervisor_even_after_dropping_privileges(self) -> None:
        """PDEATHSIG is set after the uid change: SIGKILL the launching process and its program dies."""
        code = textwrap.dedent(
            """
            import os, sys, time
            from supervisor.command._launch import child_env, launch
            from supervisor.command._privileges import resolve_credentials
            creds = resolve_credentials("nobody")
            proc = launch(["sleep", "30"], env=child_env({"PATH": os.defpath}), credentials=creds)
            print(proc.pid, flush=True)
            time.sleep(30)
            """
        )
        middle = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
        try:
            assert middle.stdout is not None
            os.set_blocking(middle.stdout.fileno(), False)
            line = b""
            with anyio.fail_after(20):
                while not line.endswith(b"\n"):
                    await anyio.wait_readable(middle.stdout)
                    line += middle.stdout.read() or b""
            program = int(line)
            pidfd = os.pidfd_open(program)
            try:
                middle.kill()
                with anyio.fail_after(10):
                    await anyio.wait_readable(pidfd)  # the program exited
            finally:
                os.close(pidfd)
        finally:
            middle.kill()
            middle.wait()
            if middle.stdout is not None:
                middle.stdout.close()


class TestReaper:
    async def test_a_daemon_that_left_the_group_is_killed_after_the_program_exits(self) -> None:
        """With the Reaper's cookie and track(), a setsid'ed daemon of an exited program is killed."""
        reaper = Reaper()
        async with anyio.create_task_group() as tg:
            await tg.start(reaper.run)
            token = reaper.new_token()
            script = "setsid sh -c 'echo $$; exec sleep 30' &"  # it speaks only once in its own session
            proc = launch(["sh", "-c", script], env=reaper.child_env(dict(_ENV), token))
            reaper.track(proc, token, "daemonizer")  # type: ignore[arg-type]  # duck-typed: pid, token, on_exit
            try:
                with anyio.fail_after(10):
                    daemon = int(await _first_line(proc))
                    pidfd = os.pidfd_open(daemon)
                    assert os.getsid(daemon) != proc.pid  # out of the program's session: killpg misses it
                    assert await proc.wait() == 0
                    await anyio.wait_readable(pidfd)  # killed by the reaper, not by us
                os.close(pidfd)
            finally:
                await proc.aclose()
            tg.cancel_scope.cancel()
