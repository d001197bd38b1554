"""Human output of the CLI: rich tables and one-line log rendering.

Only for people at a terminal; ``--json`` output never passes through here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from ._logline import log_line

__all__ = [
    "fmt_bytes",
    "fmt_duration",
    "generic_table",
    "heartbeat_tables",
    "log_line",
    "status_table",
]

_STATE_STYLE = {
    "running": "green", "healthy": "green", "ok": "green",
    "starting": "yellow", "backoff": "yellow", "stopping": "yellow", "unknown": "yellow",
    "errored": "red", "failed": "bold red", "error": "red", "timeout": "red", "killed": "red",
    "stopped": "dim",
}


def fmt_duration(seconds: Any) -> str:
    """``3.2`` -> ``3.2s``; ``185`` -> ``3m05s``; ``None`` -> ``-``."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return "-"
    s = max(float(seconds), 0.0)
    if s < 10:
        return f"{s:.1f}s"
    if s < 60:
        return f"{s:.0f}s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


def fmt_bytes(n: Any) -> str:
    """``1536`` -> ``1.5 KiB``; ``None`` -> ``-``."""
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _percent(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    return f"{value:.1f}"


def _plain(value: Any, limit: int = 60) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return f"{len(value)}: {_plain(value[-1], limit)}" if value else "-"
    if isinstance(value, dict) and isinstance(value.get("error"), str):
        return _plain(value["error"], limit)  # an error record: its message says it all
    text = value if isinstance(value, str) else _json(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _state(value: Any) -> Text:
    text = _plain(value)
    return Text(text, style=_STATE_STYLE.get(text, ""))


@dataclass
class _Column:
    title: str
    cells: list[Any]
    priority: int  # 0 is kept longest when the terminal is narrow
    justify: str = "left"
    flexible: bool = False  # may shrink (ellipsis) down to _MIN_FLEX; the others never do

    def width(self) -> int:
        return max([cell_len(self.title), *(cell_len(c.plain if isinstance(c, Text) else str(c))
                                           for c in self.cells)])


_GAP = 2  # rich's padding between two columns
_MIN_FLEX = 10


def _fit(columns: list[_Column], width: int | None, caption: str | None = None,
         selected: int | None = None) -> Table:
    """The columns that fit ``width`` (all when None), dropped by priority, never squeezed."""
    keep = set(range(len(columns)))
    flex_width: int | None = None
    if width is not None:
        keep, used = set(), 0
        for i in sorted(range(len(columns)), key=lambda i: columns[i].priority):
            need = (_MIN_FLEX if columns[i].flexible else columns[i].width()) + (_GAP if keep else 0)
            if used + need <= width:
                keep.add(i)
                used += need
        flexible = [i for i in keep if columns[i].flexible]
        if flexible:
            rest = sum(columns[i].width() + _GAP for i in keep if i not in flexible)
            flex_width = max(_MIN_FLEX, width - rest)
    table = Table(box=None, header_style="bold", pad_edge=False, caption=caption)
    shown = [c for i, c in enumerate(columns) if i in keep]
    for col in shown:
        table.add_column(col.title, justify=col.justify, no_wrap=True,  # type: ignore[arg-type]
                         overflow="ellipsis" if col.flexible else "fold",
                         max_width=flex_width if col.flexible else None,
                         min_width=None if col.flexible else col.width())
    for r in range(len(columns[0].cells) if columns else 0):
        table.add_row(*(col.cells[r] for col in shown), style="reverse" if r == selected else None)
    return table


_NOT_FOR_GROUPS = {"pid", "uptime", "last_beat_age", "cpu_percent", "rss", "last_error"}


def status_table(rows: Sequence[Mapping[str, Any]], width: int | None = None,
                 selected: str | None = None) -> Table:
    """The ``actorsup status`` table; at ``width`` columns, the least needed ones are dropped.

    The row of actor ``selected`` (`actorsup top`) is shown in reverse video.
    """
    def cells(render: Any, key: str) -> list[Any]:
        # A group's row has its strategy for a kind, its state and restarts, nothing else.
        return ["" if row.get("kind") == "group" and key in _NOT_FOR_GROUPS else render(row.get(key))
                for row in rows]

    def name(row: Mapping[str, Any]) -> Any:
        indent = "  " * int(row.get("depth") or 0)  # group members sit under their group
        text = indent + _plain(row.get("name"))
        return Text(text, style="bold") if row.get("kind") == "group" else text

    kinds = [_plain(row.get("strategy") if row.get("kind") == "group" else row.get("kind")) for row in rows]
    columns = [
        _Column("NAME", [name(row) for row in rows], 0),
        _Column("KIND", kinds, 9),
        _Column("STATE", cells(_state, "state"), 1),
        _Column("PID", cells(_plain, "pid"), 4, "right"),
        _Column("UPTIME", cells(fmt_duration, "uptime"), 6, "right"),
        _Column("RESTARTS", cells(_plain, "restarts"), 2, "right"),
        _Column("BEAT AGE", cells(fmt_duration, "last_beat_age"), 3, "right"),
        _Column("CPU %", cells(_percent, "cpu_percent"), 8, "right"),
        _Column("RSS", cells(fmt_bytes, "rss"), 7, "right"),
        _Column("LAST ERROR", ["" if row.get("kind") == "group" else _plain(_note(row)) for row in rows], 5,
                flexible=True),
    ]
    names = [row.get("name") for row in rows]
    at = names.index(selected) if selected in names else None
    return _fit(columns, width, caption=None if rows else "no actors", selected=at)


def _note(row: Mapping[str, Any]) -> Any:
    """The last error; while a command actor runs, what it last said with STATUS= (sd_notify);
    while Ray has not placed a ray actor, why."""
    if row.get("status_text") and row.get("state") == "running":
        return f"STATUS={row['status_text']}"
    if row.get("pending") and row.get("state") == "starting":
        return f"pending: {row['pending']}"
    return row.get("last_error")


_STATES = {"state", "status", "outcome", "last_outcome"}


def _cell(key: str, value: Any) -> Any:
    if key in _STATES:
        return _state(value)
    if key.endswith(("_age", "_in", "duration", "timeout")):  # seconds, by the naming convention
        return fmt_duration(value)
    return _plain(value)


def generic_table(rows: Iterable[Mapping[str, Any]], first: str = "name",
                  skip: frozenset[str] = frozenset(), width: int | None = None) -> Table:
    """A table of dict rows whose keys are not fixed (cron list, components).

    At ``width`` columns, the rightmost are dropped first (the name and states last);
    text columns shrink with an ellipsis.
    """
    rows = list(rows)
    keys: list[str] = [first] if any(first in r for r in rows) else []
    for row in rows:
        keys += [k for k in row if k not in keys and k not in skip]
    columns = []
    for i, key in enumerate(keys):
        cells = [_cell(key, row.get(key)) for row in rows]
        priority = 0 if key == first else 1 if key in _STATES else 2 + i
        text = key not in _STATES and key != first and any(len(str(c)) > 20 for c in cells)
        columns.append(_Column(key.upper().replace("_", " "), cells, priority, flexible=text))
    return _fit(columns, width)


def heartbeat_tables(report: Mapping[str, Any], width: int | None = None) -> list[Any]:
    """Overall status and counts, then one row per component."""
    status = _plain(report.get("status"))
    counts = report.get("counts") or {}
    head = Text.assemble(("status: ", "bold"), (status, _STATE_STYLE.get(status, "")))
    if counts:
        head.append("  " + "  ".join(f"{k}={v}" for k, v in counts.items()))
    components = report.get("components") or {}
    rows = [{**(info if isinstance(info, Mapping) else {"status": info}), "name": name}
            for name, info in components.items()]
    # The age says more than the wall-clock time of the last beat; the error list shows its count.
    table = generic_table(rows, skip=frozenset({"last_heartbeat", "error_count"}), width=width)
    return [head, table] if rows else [head, Text("no components", style="dim")]
