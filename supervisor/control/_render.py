"""Human output of the CLI: rich tables and one-line log rendering.

Only for people at a terminal; ``--json`` output never passes through here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec
from rich.table import Table
from rich.text import Text

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
    text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _state(value: Any) -> Text:
    text = _plain(value)
    return Text(text, style=_STATE_STYLE.get(text, ""))


def status_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """The ``actorsup status`` table."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for title, justify in (("NAME", "left"), ("KIND", "left"), ("STATE", "left"), ("PID", "right"),
                           ("UPTIME", "right"), ("RESTARTS", "right"), ("BEAT AGE", "right"),
                           ("CPU %", "right"), ("RSS", "right"), ("LAST ERROR", "left")):
        last = title == "LAST ERROR"
        table.add_column(title, justify=justify, no_wrap=not last,  # type: ignore[arg-type]
                         min_width=10 if last else None, overflow="ellipsis" if last else "fold")
    for row in rows:
        indent = "  " * int(row.get("depth") or 0)  # group members sit under their group
        if row.get("kind") == "group":
            table.add_row(
                Text(indent + _plain(row.get("name")), style="bold"), _plain(row.get("strategy")),
                _state(row.get("state")), "", "", _plain(row.get("restarts")), "", "", "", "",
            )
            continue
        table.add_row(
            indent + _plain(row.get("name")), _plain(row.get("kind")), _state(row.get("state")),
            _plain(row.get("pid")), fmt_duration(row.get("uptime")), _plain(row.get("restarts")),
            fmt_duration(row.get("last_beat_age")), _percent(row.get("cpu_percent")),
            fmt_bytes(row.get("rss")), _plain(_note(row)),
        )
    if not rows:
        table.caption = "no actors"
    return table


def _note(row: Mapping[str, Any]) -> Any:
    """The last error, or while a command actor runs, what it last said with STATUS= (sd_notify)."""
    if row.get("status_text") and row.get("state") == "running":
        return f"STATUS={row['status_text']}"
    return row.get("last_error")


_STATES = {"state", "status", "outcome", "last_outcome"}


def _cell(key: str, value: Any) -> Any:
    if key in _STATES:
        return _state(value)
    if key.endswith(("_age", "_in", "duration")):  # seconds, by the naming convention
        return fmt_duration(value)
    return _plain(value)


def generic_table(rows: Iterable[Mapping[str, Any]], first: str = "name",
                  skip: frozenset[str] = frozenset()) -> Table:
    """A table of dict rows whose keys are not fixed (cron list, components)."""
    rows = list(rows)
    columns: list[str] = [first] if any(first in r for r in rows) else []
    for row in rows:
        columns += [k for k in row if k not in columns and k not in skip]
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in columns:
        table.add_column(col.upper().replace("_", " "), no_wrap=col in _STATES or col == first)
    for row in rows:
        table.add_row(*(_cell(c, row.get(c)) for c in columns))
    return table


def heartbeat_tables(report: Mapping[str, Any]) -> list[Any]:
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
    table = generic_table(rows, skip=frozenset({"last_heartbeat", "error_count"}))
    return [head, table] if rows else [head, Text("no components", style="dim")]


_SKIP = {"timestamp", "level", "event", "actor", "pid", "seq", "id", "host", "restarts"}


def log_line(raw: bytes | dict[str, Any]) -> str:
    """One log event as ``time level actor[pid] event key=value ...``."""
    try:
        event = raw if isinstance(raw, dict) else msgspec.json.decode(raw)
    except msgspec.DecodeError:
        event = None
    if not isinstance(event, dict):
        return bytes(raw).decode("utf-8", "replace").rstrip("\n")  # type: ignore[arg-type]
    who = str(event.get("actor") or "supervisor")
    if event.get("pid") is not None:
        who += f"[{event['pid']}]"
    rest = " ".join(f"{k}={_plain(v, 200)}" for k, v in event.items() if k not in _SKIP)
    parts = [str(event.get("timestamp", "-")), f"{event.get('level', '-')!s:<7}", who,
             str(event.get("event", "")), rest]
    return " ".join(p for p in parts if p)
