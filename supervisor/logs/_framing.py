"""Wire framings of the network sinks.

* ``ndjson``: one JSON object per line (Vector ``socket``, Fluent Bit ``tcp``,
  Logstash ``json_lines``, syslog-ng ``network(flags(no-parse))``).
* ``syslog``: RFC 5424 messages with RFC 6587 octet-counting framing, the JSON
  object as MSG; MSGID is the actor name, PROCID the supervisor's pid.
* ``relp``: the same RFC 5424 message, bare (the RELP frame carries the length).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable

from ._record import LogRecord
from ._time import iso_utc

__all__ = ["ndjson_framer", "syslog_framer", "syslog_message_framer"]

Framer = Callable[[LogRecord], bytes]
_FACILITY_USER = 1
_PRINTABLE = re.compile(r"[^\x21-\x7e]")


def ndjson_framer() -> Framer:
    def frame(record: LogRecord) -> bytes:
        return record.line + b"\n"

    return frame


def _severity(level: int) -> int:
    if level >= 50:
        return 2  # critical
    if level >= 40:
        return 3  # error
    if level >= 30:
        return 4  # warning
    if level >= 20:
        return 6  # informational
    return 7  # debug


def _token(text: str, limit: int) -> str:
    return _PRINTABLE.sub("_", text)[:limit] or "-"


def syslog_message_framer(app_name: str = "actorsup", host: str | None = None) -> Framer:
    """A bare RFC 5424 message per record (RELP carries its own length)."""
    hostname = _token(host or socket.gethostname(), 255)
    app = _token(app_name, 48)
    procid = str(os.getpid())
    middle = f" {hostname} {app} {procid} ".encode()
    pri = [f"<{_FACILITY_USER * 8 + _severity(level)}>1 ".encode() for level in range(60)]
    msgids: dict[str | None, bytes] = {None: b"- - "}  # MSGID and empty STRUCTURED-DATA

    def frame(record: LogRecord) -> bytes:
        msgid = msgids.get(record.actor)
        if msgid is None:
            msgid = msgids[record.actor] = f"{_token(record.actor or '-', 32)} - ".encode()
        msg = (
            pri[min(max(record.level, 0), 59)]
            + iso_utc().encode()
            + middle
            + msgid
            + record.line
        )
        return msg

    return frame


def syslog_framer(app_name: str = "actorsup", host: str | None = None) -> Framer:
    message = syslog_message_framer(app_name, host)

    def frame(record: LogRecord) -> bytes:
        msg = message(record)
        return b"%d %s" % (len(msg), msg)

    return frame
