"""Private aggregators for the log-pipeline tests: syslog-ng and rsyslog.

``syslog_ng`` (fixture ``syslog_ng_fixture``; import it to use it) gives a :class:`SyslogNg` with two free 127.0.0.1
ports: ``tcp_port`` (newline-delimited JSON, ``flags(no-parse)``) and
``syslog_port`` (RFC 5424, octet counting). Each writes ``$MSG`` per line to
its own file. syslog-ng runs in the foreground with its own pid file, control
socket and persist file under ``tmp_path`` and no system config.

``rsyslog`` (fixture ``rsyslog_fixture``) gives an :class:`~aggregator.rsyslog.Rsyslog`: imtcp
for JSON lines and for RFC 5424, imrelp for RELP, each parsed by mmjsonparse.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._daemon import Daemon, find_binary, free_port
from .rsyslog import Rsyslog, rsyslog_fixture

__all__ = ["Daemon", "Rsyslog", "SyslogNg", "rsyslog_fixture", "syslog_ng_fixture"]

CONFIG = Path(__file__).with_name("syslog-ng.conf")


class SyslogNg(Daemon):
    label = "syslog-ng"

    def __init__(self, binary: Path, prefix: Path, workdir: Path) -> None:
        self.tcp_port = free_port()
        self.syslog_port = free_port()
        super().__init__(workdir, [self.tcp_port, self.syslog_port])
        self.binary = binary
        self.prefix = prefix
        self.tcp_log = workdir / "tcp.log"
        self.syslog_log = workdir / "syslog.log"
        self.config = workdir / "syslog-ng.conf"
        self.config.write_text(
            CONFIG.read_text()
            .replace("@TCP_PORT@", str(self.tcp_port))
            .replace("@SYSLOG_PORT@", str(self.syslog_port))
            .replace("@OUT_DIR@", str(workdir))
        )

    def argv(self) -> list[str]:
        argv = [
            str(self.binary), "-F", "--no-caps", "-f", str(self.config),
            "-R", str(self.workdir / "syslog-ng.persist"),
            "-p", str(self.workdir / "syslog-ng.pid"),
            "-c", str(self.workdir / "syslog-ng.ctl"),
        ]
        if self.prefix != Path("/"):  # an unpacked copy: its own modules
            modules = sorted((self.prefix / "usr/lib/syslog-ng").glob("[0-9]*"))
            argv += [f"--module-path={modules[-1]}"]
        return argv

    def env(self) -> dict[str, str] | None:
        if self.prefix == Path("/"):
            return None
        return {**os.environ, "LD_LIBRARY_PATH": str(self.prefix / "usr/lib/syslog-ng")}


@pytest.fixture(name="syslog_ng")
def syslog_ng_fixture(tmp_path: Path) -> Iterator[SyslogNg]:
    binary, prefix = find_binary("syslog-ng", "syslog-ng-core")
    workdir = tmp_path / "syslog-ng"
    workdir.mkdir()
    server = SyslogNg(binary, prefix, workdir)
    try:
        yield server
    finally:
        server.stop()
