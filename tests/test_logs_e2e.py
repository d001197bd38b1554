"""The log pipeline end to end: real child processes under a real Supervisor."""

from __future__ import annotations

import anyio
import pytest

from tests.harness import running_supervisor

pytestmark = [pytest.mark.slow, pytest.mark.anyio]
T = "tests.aggregator.actors:"


class TestLogsEndToEnd:
    async def test_10k_events_then_os_exit_all_arrive(self) -> None:
        """10,000 events logged, then os._exit: every one arrives, in order, enriched."""
        actors = {"flood": {"target": T + "FloodThenExit", "args": {"n": 10_000}, "restart": "temporary"}}
        with anyio.fail_after(60):
            async with running_supervisor(actors) as (sup, log):
                await log.wait_for("actor.exited", actor="flood", timeout=30)
                events = log.find("flood", actor="flood")
        assert [e["i"] for e in events] == list(range(10_000))
        assert all(e["restarts"] == 0 and e["pid"] == events[0]["pid"] for e in events)
        assert len({e["id"] for e in events}) == 10_000

    async def test_raw_output_of_a_child(self) -> None:
        """A 100 KiB line, binary junk, a traceback and a partial last line from a child's fds."""
        actors = {"raw": {"target": T + "RawOutput", "restart": "temporary"}}
        with anyio.fail_after(60):
            async with running_supervisor(actors) as (sup, log):
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
            async with running_supervisor(actors) as (sup, log):
                log.spec = SinkSpec(type="stdout", level=20)  # keep the flood itself out of the test's memory
                await log.wait_for("steady.up", actor="s")
                for i in range(3):  # 200,000 events from each flooder, all while "s" must keep beating
                    await log.wait_for("flood.mark", actor=f"flood{i}", i=200_000, timeout=60)
                timeouts = log.find("actor.heartbeat_timeout")
        assert timeouts == []
