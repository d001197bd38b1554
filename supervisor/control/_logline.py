"""One log event as a human line (`actorsup logs`): no rich, so following logs stays cheap."""

from __future__ import annotations

import json
import textwrap
from typing import Any

from ._exception import exception_text

__all__ = ["log_line"]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


_SKIP = {"timestamp", "level", "event", "actor", "pid", "seq", "id", "host", "restarts"}
_BLOCK_INDENT = "    "


def _field(value: Any) -> str:
    """A value of a log line in full: lists and objects as compact JSON, never cut."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:g}"
    return _json(value)


def log_line(raw: bytes | dict[str, Any]) -> str:
    """One log event as ``time level actor[pid] event key=value ...``.

    An exception (or any multi-line value) follows on its own indented lines,
    in full, so the exception itself, the traceback's last line, is always seen.
    """
    try:
        event = raw if isinstance(raw, dict) else json.loads(raw)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        return bytes(raw).decode("utf-8", "replace").rstrip("\n")  # type: ignore[arg-type]
    who = str(event.get("actor") or "supervisor")
    if event.get("pid") is not None:
        who += f"[{event['pid']}]"
    fields, blocks = [], []
    for key, value in event.items():
        if key in _SKIP:
            continue
        text = exception_text(value) if key == "exception" else _field(value)
        if text is None:
            continue
        if "\n" in text:
            blocks.append(f"{key}:\n" + textwrap.indent(text, _BLOCK_INDENT) if key != "exception"
                          else textwrap.indent(text, _BLOCK_INDENT))
        else:
            fields.append(f"{key}={text}")
    parts = [str(event.get("timestamp", "-")), f"{event.get('level', '-')!s:<7}", who,
             str(event.get("event", "")), " ".join(fields)]
    return "\n".join([" ".join(p for p in parts if p), *blocks])
