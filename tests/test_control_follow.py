"""`logs -f` for a slow reader: skipped lines are counted in a marker, never dropped silently."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from supervisor.control import ControlServer
from supervisor.control._sock import connect
from supervisor.logs import LogRouter
from tests.harness import running_supervisor

pytestmark = pytest.mark.anyio


def events(records: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(r.line) for r in records]


def drain(receive: Any) -> list[Any]:
    got = []
    while True:
        try:
            got.append(receive.receive_nowait())
        except anyio.WouldBlock:
            return got


class TestFollower:
    async def test_a_full_follower_gets_a_marker_with_the_exact_count(self) -> None:
        """Records that find the queue full are counted; the count arrives in the gap's place."""
        router = LogRouter([])
        async with router.follow(buffer=2) as records:
            for i in range(5):
                router.emit({"event": f"e{i}"})
            assert [e["event"] for e in events(drain(records))] == ["e0", "e1"]
            router.emit({"event": "e5"})
            got = events(drain(records))
        assert [e["event"] for e in got] == ["logs.skipped", "e5"]
        assert got[0]["skipped"] == 3 and got[0]["level"] == "warning"

    async def test_lines_of_a_block_are_counted_one_by_one(self) -> None:
        """A block of child lines that overflows counts each line it could not queue."""
        router = LogRouter([])
        async with router.follow(buffer=3) as records:
            router.emit_lines("info", "stdout", "T", b"1\n2\n3\n4\n5\n6\n7\n", actor="a", pid=1, restarts=0)
            assert len(drain(records)) == 3
            router.emit({"event": "next", "actor": "a"})
            got = events(drain(records))
        assert (got[0]["event"], got[0]["skipped"], got[1]["event"]) == ("logs.skipped", 4, "next")

    async def test_an_actor_filter_applies_before_the_queue(self) -> None:
        """Following one actor, other actors' lines neither fill the queue nor count as skipped."""
        router = LogRouter([])
        async with router.follow(buffer=2, actor="a") as records:
            for i in range(10):
                router.emit({"event": f"b{i}", "actor": "b"})
            router.emit({"event": "a0", "actor": "a"})
            got = events(drain(records))
        assert [e["event"] for e in got] == ["a0"]


class TestSlowClient:
    async def test_logs_follow_reports_what_a_slow_client_missed(self) -> None:
        """A `logs -f` client that falls behind reads a logs.skipped line; lines + count = emitted."""
        emitted = 30_000  # more than the router's and the supervisor's queues (10,000 each) hold
        with tempfile.TemporaryDirectory(prefix="ctl-", dir="/tmp") as d:
            path = Path(d) / "s.sock"
            async with running_supervisor({}) as (sup, _sink), anyio.create_task_group() as tg:
                await tg.start(ControlServer(sup, path).serve)
                async with await connect(path) as conn:
                    reader = BufferedByteReceiveStream(conn)
                    sup.router.emit({"event": "hello", "actor": "flooder"})  # a name with lines is known
                    # One actor's lines only: the supervisor's own events (spares, beats) stay out.
                    await conn.send(b'{"cmd": "logs", "follow": true, "n": 0, "actor": "flooder"}\n')
                    with anyio.fail_after(10):
                        assert json.loads(await reader.receive_until(b"\n", 10**6))["ok"] is True
                    for i in range(emitted):  # no checkpoint: nobody drains meanwhile
                        sup.router.emit({"event": "flood", "actor": "flooder", "i": i})
                    queue = sup.router._followers[0].send
                    with anyio.fail_after(10):  # the supervisor's queue takes the router's backlog
                        while queue.statistics().current_buffer_used:
                            await anyio.sleep(0.01)
                    sup.router.emit({"event": "last", "actor": "flooder"})
                    got: list[dict[str, Any]] = []
                    with anyio.fail_after(20):
                        while not got or got[-1].get("event") != "last":
                            got.append(json.loads(await reader.receive_until(b"\n", 10**6)))
                tg.cancel_scope.cancel()
        # A loaded machine may let the client catch up in between: one marker per gap,
        # each at its gap and counting exactly the lines missing there.
        markers = [e for e in got if e["event"] == "logs.skipped"]
        assert markers and all(m["skipped"] > 0 for m in markers)
        expected = 0
        for event in got:
            if event["event"] == "logs.skipped":
                expected += event["skipped"]
            elif event["event"] == "flood":
                assert event["i"] == expected
                expected += 1
        assert expected == emitted
