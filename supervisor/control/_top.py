"""`actorsup top`: a live view of a running supervisor, in the spirit of `pm2 monit`.

The actors' table (state, restarts, CPU, RSS, beat age) on top, the latest log
lines of the selected actor below. Up/down (or k/j) select, q or Ctrl-C quit;
the terminal is put back as it was in every case. Each refresh is two short
requests on a fresh connection, so a slow refresh never holds a server slot.
"""

from __future__ import annotations

import os
import select
import sys
import termios
import time
import tty
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.text import Text

from ._client import ControlClient
from ._logline import log_line
from ._render import status_table

__all__ = ["run_top"]

_UP = {b"k", b"\x1b[A", b"\x1bOA"}
_DOWN = {b"j", b"\x1b[B", b"\x1bOB"}
_QUIT = {b"q", b"Q", b"\x03"}  # \x03: Ctrl-C where the terminal does not turn it into SIGINT


class _View:
    def __init__(self, path: Path, timeout: float, lines: int) -> None:
        self.path = path
        self.timeout = timeout
        self.lines = lines
        self.selected = 0
        self.rows: list[dict[str, Any]] = []
        self.logs: list[Any] = []

    def refresh(self) -> None:
        with ControlClient(self.path, timeout=self.timeout) as client:
            self.rows = client.request("status")
            self.selected = min(self.selected, max(len(self.rows) - 1, 0))
            name = self.name()
            self.logs = client.request("logs", n=self.lines, actor=name) if name else []

    def name(self) -> str | None:
        return str(self.rows[self.selected]["name"]) if self.rows else None

    def key(self, data: bytes) -> bool:
        """Act on a key press; False to quit."""
        if data in _QUIT:
            return False
        if data in _UP:
            self.selected = max(self.selected - 1, 0)
        elif data in _DOWN:
            self.selected = min(self.selected + 1, max(len(self.rows) - 1, 0))
        return True

    def render(self, width: int) -> Group:
        table = status_table(self.rows, width, selected=self.name())
        body = Text("\n".join(log_line(e) for e in self.logs) or "no log lines yet", no_wrap=True,
                    overflow="ellipsis")
        title = f"logs of {self.name()}" if self.name() else "logs"
        help_line = Text("up/down or k/j: select   q: quit", style="dim")
        return Group(table, Panel(body, title=title, title_align="left", height=self.lines + 2), help_line)


def run_top(path: Path, *, interval: float, timeout: float, lines: int = 10) -> int:
    """Run the live view until q or Ctrl-C; exit status 0 (errors raise ControlError)."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise _NotATerminal
    view = _View(path, timeout, lines)
    view.refresh()
    console = Console()
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)  # keys one by one, no echo; Ctrl-C still raises KeyboardInterrupt
        with Live(view.render(console.width), console=console, auto_refresh=False, screen=True) as live:
            due = time.monotonic() + interval
            while True:
                ready, _, _ = select.select([fd], [], [], max(due - time.monotonic(), 0))
                if ready:
                    if not view.key(os.read(fd, 16)):
                        return 0
                else:
                    view.refresh()
                    due = time.monotonic() + interval
                live.update(view.render(console.width), refresh=True)
    except KeyboardInterrupt:
        return 0
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class _NotATerminal(Exception):
    """`top` draws on a terminal; piped, `status --watch --json` is the tool."""
