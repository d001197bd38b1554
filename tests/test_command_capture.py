"""Structured capture: JSON object lines merged as fields, everything else a text event."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import anyio
import msgspec
import pytest
from anyio.abc import TaskStatus
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.command._capture import OWN_KEYS, capture_event, may_hold_json, merge_json_line, normalise_level
from supervisor.config import SinkSpec
from supervisor.logs import LineAssembler, LogRecord, LogRouter

_BASE = {"timestamp": "2026-12-01T10:00:00.000000Z", "level": "info", "event": "", "stream": "stdout"}


def _line(text: str, stream: str = "stdout") -> dict[str, Any]:
    level = "info" if stream == "stdout" else "error"
    return capture_event({**_BASE, "event": text, "stream": stream, "level": level})


class TestMerge:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ('{"msg":"listening","port":8080}', {"event": "listening", "port": 8080}),
            ('{"message":"ready","level":"WARN"}', {"event": "ready", "level": "warning"}),
            ('{"event":"cache.miss","key":"a"}', {"event": "cache.miss", "key": "a"}),
            ('{"msg":"a","message":"b","event":"c"}', {"event": "a", "message": "b", "app_event": "c"}),
            ('{"msg":"x","severity":"ERROR"}', {"event": "x", "level": "error"}),
            ('{"msg":"x","levelname":"CRITICAL"}', {"event": "x", "level": "critical"}),
            ('{"level":30,"time":1,"pid":77,"hostname":"h","msg":"pino"}',
             {"event": "pino", "level": "info", "time": 1, "app_pid": 77, "hostname": "h"}),
            ('{"msg":"x","level":"verbose2"}', {"event": "x", "app_level": "verbose2"}),
            ('{"msg":"x","level":"info","severity":"error"}', {"event": "x", "level": "info", "severity": "error"}),
            ('{"msg":{"nested":1}}', {"event": '{"nested":1}'}),
            ('{"msg":"x","seq":1,"id":"i","host":"h","actor":"a","restarts":9,"timestamp":"t","stream":"s"}',
             {"event": "x", "app_seq": 1, "app_id": "i", "app_host": "h", "app_actor": "a", "app_restarts": 9,
              "app_timestamp": "t", "app_stream": "s"}),
            ('{"pid":1,"app_pid":2,"msg":"x"}', {"event": "x", "app_app_pid": 1, "app_pid": 2}),
            ('{"app_pid":2,"pid":1,"msg":"x"}', {"event": "x", "app_pid": 2, "app_app_pid": 1}),
            ('{"n":null,"l":[1,"a"],"b":true}', {"event": '{"n":null,"l":[1,"a"],"b":true}', "n": None,
                                                 "l": [1, "a"], "b": True}),
        ],
    )
    def test_json_object_lines(self, text: str, expected: dict[str, Any]) -> None:
        """Message and level keys are mapped, other fields merged, clashes with our keys prefixed with app_."""
        event = _line(text)
        wanted = {"timestamp": _BASE["timestamp"], "stream": "stdout", "level": "info", **expected}
        assert event == wanted

    @pytest.mark.parametrize(
        "text",
        ["plain text", "[1, 2]", '"a string"', "{not json}", '{"a":1} trailing', '{"a":"\\ud800"}', '{"a":1e400}',
         ' {"msg":"leading space"}', "{", ""],
    )
    def test_other_lines_stay_text(self, text: str) -> None:
        """A line that is not exactly one JSON object (or does not decode) is a text event, unchanged."""
        assert _line(text) == {**_BASE, "event": text}

    def test_stderr_json_line_takes_its_own_level(self) -> None:
        """A JSON line on stderr with level info is info, not stderr's default error."""
        assert _line('{"msg":"x","level":"info"}', "stderr")["level"] == "info"
        assert _line('{"msg":"x"}', "stderr")["level"] == "error"

    def test_tracebacks_and_split_lines_pass_through(self) -> None:
        """Events with an exception or a continued piece are not parsed."""
        tb = {**_BASE, "event": '{"msg":"x"}', "exception": "Traceback ..."}
        piece = {**_BASE, "event": '{"msg":"x"}', "continued": True}
        assert capture_event(tb) is tb and capture_event(piece) is piece

    @pytest.mark.parametrize(
        ("key", "value", "level"),
        [
            ("level", "Warning", "warning"), ("level", " fatal ", "critical"), ("level", "TRACE", "debug"),
            ("level", 10, "debug"), ("level", 20, "debug"), ("level", 30, "info"), ("level", 40, "warning"),
            ("level", 50, "error"), ("level", 60, "critical"), ("level", 99, "critical"), ("level", 5, None),
            ("severity", 0, "critical"), ("severity", 3, "error"), ("severity", 4, "warning"),
            ("severity", 6, "info"), ("severity", 7, "debug"), ("severity", 8, None), ("severity", 2.5, None),
            ("level", True, None), ("level", None, None), ("level", "loud", None),
        ],
    )
    def test_normalise_level(self, key: str, value: Any, level: str | None) -> None:
        """Level names and numbers (pino's scale; syslog's for severity) map to our five names."""
        assert normalise_level(key, value) == level

    @settings(max_examples=300, deadline=None)
    @given(
        st.dictionaries(
            st.sampled_from([*OWN_KEYS, "msg", "message", "event", "level", "severity", "app_pid", "x", "app_x"]),
            st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5),
                      st.lists(st.integers(), max_size=2)),
        )
    )
    def test_nothing_is_lost_and_our_keys_stay(self, fields: dict[str, Any]) -> None:
        """Every field survives under its key or a prefixed one; timestamp and stream are ours; the result encodes."""
        text = msgspec.json.encode(fields).decode()
        event = merge_json_line(text, {**_BASE, "event": text})
        assert event is not None
        assert event["timestamp"] == _BASE["timestamp"] and event["stream"] == "stdout"
        assert event["level"] in ("debug", "info", "warning", "error", "critical")
        assert isinstance(event["event"], str)
        message = next((k for k in ("msg", "message", "event") if k in fields), None)
        level = next((k for k in ("level", "severity", "levelname") if k in fields), None)
        if level is not None and normalise_level(level, fields[level]) is None:
            level = None
        for key, value in fields.items():
            if key in (message, level):
                continue  # consumed as the event's message or level
            taken = key in OWN_KEYS or key in _BASE
            names = ["app_" * k + key for k in range(1 if taken else 0, 4)]
            assert any(n in event and event[n] == value for n in names), (key, event)
        msgspec.json.encode(event)

    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=40))
    def test_any_text_gives_an_event(self, text: str) -> None:
        """Arbitrary text never raises and always gives a string event."""
        assert isinstance(_line(text)["event"], str)


class TestFastPathHook:
    @pytest.mark.parametrize(
        ("chunk", "holds"),
        [(b"a\nb\n", False), (b'{"msg":1}\n', True), (b'a\n{"msg":1}\n', True), (b"a {x}\n", False),
         (b' {"x":1}\n', False)],
    )
    def test_may_hold_json(self, chunk: bytes, holds: bool) -> None:
        """A chunk is declined for the fast path exactly when one of its lines starts with '{' (bytes or view)."""
        assert may_hold_json(chunk) is holds
        assert may_hold_json(memoryview(b"xx" + chunk)[2:]) is holds

    def test_a_real_programs_output_through_the_real_pipeline(self) -> None:
        """printf's JSON and plain lines through LineAssembler and LogRouter wired as the handle will wire them."""
        script = (
            r"""printf '%s\n' 'starting' '{"msg":"listening","port":8080,"pid":1,"seq":5}' 'plain again' """
            r"""'Traceback (most recent call last):' '  File "x", line 1' 'ValueError: bad' '' ; """
            r"""printf '{"msg":"last words","level":"error"}'"""
        )
        out = subprocess.run(["sh", "-c", script], capture_output=True, check=True).stdout
        sink = _Memory()
        router = LogRouter([sink], host="testhost")
        actor, pid, restarts = "web", 4242, 0

        def emit(event: dict[str, Any]) -> None:  # _handle._pump_pipe's emit, with the capture hook
            router.emit({**capture_event(event), "actor": actor, "pid": pid, "restarts": restarts})

        def emit_lines(timestamp: str, lines: bytes | memoryview) -> bool:
            if may_hold_json(lines):
                return False  # the per-line path will merge it
            return router.emit_lines(assembler.level, "stdout", timestamp, lines, actor=actor, pid=pid,
                                     restarts=restarts)

        assembler = LineAssembler("stdout", emit, emit_lines=emit_lines)
        for i in range(0, len(out), 7):  # arrives in small pieces, as from a pipe
            assembler.feed(out[i : i + 7])
        assembler.close()
        events = sink.lines
        assert [e["event"] for e in events] == ["starting", "listening", "plain again", "ValueError: bad", "",
                                                "last words"]
        assert [e["seq"] for e in events] == [1, 2, 3, 4, 5, 6]  # ours, not the program's
        listening = events[1]
        assert listening["port"] == 8080 and listening["app_pid"] == 1 and listening["pid"] == pid
        assert listening["app_seq"] == 5 and listening["host"] == "testhost" and listening["actor"] == "web"
        assert events[3]["exception"].startswith("Traceback")
        assert events[5]["level"] == "error"  # the partial last line, flushed at close, is captured too


class _Memory:
    def __init__(self) -> None:
        self.spec = SinkSpec(type="stdout")
        self.lines: list[dict[str, Any]] = []

    def write(self, record: LogRecord) -> None:
        self.lines.append(json.loads(record.line))

    def write_many(self, level: int, actor: str | None, pieces: list[bytes]) -> None:
        self.lines.extend(json.loads(line) for piece in pieces for line in piece.splitlines())

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    async def aclose(self) -> None:
        pass
