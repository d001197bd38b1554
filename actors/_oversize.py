"""Cut an event or frame that would not fit in one channel frame, instead of dying for it.

The supervisor refuses a frame over :data:`~actors._protocol.MAX_FRAME` as a
protocol error and kills the child. A log call must never do that, so the
child sends an oversized event in a form that fits: the same ``timestamp``,
``level`` and ``event``, every over-long value cut to a prefix, and
``"truncated": true, "original_bytes": N, "truncated_keys": [...]``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ._protocol import MAX_FRAME

__all__ = ["MAX_EVENT", "shrink_error", "shrink_event"]

# Room for the Log frame's own fields and the keys the supervisor splices in front.
MAX_EVENT = MAX_FRAME - 64 * 1024
_FRONT = ("timestamp", "level", "event")
_MARK = "…"
_MIN_VALUE = 1024

_encode = msgspec.json.Encoder(enc_hook=str).encode
_decode = msgspec.json.Decoder().decode


def _cut(text: str, limit: int) -> str:
    return text if len(text.encode()) <= limit else text.encode()[:limit].decode("utf-8", "ignore") + _MARK


def shrink_event(body: bytes, limit: int = MAX_EVENT) -> bytes:
    """``body`` (one JSON object) made to fit in ``limit`` bytes, marked as truncated."""
    try:
        obj = _decode(body)
    except msgspec.DecodeError:
        obj = {"event": body[:_MIN_VALUE].decode("utf-8", "replace")}
    if not isinstance(obj, dict):
        obj = {"event": obj}
    out: dict[str, Any] = {key: obj.pop(key) for key in _FRONT if key in obj}
    if isinstance(out.get("event"), str):
        out["event"] = _cut(out["event"], _MIN_VALUE * 4)
    budget = max(_MIN_VALUE, limit // 2 // max(1, len(obj)))
    cut_keys: list[str] = []
    for key, value in obj.items():
        if len(key) > _MIN_VALUE:
            key = _cut(key, _MIN_VALUE)
        encoded = value if isinstance(value, str) else None
        if encoded is None:
            raw = _encode(value)
            if len(raw) <= budget:
                out[key] = value
                continue
            encoded = raw.decode("utf-8", "replace")
        if len(encoded) > budget // 4 and len(encoded.encode()) > budget:
            out[key] = _cut(encoded, budget)
            cut_keys.append(key)
        else:
            out[key] = value
    out.update(truncated=True, original_bytes=len(body), truncated_keys=cut_keys)
    small = _encode(out)
    if len(small) <= limit:
        return small
    # Too many keys to keep even in short: the front keys and the marker only.
    front = {key: out[key] for key in _FRONT if key in out}
    return _encode({**front, "truncated": True, "original_bytes": len(body), "truncated_keys": sorted(obj)[:100]})


def shrink_error(error: str | None, limit: int = MAX_EVENT) -> str | None:
    """An ``error`` text of a frame cut to ``limit`` bytes, saying how long it was."""
    if error is None or len(error) <= limit // 4 or len(error.encode()) <= limit:
        return error
    return _cut(error, limit) + f" [truncated: {len(error.encode())} bytes]"
