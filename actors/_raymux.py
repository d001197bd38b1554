"""The multiplexed frames between a Ray host (:mod:`actors._rayhost`) and the supervisor.

One TCP connection carries everything of one remote child: its channel bytes,
its stdout and its stderr (host to supervisor), the supervisor's channel bytes,
signals and leases (supervisor to host). Each frame is ``[kind u8][length
u32][payload]``. The payloads of CHANNEL, STDOUT and STDERR are raw bytes, so
the child's own frames (:mod:`actors._protocol`) pass through unparsed.
Anything else is a :class:`MuxError` (a ValueError): garbage ends the
connection, never the process that reads it.
"""

from __future__ import annotations

import struct

import msgspec

__all__ = [
    "CHANNEL", "EXIT", "HANDSHAKE", "HEADER_SIZE", "LEASE", "MAX_PAYLOAD", "REFUSED", "SIGNAL", "STDERR", "STDOUT",
    "Handshake", "MuxDecoder", "MuxError", "decode_exit", "decode_handshake", "decode_signal", "encode_exit",
    "encode_handshake", "encode_signal", "frame", "parse_header",
]

HANDSHAKE = 1  # host -> supervisor, first: Handshake (msgpack)
CHANNEL = 2  # both ways: the child's channel bytes
STDOUT = 3  # host -> supervisor: the child's fd 1
STDERR = 4  # host -> supervisor: the child's fd 2
EXIT = 5  # host -> supervisor, last: the child's return code (i32), after its pipes and channel reached EOF
SIGNAL = 6  # supervisor -> host: signal the child's process group (u8)
LEASE = 7  # supervisor -> host: "still here"; no lease for lease_timeout ends the host
REFUSED = 8  # supervisor -> host: why the handshake was refused (utf-8), then the connection closes
_KINDS = frozenset(range(HANDSHAKE, REFUSED + 1))

MAX_PAYLOAD = 1024 * 1024  # the host sends at most 256 KiB; more is garbage
_HEADER = struct.Struct(">BI")
HEADER_SIZE = _HEADER.size
_EXIT = struct.Struct(">i")
_SIGNAL = struct.Struct(">B")


class Handshake(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: the ticket's actor, generation and token, and what the host started."""

    actor: str
    generation: int
    token: str
    pid: int  # the child's pid on its node
    node: str  # the node's host name, for logs


class MuxError(ValueError):
    """Bytes that are not a mux frame: a protocol error on this connection."""


def frame(kind: int, payload: bytes | memoryview = b"") -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


def parse_header(data: bytes) -> tuple[int, int]:
    """The kind and payload length at the start of ``data`` (at least HEADER_SIZE bytes)."""
    kind, length = _HEADER.unpack_from(data)
    return kind, length


class MuxDecoder:
    """Incremental: feed bytes as they arrive, get whole ``(kind, payload)`` frames out."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buffer = self._buffer
        buffer += data
        frames: list[tuple[int, bytes]] = []
        offset = 0
        size = _HEADER.size
        while len(buffer) - offset >= size:
            kind, length = _HEADER.unpack_from(buffer, offset)
            if kind not in _KINDS:
                raise MuxError(f"unknown mux frame kind {kind}")
            if length > MAX_PAYLOAD:
                raise MuxError(f"mux frame of {length} bytes exceeds the {MAX_PAYLOAD}-byte limit")
            end = offset + size + length
            if end > len(buffer):
                break
            frames.append((kind, bytes(buffer[offset + size : end])))
            offset = end
        del buffer[:offset]
        return frames


def encode_handshake(handshake: Handshake) -> bytes:
    return frame(HANDSHAKE, msgspec.msgpack.encode(handshake))


def decode_handshake(payload: bytes) -> Handshake:
    try:
        return msgspec.msgpack.decode(payload, type=Handshake)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise MuxError(f"bad handshake: {exc}") from None


def encode_exit(returncode: int) -> bytes:
    return frame(EXIT, _EXIT.pack(returncode))


def decode_exit(payload: bytes) -> int:
    if len(payload) != _EXIT.size:
        raise MuxError(f"exit frame of {len(payload)} bytes, expected {_EXIT.size}")
    code: int = _EXIT.unpack(payload)[0]
    return code


def encode_signal(sig: int) -> bytes:
    return frame(SIGNAL, _SIGNAL.pack(sig))


def decode_signal(payload: bytes) -> int:
    if len(payload) != _SIGNAL.size:
        raise MuxError(f"signal frame of {len(payload)} bytes, expected {_SIGNAL.size}")
    sig: int = _SIGNAL.unpack(payload)[0]
    return sig
