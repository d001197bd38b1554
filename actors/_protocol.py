"""The channel protocol between the supervisor and one child actor.

Frames are msgpack-encoded msgspec structs, each preceded by a 4-byte
big-endian length. The child speaks first (:class:`Hello`); the parent answers
with :class:`Init`, and the child confirms with :class:`Ready` once the actor
object exists. After that the child sends beats, log events, health results
and cron-run results; the parent sends run requests and stop requests.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

__all__ = [
    "MAX_FRAME",
    "PROTOCOL_VERSION",
    "Beat",
    "ChildFrame",
    "Doorbell",
    "Exiting",
    "FrameDecoder",
    "FrameError",
    "Health",
    "Hello",
    "Init",
    "Log",
    "ParentFrame",
    "Ready",
    "RunDone",
    "RunNow",
    "Stop",
    "encode",
]

PROTOCOL_VERSION = 2  # 2: frames after the Hello travel through a shared-memory ring
MAX_FRAME = 32 * 1024 * 1024  # one frame; far above any sane log event
_HEADER = struct.Struct(">I")


class _Frame(msgspec.Struct, tag_field="t", array_like=True, frozen=True):
    pass


# --- child -> parent -------------------------------------------------------
class Hello(_Frame, tag="hello", frozen=True):
    version: int
    pid: int
    ring: bool = False  # the child mapped the ring: every later frame comes through it


class Doorbell(_Frame, tag="ring", frozen=True):
    """On the socket: the ring has frames and the supervisor was waiting for some."""


class Ready(_Frame, tag="ready", frozen=True):
    """The actor object exists; ``run()`` (or the cron loop) starts now."""

    # It overrides health_check(): Health frames will come (a default, so older frames decode).
    has_health_check: bool = False


class Beat(_Frame, tag="beat", frozen=True):
    seq: int
    # The child's CLOCK_MONOTONIC when it beat: a beat read late (a lazy round) still dates right.
    at: float | None = None


class Log(_Frame, tag="log", frozen=True):
    """One structured event, already rendered by the child as a JSON object."""

    level: int  # stdlib numeric level, for sink filters without parsing
    body: bytes


class Health(_Frame, tag="health", frozen=True):
    ok: bool
    error: str | None = None


class RunDone(_Frame, tag="run_done", frozen=True):
    run_id: str
    outcome: str  # ok | error | timeout
    duration: float
    error: str | None = None


class Exiting(_Frame, tag="exiting", frozen=True):
    """``run()`` returned or raised; the child exits right after this frame."""

    reason: str  # completed | error
    error: str | None = None


# --- parent -> child -------------------------------------------------------
class Init(_Frame, tag="init", frozen=True):
    name: str
    target: str
    args: dict[str, Any]
    mode: str  # actor | cron
    heartbeat_interval: float
    health_interval: float
    health_timeout: float
    backend: str = "trio"
    env: dict[str, str] = {}
    cwd: str | None = None
    instance: int | None = None  # NAME.i of an actor with instances = N
    # Beats ring no doorbell: the supervisor sweeps the rings once a beat round (see LoopWatch).
    lazy_beats: bool = False


class RunNow(_Frame, tag="run", frozen=True):
    run_id: str
    timeout: float | None = None


class Stop(_Frame, tag="stop", frozen=True):
    """Cancel ``run()`` and exit cleanly (the same as SIGTERM)."""


ChildFrame = Hello | Doorbell | Ready | Beat | Log | Health | RunDone | Exiting
ParentFrame = Init | RunNow | Stop

_encoder = msgspec.msgpack.Encoder()


def encode(frame: _Frame) -> bytes:
    """Encode one frame with its length prefix."""
    payload = _encoder.encode(frame)
    return _HEADER.pack(len(payload)) + payload


def _too_big(size: int) -> str:
    return f"frame of {size} bytes exceeds the {MAX_FRAME}-byte limit"


class FrameError(ValueError):
    """A frame that cannot be decoded; ``frames`` are the whole ones that came before it."""

    def __init__(self, message: str, frames: list[Any] | None = None) -> None:
        super().__init__(message)
        self.frames: list[Any] = frames or []


class FrameDecoder:
    """Incremental decoder: feed bytes as they arrive, get whole frames out.

    Raises :class:`FrameError` (a ValueError) with a precise reason on an
    oversized or undecodable frame, carrying the frames decoded before it; the
    caller turns that into a protocol error for the actor, and the channel is
    not used again.
    """

    def __init__(self, frame_type: Any) -> None:
        self._decoder = msgspec.msgpack.Decoder(frame_type)
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < 4 or len(buffer) < 4 + _HEADER.unpack_from(buffer)[0]:
                if len(buffer) >= 4:
                    self._check_size(_HEADER.unpack_from(buffer)[0])
                return []  # a large frame still arriving: no copy until it is whole
            data = bytes(buffer)
            buffer.clear()
        # The common case (a beat, a few log events) decodes straight from ``data``.
        frames: list[Any] = []
        offset, total = 0, len(data)
        with memoryview(data) as view:
            unpack, decode = _HEADER.unpack_from, self._decoder.decode
            while total - offset >= 4:
                (size,) = unpack(data, offset)
                if size > MAX_FRAME:
                    raise FrameError(_too_big(size), frames)
                end = offset + 4 + size
                if end > total:
                    break
                try:
                    frames.append(decode(view[offset + 4 : end]))
                except msgspec.ValidationError as exc:
                    raise FrameError(f"invalid frame: {exc}", frames) from None
                except msgspec.DecodeError as exc:
                    raise FrameError(f"undecodable frame: {exc}", frames) from None
                offset = end
        if offset < total:
            buffer += data[offset:]
        return frames

    @staticmethod
    def _check_size(size: int) -> None:
        if size > MAX_FRAME:
            raise FrameError(_too_big(size))

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame still buffered."""
        return len(self._buffer)
