"""SIGINT and SIGTERM before the event loop listens for them: `actorsup run` exits 0 at any moment.

Until :func:`stop_now` runs, the interpreter's defaults apply (the interpreter's
own start-up, about 20 ms of CPU, that no Python code can cover). From then on,
while nothing has been started (the config is loading), a stop signal ends the
process at once with exit 0: there is nothing to stop, and an exception raised
into an import can crash a C extension's initialisation (seen: SIGSEGV in
msgspec's). From :func:`defer` on (the event loop is starting, or has handed
the signals back), a stop signal is only recorded: the loop's own receiver
takes over and :func:`take` hands it what arrived meanwhile.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from types import FrameType

__all__ = ["STOPS", "defer", "stop_now", "take"]

STOPS = (signal.SIGINT, signal.SIGTERM)
_pending: list[int] = []


def _exit_now(signum: int, frame: FrameType | None) -> None:
    os._exit(0)  # nothing is running yet: no child, no socket, no log file


def _record(signum: int, frame: FrameType | None) -> None:
    _pending.append(signum)


def _ignore(signum: int, frame: FrameType | None) -> None:
    """SIGHUP before the log files exist: nothing to reopen (and never the default: exit)."""


def stop_now() -> None:
    """A stop signal exits 0 at once (nothing runs yet that needs stopping)."""
    _install(_exit_now)


def defer() -> None:
    """A stop signal is recorded for :func:`take` (the event loop must not be interrupted)."""
    _install(_record)


def _install(handler: Callable[[int, FrameType | None], None]) -> None:
    for signum in STOPS:
        signal.signal(signum, handler)
    # A Python function, never SIG_IGN: an ignored signal would be inherited by exec'd actors.
    signal.signal(signal.SIGHUP, _ignore)


def take() -> int | None:
    """The first stop signal recorded since :func:`defer` (None if none), clearing the record."""
    first = _pending[0] if _pending else None
    _pending.clear()
    return first
