"""Supervision trees with real child processes: group restarts, order, concurrent stop, escalation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from harness import CaptureSink, cli_supervisor, serving, state_dir

from supervisor._supervisor import Supervisor
from supervisor.config import parse_config
from supervisor.control._commands import select_rows
from supervisor.exceptions import ConfigError, UnknownActor
from supervisor.lifecycle._states import ActorState

pytestmark = pytest.mark.anyio
T = "tests.sample_actors:"
FAST = {"backoff_initial": 0.05, "backoff_max": 0.1}


def tree_config(groups: dict[str, dict[str, Any]], actors: dict[str, dict[str, Any]]) -> Any:
    settings = {"heartbeat_interval": 0.2, "heartbeat_timeout": 5.0, "start_timeout": 20.0, "state_dir": state_dir()}
    return parse_config({"supervisor": settings, "groups": groups, "actors": actors}, label="test.toml")


def tree_supervisor(
    groups: dict[str, dict[str, Any]], actors: dict[str, dict[str, Any]]
) -> AbstractAsyncContextManager[tuple[Supervisor, CaptureSink]]:
    return serving(tree_config(groups, actors))


def at(sink: CaptureSink, event: str, actor: str, after: str = "") -> str:
    """The timestamp of the first ``event`` of ``actor`` later than ``after`` (ISO strings sort)."""
    return min(e["timestamp"] for e in sink.find(event, actor=actor) if e["timestamp"] > after)


async def running(sup: Supervisor, *names: str) -> None:
    with anyio.fail_after(30):
        for name in names:
            await sup.wait_for_state(name, ActorState.RUNNING)


async def test_one_for_all_restarts_every_member_in_order() -> None:
    """One crash in a one_for_all group of three: the others stop in reverse order, all start in order."""
    actors = {n: {"target": T + "Steady", "group": "g", **FAST} for n in ("a", "b", "c")}
    async with tree_supervisor({"g": {"strategy": "one_for_all"}}, actors) as (sup, sink):
        await running(sup, "a", "b", "c")
        pids = {n: sup.handle(n).pid for n in "abc"}
        crash = sink.events[-1]["timestamp"]
        assert pids["b"] is not None
        os.kill(pids["b"], signal.SIGKILL)
        (restarting,) = await sink.wait_for("group.restarting", group="g")
        assert restarting["strategy"] == "one_for_all" and restarting["trigger"] == "b"
        for name in "abc":
            await sink.wait_for("actor.started", actor=name, count=2)
        await running(sup, "a", "b", "c")
        assert all(sup.handle(n).pid != pids[n] for n in "abc")
        assert at(sink, "actor.stopped", "c", crash) < at(sink, "actor.stopped", "a", crash)
        t = {n: at(sink, "actor.started", n, restarting["timestamp"]) for n in "abc"}
        assert t["a"] < t["b"] < t["c"]
        assert at(sink, "actor.stopped", "a", crash) < t["a"]  # all down before any comes up


async def test_one_for_all_with_zero_backoff_starts_each_member_once_per_group_restart() -> None:
    """backoff_initial = 0, a member SIGKILLed again and again: each group restart starts every member once."""
    names = ("a", "b", "c", "d")
    zero = {"backoff_initial": 0.0, "backoff_max": 0.0, "max_restarts": 100}
    actors = {n: {"target": T + "Steady", "group": "g", **zero} for n in names}
    async with tree_supervisor({"g": {"strategy": "one_for_all", "max_restarts": 100}}, actors) as (sup, sink):
        await running(sup, *names)
        for round_ in range(1, 11):
            victim = names[round_ % len(names)]
            pid = sup.handle(victim).pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            await sink.wait_for("group.restarting", group="g", count=round_)
            for name in names:
                await sink.wait_for("actor.started", actor=name, count=round_ + 1)
            await running(sup, *names)
            counts = {n: len(sink.find("actor.started", actor=n)) for n in names}
            assert counts == dict.fromkeys(names, round_ + 1), f"round {round_}, {victim} killed"
            assert len(sink.find("group.restarting", group="g")) == round_


async def test_rest_for_one_leaves_earlier_members_alone() -> None:
    """rest_for_one: a crash of the middle member restarts it and the last, not the first."""
    actors = {n: {"target": T + "Steady", "group": "g", **FAST} for n in ("a", "b", "c")}
    async with tree_supervisor({"g": {"strategy": "rest_for_one"}}, actors) as (sup, sink):
        await running(sup, "a", "b", "c")
        pids = {n: sup.handle(n).pid for n in "abc"}
        os.kill(pids["b"], signal.SIGKILL)  # type: ignore[arg-type]
        await sink.wait_for("group.restarting", group="g", trigger="b")
        await sink.wait_for("actor.started", actor="c", count=2)
        await running(sup, "a", "b", "c")
        assert sup.handle("a").pid == pids["a"]
        assert sup.handle("c").pid != pids["c"]


async def test_depends_on_orders_start_and_stop() -> None:
    """web starts after cache after db, and stops before them (from the event timestamps)."""
    actors = {
        "web": {"target": T + "Steady", "depends_on": ["cache"]},
        "cache": {"target": T + "Steady", "depends_on": ["db"]},
        "db": {"target": T + "Steady"},
    }
    sink: CaptureSink
    async with tree_supervisor({}, actors) as (sup, sink):
        await running(sup, "db", "cache", "web")
        assert at(sink, "actor.started", "db") < at(sink, "actor.starting", "cache")
        assert at(sink, "actor.started", "cache") < at(sink, "actor.starting", "web")
    assert at(sink, "actor.stopped", "web") < at(sink, "actor.stopping", "cache")
    assert at(sink, "actor.stopped", "cache") < at(sink, "actor.stopping", "db")


async def test_independent_actors_stop_concurrently() -> None:
    """Six independent actors that each take 1 s to stop all stop in about 1 s, not 6."""
    actors = {f"s{i}": {"target": T + "SlowStop"} for i in range(6)}
    sink: CaptureSink
    async with tree_supervisor({}, actors) as (sup, sink):
        for name in actors:
            await sink.wait_for("slowstop.up", actor=name)
        with anyio.fail_after(30):
            before = anyio.current_time()
            sup.shutdown_nowait()
            await sup.closed.wait()
            took = anyio.current_time() - before
    assert len(sink.find("actor.stopped")) == 6
    assert 1.0 <= took < 3.0, took


async def test_top_level_group_gives_up_and_leaves_members_failed() -> None:
    """A group past its intensity emits group.failed and its members end up failed."""
    actors = {
        "bad": {"target": T + "ExitsAtOnce", "group": "g", **FAST},
        "ok": {"target": T + "Steady", "group": "g"},
    }
    async with tree_supervisor({"g": {"max_restarts": 1}}, actors) as (sup, sink):
        await sink.wait_for("group.failed", group="g")
        with anyio.fail_after(30):
            await sup.wait_for_state("ok", ActorState.FAILED)
            await sup.wait_for_state("bad", ActorState.FAILED)


async def test_instances_and_scale() -> None:
    """instances = 2 runs NAME.0 and NAME.1 with self.instance; scale starts NAME.2, then stops the highest."""
    actors = {"r": {"target": T + "Instance", "instances": 2}}
    async with tree_supervisor({}, actors) as (sup, sink):
        await running(sup, "r.0", "r.1")
        await sink.wait_for("instance.up", actor="r.1", instance=1)
        assert await sup.scale("r", 3) == {"started": ["r.2"], "stopped": []}
        await running(sup, "r.2")
        pid0 = sup.handle("r.0").pid
        assert await sup.scale("r", 1) == {"started": [], "stopped": ["r.2", "r.1"]}
        assert sorted(sup.handles) == ["r.0"]
        assert sup.handle("r.0").pid == pid0  # the survivor was not restarted


async def test_stop_signal_is_the_first_signal_of_a_stop() -> None:
    """stop_signal = "SIGINT" is what a graceful stop sends first."""
    async with tree_supervisor({}, {"a": {"target": T + "Steady", "stop_signal": "SIGINT"}}) as (sup, sink):
        await running(sup, "a")
        await sup.stop_actor("a")
        assert sink.find("actor.signalled", actor="a")[-1]["signal"] == "SIGINT"


async def test_failed_retry_after_starts_a_failed_actor_again() -> None:
    """A failed actor with failed_retry_after starts again after that long."""
    actors = {"a": {"target": T + "ExitsAtOnce", "max_restarts": 0, "failed_retry_after": 0.3}}
    async with tree_supervisor({}, actors) as (_sup, sink):
        (failed,) = await sink.wait_for("actor.failed", actor="a")
        again = await sink.wait_for("actor.starting", actor="a", count=2)
        assert again[1]["timestamp"] > failed["timestamp"]


async def test_dynamic_children() -> None:
    """add_actor starts a child on a running supervisor; remove_actor stops and forgets it."""
    async with tree_supervisor({}, {"a": {"target": T + "Steady"}}) as (sup, _sink):
        await running(sup, "a")
        both = {"a": {"target": T + "Steady"}, "b": {"target": T + "Steady", "depends_on": ["a"]}}
        spec = parse_config({"actors": both}, label="x").actors[1]
        bad = msgspec.structs.replace(spec, name="c", depends_on=("nope",))
        with pytest.raises(ConfigError, match=r"^<config>: actors.c.depends_on: unknown actor or group 'nope'$"):
            await sup.add_actor(bad)
        assert "c" not in sup.handles
        await sup.add_actor(spec)
        await running(sup, "b")
        await sup.remove_actor("b")
        assert "b" not in sup.handles


CRITICAL = {
    "actor": """
        [actors.writer]
        target = "{T}ExitsAtOnce"
        critical = true
        max_restarts = 1
        backoff_initial = 0.05
    """,
    "group": """
        [groups.io]
        strategy = "one_for_all"
        critical = true
        max_restarts = 1
        [actors.writer]
        target = "{T}ExitsAtOnce"
        group = "io"
        backoff_initial = 0.05
    """,
}


@pytest.mark.parametrize("which", ["actor", "group"])
def test_critical_actor_or_group_makes_run_exit_3(tmp_path: Path, which: str) -> None:
    """A critical actor or group that gives up: supervisor.give_up names it, a graceful stop, `actorsup run`
    exits 3."""
    config = tmp_path / "critical.toml"
    config.write_text(textwrap.dedent(f"""
        [supervisor]
        heartbeat_interval = 0.2
        control_socket = "{tmp_path / 'sock'}"
        [actors.other]
        target = "{T}Steady"
    """) + textwrap.dedent(CRITICAL[which].format(T=T)))
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", "run", str(config)], capture_output=True, text=True, timeout=60,
        cwd=root, env=env,
    )
    assert done.returncode == 3, done.stderr[-2000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    (give_up,) = [e for e in events if e["event"] == "supervisor.give_up"]
    assert give_up[which] == ("writer" if which == "actor" else "io") and give_up["exit_status"] == 3
    names = [e["event"] for e in events]
    if which == "group":
        assert names.index("group.failed") < names.index("supervisor.give_up")
    assert names.index("supervisor.give_up") < names.index("supervisor.stopped")
    assert any(e["event"] == "actor.stopped" and e.get("actor") == "other" for e in events)


async def test_names_groups_globs_and_all() -> None:
    """stop/start take a group, an actor with instances, `all` or a glob; a glob that matches nothing is unknown."""
    actors = {
        "reader": {"target": T + "Steady", "group": "g", "instances": 2},
        "writer": {"target": T + "Steady", "group": "g"},
        "cache": {"target": T + "Steady"},
    }
    async with tree_supervisor({"g": {"strategy": "rest_for_one"}}, actors) as (sup, _sink):
        await running(sup, "reader.0", "reader.1", "writer", "cache")
        assert sup.leaves("g") == ["reader.0", "reader.1", "writer"]
        assert sup.leaves("reader") == ["reader.0", "reader.1"]
        assert sup.leaves("read*") == ["reader.0", "reader.1"]
        assert sup.leaves("all") == ["reader.0", "reader.1", "writer", "cache"]
        with pytest.raises(UnknownActor):
            sup.leaves("nothing*")
        rows = sup.status()
        assert [(r["name"], r["depth"]) for r in rows] == [
            ("cache", 0), ("g", 0), ("reader.0", 1), ("reader.1", 1), ("writer", 1)]
        assert rows[1]["kind"] == "group" and rows[1]["strategy"] == "rest_for_one"
        assert rows[1]["state"] == "running" and rows[1]["members"] == ["reader.0", "reader.1", "writer"]
        await sup.stop_actor("g")
        assert {sup.handle(n).state for n in ("reader.0", "reader.1", "writer")} == {ActorState.STOPPED}
        assert sup.handle("cache").state is ActorState.RUNNING
        await sup.start_actor("w*")
        await running(sup, "writer")
        assert sup.handle("reader.0").state is ActorState.STOPPED


async def test_cli_scale_and_several_names(tmp_path: Path) -> None:
    """`actorsup scale NAME N` and `actorsup stop A B` against a real `actorsup run`."""
    config = tmp_path / "actorsup.toml"
    config.write_text(textwrap.dedent(f"""
        [supervisor]
        heartbeat_interval = 0.2
        control_socket = "ctl.sock"
        [actors.w]
        target = "{T}Steady"
        instances = 1
        [actors.x]
        target = "{T}Steady"
    """))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))

    async def cli(*args: str) -> str:
        done = await anyio.run_process([sys.executable, "-m", "supervisor", *args, "-c", str(config)],
                                       check=False, env=env)
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode()

    async with cli_supervisor(config) as run:
        await run.log.wait_for("actor.started", actor="w.0")
        await run.log.wait_for("actor.started", actor="x")
        assert "started ['w.1', 'w.2']" in await cli("scale", "w", "3")
        await run.log.wait_for("actor.started", actor="w.2")
        await run.log.wait_for("actor.started", actor="w.1")  # instances start concurrently
        assert await cli("stop", "w.2", "x") == "stopped w.2\nstopped x\n"
        rows = {r["name"]: r["state"] for r in json.loads(await cli("status", "--json"))}
        assert rows["w.2"] == "stopped" and rows["x"] == "stopped" and rows["w.1"] == "running"
        run.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(20):
            assert await run.process.wait() == 0


def test_status_names_select_rows_and_group_members() -> None:
    """`status NAME...` keeps the rows a name or glob matches, and a matching group's members."""
    rows = [{"name": "cache", "group": None}, {"name": "g", "group": None}, {"name": "inner", "group": "g"},
            {"name": "r.0", "group": "inner"}, {"name": "w", "group": "g"}]
    assert [r["name"] for r in select_rows(rows, ["g"])] == ["g", "inner", "r.0", "w"]
    assert [r["name"] for r in select_rows(rows, ["r.*", "cache"])] == ["cache", "r.0"]
    assert select_rows(rows, []) == rows


async def test_user_stopped_member_stays_stopped_through_a_group_restart() -> None:
    """After `stop c`, a sibling's crash restarts the one_for_all group without c."""
    actors = {n: {"target": T + "Steady", "group": "g", **FAST} for n in ("a", "b", "c")}
    async with tree_supervisor({"g": {"strategy": "one_for_all"}}, actors) as (sup, sink):
        await running(sup, "a", "b", "c")
        await sup.stop_actor("c")
        os.kill(sup.handle("a").pid, signal.SIGKILL)  # type: ignore[arg-type]
        await sink.wait_for("group.restarting", group="g", trigger="a")
        await sink.wait_for("actor.started", actor="b", count=2)
        await running(sup, "a", "b")
        assert sup.handle("c").state is ActorState.STOPPED
        await sup.start_actor("c")
        await running(sup, "c")


async def test_failed_child_group_is_restarted_by_its_parent() -> None:
    """A child group past its intensity fails (group.failed); its one_for_all parent restarts everything."""
    groups = {"outer": {"strategy": "one_for_all"}, "inner": {"group": "outer", "max_restarts": 0}}
    actors = {
        "x": {"target": T + "Steady", "group": "outer"},
        "i": {"target": T + "Steady", "group": "inner", **FAST},
    }
    async with tree_supervisor(groups, actors) as (sup, sink):
        await running(sup, "x", "i")
        x_pid = sup.handle("x").pid
        os.kill(sup.handle("i").pid, signal.SIGKILL)  # type: ignore[arg-type]
        await sink.wait_for("group.failed", group="inner")
        (restart,) = await sink.wait_for("group.restarting", group="outer")
        assert restart["trigger"] == "inner"
        await sink.wait_for("actor.started", actor="i", count=2)
        await running(sup, "x", "i")
        assert sup.handle("x").pid != x_pid


async def test_reload_adopts_a_changed_tree_and_restarts_only_changed_actors() -> None:
    """A reload that changes a group's strategy and adds a member restarts nobody; the new tree rules."""
    actors = {n: {"target": T + "Steady", "group": "g", **FAST} for n in ("a", "b")}
    async with tree_supervisor({"g": {}}, actors) as (sup, sink):
        await running(sup, "a", "b")
        pids = {n: sup.handle(n).pid for n in "ab"}
        new = {**actors, "c": {"target": T + "Steady", "group": "g", "depends_on": ["a"], **FAST}}
        config = tree_config({"g": {"strategy": "one_for_all"}}, new)
        assert await sup.reload(config) == {"added": ["c"], "removed": [], "changed": []}
        await running(sup, "c")
        assert {n: sup.handle(n).pid for n in "ab"} == pids
        os.kill(pids["a"], signal.SIGKILL)  # type: ignore[arg-type]
        (restart,) = await sink.wait_for("group.restarting", group="g")
        assert restart["strategy"] == "one_for_all"
        await sink.wait_for("actor.started", actor="c", count=2)


def test_check_refuses_a_cycle_with_one_line_and_exit_2(tmp_path: Path) -> None:
    """`actorsup check` on a depends_on cycle prints one line naming the cycle and exits 2."""
    config = tmp_path / "cycle.toml"
    config.write_text(textwrap.dedent(f"""
        [actors.a]
        target = "{T}Steady"
        depends_on = ["b"]
        [actors.b]
        target = "{T}Steady"
        depends_on = ["a"]
    """))
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "supervisor", "check", str(config)], capture_output=True,
                          text=True, timeout=60, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 2
    assert done.stderr == f'actorsup: {config}: actors.a.depends_on: dependency cycle a -> b -> a, got ["b"]\n'


async def test_a_stuck_stop_in_one_group_does_not_delay_another_groups_restart() -> None:
    """Group A's member ignores SIGTERM (stop_timeout 3 s): group B's one_for_all of 3 restarts long before."""
    groups = {"ga": {"strategy": "one_for_all"}, "gb": {"strategy": "one_for_all"}}
    b = ("b1", "b2", "b3")
    actors = {
        "stuck": {"target": T + "IgnoresSigterm", "group": "ga", "stop_timeout": 3.0},
        "a": {"target": T + "Steady", "group": "ga", **FAST},
        **{n: {"target": T + "Steady", "group": "gb", **FAST} for n in b},
    }
    async with tree_supervisor(groups, actors) as (sup, sink):
        await sink.wait_for("ignores.up", actor="stuck")
        await running(sup, "stuck", "a", *b)
        os.kill(sup.handle("a").pid, signal.SIGKILL)  # type: ignore[arg-type]
        with anyio.fail_after(10):
            await sup.wait_for_state("stuck", ActorState.STOPPING)  # group A's restart waits out its stop
        os.kill(sup.handle("b1").pid, signal.SIGKILL)  # type: ignore[arg-type]
        (restarting,) = await sink.wait_for("group.restarting", group="gb")
        for name in b:
            await sink.wait_for("actor.started", actor=name, count=2)
        (timeout,) = await sink.wait_for("actor.stop_timeout", actor="stuck")
        up = max(at(sink, "actor.started", n, restarting["timestamp"]) for n in b)
        assert up < timeout["timestamp"]
        took = datetime.fromisoformat(up) - datetime.fromisoformat(restarting["timestamp"])
        assert took.total_seconds() < 1.5, took
        await running(sup, "stuck", "a")  # and group A completes its restart after the SIGKILL
