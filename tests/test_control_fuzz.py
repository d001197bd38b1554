"""Malformed requests, fuzzed with hypothesis: every one gets an error reply, and serving goes on."""

from __future__ import annotations

import json
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.control import COMMANDS, ControlClient, ControlServer
from supervisor.control._wire import BadRequest, parse_request
from supervisor.control.testing import FakeTarget

pytestmark = pytest.mark.anyio

CODES = {"bad_request", "unknown_command", "bad_argument", "unknown_actor", "too_large"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# Requests that look almost right: a real command name with arbitrary arguments.
near_misses = st.builds(
    lambda cmd, args: {"cmd": cmd, **args},
    st.sampled_from([*COMMANDS, "STATUS", "", "status ", "heartbeat status"]),
    st.dictionaries(st.sampled_from(["name", "n", "actor", "follow", "cmd", "extra"]),
                    json_values, max_size=3),
)
payloads = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    near_misses.map(lambda v: json.dumps(v).encode()),
    st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
).map(lambda data: data.replace(b"\n", b" "))

FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture
def sock() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ctl-", dir="/tmp") as d:
        yield Path(d) / "s.sock"


def exchange(path: Path, payload: bytes) -> Any:
    """Send one raw line and return the first reply line, decoded."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(path))
        s.sendall(payload + b"\n")
        with s.makefile("rb") as f:
            return json.loads(f.readline())


class TestParseRequestFuzz:
    @FUZZ
    @given(payloads)
    def test_parse_never_raises_anything_else(self, payload: bytes) -> None:
        """parse_request either accepts a line or raises BadRequest with a known code and a message."""
        try:
            cmd, args = parse_request(payload)
        except BadRequest as exc:
            assert exc.code in {"bad_request", "unknown_command", "bad_argument"}
            assert exc.message
        else:
            assert cmd in COMMANDS and isinstance(args, COMMANDS[cmd].args)


class TestServerFuzz:
    async def test_server_answers_every_malformed_request_then_serves(self, sock: Path) -> None:
        """Each fuzzed line gets one well-formed reply, and a status request still works afterwards."""
        target = FakeTarget()

        @FUZZ
        @given(payloads)
        def fuzz(payload: bytes) -> None:
            reply = exchange(sock, payload)
            assert isinstance(reply, dict) and isinstance(reply["ok"], bool)
            if not reply["ok"]:
                assert reply["code"] in CODES and isinstance(reply["error"], str) and reply["error"]

        async with anyio.create_task_group() as tg:
            await tg.start(ControlServer(target, sock).serve)
            with anyio.fail_after(60):
                await anyio.to_thread.run_sync(fuzz)
                with ControlClient(sock, timeout=5) as client:
                    rows = await anyio.to_thread.run_sync(client.request, "status")
            tg.cancel_scope.cancel()
        assert [row["name"] for row in rows] == list(target.rows)

    async def test_garbage_then_valid_request_on_one_connection(self, sock: Path) -> None:
        """Garbage lines do not poison the connection they arrive on."""
        async with anyio.create_task_group() as tg:
            await tg.start(ControlServer(FakeTarget(), sock).serve)

            def run() -> list[Any]:
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(5)
                    s.connect(str(sock))
                    s.sendall(b'\xff\xfe\n{"cmd": \n[1,2]\n' + b"[" * 5000 + b'\n{"cmd": "ping"}\n')
                    with s.makefile("rb") as f:
                        return [msgspec.json.decode(f.readline()) for _ in range(5)]

            with anyio.fail_after(10):
                replies = await anyio.to_thread.run_sync(run)
            tg.cancel_scope.cancel()
        assert [r["ok"] for r in replies] == [False, False, False, False, True]
