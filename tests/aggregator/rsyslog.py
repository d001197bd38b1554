"""A private rsyslogd: imtcp (JSON lines and RFC 5424) and imrelp, each checked by mmjsonparse.

``rsyslog`` (fixture) gives an :class:`Rsyslog` with three free 127.0.0.1
ports: ``tcp_port`` (newline-delimited JSON), ``syslog_port`` (RFC 5424 with
octet counting) and ``relp_port`` (RELP). Every message goes through
mmjsonparse and is written as the parsed fields (``$!all-json-plain``), so a
line in ``tcp_log``, ``syslog_log`` or ``relp_log`` has the event's keys only
if rsyslog parsed the JSON. rsyslogd runs as ``rsyslogd -n -f CONF -i PIDFILE``
with the config, pid file and work folder under ``tmp_path``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._daemon import Daemon, find_binary, free_port

__all__ = ["Rsyslog", "rsyslog_fixture"]

CONFIG = Path(__file__).with_name("rsyslog.conf")


class Rsyslog(Daemon):
    label = "rsyslogd"

    def __init__(self, binary: Path, prefix: Path, workdir: Path) -> None:
        self.tcp_port = free_port()
        self.syslog_port = free_port()
        self.relp_port = free_port()
        super().__init__(workdir, [self.tcp_port, self.syslog_port, self.relp_port])
        self.binary = binary
        self.prefix = prefix
        self.tcp_log = workdir / "tcp.log"
        self.syslog_log = workdir / "syslog.log"
        self.relp_log = workdir / "relp.log"
        self.config = workdir / "rsyslog.conf"
        self.config.write_text(
            CONFIG.read_text()
            .replace("@TCP_PORT@", str(self.tcp_port))
            .replace("@SYSLOG_PORT@", str(self.syslog_port))
            .replace("@RELP_PORT@", str(self.relp_port))
            .replace("@OUT_DIR@", str(workdir))
        )

    def argv(self) -> list[str]:
        argv = [str(self.binary), "-n", "-f", str(self.config), "-i", str(self.workdir / "rsyslogd.pid")]
        if self.prefix != Path("/"):  # an unpacked copy: its own modules
            argv += ["-M", str(next((self.prefix / "usr/lib").glob("*/rsyslog")))]
        return argv


@pytest.fixture(name="rsyslog")
def rsyslog_fixture(tmp_path: Path) -> Iterator[Rsyslog]:
    binary, prefix = find_binary("rsyslogd", "rsyslog")
    if not any(p.exists() for p in (prefix / "usr/lib").glob("*/rsyslog/imrelp.so")):
        message = "rsyslog's RELP input is not installed (apt-get install -y rsyslog-relp)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    workdir = tmp_path / "rsyslog"
    workdir.mkdir()
    server = Rsyslog(binary, prefix, workdir)
    try:
        yield server
    finally:
        server.stop()
