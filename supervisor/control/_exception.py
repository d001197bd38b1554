"""An event's ``exception`` as the text of a Python traceback, last line the exception itself.

The supervisor's own events carry structlog's structured tracebacks (a list
of dicts, outermost exception first); an actor's carry the text already.
Only the standard library is used: the CLI's `logs` and the console log
format both render through here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["exception_text"]

_CAUSE = "The above exception was the direct cause of the following exception:"
_CONTEXT = "During handling of the above exception, another exception occurred:"


def _one(exc: Mapping[str, Any]) -> list[str]:
    lines = ["Traceback (most recent call last):"]
    for frame in exc.get("frames") or []:
        if isinstance(frame, Mapping):
            lines.append(f'  File "{frame.get("filename")}", line {frame.get("lineno")}, in {frame.get("name")}')
            if frame.get("line"):
                lines.append(f"    {str(frame['line']).strip()}")
    value = exc.get("exc_value")
    lines.append(f"{exc.get('exc_type', 'Exception')}: {value}" if value not in (None, "") else
                 str(exc.get("exc_type", "Exception")))
    lines += [str(note) for note in exc.get("exc_notes") or []]
    return lines


def exception_text(value: Any) -> str | None:
    """The traceback text of an ``exception`` field; None when there is nothing to show."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        return value.rstrip("\n")
    if isinstance(value, list) and value and all(isinstance(e, Mapping) for e in value):
        # Outermost first on the wire; a traceback reads from the first cause to the last raise.
        lines: list[str] = []
        inner: Mapping[str, Any] | None = None
        for exc in reversed(value):
            if inner is not None:
                lines += ["", _CAUSE if inner.get("is_cause") else _CONTEXT, ""]
            lines += _one(exc)
            inner = exc
        return "\n".join(lines)
    return str(value)
