"""What a child sends about itself: oversized events cut instead of fatal, and the pid of a fork."""

from __future__ import annotations

import pytest

from tests.harness import running_supervisor

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
T = "tests.sample_actors:"


class TestOversizedEvents:
    async def test_a_40_mib_event_is_truncated_not_fatal(self) -> None:
        """A 40 MiB event (over the frame limit) arrives truncated with a marker; the actor runs on."""
        async with running_supervisor({"h": {"target": T + "HugeLog"}}) as (sup, log):
            await log.wait_for("huge.after", actor="h", timeout=60)
            (event,) = log.find("huge.event", actor="h")
            assert event["truncated"] is True
            assert event["original_bytes"] > 40 << 20
            assert event["truncated_keys"] == ["blob"]
            assert event["small"] == 1 and event["blob"].startswith("xxxx")
            (std,) = [e for e in log.find(actor="h") if str(e.get("event", "")).startswith("huge stdlib")]
            assert std["truncated"] is True and std["level"] == "warning"
            assert log.find("actor.protocol_error") == []
            assert sup.status()[0]["state"] == "running"

    async def test_a_40_mib_exception_is_reported_not_a_protocol_error(self) -> None:
        """run() raising with a 40 MiB message ends as an error exit, with its traceback cut, not a protocol error."""
        actors = {"e": {"target": T + "HugeError", "restart": "temporary"}}
        async with running_supervisor(actors) as (_sup, log):
            (failed,) = await log.wait_for("actor.run_failed", actor="e", timeout=60)
            assert failed["truncated"] is True
            (exited,) = await log.wait_for("actor.exited", actor="e", timeout=60)
            assert exited.get("reason") != "protocol_error"
            assert log.find("actor.protocol_error") == []


class TestForkedPid:
    async def test_events_of_a_fork_carry_its_own_pid(self) -> None:
        """Events a forked process (and its fork) logs or prints carry that process's pid, once; the actor's its own."""
        async with running_supervisor({"f": {"target": T + "ForkLogsPid"}}) as (sup, log):
            (parent,) = await log.wait_for("fork.parent_logged", actor="f")
            (child,) = log.find("fork.child_logged", actor="f")
            (grandchild,) = log.find("fork.grandchild_logged", actor="f")
            (stdlib,) = log.find("fork.child_stdlib", actor="f")
            assert parent["pid"] == parent["me"] == sup.status()[0]["pid"]
            assert child["pid"] == child["me"] != parent["pid"]
            assert grandchild["pid"] == grandchild["me"] not in (parent["pid"], child["pid"])
            assert stdlib["pid"] == child["pid"]
            (printed,) = await log.wait_for("fork.child_printed", actor="f")
            (parent_printed,) = await log.wait_for("fork.parent_printed", actor="f")
            assert printed["pid"] == child["pid"] and printed["stream"] == "stdout" and printed["level"] == "info"
            assert parent_printed["pid"] == parent["pid"] and parent_printed["stream"] == "stdout"
            raw = [r for r in log.raw if b"fork.child_logged" in r]
            assert raw and all(r.count(b'"pid":') == 1 for r in raw)
