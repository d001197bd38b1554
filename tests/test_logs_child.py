"""Child-side logging: structlog and stdlib logging rendered to JSON, sent synchronously."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime
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
            _ = 1 / 0
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

    @pytest.mark.parametrize(
        "call",
        [
            lambda log: log.info("plain"),
            lambda log: log.debug("keys", a=1, b=[1, "x"], c={"d": None}),
            lambda log: log.warn("alias of warning", n=2),
            lambda log: log.error("100%% %s", "formatted"),
            lambda log: log.critical("by name %(x)s", {"x": "y"}),
            lambda log: log.msg("msg is info"),
            lambda log: log.bind(req="r1", n=1).info("bound", n=2),
            lambda log: log.info(42, path=__import__("pathlib").Path("/tmp")),
            lambda log: log.info("unicode é€ \u2028", tab="a\tb"),
        ],
    )
    def test_fast_methods_match_structlog_chain(
        self, sent: list[tuple[int, dict[str, Any]]], call: Any
    ) -> None:
        """The direct level methods render what structlog's processor chain renders, key order included."""
        log = child_logging.actor_logger("a")
        call(log)
        fast = sent.pop()
        chain = type(log).__mro__[1]  # structlog's filtering bound logger: the processor chain
        call(chain(log._logger, log._processors, log._context))
        slow = sent.pop()
        assert fast[0] == slow[0]
        assert list(fast[1]) == list(slow[1])
        assert {k: v for k, v in fast[1].items() if k != "timestamp"} == {
            k: v for k, v in slow[1].items() if k != "timestamp"
        }
        stamps = [datetime.fromisoformat(e[1]["timestamp"].replace("Z", "+00:00")) for e in (fast, slow)]
        assert fast[1]["timestamp"].endswith("Z") and abs((stamps[1] - stamps[0]).total_seconds()) < 1

    def test_contextvars_merged_by_fast_methods(self, sent: list[tuple[int, dict[str, Any]]]) -> None:
        """structlog contextvars appear after the call's keys; a call's own key wins."""
        import structlog

        structlog.contextvars.bind_contextvars(request="r9", n=0)
        try:
            child_logging.actor_logger("a").info("ctx", n=1)
        finally:
            structlog.contextvars.clear_contextvars()
        child_logging.actor_logger("a").info("after")
        assert list(sent[0][1])[3:] == ["n", "request"] and sent[0][1]["n"] == 1
        assert "request" not in sent[1][1]

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


class TestShrinkEvent:
    def test_small_values_kept_big_ones_cut(self) -> None:
        """An oversized event keeps its front keys and small values; each big value is cut to a prefix."""
        from actors._oversize import shrink_event

        body = json.dumps({"timestamp": "t", "level": "info", "event": "e", "a": 1, "big": "é" * 50_000}).encode()
        out = json.loads(shrink_event(body, limit=16_384))
        assert (out["timestamp"], out["level"], out["event"], out["a"]) == ("t", "info", "e", 1)
        assert out["truncated"] is True and out["original_bytes"] == len(body)
        assert out["truncated_keys"] == ["big"] and out["big"].startswith("éé") and out["big"].endswith("…")
        assert len(shrink_event(body, limit=16_384)) <= 16_384

    def test_many_keys_fall_back_to_the_front(self) -> None:
        """With more keys than fit even cut short, the event keeps its front keys, the marker and the key names."""
        from actors._oversize import shrink_event

        body = json.dumps({"event": "e", **{f"k{i}": "v" * 2000 for i in range(200)}}).encode()
        out = shrink_event(body, limit=100_000)
        assert len(out) <= 100_000
        event = json.loads(out)
        assert event["event"] == "e" and event["truncated"] is True and len(event["truncated_keys"]) == 100

    def test_error_text_cut_with_its_length(self) -> None:
        """A frame's error text over the limit is cut and says how long it was; a short one is untouched."""
        from actors._oversize import shrink_error

        assert shrink_error("short", limit=100) == "short"
        assert shrink_error("z" * 1000, limit=100) == "z" * 100 + "… [truncated: 1000 bytes]"
