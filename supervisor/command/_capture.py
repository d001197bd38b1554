"""Structured capture: a program's JSON output line becomes the fields of its log event.

A stdout or stderr line that is a JSON object (it starts with ``{``) is merged
into the line's event: its ``msg``, ``message`` or ``event`` (the first present,
in that order) becomes ``event``, and ``level``, ``severity`` or ``levelname``
becomes ``level``, normalised to our names (``warn`` -> ``warning``, pino's
``30`` -> ``info``, a syslog severity ``3`` -> ``error``). The keys the
supervisor sets (``actor``, ``pid``, ``seq``, ``id``, ``host``, ``timestamp``
as received, ``restarts``, ``stream``) are never overwritten: a program's
``pid`` is kept as ``app_pid``. Any other line, and a line that does not decode
(a lone surrogate, a number out of range), stays a text event.

:func:`capture_event` takes the event :class:`~supervisor.logs.LineAssembler`
made of a line and returns the merged one; :func:`may_hold_json` tells the
assembler's whole-chunk fast path which chunks to decline.
"""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec

__all__ = ["OWN_KEYS", "PREFIX", "capture_event", "may_hold_json", "merge_json_line", "normalise_level"]

OWN_KEYS = frozenset({"actor", "pid", "seq", "id", "host", "timestamp", "restarts", "stream"})
PREFIX = "app_"
_EVENT_KEYS = ("msg", "message", "event")
_LEVEL_KEYS = ("level", "severity", "levelname")
_decode = msgspec.json.Decoder()
_JSON_LINE = re.compile(rb"(?:^|\n)\{")

_LEVEL_NAMES = {
    "trace": "debug", "debug": "debug", "dbug": "debug", "verbose": "debug",
    "info": "info", "information": "info", "informational": "info", "notice": "info",
    "warn": "warning", "warning": "warning",
    "err": "error", "error": "error", "eror": "error",
    "crit": "critical", "critical": "critical", "fatal": "critical", "panic": "critical",
    "alert": "critical", "emerg": "critical", "emergency": "critical",
}
# syslog severities (RFC 5424), for a numeric ``severity``
_SYSLOG = ("critical", "critical", "critical", "error", "warning", "info", "info", "debug")


def normalise_level(key: str, value: Any) -> str | None:
    """Our level name for a program's ``key = value``; None when it means nothing we know.

    A number under ``level`` or ``levelname`` is on pino's and bunyan's scale
    (10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal); under
    ``severity`` it is a syslog severity (0 emerg ... 7 debug).
    """
    if isinstance(value, str):
        return _LEVEL_NAMES.get(value.strip().lower())
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    if key == "severity":
        return _SYSLOG[int(value)] if 0 <= value <= 7 and value == int(value) else None
    if value < 10:
        return None
    return ("debug", "debug", "info", "warning", "error", "critical")[min(int(value) // 10, 6) - 1]


def merge_json_line(text: str, base: dict[str, Any]) -> dict[str, Any] | None:
    """``base`` (the text event of ``text``) with the fields of the JSON object ``text``; None if it is not one."""
    if not text.startswith("{"):
        return None
    try:
        fields = _decode.decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if not isinstance(fields, dict):
        return None
    event = dict(base)
    for key in _EVENT_KEYS:
        if key in fields:
            message = fields.pop(key)
            event["event"] = message if isinstance(message, str) else msgspec.json.encode(message).decode()
            break
    for key in _LEVEL_KEYS:
        if key in fields:
            level = normalise_level(key, fields[key])
            if level is not None:
                event["level"] = level
                del fields[key]
            break
    for key, value in fields.items():
        if key in event or key in OWN_KEYS:
            key = _free_key(key, fields, event)
        event[key] = value
    return event


def _free_key(key: str, fields: dict[str, Any], event: dict[str, Any]) -> str:
    """``app_KEY`` (or ``app_app_KEY``, ...): the first prefixed name that neither side uses."""
    candidate = PREFIX + key
    while candidate in event or candidate in fields or candidate in OWN_KEYS:
        candidate = PREFIX + candidate
    return candidate


def capture_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event of a captured line, merged when the line is a JSON object.

    ``event`` is what :class:`~supervisor.logs.LineAssembler` emits for a line
    (``timestamp``, ``level``, ``event``, ``stream``). Tracebacks and the
    pieces of a split over-long line are passed through unchanged.
    """
    if "exception" in event or "continued" in event:
        return event
    text = event.get("event")
    if not isinstance(text, str):
        return event
    return merge_json_line(text, event) or event


def may_hold_json(lines: bytes | memoryview) -> bool:
    """True if a chunk of lines has one starting with ``{``: the per-line path must see it."""
    return _JSON_LINE.search(lines) is not None
