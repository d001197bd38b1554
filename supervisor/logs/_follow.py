"""One live follower of the log stream (`actorsup logs -f`): a bounded queue that counts.

A follower that reads too slowly must not hold the router up, so records that
find its queue full are skipped; but never silently: the count goes into a
``logs.skipped`` marker line, sent in the gap's place once there is room again.
"""

from __future__ import annotations

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectSendStream

from ._record import LogRecord
from ._time import iso_utc

__all__ = ["Follower"]

_WARNING = 30


class Follower:
    __slots__ = ("actor", "send", "skipped")

    def __init__(self, send: MemoryObjectSendStream[LogRecord], actor: str | None = None) -> None:
        self.send = send
        self.actor = actor  # None: every record
        self.skipped = 0  # records dropped since the last marker

    def offer(self, record: LogRecord) -> None:
        """Queue ``record`` without waiting; count it as skipped when the queue is full."""
        if self.actor is not None and record.actor != self.actor:
            return
        try:
            if self.skipped:
                self.send.send_nowait(self._marker())
                self.skipped = 0
            self.send.send_nowait(record)
        except anyio.WouldBlock:
            self.skipped += 1
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    def _marker(self) -> LogRecord:
        line = msgspec.json.encode({
            "timestamp": iso_utc(), "level": "warning", "event": "logs.skipped", "actor": self.actor,
            "skipped": self.skipped,
            "hint": "this follower read too slowly: these lines were not sent to it; "
                    "the log sinks and `actorsup logs` (the buffer) still have them",
        })
        return LogRecord(_WARNING, self.actor, line)
