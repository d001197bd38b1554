"""`actorsup run` at its edges: a stop signal at any early moment, and start-up failures as one line."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tests.harness import cli_supervisor

pytestmark = pytest.mark.slow

CONFIG = """
[supervisor]
heartbeat_interval = 0.2
control_socket = "{socket}"
{extra}

[actors.first]
target = "tests.sample_actors:Steady"
"""


@pytest.fixture
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="run-", dir="/tmp") as d:  # short: AF_UNIX paths
        yield Path(d)


def write(folder: Path, socket: str = "ctl.sock", extra: str = "") -> Path:
    path = folder / "actorsup.toml"
    path.write_text(textwrap.dedent(CONFIG.format(socket=socket, extra=extra)))
    return path


def spawn(config: Path, mark: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=os.getcwd(), ACTORSUP_TEST_MARK=mark)
    return subprocess.Popen([sys.executable, "-m", "supervisor", "run", str(config)], env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def marked(mark: str) -> list[int]:
    """Live processes that inherited ``mark`` (a supervisor's actors and spares, even if orphaned)."""
    found = []
    needle = f"ACTORSUP_TEST_MARK={mark}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def _caught(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)


def _loads_msgspec(pid: int) -> bool:
    return "msgspec/_core" in Path(f"/proc/{pid}/maps").read_text()


def wait_until(pid: int, anchor: str) -> None:
    """Wait for a point in the process's own progress, whatever the machine's load.

    ``handler``: actorsup's SIGTERM handler is in place (its first line has run).
    ``imports``: msgspec's C extension is mapped, i.e. actorsup is loading its modules
    (before the fix, 0.2 s of imports ran with the signals' default actions).
    """
    ready = (lambda: _caught(pid) & (1 << (signal.SIGTERM - 1))) if anchor == "handler" else (
        lambda: _loads_msgspec(pid))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.0005)
    pytest.fail(f"pid {pid} never reached {anchor!r}")


def signal_early(folder: Path, signum: int, anchor: str, delay: float, backend: str = "trio") -> None:
    """Signal ``delay`` s after the process reaches ``anchor``; expect a clean exit 0, nothing left."""
    mark = uuid.uuid4().hex
    process = spawn(write(folder, extra=f'backend = "{backend}"'), mark)
    try:
        wait_until(process.pid, anchor)
        time.sleep(delay)  # the moment to signal at, not a wait for a state
        process.send_signal(signum)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (process.returncode, "Traceback" in out + err) == (0, False), err[-3000:]
    assert err == ""
    deadline = time.monotonic() + 5  # actors stop with the supervisor; allow their exit to land
    while marked(mark) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert marked(mark) == []


SIGNALS = pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])


class TestEarlySignal:
    @pytest.mark.parametrize("backend", ["trio", "asyncio"])
    @SIGNALS
    @pytest.mark.parametrize("delay", [0, 0.005, 0.02, 0.05, 0.1, 0.2, 0.35, 0.6])
    def test_a_stop_signal_at_any_moment_from_the_first_line_exits_zero(
            self, folder: Path, signum: int, delay: float, backend: str) -> None:
        """SIGINT or SIGTERM from actorsup's first line on (its SIGTERM handler): exit 0, no traceback."""
        signal_early(folder, signum, "handler", delay, backend)

    @SIGNALS
    @pytest.mark.parametrize("delay", [0, 0.002, 0.01, 0.03])
    def test_a_stop_signal_while_modules_load_exits_zero(self, folder: Path, signum: int, delay: float) -> None:
        """A stop signal while actorsup loads its modules and config: exit 0, no traceback."""
        signal_early(folder, signum, "imports", delay)


def run_to_exit(config: Path, mark: str) -> tuple[int, str, str]:
    process = spawn(config, mark)
    try:
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, out, err


class TestStartupFailure:
    @pytest.mark.anyio
    async def test_second_supervisor_on_the_same_socket(self, folder: Path) -> None:
        """A second supervisor on a live socket: one SocketInUse line, exit 1, nothing of it left."""
        config = write(folder)
        async with cli_supervisor(config) as first:
            await first.log.wait_for("actor.started", actor="first")
            mark = uuid.uuid4().hex
            code, _, err = await anyio.to_thread.run_sync(run_to_exit, config, mark)
            assert marked(mark) == []
            first.process.send_signal(signal.SIGTERM)
            with anyio.fail_after(20):
                assert await first.process.wait() == 0
        assert (code, err) == (1, f"actorsup: control socket {folder}/ctl.sock is in use by another running "
                                  f"supervisor; stop it with `actorsup shutdown --socket {folder}/ctl.sock` "
                                  "or set another [supervisor] control_socket\n")

    def test_metrics_port_in_use(self, folder: Path) -> None:
        """metrics_port held by another process: one line naming the setting, exit 1, nothing left."""
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            port = holder.getsockname()[1]
            mark = uuid.uuid4().hex
            code, _, err = run_to_exit(write(folder, extra=f"metrics_port = {port}"), mark)
        assert (code, err) == (1, f"actorsup: metrics_port {port}: 127.0.0.1:{port} is already in use by "
                                  "another process; stop that process or set another [supervisor] metrics_port\n")
        assert marked(mark) == []

    def test_socket_folder_that_cannot_be_created(self, folder: Path) -> None:
        """control_socket under a folder that cannot be made: one config line, exit 2, nothing left."""
        (folder / "plain").write_text("a file where the folder should be")
        mark = uuid.uuid4().hex
        code, _, err = run_to_exit(write(folder, socket="plain/run/ctl.sock"), mark)
        assert (code, err) == (2, f"actorsup: control socket {folder}/plain/run/ctl.sock: cannot create its "
                                  f"folder {folder}/plain/run (Not a directory); set another [supervisor] "
                                  "control_socket (or pass --socket PATH)\n")
        assert marked(mark) == []


class TestStdoutStaysJson:
    @pytest.mark.anyio
    async def test_a_sink_error_while_sinks_are_built_is_a_json_line(self, folder: Path) -> None:
        """An error logged while a sink is built reaches stdout as JSON, like every other line."""
        (folder / "plain").write_text("a file where the spool folder should be")
        config = write(folder, extra='[[logs.sinks]]\ntype = "stdout"\n[[logs.sinks]]\ntype = "tcp"\n'
                                     'address = "127.0.0.1:9"\nspool_dir = "plain/spool"')
        async with cli_supervisor(config) as cli:  # it parses every stdout line as JSON
            await cli.log.wait_for("supervisor.started")
            cli.process.send_signal(signal.SIGTERM)
            with anyio.fail_after(20):
                assert await cli.process.wait() == 0
        errors = cli.log.find("logs.sink_error", spool_dir=f"{folder}/plain/spool")
        assert len(errors) == 1 and errors[0]["seq"] == 1


def read_until(fd: int, needle: bytes, seconds: float = 30) -> bytes:
    """Bytes from ``fd`` until ``needle`` has been seen (bounded)."""
    import select

    seen = b""
    deadline = time.monotonic() + seconds
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            pytest.fail(f"no {needle!r} within {seconds}s; got {seen[-2000:]!r}")
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # a pty's other end closed
            chunk = b""
        if not chunk:
            pytest.fail(f"output ended before {needle!r}; got {seen[-2000:]!r}")
        seen += chunk
    return seen


class TestConsoleFormat:
    @pytest.mark.parametrize("how", ["--log-format console, piped", "auto, at a terminal"])
    def test_console_lines_for_people(self, folder: Path, how: str) -> None:
        """Console format (asked for, or auto at a tty) prints aligned human lines, not JSON."""
        import pty

        mark = uuid.uuid4().hex
        argv = [sys.executable, "-m", "supervisor", "run", str(write(folder))]
        env = dict(os.environ, PYTHONPATH=os.getcwd(), ACTORSUP_TEST_MARK=mark)
        if how.startswith("--log-format"):
            reader, writer = os.pipe()
            argv.append("--log-format=console")
        else:
            reader, writer = pty.openpty()
        process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=writer, stderr=subprocess.PIPE)
        os.close(writer)
        try:
            seen = read_until(reader, b"supervisor.started")
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            os.close(reader)
            assert process.stderr is not None
            process.stderr.close()
        text = re.sub(r"\x1b\[[0-9;]*m", "", seen.decode("utf-8", "replace"))  # colours off
        started = next(line for line in text.splitlines() if "supervisor.started" in line)
        assert re.match(r"^\d{4}-\d\d-\d\dT[\d:.]+Z \[info     \] supervisor.started +actors=\['first'\] "
                        r"config=", started.strip()), started
        assert '"seq"' not in text  # no JSON line at all
