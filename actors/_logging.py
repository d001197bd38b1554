"""Child-side logging: every event becomes one JSON object sent on the channel.

structlog calls (``self.log.info("fetched", items=3)``) and stdlib ``logging``
records of third-party libraries (through structlog's ``ProcessorFormatter`` on
the root logger) are rendered here to a JSON object and handed to ``send_log``
synchronously: once the logging call returned, the frame is in the channel's
socket buffer and survives ``os._exit`` or SIGKILL of this process.

The supervisor splices ``seq``, ``id``, ``host``, ``actor``, ``pid`` and
``restarts`` in front of the object without parsing it, so those keys must not
appear here: a user key that clashes is renamed to ``user_<key>``.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import time
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog
import structlog.contextvars

__all__ = ["RESERVED_KEYS", "actor_logger", "configure_child_logging"]

RESERVED_KEYS = frozenset({"actor", "pid", "restarts", "host", "seq", "id"})
_LEVELS = {
    "debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40,
    "exception": 40, "critical": 50, "fatal": 50, "notset": 0,
}
_FRONT = ("timestamp", "level", "event")


def _fallback(obj: Any) -> Any:
    return str(obj)  # never fail on a value JSON has no type for (Path, UUID, ...)


_encode = msgspec.json.Encoder(enc_hook=_fallback).encode


def _render(event_dict: MutableMapping[str, Any]) -> bytes:
    """timestamp, level, event first, then user keys; reserved keys renamed."""
    out = {key: event_dict.pop(key) for key in _FRONT if key in event_dict}
    for key, value in event_dict.items():
        out[f"user_{key}" if key in RESERVED_KEYS else key] = value
    try:
        return _encode(out)
    except (TypeError, ValueError, OverflowError):  # e.g. non-str dict keys
        return _encode({k: repr(v) if not isinstance(v, str) else v for k, v in out.items()})


_SLOW_KEYS = RESERVED_KEYS | {"timestamp", "level", "event", "exc_info", "stack_info"}
_LEVEL_NAMES = {10: "debug", 20: "info", 30: "warning", 40: "error", 50: "critical"}
# structlog keeps one ContextVar per key ever bound; empty while none was. A
# structlog without it gets no fast methods: its own chain merges contextvars.
_CONTEXT_VARS: dict[str, Any] | None = getattr(structlog.contextvars, "_CONTEXT_VARS", None)
_CTX_PREFIX = len(getattr(structlog.contextvars, "STRUCTLOG_KEY_PREFIX", "structlog_"))
_stamp_second = -1
_stamp_prefix = b""


def _iso_now() -> bytes:
    """Now as ISO 8601 UTC with microseconds; the date part is formatted once a second."""
    global _stamp_second, _stamp_prefix
    now = time.time()
    second = int(now)
    if second != _stamp_second:
        _stamp_prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S").encode()
        _stamp_second = second
    return b"%s.%06dZ" % (_stamp_prefix, int((now - second) * 1e6))


def _fast_method(level: int) -> Callable[..., Any]:
    """A level method that renders and sends without structlog's processor chain.

    It produces what the chain configured below would, minus the dict copies
    and processor calls (about 5 us a call, over half of a child's log cost).
    Anything unusual (exc_info, a reserved key, a value msgspec cannot encode
    as is) takes structlog's own path.
    """
    name = _LEVEL_NAMES[level]
    middle = b'","level":"%s","event":' % name.encode()

    def method(self: Any, event: Any = None, *args: Any, **kw: Any) -> Any:
        if args:
            event = _interpolate(event, args)
        context = self._context
        fields = {**context, **kw} if context else kw
        if _CONTEXT_VARS:
            for key, var in _CONTEXT_VARS.items():
                value = var.get()
                if value is not Ellipsis:
                    fields.setdefault(key[_CTX_PREFIX:], value)
        sender = _sender
        if sender is None or not _SLOW_KEYS.isdisjoint(fields):
            return self._proxy_to_logger(name, event, **kw)
        try:
            rest = _encode(fields)
            body = b'{"timestamp":"' + _iso_now() + middle + _encode(event)
        except (TypeError, ValueError, OverflowError):
            return self._proxy_to_logger(name, event, **kw)
        sender.send_log(level, body + (b"," + rest[1:] if fields else b"}"))
        return None

    method.__name__ = name
    return method


def _interpolate(event: Any, args: tuple[Any, ...]) -> Any:
    # structlog's own rule: one non-empty mapping means %-formatting by name.
    if len(args) == 1 and isinstance(args[0], dict) and args[0]:
        return event % args[0]
    return event % args


def _child_logger_class(min_level: int) -> type:
    """structlog's filtering bound logger, with fast debug/info/warning/error/critical."""
    base = structlog.make_filtering_bound_logger(min_level)
    if not isinstance(_CONTEXT_VARS, dict):
        return base
    methods: dict[str, Any] = {}
    for level, name in _LEVEL_NAMES.items():
        if level >= min_level:
            methods[name] = _fast_method(level)
    for alias, name in (("warn", "warning"), ("fatal", "critical"), ("msg", "info")):
        if name in methods:
            methods[alias] = methods[name]
    return type(f"Child{base.__name__}", (base,), methods)


class _Sender:
    """The last processor: render and send; structlog itself then drops the event."""

    def __init__(self, send_log: Callable[[int, bytes], None]) -> None:
        self.send_log = send_log

    def __call__(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
        level = _LEVELS.get(str(event_dict.get("level", method)), 20)
        self.send_log(level, _render(event_dict))
        raise structlog.DropEvent


class _ChannelHandler(logging.Handler):
    """Root-logger handler for stdlib records: format with structlog, send now."""

    def __init__(self, sender: _Sender) -> None:
        super().__init__(logging.NOTSET)
        self.sender = sender

    def emit(self, record: logging.LogRecord) -> None:
        try:
            body = self.format(record)
            self.sender.send_log(record.levelno, body.encode())
        except Exception:
            self.handleError(record)


def _stdlib_renderer(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
    return _render(event_dict).decode()


class _ForkStdout(io.TextIOBase):
    """``sys.stdout`` of a process forked by the actor: each line a Log frame, so it carries the fork's pid.

    Without it the line would reach the supervisor through the actor's stdout
    pipe, stamped with the actor's pid. The event is the one the supervisor
    makes of a stdout line. Raw writes to fd 1 (``os.write``, C code, an
    exec'd program) still go through the pipe. stderr too: there the
    supervisor groups a traceback's lines into one event.
    """

    def __init__(self, original: Any) -> None:
        self._original = original
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._send(line)
        return len(text)

    def flush(self) -> None:
        if self._partial:
            line, self._partial = self._partial, ""
            self._send(line)

    def _send(self, line: str) -> None:
        sender = _sender
        if sender is not None:
            event = _encode(line)
            sender.send_log(logging.INFO, b'{"timestamp":"%s","level":"info","event":%s,"stream":"stdout"}' % (
                _iso_now(), event))

    def fileno(self) -> int:
        return int(self._original.fileno())

    @property
    def buffer(self) -> Any:  # bytes written here bypass the capture, as with the pipe
        return self._original.buffer

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(self._original.encoding)


def _capture_fork_stdout() -> None:
    if _sender is not None and not isinstance(sys.stdout, _ForkStdout):
        sys.stdout = _ForkStdout(sys.stdout)


_sender: _Sender | None = None
_fork_hook = False


def configure_child_logging(
    send_log: Callable[[int, bytes], None], *, level: int = logging.DEBUG, stdlib_level: int = logging.INFO
) -> None:
    """Configure structlog and the root logger once per child process.

    A second call only swaps ``send_log`` (for example after a fork).
    """
    global _sender, _fork_hook
    if _sender is not None:
        _sender.send_log = send_log
        return
    _sender = _Sender(send_log)
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            structlog.processors.format_exc_info,
            _sender,
        ],
        wrapper_class=_child_logger_class(level),
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = _ChannelHandler(_sender)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                timestamper,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _stdlib_renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in root.handlers[:]:  # a library's basicConfig must not print twice
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(stdlib_level)
    logging.captureWarnings(True)
    if not _fork_hook:
        os.register_at_fork(after_in_child=_capture_fork_stdout)
        _fork_hook = True
    # print() must not sit in a block buffer when the child dies by os._exit.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True, errors="backslashreplace")


def actor_logger(name: str) -> Any:
    """The BoundLogger given to an actor as ``self.log``.

    ``name`` is not bound as a key: the supervisor adds ``actor`` itself.
    """
    return structlog.get_logger(name).bind()


def _reset_for_tests() -> None:
    global _sender
    _sender = None
