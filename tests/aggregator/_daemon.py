"""Shared lifecycle of the private aggregators (syslog-ng, rsyslog) that the log tests start.

Each runs in the foreground with its own config, pid file and state under
``tmp_path``, listens on 127.0.0.1 only, and is stopped by its pid. The binary
comes from the Debian package or from a copy unpacked under ``/opt/NAME``
(``dpkg-deb -x``; the two packages conflict, so a machine may carry one of
them that way). With ``CI=true`` a missing binary fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest

__all__ = ["Daemon", "find_binary", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_binary(name: str, package: str) -> tuple[Path, Path]:
    """(binary, install prefix) of NAME on PATH (a wrapper, as .ci/run installs, counts as installed),
    ``/usr/sbin/NAME``, or an unpacked ``/opt/PACKAGE/usr/sbin/NAME``; else skip (fail in CI)."""
    found = shutil.which(name)
    if found is not None:
        return Path(found), Path("/")
    for prefix in (Path("/"), Path("/opt") / package):
        for sub in ("usr/sbin", "sbin", "usr/bin"):
            binary = prefix / sub / name
            if binary.exists():
                return binary, prefix
    message = f"{name} is not installed (apt-get install -y {package})"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


class Daemon:
    """One aggregator process: start (and start again on the same ports), stop, read its files."""

    label = "daemon"

    def __init__(self, workdir: Path, ports: list[int]) -> None:
        self.workdir = workdir
        self.ports = ports
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    async def start(self) -> None:
        """Start the daemon and wait (bounded) until every port accepts."""
        assert self.proc is None, "already running"
        self.starts += 1
        with open(self.workdir / f"{self.label}.{self.starts}.out", "wb") as out:
            self.proc = subprocess.Popen(self.argv(), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env())
        with anyio.fail_after(15):
            for port in self.ports:
                while True:
                    if self.proc.poll() is not None:
                        raise RuntimeError(f"{self.label} exited with {self.proc.returncode}: {self.output()}")
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
        return "".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob(f"{self.label}.*.out")))

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
