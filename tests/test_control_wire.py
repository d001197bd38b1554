"""Request validation and reply encoding of the control protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supervisor.control._render import fmt_bytes, fmt_duration, log_line
from supervisor.control._wire import (
    COMMANDS,
    BadRequest,
    LogsArgs,
    NameArgs,
    ScaleArgs,
    decode_reply,
    encode,
    error_reply,
    parse_request,
)

ACCEPTED = ", ".join(COMMANDS)


def rejected(line: bytes) -> tuple[str, str]:
    with pytest.raises(BadRequest) as info:
        parse_request(line)
    return info.value.code, info.value.message


class TestParseRequest:
    def test_valid_requests(self) -> None:
        """Well-formed requests come back as (cmd, typed arguments) with defaults filled in."""
        assert parse_request(b'{"cmd": "restart", "name": "web"}') == ("restart", NameArgs(cmd="restart", name="web"))
        assert parse_request(b'{"cmd": "logs"}') == ("logs", LogsArgs(cmd="logs"))
        assert parse_request(b' {"cmd": "logs", "n": 5, "actor": "a", "follow": true}\r') == (
            "logs", LogsArgs(cmd="logs", n=5, actor="a", follow=True))

    def test_every_command_has_an_argument_schema(self) -> None:
        """Each accepted command parses with only its name when it takes no required argument."""
        for cmd, command in COMMANDS.items():
            if command.args is NameArgs:
                assert parse_request(f'{{"cmd": "{cmd}", "name": "x"}}'.encode())[0] == cmd
            elif command.args is ScaleArgs:
                assert parse_request(f'{{"cmd": "{cmd}", "name": "x", "count": 2}}'.encode())[0] == cmd
            else:
                assert parse_request(f'{{"cmd": "{cmd}"}}'.encode())[0] == cmd

    def test_empty_line(self) -> None:
        """An empty line is an error that shows an example and the accepted commands."""
        assert rejected(b"  ") == ("bad_request", 'empty request; send a JSON object such as '
                                   f'{{"cmd": "status"}}. Accepted commands: {ACCEPTED}')

    def test_malformed_json(self) -> None:
        """Invalid JSON is named as such."""
        code, message = rejected(b'{"cmd": ')
        assert code == "bad_request" and message.startswith("malformed JSON (")

    def test_deep_nesting_is_malformed_not_a_crash(self) -> None:
        """A deeply nested document is refused as malformed."""
        assert rejected(b"[" * 100_000)[0] == "bad_request"

    def test_not_an_object(self) -> None:
        """A JSON value that is not an object says what it got."""
        assert rejected(b"[1]") == ("bad_request", 'a request must be a JSON object, got an array; '
                                    'for example {"cmd": "status"}')

    def test_missing_cmd(self) -> None:
        """An object without cmd lists the accepted commands."""
        assert rejected(b"{}") == ("bad_request", f"'cmd' is missing. Accepted commands: {ACCEPTED}")

    def test_cmd_of_wrong_type(self) -> None:
        """A cmd that is not a string says what it got."""
        assert rejected(b'{"cmd": 3}') == ("bad_request", f"'cmd' must be a string, got an integer. "
                                           f"Accepted commands: {ACCEPTED}")

    def test_duplicate_cmd_is_refused_not_last_wins(self) -> None:
        """A repeated key is refused with duplicate_key instead of the last value winning."""
        assert rejected(b'{"cmd":"status","cmd":"shutdown"}') == (
            "duplicate_key", 'duplicate key "cmd" in the request; send each key once '
            "(a repeated key is never resolved silently)")

    def test_duplicate_argument_is_refused(self) -> None:
        """A repeated argument is refused, even when both values are valid."""
        assert rejected(b'{"cmd": "stop", "name": "a", "name": "b"}')[0] == "duplicate_key"

    def test_unknown_command(self) -> None:
        """An unknown command is named and the accepted ones listed."""
        assert rejected(b'{"cmd": "launch"}') == ("unknown_command", f'unknown command "launch". '
                                                  f"Accepted commands: {ACCEPTED}")

    @pytest.mark.parametrize("line, message", [
        (b'{"cmd": "start"}', "start: missing argument 'name' (start takes name)"),
        (b'{"cmd": "start", "name": 3}', "start: argument 'name' must be a string, got 3"),
        (b'{"cmd": "start", "name": ""}', "start: argument 'name' must be a string of 1 to 255 characters, got \"\""),
        (b'{"cmd": "logs", "n": -1}', "logs: argument 'n' must be an integer >= 0, got -1"),
        (b'{"cmd": "logs", "n": true}', "logs: argument 'n' must be an integer or null, got true"),
        (b'{"cmd": "logs", "follow": "yes"}', "logs: argument 'follow' must be true or false, got \"yes\""),
        (b'{"cmd": "status", "verbose": 1}', "status: unknown argument 'verbose' (status takes no arguments)"),
        (b'{"cmd": "logs", "nam": "x"}', "logs: unknown argument 'nam' (logs takes n, actor, follow)"),
    ])
    def test_bad_arguments(self, line: bytes, message: str) -> None:
        """A wrong, missing or unknown argument is named with what is accepted."""
        assert rejected(line) == ("bad_argument", message)


class TestEncoding:
    def test_reply_is_one_line(self) -> None:
        """A reply is compact JSON ending in exactly one newline."""
        data = encode({"ok": True, "result": [{"a": "x\ny"}]})
        assert data.endswith(b"\n") and data.count(b"\n") == 1
        assert decode_reply(data) == {"ok": True, "result": [{"a": "x\ny"}]}

    def test_unknown_types_are_shown_as_text(self) -> None:
        """Values JSON has no type for (paths, exceptions) are sent as strings."""
        assert decode_reply(encode({"p": Path("/x"), "e": ValueError("bad")})) == {"p": "/x", "e": "bad"}

    def test_error_reply(self) -> None:
        """An error reply carries ok=false, the message and the code."""
        assert decode_reply(error_reply("busy", "later")) == {"ok": False, "error": "later", "code": "busy"}


class TestRender:
    @pytest.mark.parametrize("seconds, text", [(None, "-"), (0.25, "0.2s"), (9.96, "10.0s"), (42, "42s"),
                                               (185, "3m05s"), (7380, "2h03m"), (180000, "2d02h"),
                                               (-1, "0.0s"), (True, "-")])
    def test_durations(self, seconds: object, text: str) -> None:
        """Durations are short and human, '-' when unknown."""
        assert fmt_duration(seconds) == text

    @pytest.mark.parametrize("n, text", [(None, "-"), (512, "512 B"), (1536, "1.5 KiB"),
                                         (30 * 2**20, "30.0 MiB"), (5 * 2**40, "5120.0 GiB")])
    def test_bytes(self, n: object, text: str) -> None:
        """Sizes use binary units."""
        assert fmt_bytes(n) == text

    def test_log_line(self) -> None:
        """A log event renders as time, level, actor[pid], event and the other keys."""
        raw = (b'{"timestamp": "T", "level": "info", "event": "fetched", "actor": "web", "pid": 7,'
               b' "seq": 1, "items": 3}')
        assert log_line(raw) == "T info    web[7] fetched items=3"

    def test_log_line_shows_a_structured_traceback_in_full(self) -> None:
        """A supervisor traceback renders as indented Python traceback text ending in the exception."""
        import structlog

        structlog.configure(processors=[structlog.processors.add_log_level, structlog.processors.dict_tracebacks,
                                        structlog.processors.JSONRenderer()],
                            logger_factory=structlog.ReturnLoggerFactory())
        try:
            try:
                raise ValueError("inner " + "x" * 300)
            except ValueError as exc:
                raise KeyError("outer") from exc
        except KeyError:
            raw = structlog.get_logger().exception("job.failed", actors=["a", "b", "c"]).encode()
        lines = log_line(raw).splitlines()
        assert lines[0] == '- error   supervisor job.failed actors=["a","b","c"]'
        assert lines[1] == "    Traceback (most recent call last):"
        assert "    ValueError: inner " + "x" * 300 in lines
        assert "    The above exception was the direct cause of the following exception:" in lines
        assert lines[-1] == "    KeyError: 'outer'"

    def test_log_line_shows_an_actor_traceback_text(self) -> None:
        """An actor's exception text (already formatted) is shown on its own lines, last line included."""
        raw = json.dumps({"timestamp": "T", "level": "error", "event": "boom", "actor": "web",
                          "exception": "Traceback (most recent call last):\n  File \"a.py\", line 1, in run\n"
                                       "RuntimeError: " + "y" * 250}).encode()
        assert log_line(raw).splitlines() == [
            "T error   web boom", "    Traceback (most recent call last):", '      File "a.py", line 1, in run',
            "    RuntimeError: " + "y" * 250]

    def test_log_line_shows_lists_in_full(self) -> None:
        """A list value is shown whole, not as its length and last item."""
        raw = b'{"level": "info", "event": "supervisor.started", "actors": ["fetch", "parse", "nightly"]}'
        assert log_line(raw) == '- info    supervisor supervisor.started actors=["fetch","parse","nightly"]'

    def test_log_line_that_is_not_json(self) -> None:
        """A line that is not a JSON object is shown as it is."""
        assert log_line(b"plain text\n") == "plain text"

    def test_heartbeat_components(self) -> None:
        """Components show their age and timeout as durations and the last error's message, not its record."""
        import io

        from rich.console import Console

        from supervisor.control._render import heartbeat_tables

        report = {"status": "error", "counts": {"total": 1, "error": 1},
                  "components": {"db": {"name": "db", "status": "error", "last_heartbeat": "T",
                                        "last_heartbeat_age": 75.5, "timeout": 1.0, "error_count": 2,
                                        "errors": [{"timestamp": "T", "error": "old"},
                                                   {"timestamp": "T", "error": "conn refused"}]}}}
        out = io.StringIO()
        console = Console(file=out, width=200)
        for part in heartbeat_tables(report):
            console.print(part)
        lines = out.getvalue().splitlines()
        assert lines[0] == "status: error  total=1  error=1"
        assert lines[1].split() == ["NAME", "STATUS", "LAST", "HEARTBEAT", "AGE", "TIMEOUT", "ERRORS"]
        assert lines[2].split() == ["db", "error", "1m15s", "1.0s", "2:", "conn", "refused"]


def rendered(table: object, width: int) -> list[str]:
    import io

    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(table)
    return out.getvalue().splitlines()


class TestTablesFit:
    @pytest.mark.parametrize("width", [80, 60, 40])
    def test_status_fits_the_terminal_dropping_columns_by_priority(self, width: int) -> None:
        """At 80, 60 and 40 columns no line is wider; whole columns drop, none is squeezed."""
        from supervisor.control._render import status_table
        from supervisor.control.testing import make_rows

        rows = make_rows(3)
        rows[1].update(name="a-long-actor-name-for-fetching", rss=2**40,
                       last_error={"error": "RuntimeError: " + "the upstream said no " * 10})
        lines = rendered(status_table(rows, width), width)
        assert max(map(len, lines)) <= width
        headers = lines[0].split()
        assert headers[:2] == ["NAME", "STATE"]  # the most needed columns stay
        assert "a-long-actor-name-for-fetching" in lines[2]  # the name is never cut
        for title in ("KIND", "PID", "UPTIME", "RESTARTS", "CPU", "RSS"):  # a column is there whole or not at all
            assert title in headers or all(title not in line for line in lines)

    def test_status_at_80_columns_keeps_the_core_and_shortens_the_error(self) -> None:
        """At 80 columns: name, state, restarts, beat age and pid stay; the error is cut with an ellipsis."""
        from supervisor.control._render import status_table
        from supervisor.control.testing import make_rows

        rows = make_rows(2)
        rows[0]["last_error"] = "x" * 200
        lines = rendered(status_table(rows, 80), 80)
        assert {"NAME", "STATE", "PID", "RESTARTS", "BEAT"} <= set(lines[0].split())
        assert max(map(len, lines)) <= 80 and lines[1].endswith("…")

    def test_piped_status_drops_nothing(self) -> None:
        """Without a width (output piped) every column is shown."""
        from supervisor.control._render import status_table
        from supervisor.control.testing import make_rows

        assert rendered(status_table(make_rows(2)), 300)[0].split() == [
            "NAME", "KIND", "STATE", "PID", "UPTIME", "RESTARTS", "BEAT", "AGE", "CPU", "%", "RSS", "LAST", "ERROR"]

    def test_generic_table_fits(self) -> None:
        """cron list style rows fit 80 columns: the name stays, long text columns shrink."""
        from supervisor.control._render import generic_table

        rows = [{"name": f"task-{i}", "schedule": "cron 0 3 * * MON-FRI (Europe/Amsterdam)", "next_run_in": 3600,
                 "last_outcome": "ok", "running": False, "last_error": "E" * 120} for i in range(3)]
        lines = rendered(generic_table(rows, width=80), 80)
        assert max(map(len, lines)) <= 80 and lines[0].split()[0] == "NAME"
