"""Network sinks against a real aggregator (syslog-ng): order, outages, big events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from aggregator import SyslogNg, syslog_ng  # noqa: F401 - fixture

from supervisor.config import SinkSpec
from supervisor.logs import LogRouter, NetworkSink, SyslogSink, TcpSink
from supervisor.logs._time import iso_utc

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


def _event(i: int, **extra: Any) -> dict[str, Any]:
    return {"timestamp": iso_utc(), "level": "info", "event": "n", "i": i, **extra}


async def _emit(router: LogRouter, start: int, count: int, chunk: int = 2000) -> int:
    for i in range(start, start + count):
        router.emit(_event(i))
        if i % chunk == 0:
            await anyio.sleep(0)  # the sender runs between bursts, as under a real supervisor
    return start + count


async def _drained(sink: NetworkSink, timeout: float = 20.0) -> None:
    """Poll (bounded) until the sink handed every frame to the socket."""
    with anyio.fail_after(timeout):
        while sink.pending or not sink._connected:
            await anyio.sleep(0.02)


def _spec(kind: str, port: int, tmp_path: Path, **kw: Any) -> SinkSpec:
    return SinkSpec(type=kind, address=("127.0.0.1", port), spool_dir=tmp_path / "spool", **kw)


def _check_complete(events: list[dict[str, Any]], total: int) -> int:
    """Every i arrived, first arrivals in order; return the number of duplicates."""
    seen: set[int] = set()
    firsts: list[int] = []
    for e in events:
        if e["id"] not in seen:
            seen.add(e["id"])
            firsts.append(e["i"])
    assert firsts == list(range(total)), "events missing or out of order"
    return len(events) - len(seen)


async def _outage(sink: NetworkSink, server: SyslogNg, path: Path) -> None:
    router = LogRouter([sink])
    async with anyio.create_task_group() as tg:
        await tg.start(router.run)
        n = await _emit(router, 0, 20_000)
        await _drained(sink)
        server.stop()
        outage_end = anyio.current_time() + 3.0
        while anyio.current_time() < outage_end:  # keep logging while the aggregator is away
            n = await _emit(router, n, 300)
            await anyio.sleep(0.01)
        await server.start()  # the SAME port again
        n = await _emit(router, n, 10_000)
        await _drained(sink)
        await router.aclose()
        tg.cancel_scope.cancel()
    events = await server.wait_for(path, n, distinct=True)
    duplicates = _check_complete(events, n)
    print(f"{sink.name}: {n} events, {duplicates} duplicates, {sink.replayed} replayed")
    assert duplicates <= sink.replayed  # bounded by the replay window, and reported
    assert sink.dropped == 0


class TestAggregator:
    async def test_100k_events_complete_and_in_order(self, syslog_ng: SyslogNg, tmp_path: Path) -> None:
        """100,000 events through the tcp sink arrive complete and in order."""
        await syslog_ng.start()
        sink = TcpSink(_spec("tcp", syslog_ng.tcp_port, tmp_path))
        router = LogRouter([sink])
        async with anyio.create_task_group() as tg:
            await tg.start(router.run)
            await _emit(router, 0, 100_000)
            await _drained(sink)
            await router.aclose()
            tg.cancel_scope.cancel()
        events = await syslog_ng.wait_for(syslog_ng.tcp_log, 100_000)
        assert [e["i"] for e in events] == list(range(100_000))
        assert [e["seq"] for e in events] == list(range(1, 100_001))

    async def test_tcp_outage_nothing_lost(self, syslog_ng: SyslogNg, tmp_path: Path) -> None:
        """syslog-ng stopped for 3 s mid-stream: every event arrives, duplicates bounded and reported."""
        await syslog_ng.start()
        sink = TcpSink(_spec("tcp", syslog_ng.tcp_port, tmp_path), backoff_max=0.2)
        await _outage(sink, syslog_ng, syslog_ng.tcp_log)

    async def test_syslog_outage_nothing_lost(self, syslog_ng: SyslogNg, tmp_path: Path) -> None:
        """The same outage through the RFC 5424 syslog sink: nothing lost."""
        await syslog_ng.start()
        sink = SyslogSink(_spec("syslog", syslog_ng.syslog_port, tmp_path), backoff_max=0.2)
        await _outage(sink, syslog_ng, syslog_ng.syslog_log)

    @pytest.mark.parametrize("kind", ["tcp", "syslog"])
    async def test_200_kib_event_intact(self, syslog_ng: SyslogNg, tmp_path: Path, kind: str) -> None:
        """One 200 KiB event arrives intact (log-msg-size is raised in the config)."""
        await syslog_ng.start()
        port = syslog_ng.tcp_port if kind == "tcp" else syslog_ng.syslog_port
        sink = (TcpSink if kind == "tcp" else SyslogSink)(_spec(kind, port, tmp_path))
        router = LogRouter([sink])
        big = "é" + "x" * (200 * 1024)
        async with anyio.create_task_group() as tg:
            await tg.start(router.run)
            router.emit(_event(0, payload=big))
            router.emit(_event(1))
            await _drained(sink)
            await router.aclose()
            tg.cancel_scope.cancel()
        path = syslog_ng.tcp_log if kind == "tcp" else syslog_ng.syslog_log
        events = await syslog_ng.wait_for(path, 2)
        assert events[0]["payload"] == big and events[1]["i"] == 1
