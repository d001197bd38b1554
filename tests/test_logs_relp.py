"""The relp sink: RELP framing, and exact delivery to a real rsyslog (imrelp) through restarts and resets."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog
from aggregator import Rsyslog, rsyslog_fixture  # noqa: F401 - fixture
from anyio.abc import SocketStream

from supervisor.config import SinkSpec, parse_config
from supervisor.exceptions import ConfigError
from supervisor.logs import LogRouter, build_sinks
from supervisor.logs._relp import RelpParser, RelpProtocolError, RelpSink
from supervisor.logs._time import iso_utc


class TestRelpParser:
    def test_frames_split_anywhere(self) -> None:
        """Frames fed one byte at a time come out whole: data with spaces and newlines, and empty data."""
        wire = b"1 rsp 93 200 OK\nrelp_version=0\nrelp_software=librelp,1.11.0,x\ncommands=syslog" + b"x" * 13
        wire = b"1 rsp %d %s\n" % (len(wire[9:]), wire[9:]) + b"2 rsp 6 200 OK\n3 rsp 0\n0 serverclose 0\n"
        parser = RelpParser()
        frames = [f for i in range(len(wire)) for f in parser.feed(wire[i : i + 1])]
        assert [(t, c) for t, c, _ in frames] == [(1, b"rsp"), (2, b"rsp"), (3, b"rsp"), (0, b"serverclose")]
        assert frames[0][2].startswith(b"200 OK\nrelp_version=0") and frames[1][2] == b"200 OK"

    @pytest.mark.parametrize("wire", [b"HTTP/1.1 400 Bad\r\n", b"1 rsp 3 abcd\n", b"1 rsp 0 x\n", b"1 " + b"r" * 40])
    def test_garbage_rejected(self, wire: bytes) -> None:
        """Anything that is not a RELP frame is a protocol error, not a hang."""
        with pytest.raises(RelpProtocolError):
            RelpParser().feed(wire)


class TestRelpConfig:
    def test_relp_sink_type(self, tmp_path: Path) -> None:
        """type = "relp" takes the keys of tcp/syslog and builds a RelpSink."""
        config = parse_config({"logs": {"sinks": [{"type": "relp", "address": "127.0.0.1:2514",
                                                   "spool_dir": str(tmp_path / "spool"), "app_name": "web"}]}})
        (spec,) = config.logs.sinks
        assert spec.type == "relp" and spec.address == ("127.0.0.1", 2514)
        assert [type(s).__name__ for s in build_sinks(config.logs.sinks)] == ["RelpSink"]

    def test_relp_needs_address(self) -> None:
        """A relp sink without address is a one-line config error."""
        with pytest.raises(ConfigError, match=r'logs\.sinks\[0\]\.address: required for type "relp"'):
            parse_config({"logs": {"sinks": [{"type": "relp"}]}}, label="actorsup.toml")


class PickyReceiver:
    """A minimal RELP receiver: answers 500 to events containing "refuse", closes the session on big ones."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.sessions = 0

    async def handle(self, stream: SocketStream) -> None:
        self.sessions += 1
        parser = RelpParser(max_data=1 << 30)
        async with stream:
            async for chunk in stream:
                for txnr, command, data in parser.feed(chunk):
                    if command == b"open":
                        offer = b"200 OK\nrelp_version=0\ncommands=syslog"
                        await stream.send(b"%d rsp %d %s\n" % (txnr, len(offer), offer))
                    elif len(data) > 1000:
                        return  # as librelp does past maxDataSize: the session ends, no answer
                    elif b"refuse" in data:
                        await stream.send(b"%d rsp 10 500 no way\n" % txnr)
                    elif command == b"syslog":
                        self.got.append(data)
                        await stream.send(b"%d rsp 6 200 OK\n" % txnr)
                    else:
                        await stream.send(b"%d rsp 0\n" % txnr)


@pytest.mark.anyio
async def test_refused_and_oversized_events_dropped_and_counted(tmp_path: Path) -> None:
    """A 500 drops that event; an event the receiver ends 3 sessions on is dropped; both counted, the rest goes on."""
    receiver = PickyReceiver()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    sink = RelpSink(_spec(port, tmp_path), backoff_initial=0.005, backoff_max=0.01)
    router = LogRouter([sink])
    with structlog.testing.capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, receiver.handle)
            await tg.start(router.run)
            router.emit(_event(0))
            router.emit({**_event(1), "note": "refuse"})
            router.emit({**_event(2), "payload": "x" * 5000})
            router.emit(_event(3))
            with anyio.fail_after(10):
                while sink.acknowledged < 2:
                    await anyio.sleep(0.01)  # polling, bounded
            await router.aclose()
            tg.cancel_scope.cancel()
        await listener.aclose()
    got = [json.loads(m.split(b" ", 7)[7])["i"] for m in receiver.got]
    assert sorted(set(got)) == [0, 3]  # 0 may come twice: a reset can swallow its answer (at-least-once)
    reasons = [e["reason"] for e in logs if e["event"] == "logs.dropped"]
    assert sink.dropped == 2 and len(reasons) == 2
    assert reasons[0].startswith("refused by the receiver: 500 no way") and "3 sessions in a row" in reasons[1]
    assert sink.acknowledged == 2 and sink.unacknowledged == 0
    assert receiver.sessions >= 4  # three in a row ended on the big event


class SilentReceiver:
    """Opens the session, reads every event, answers none: they all stay in flight."""

    def __init__(self) -> None:
        self.frames = 0

    async def handle(self, stream: SocketStream) -> None:
        parser = RelpParser(max_data=1 << 30)
        async with stream:
            async for chunk in stream:
                for txnr, command, _ in parser.feed(chunk):
                    if command == b"open":
                        offer = b"200 OK\nrelp_version=0\ncommands=syslog"
                        await stream.send(b"%d rsp %d %s\n" % (txnr, len(offer), offer))
                    else:
                        self.frames += 1


@pytest.mark.anyio
async def test_crash_with_spooled_events_in_flight_loses_none(tmp_path: Path) -> None:
    """The supervisor dies (no aclose) with spooled events unanswered: a new sink on the spool sends them all."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec = SinkSpec(type="relp", address=("127.0.0.1", port), spool_dir=tmp_path / "spool",
                    spool_max_bytes=1 << 20, spool_fsync="never")  # 128 KiB segments
    silent = SilentReceiver()
    first = RelpSink(spec, backoff_initial=0.01, backoff_max=0.02, window=1000)
    router = LogRouter([first])
    with structlog.testing.capture_logs():
        async with anyio.create_task_group() as tg:
            await tg.start(router.run)
            n = await _emit(router, 0, 3000)  # nobody listens: all spooled
            first._spool.flush()  # type: ignore[union-attr]
            listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
            tg.start_soon(listener.serve, silent.handle)
            with anyio.fail_after(10):
                while silent.frames < 1000:
                    await anyio.sleep(0.01)  # polling, bounded
            assert first.unacknowledged == 1000 and first.acknowledged == 0
            tg.cancel_scope.cancel()  # the crash: no aclose, nothing written back
        await listener.aclose()
    first._close_socket()  # what the kernel does for a dead process: its fds close, nothing else
    assert first._spool is not None
    first._spool._close_reader()
    first._spool._close_writer()
    receiver = PickyReceiver()
    second = RelpSink(spec, backoff_initial=0.01, backoff_max=0.02)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
    with structlog.testing.capture_logs():
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, receiver.handle)
            await tg.start(second.run)
            with anyio.fail_after(10):
                while second.pending or second.unacknowledged:
                    await anyio.sleep(0.01)  # polling, bounded
            await second.aclose()
            tg.cancel_scope.cancel()
        await listener.aclose()
    got = {json.loads(m.split(b" ", 7)[7])["i"] for m in receiver.got}
    assert got == set(range(n))  # in-flight ones from fully read segments too


def _event(i: int) -> dict[str, Any]:
    return {"timestamp": iso_utc(), "level": "info", "event": "n", "i": i}


async def _emit(router: LogRouter, start: int, count: int, chunk: int = 500) -> int:
    for i in range(start, start + count):
        router.emit(_event(i))
        if i % chunk == 0:
            await anyio.sleep(0)  # the sender runs between bursts, as under a real supervisor
    return start + count


def _check_exact(events: list[dict[str, Any]], total: int, sink: RelpSink) -> int:
    """Every event arrived, first arrivals in order; duplicates within one window per reconnect."""
    seen: set[str] = set()
    firsts: list[int] = []
    for e in events:
        if e["id"] not in seen:
            seen.add(e["id"])
            firsts.append(e["i"])
    assert firsts == list(range(total)), "events missing or out of order"
    duplicates = len(events) - len(seen)
    assert duplicates <= sink.replayed <= (sink.connections - 1) * sink.window
    assert sink.dropped == 0 and sink.unacknowledged == 0 and sink.pending == 0
    return duplicates


def _spec(port: int, tmp_path: Path) -> SinkSpec:
    return SinkSpec(type="relp", address=("127.0.0.1", port), spool_dir=tmp_path / "spool", queue_size=100_000)


@pytest.mark.slow
@pytest.mark.anyio
class TestRelpRsyslog:
    async def test_every_event_acknowledged(self, rsyslog: Rsyslog, tmp_path: Path) -> None:
        """20,000 events: each acknowledged by imrelp, in the file parsed by mmjsonparse, in order, once."""
        await rsyslog.start()
        sink = RelpSink(_spec(rsyslog.relp_port, tmp_path))
        router = LogRouter([sink])
        async with anyio.create_task_group() as tg:
            await tg.start(router.run)
            n = await _emit(router, 0, 20_000)
            await router.aclose()  # returns once the receiver acknowledged the last one (or spooled it)
            tg.cancel_scope.cancel()
        assert sink.acknowledged == n
        events = rsyslog.read(rsyslog.relp_log)  # acknowledged means written: no waiting
        assert [e["i"] for e in events] == list(range(n))
        assert [e["seq"] for e in events] == list(range(1, n + 1))
        assert not list((tmp_path / "spool").glob("*.seg"))

    async def test_rsyslog_restart_mid_stream_nothing_lost(self, rsyslog: Rsyslog, tmp_path: Path) -> None:
        """rsyslogd stopped while events are in flight and started again: exact delivery, duplicates within a window."""
        await rsyslog.start()
        sink = RelpSink(_spec(rsyslog.relp_port, tmp_path), backoff_initial=0.05, backoff_max=0.2)
        router = LogRouter([sink])
        async with anyio.create_task_group() as tg:
            await tg.start(router.run)
            n = await _emit(router, 0, 20_000)
            with anyio.fail_after(20):
                while sink.acknowledged < 5_000:
                    await anyio.sleep(0.005)  # polling, bounded
            assert sink.unacknowledged or sink.pending  # mid-stream: not all delivered yet
            rsyslog.stop()
            n = await _emit(router, n, 5_000)  # while it is away: spooled
            await rsyslog.start()
            n = await _emit(router, n, 5_000)
            with anyio.fail_after(20):
                while sink.pending or sink.unacknowledged:
                    await anyio.sleep(0.02)  # polling, bounded: until the receiver answered the last one
            await router.aclose()
            tg.cancel_scope.cancel()
        assert sink.connections >= 2
        events = rsyslog.read(rsyslog.relp_log)
        duplicates = _check_exact(events, n, sink)
        # Each event is acknowledged exactly once: a frame is sent again only while unacknowledged. A line
        # written just before the stop whose 200 OK never arrived is in the file twice, with one ack.
        assert sink.acknowledged == n
        assert not list((tmp_path / "spool").glob("*.seg"))  # every spooled event released once acknowledged
        print(f"relp restart: {n} events, {duplicates} duplicates, {sink.replayed} replayed")

    async def test_flapping_connection_exact(self, rsyslog: Rsyslog, tmp_path: Path) -> None:
        """A proxy that resets both sides every 1,500 frames: all events arrive, duplicates within a window."""
        await rsyslog.start()
        proxy = ResettingProxy(rsyslog.relp_port, every=1_500)
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        sink = RelpSink(_spec(port, tmp_path), backoff_initial=0.005, backoff_max=0.02, window=64)
        router = LogRouter([sink])
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, proxy.handle)
            await tg.start(router.run)
            n = await _emit(router, 0, 15_000)
            with anyio.fail_after(60):
                while sink.acknowledged < n or sink.unacknowledged or sink.pending:
                    await anyio.sleep(0.02)  # polling, bounded
            await router.aclose()
            tg.cancel_scope.cancel()
        await listener.aclose()
        assert proxy.resets >= 5
        events = rsyslog.read(rsyslog.relp_log)
        duplicates = _check_exact(events, n, sink)
        print(f"relp flapping: {n} events, {proxy.resets} resets, {duplicates} duplicates, {sink.replayed} replayed")


class ResettingProxy:
    """Forwards to imrelp; after every ``every`` lines towards it, resets both connections (SO_LINGER 0)."""

    def __init__(self, upstream_port: int, every: int) -> None:
        self.upstream_port = upstream_port
        self.every = every
        self.resets = 0

    async def handle(self, client: SocketStream) -> None:
        upstream = await anyio.connect_tcp("127.0.0.1", self.upstream_port)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._down, upstream, client, tg.cancel_scope)
                lines = 0
                try:
                    async for chunk in client:
                        await upstream.send(chunk)
                        lines += chunk.count(b"\n")
                        if lines >= self.every:
                            self.resets += 1
                            break
                except (anyio.BrokenResourceError, OSError):
                    pass
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                for stream in (client, upstream):
                    raw: socket.socket = stream.extra(anyio.abc.SocketAttribute.raw_socket)
                    with contextlib.suppress(OSError):
                        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    await stream.aclose()

    async def _down(self, upstream: SocketStream, client: SocketStream, scope: anyio.CancelScope) -> None:
        raw: socket.socket = upstream.extra(anyio.abc.SocketAttribute.raw_socket)
        try:
            async for chunk in upstream:
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)  # else rsyslog's Nagle waits 40 ms
                await client.send(chunk)
        except (anyio.BrokenResourceError, OSError):
            pass
        scope.cancel()
