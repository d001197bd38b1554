"""Child-side logging: structlog and stdlib logging rendered to JSON, sent synchronously."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from actors import _logging as child_logging
from actors._protocol import FrameDecoder, Log


@pytest.fixture
def sent() -> Iterator[list[tuple[int, dict[str, Any]]]]:
    """Configure child logging in-process, capturing (level, event); restore afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out: list[tuple[int, dict[str, Any]]] = []
    child_logging._reset_for_tests()
    child_logging.configure_child_logging(lambda level, body: out.append((level, json.loads(body))))
    yield out
    child_logging._reset_for_tests()
    logging.captureWarnings(False)
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


class TestChildLogging:
    def test_structlog_event_rendered(self, sent: list[tuple[int, dict[str, Any]]]) -> None:
        """A structlog call becomes one JSON object: timestamp, level, event first, then keys."""
        child_logging.actor_logger("fetcher").info("fetched", items=3)
        level, event = sent[0]
        assert level == 20
        assert list(event) == ["timestamp", "level", "event", "items"]
        assert event["event"] == "fetched" and event["items"] == 3 and event["level"] == "info"
        assert event["timestamp"].endswith("Z")

    def test_reserved_keys_renamed(self, sent: list[tuple[int, dict[str, Any]]]) -> None:
        """Keys the supervisor adds (actor, pid, ...) are renamed user_<key>."""
        child_logging.actor_logger("a").warning("x", actor="me", pid=1, seq=2, id=3, host="h", restarts=4)
        level, event = sent[0]
        assert level == 30
        assert not child_logging.RESERVED_KEYS & set(event)
        assert event["user_actor"] == "me" and event["user_id"] == 3

    def test_exception_as_text(self, sent: list[tuple[int, dict[str, Any]]]) -> None:
        """log.exception() carries the formatted traceback as text."""
        try:
            1 / 0
        except ZeroDivisionError:
            child_logging.actor_logger("a").exception("boom")
        level, event = sent[0]
        assert level == 40 and "ZeroDivisionError" in event["exception"]

    def test_stdlib_logging_routed(self, sent: list[tuple[int, dict[str, Any]]]) -> None:
        """A third-party library's stdlib logging record arrives as a structured event."""
        logging.getLogger("thirdparty.db").warning("slow query %s", "q1", extra={"pid": 5})
        level, event = sent[0]
        assert level == 30
        assert event["event"] == "slow query q1"
        assert event["logger"] == "thirdparty.db" and event["level"] == "warning"
        assert "pid" not in event

    def test_unencodable_values_stringified(self, sent: list[tuple[int, dict[str, Any]]]) -> None:
        """Values JSON has no type for are rendered as text, never fatal."""
        child_logging.actor_logger("a").info("odd", thing=object(), keys={1: 2})
        assert sent[0][1]["thing"].startswith("<object object")

    def test_configure_twice_swaps_sender(self, sent: list[tuple[int, dict[str, Any]]]) -> None:
        """A second configure call only replaces the send function."""
        other: list[tuple[int, bytes]] = []
        child_logging.configure_child_logging(lambda level, body: other.append((level, body)))
        child_logging.actor_logger("a").info("x")
        assert sent == [] and len(other) == 1
        assert sum(isinstance(h, child_logging._ChannelHandler) for h in logging.getLogger().handlers) == 1

    def test_events_written_synchronously(self) -> None:
        """10,000 events logged, then os._exit: every frame is already in the channel."""
        code = textwrap.dedent(
            """
            import os, socket, sys
            from actors._channel import ChildChannel
            from actors._logging import actor_logger, configure_child_logging
            ch = ChildChannel(socket.socket(fileno=int(sys.argv[1])))
            configure_child_logging(ch.send_log)
            log = actor_logger("flood")
            for i in range(10000):
                log.info("n", i=i)
            os._exit(0)
            """
        )
        parent, child = socket.socketpair()
        with parent, child:
            proc = subprocess.Popen([sys.executable, "-c", code, str(child.fileno())], pass_fds=[child.fileno()])
            child.close()
            decoder = FrameDecoder(Log)
            frames: list[Log] = []
            parent.settimeout(30)
            try:
                while data := parent.recv(1 << 16):  # the channel buffer is small: read while it writes
                    frames.extend(decoder.feed(data))
            finally:
                assert proc.wait(timeout=30) == 0
        assert [json.loads(f.body)["i"] for f in frames] == list(range(10000))
