"""The control protocol on the wire: requests, replies and their validation.

One JSON object per line each way. A request names its command in ``cmd`` and
carries the command's arguments as further keys; every command's arguments are
a msgspec struct below, so types are checked once, at the edge, and the error
names the argument. docs/CONTROL_PROTOCOL.md is the prose version of this file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

__all__ = [
    "COMMANDS",
    "MAX_REQUEST",
    "BadRequest",
    "Command",
    "decode_reply",
    "encode",
    "error_reply",
    "parse_request",
]

MAX_REQUEST = 64 * 1024  # bytes per request line, newline included


class BadRequest(Exception):
    """A request line the server refuses; ``code`` goes into the error reply."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


_Strict = dict(forbid_unknown_fields=True, frozen=True, kw_only=True)
NonEmpty = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


class NoArgs(msgspec.Struct, **_Strict):
    cmd: str


class NameArgs(msgspec.Struct, **_Strict):
    cmd: str
    name: NonEmpty


class ScaleArgs(msgspec.Struct, **_Strict):
    cmd: str
    name: NonEmpty
    count: Annotated[int, msgspec.Meta(ge=1)]


class LogsArgs(msgspec.Struct, **_Strict):
    cmd: str
    n: Annotated[int, msgspec.Meta(ge=0)] | None = None
    actor: NonEmpty | None = None
    follow: bool = False


@dataclass(frozen=True)
class Command:
    args: type[msgspec.Struct]
    streaming: bool
    help: str


COMMANDS: dict[str, Command] = {
    "ping": Command(NoArgs, False, "liveness: the supervisor's pid and protocol version"),
    "status": Command(NoArgs, False, "one row per actor and cron task"),
    "heartbeat_status": Command(NoArgs, False, "overall health, counts and components"),
    "start": Command(NameArgs, False, "start actor NAME"),
    "stop": Command(NameArgs, False, "stop actor NAME"),
    "restart": Command(NameArgs, False, "restart actor NAME"),
    "reload": Command(NoArgs, False, "re-read the config; added, removed, changed"),
    "shutdown": Command(NoArgs, False, "stop every actor and exit"),
    "logs": Command(LogsArgs, False, "log tail; with follow=true a stream"),
    "events": Command(NoArgs, True, "stream of state-change events"),
    "cron_list": Command(NoArgs, False, "one row per cron task"),
    "cron_trigger": Command(NameArgs, False, "run cron task NAME now; its run_id"),
    "scale": Command(ScaleArgs, False, "run COUNT instances of actor NAME; started, stopped"),
}
_ACCEPTED = ", ".join(COMMANDS)


def _fallback(obj: Any) -> Any:
    # Paths, enums with odd values, exceptions in last_error: show, don't fail.
    return str(obj)


_encoder = msgspec.json.Encoder(enc_hook=_fallback)


def encode(obj: Any) -> bytes:
    """One reply line: compact JSON plus the newline."""
    return _encoder.encode(obj) + b"\n"


def error_reply(code: str, message: str) -> bytes:
    return encode({"ok": False, "error": message, "code": code})


def decode_reply(line: bytes) -> Any:
    """Decode one line received from the server (client side)."""
    return msgspec.json.decode(line)


def parse_request(line: bytes) -> tuple[str, msgspec.Struct]:
    """Validate one request line; return ``(cmd, args)`` or raise :class:`BadRequest`."""
    if not line.strip():
        raise BadRequest("bad_request", f"empty request; send a JSON object such as "
                         f'{{"cmd": "status"}}. Accepted commands: {_ACCEPTED}')
    try:
        data = msgspec.json.decode(line)
    except (msgspec.DecodeError, RecursionError, ValueError) as exc:
        raise BadRequest("bad_request", f"malformed JSON ({exc}); send one JSON object "
                         f"per line, such as {{\"cmd\": \"status\"}}") from None
    _refuse_duplicate_keys(line)
    if not isinstance(data, dict):
        raise BadRequest("bad_request", f"a request must be a JSON object, got "
                         f"{_kind(data)}; for example {{\"cmd\": \"status\"}}")
    cmd = data.get("cmd")
    if not isinstance(cmd, str):
        what = "is missing" if cmd is None else f"must be a string, got {_kind(cmd)}"
        raise BadRequest("bad_request", f"'cmd' {what}. Accepted commands: {_ACCEPTED}")
    command = COMMANDS.get(cmd)
    if command is None:
        raise BadRequest("unknown_command",
                         f"unknown command {_short(cmd)}. Accepted commands: {_ACCEPTED}")
    try:
        return cmd, msgspec.convert(data, command.args)
    except msgspec.ValidationError as exc:
        raise BadRequest("bad_argument", _translate(cmd, command.args, str(exc), data)) from None


def _unique_pairs(pairs: list[tuple[str, Any]]) -> None:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise BadRequest("duplicate_key", f"duplicate key {_short(key)} in the request; "
                             "send each key once (a repeated key is never resolved silently)")
        seen.add(key)


def _refuse_duplicate_keys(line: bytes) -> None:
    # msgspec keeps the last of repeated keys, so {"cmd":"status","cmd":"shutdown"}
    # would shut down; the stdlib parser reports every pair, at any depth.
    try:
        json.loads(line, object_pairs_hook=_unique_pairs)
    except (RecursionError, ValueError) as exc:
        raise BadRequest("bad_request", f"malformed JSON ({type(exc).__name__}); send one "
                         "JSON object per line, such as {\"cmd\": \"status\"}") from None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "null"}.get(type(value), "a value")


def _short(value: Any, limit: int = 60) -> str:
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= limit else text[: limit - 3] + "..."


_WORDS = {"str": "a string", "int": "an integer", "bool": "true or false", "null": "null"}
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$\.?(?P<at>[^`]*)`)?$")


def _translate(cmd: str, schema: type[msgspec.Struct], message: str, data: dict[str, Any]) -> str:
    accepted = [f for f in schema.__struct_fields__ if f != "cmd"]
    takes = f"takes {', '.join(accepted)}" if accepted else "takes no arguments"
    match = _AT.match(message)
    assert match is not None
    msg, at = match["msg"], match["at"] or ""
    if m := re.match(r"Object contains unknown field `(.+)`", msg):
        return f"{cmd}: unknown argument {m[1]!r} ({cmd} {takes})"
    if m := re.match(r"Object missing required field `(.+)`", msg):
        return f"{cmd}: missing argument {m[1]!r} ({cmd} {takes})"
    got = _short(data.get(at)) if at in data else "?"
    if m := re.match(r"Expected `([^`]+)`(.*)", msg):
        wanted = " or ".join(_WORDS.get(t.strip(), t.strip()) for t in m[1].split("|"))
        bound = m[2].split(", got")[0].strip()
        if bound.startswith("of length"):
            bound = "of 1 to 255 characters"
        return f"{cmd}: argument {at!r} must be {wanted}{' ' + bound if bound else ''}, got {got}"
    return f"{cmd}: argument {at!r}: {msg[:1].lower()}{msg[1:]}, got {got}"
