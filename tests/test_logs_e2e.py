"""The log pipeline end to end: real child processes under a real Supervisor."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.harness import cli_supervisor, running_supervisor

pytestmark = [pytest.mark.slow, pytest.mark.anyio]
T = "tests.aggregator.actors:"


class TestLogsEndToEnd:
    async def test_10k_events_then_os_exit_all_arrive(self) -> None:
        """10,000 events logged, then os._exit: every one arrives, in order, enriched."""
        actors = {"flood": {"target": T + "FloodThenExit", "args": {"n": 10_000}, "restart": "temporary"}}
        with anyio.fail_after(60):
            async with running_supervisor(actors) as (_sup, log):
                await log.wait_for("actor.exited", actor="flood", timeout=30)
                events = log.find("flood", actor="flood")
        assert [e["i"] for e in events] == list(range(10_000))
        assert all(e["restarts"] == 0 and e["pid"] == events[0]["pid"] for e in events)
        assert len({e["id"] for e in events}) == 10_000

    async def test_raw_output_of_a_child(self) -> None:
        """A 100 KiB line, binary junk, a traceback and a partial last line from a child's fds."""
        actors = {"raw": {"target": T + "RawOutput", "restart": "temporary"}}
        with anyio.fail_after(60):
            async with running_supervisor(actors) as (_sup, log):
                await log.wait_for("actor.exited", actor="raw", timeout=30)
                await log.wait_for("no newline at exit", actor="raw", stream="stdout")
                out = [e["event"] for e in log.find(actor="raw", stream="stdout")]
                tracebacks = log.find("ZeroDivisionError: division by zero", actor="raw", stream="stderr")
        assert "A" * (100 * 1024) in out
        assert "junk \\xff\\xfe\x00 \\xc3( end" in out
        assert len(tracebacks) == 1 and tracebacks[0]["exception"].startswith("Traceback")

    async def test_flooding_children_do_not_starve_heartbeats(self) -> None:
        """Three children logging flat out: a fourth actor's 0.3 s heartbeat deadline still holds."""
        from supervisor.config import SinkSpec

        S = "tests.sample_actors:"
        actors = {f"flood{i}": {"target": S + "Flooder"} for i in range(3)}
        actors["s"] = {"target": S + "Steady", "heartbeat_interval": 0.05, "heartbeat_timeout": 0.3}
        with anyio.fail_after(90):
            async with running_supervisor(actors) as (_sup, log):
                log.spec = SinkSpec(type="stdout", level=20)  # keep the flood itself out of the test's memory
                await log.wait_for("steady.up", actor="s")
                for i in range(3):  # 200,000 events from each flooder, all while "s" must keep beating
                    await log.wait_for("flood.mark", actor=f"flood{i}", i=200_000, timeout=60)
                timeouts = log.find("actor.heartbeat_timeout")
        assert timeouts == []


def _ticks(path: Path) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in path.read_bytes().splitlines()]
    return [e for e in events if e.get("actor") == "tick" and e.get("stream") == "stdout"]


class TestNativeField:
    async def test_started_says_whether_native_code_runs(self) -> None:
        """supervisor.started carries native: true exactly when both C modules are in use."""
        from supervisor.logs import _native, _render, _writer

        with anyio.fail_after(30):
            async with running_supervisor({}) as (_sup, log):
                started = await log.wait_for("supervisor.started")
        assert started[0]["native"] is (_render.NATIVE and _writer.NATIVE)
        if os.environ.get("CI") == "true" and _native.allowed():
            assert started[0]["native"] is True

    async def test_no_native_run_says_native_false(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """`actorsup run` with ACTORSUP_NO_NATIVE=1 logs native: false in supervisor.started."""
        monkeypatch.setenv("ACTORSUP_NO_NATIVE", "1")
        config = tmp_path / "actorsup.toml"
        config.write_text(f'[supervisor]\ncontrol_socket = "{tmp_path}/ctl.sock"\n')
        with anyio.fail_after(30):
            async with cli_supervisor(config) as cli:
                started = await cli.log.wait_for("supervisor.started")
                cli.process.send_signal(signal.SIGTERM)
                assert await cli.process.wait() == 0
        assert started[0]["native"] is False


class TestSighup:
    async def test_sighup_reopens_file_after_external_rename(self, tmp_path: Path) -> None:
        """`actorsup run` on SIGHUP reopens a moved file sink; the lines go on in a new file, none lost or doubled."""
        path = tmp_path / "out.jsonl"
        config = tmp_path / "actorsup.toml"
        config.write_text(
            '[supervisor]\ncontrol_socket = "ctl.sock"\n'
            f'[actors.tick]\ntarget = "{T}Ticker"\n'
            '[[logs.sinks]]\ntype = "stdout"\n'
            '[[logs.sinks]]\ntype = "file"\npath = "out.jsonl"\ndaily = false\n'
        )
        with anyio.fail_after(60):
            async with cli_supervisor(config) as cli:
                await cli.log.wait_for("tick 20", actor="tick")
                path.rename(tmp_path / "moved.jsonl")  # as logrotate does
                cli.process.send_signal(signal.SIGHUP)
                await cli.log.wait_for("supervisor.sighup")
                last = max(int(e["event"].split()[1]) for e in cli.log.find(actor="tick", stream="stdout"))
                await cli.log.wait_for(f"tick {last + 30}", actor="tick")
                cli.process.send_signal(signal.SIGTERM)
                assert await cli.process.wait() == 0
        before, after = _ticks(tmp_path / "moved.jsonl"), _ticks(path)
        assert before and after
        numbers = [int(e["event"].split()[1]) for e in before + after]
        assert numbers == list(range(len(numbers)))
        seqs = [e["seq"] for e in before + after]
        assert seqs == sorted(set(seqs))
        moved_events = [json.loads(line)["event"] for line in (tmp_path / "moved.jsonl").read_bytes().splitlines()]
        assert "supervisor.sighup" in moved_events


class TestStdoutReaderPauses:
    async def test_paused_reader_freezes_nothing_and_drops_count_exactly(self, tmp_path: Path) -> None:
        """A paused stdout reader of `actorsup run`: status answers, actors live, delivered + dropped = emitted."""
        import subprocess
        import sys
        import time

        from supervisor.control._client import arequest

        S = "tests.sample_actors:"
        sock = tmp_path / "ctl.sock"
        config = tmp_path / "actorsup.toml"
        config.write_text(
            f'[supervisor]\ncontrol_socket = "{sock}"\n'
            f'[actors.flood]\ntarget = "{S}Flooder"\nrestart = "temporary"\n'
            + "".join(
                f'[actors.s{i}]\ntarget = "{S}Steady"\nheartbeat_interval = 0.1\nheartbeat_timeout = 1.0\n'
                for i in range(3)
            )
        )
        process = await anyio.open_process(
            [sys.executable, "-m", "supervisor", "run", str(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        assert process.stdout is not None
        received = bytearray()

        async def read_until(needle: bytes) -> None:
            assert process.stdout is not None
            while needle not in received:
                received.extend(await process.stdout.receive())

        async with process:
            try:
                with anyio.fail_after(60):
                    await read_until(b'"event":"flood.mark"')  # everything is up, the flood runs
                    for i in range(3):
                        await read_until(b'"actor":"s%d"' % i)
                    paused_at = time.monotonic()
                    latencies = []
                    while time.monotonic() - paused_at < 4.0:  # nobody reads stdout meanwhile
                        began = time.monotonic()
                        with anyio.fail_after(10):
                            status = await arequest(sock, "status")
                        latencies.append(time.monotonic() - began)
                        await anyio.sleep(0.5)
                    await arequest(sock, "stop", name="flood")
                    with anyio.fail_after(30):
                        await read_until(b'"event":"logs.dropped"')
                    after = await arequest(sock, "status")
                    process.send_signal(signal.SIGTERM)
                    async for chunk in process.stdout:
                        received.extend(chunk)
                    assert await process.wait() == 0
            finally:
                if process.returncode is None:
                    process.kill()  # only the pid this test started
        events = [json.loads(line) for line in bytes(received).splitlines()]  # every line whole
        assert max(latencies) < 1.0, f"control socket answers took {latencies}"
        assert {s["name"]: s["state"] for s in status if s["name"].startswith("s")} == dict.fromkeys(
            ("s0", "s1", "s2"), "running")
        assert {s["name"]: (s["state"], s["restarts"]) for s in after if s["name"].startswith("s")} == dict.fromkeys(
            ("s0", "s1", "s2"), ("running", 0))  # once the reader caught up: never restarted
        assert not [e for e in events if e.get("actor", "").startswith("s") and e["event"] in (
            "actor.heartbeat_timeout", "actor.restarting")]
        dropped = sum(e["count"] for e in events if e["event"] == "logs.dropped" and e["sink"] == "stdout")
        assert dropped > 0
        assert "supervisor.stopped" in [e["event"] for e in events[-5:]]  # the stream ran to its end
        assert len(events) + dropped == max(e["seq"] for e in events)  # seq counts every event routed
