"""A private syslog-ng for the log-pipeline tests.

``syslog_ng`` (fixture) gives a :class:`SyslogNg` with two free 127.0.0.1
ports: ``tcp_port`` (newline-delimited JSON, ``flags(no-parse)``) and
``syslog_port`` (RFC 5424, octet counting). Each writes ``$MSG`` per line to
its own file. syslog-ng runs in the foreground with its own pid file, control
socket and persist file under ``tmp_path`` and no system config; it is stopped
by its pid. With ``CI=true`` a missing syslog-ng binary fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

__all__ = ["SyslogNg", "syslog_ng"]

CONFIG = Path(__file__).with_name("syslog-ng.conf")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SyslogNg:
    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.tcp_port = _free_port()
        self.syslog_port = _free_port()
        self.tcp_log = workdir / "tcp.log"
        self.syslog_log = workdir / "syslog.log"
        self.config = workdir / "syslog-ng.conf"
        self.config.write_text(
            CONFIG.read_text()
            .replace("@TCP_PORT@", str(self.tcp_port))
            .replace("@SYSLOG_PORT@", str(self.syslog_port))
            .replace("@OUT_DIR@", str(workdir))
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    async def start(self) -> None:
        """Start syslog-ng (again, on the same ports) and wait until both ports accept."""
        assert self.proc is None, "already running"
        self.starts += 1
        out = open(self.workdir / f"syslog-ng.{self.starts}.out", "wb")  # noqa: SIM115
        with out:
            self.proc = subprocess.Popen(
                [
                    self.binary, "-F", "--no-caps", "-f", str(self.config),
                    "-R", str(self.workdir / "syslog-ng.persist"),
                    "-p", str(self.workdir / "syslog-ng.pid"),
                    "-c", str(self.workdir / "syslog-ng.ctl"),
                ],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        with anyio.fail_after(15):
            for port in (self.tcp_port, self.syslog_port):
                while True:
                    if self.proc.poll() is not None:
                        raise RuntimeError(f"syslog-ng exited with {self.proc.returncode}: {self.output()}")
                    try:
                        stream = await anyio.connect_tcp("127.0.0.1", port)
                    except OSError:
                        await anyio.sleep(0.02)  # polling, bounded by fail_after
                        continue
                    await stream.aclose()
                    break

    def stop(self) -> None:
        """SIGTERM by pid, bounded wait, SIGKILL as a last resort."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("syslog-ng.*.out")))

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        """Every complete JSON line received so far."""
        if not path.exists():
            return []
        data = path.read_bytes()
        return [json.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines() if line]

    async def wait_for(
        self, path: Path, count: int, timeout: float = 20.0, *, distinct: bool = False
    ) -> list[dict[str, Any]]:
        """Poll (bounded by fail_after) until ``count`` lines (or distinct event ids) are in ``path``.

        After an outage the replay sends duplicates, so counting lines could stop early.
        """
        with anyio.fail_after(timeout):
            while True:
                events = self.read(path)
                arrived = len({e["id"] for e in events}) if distinct else len(events)
                if arrived >= count:
                    return events
                await anyio.sleep(0.05)


@pytest.fixture
def syslog_ng(tmp_path: Path) -> Iterator[SyslogNg]:
    binary = shutil.which("syslog-ng") or next(
        (p for p in ("/usr/sbin/syslog-ng", "/sbin/syslog-ng") if os.path.exists(p)), None
    )
    if binary is None:
        message = "syslog-ng is not installed (apt-get install -y syslog-ng-core)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    workdir = tmp_path / "syslog-ng"
    workdir.mkdir()
    server = SyslogNg(binary, workdir)
    try:
        yield server
    finally:
        server.stop()
