"""The driver's protocol: one JSON object per line, requests on its stdin, replies on its stdout.

Every request carries an ``id`` that its one reply repeats, so the client can
have several requests in flight. The driver answers them in order; none waits
on Ray for long (creation and kills are fire-and-forget in Ray), but ``Init``,
which is bounded by its ``connect_timeout``.
"""

from __future__ import annotations

import msgspec

from ._backend import CreateRequest

__all__ = [
    "Create",
    "Done",
    "Failed",
    "Init",
    "Kill",
    "Pending",
    "Reasons",
    "Reply",
    "Request",
    "Shutdown",
    "Started",
    "decode_reply",
    "decode_request",
    "encode",
]


class Init(msgspec.Struct, frozen=True, kw_only=True, tag="init"):
    id: int
    address: str  # "local", "auto" or "HOST:PORT"
    namespace: str
    connect_timeout: float


class Create(msgspec.Struct, frozen=True, kw_only=True, tag="create"):
    id: int
    request: CreateRequest


class Kill(msgspec.Struct, frozen=True, kw_only=True, tag="kill"):
    id: int
    key: str
    unresponsive: bool = False  # the host stopped answering: its node is suspect


class Pending(msgspec.Struct, frozen=True, kw_only=True, tag="pending"):
    id: int


class Shutdown(msgspec.Struct, frozen=True, kw_only=True, tag="shutdown"):
    id: int


Request = Init | Create | Kill | Pending | Shutdown


class Started(msgspec.Struct, frozen=True, kw_only=True, tag="started"):
    """The answer to Init: connected (or the private Ray is up)."""

    id: int
    address: str  # the GCS address the driver is connected to
    namespace: str
    nodes: int  # alive nodes
    version: str
    node_ip: str  # this machine's address as the cluster sees it (where hosts can dial back)


class Done(msgspec.Struct, frozen=True, kw_only=True, tag="done"):
    id: int


class Reasons(msgspec.Struct, frozen=True, kw_only=True, tag="reasons"):
    """The answer to Pending: why each host that is not alive yet waits (key -> one line)."""

    id: int
    reasons: dict[str, str]


class Failed(msgspec.Struct, frozen=True, kw_only=True, tag="failed"):
    id: int
    error: str  # one line for the user
    fatal: bool = False  # the driver exits after this reply


Reply = Started | Done | Reasons | Failed

_requests = msgspec.json.Decoder(Request)
_replies = msgspec.json.Decoder(Reply)
_encoder = msgspec.json.Encoder()


def encode(message: Request | Reply) -> bytes:
    return _encoder.encode(message) + b"\n"


def decode_request(line: bytes) -> Request:
    return _requests.decode(line)


def decode_reply(line: bytes) -> Reply:
    return _replies.decode(line)
