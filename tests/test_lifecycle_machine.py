"""The pure lifecycle decision function, edge by edge (explicit times: the fake clock is ``now``)."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from supervisor.lifecycle import _machine as m
from supervisor.lifecycle._machine import Life, Policy, decide
from supervisor.lifecycle._states import ALLOWED, ActorState

S = ActorState
POLICY = Policy(kind="process", restart="permanent", backoff_initial=1.0, backoff_max=8.0, backoff_reset=60.0,
                max_restarts=3, restart_window=60.0, jitter=lambda: 1.0)
NOW = 1000.0


def life(state: ActorState, **kw: object) -> Life:
    return dataclasses.replace(Life(state=state, want_running=state is not S.STOPPED), **kw)  # type: ignore[arg-type]


def moves(actions: list[m.Action]) -> list[tuple[str, str]]:
    return [(a.old.value, a.new.value) for a in actions if isinstance(a, m.Transition)]


def others(actions: list[m.Action]) -> list[m.Action]:
    return [a for a in actions if not isinstance(a, m.Transition | m.Emit)]


def emits(actions: list[m.Action]) -> list[m.Emit]:
    return [a for a in actions if isinstance(a, m.Emit)]


RUNNING = life(S.RUNNING, pid=42, started_at=NOW - 5)


class TestEdges:
    def test_stopped_start_spawns(self) -> None:
        """stopped + Start -> starting with the backoff attempt and kind, and a Spawn."""
        new, actions = decide(Life(), m.Start(), POLICY, NOW)
        assert new.state is S.STARTING and new.want_running
        assert moves(actions) == [("stopped", "starting")]
        assert actions[0].fields == {"attempt": 0, "kind": "process"}  # type: ignore[union-attr]
        assert others(actions) == [m.Spawn()]

    def test_failed_start_resets_intensity_and_backoff(self) -> None:
        """failed + Start -> starting; the restart window and the backoff attempt start afresh."""
        failed = life(S.FAILED, want_running=False, attempt=4, restart_times=(NOW - 1, NOW - 2), restarts=4)
        new, actions = decide(failed, m.Start(), POLICY, NOW)
        assert moves(actions) == [("failed", "starting")] and others(actions) == [m.Spawn()]
        assert new.restart_times == () and new.attempt == 0 and new.restarts == 4

    def test_starting_spawned_records_pid(self) -> None:
        """starting + Spawned records the pid without a transition."""
        new, actions = decide(life(S.STARTING), m.Spawned(7), POLICY, NOW)
        assert new.state is S.STARTING and new.pid == 7 and actions == []

    def test_running_spawned_records_the_main_process(self) -> None:
        """running + Spawned (a command actor's MAINPID=) records the new pid, no transition."""
        new, actions = decide(RUNNING, m.Spawned(77), POLICY, NOW)
        assert new == dataclasses.replace(RUNNING, pid=77) and actions == []

    def test_starting_ready_runs(self) -> None:
        """starting + Ready -> running, logged with pid, kind and restarts; uptime counts from now."""
        new, actions = decide(life(S.STARTING, restarts=2), m.Ready(7), POLICY, NOW)
        assert moves(actions) == [("starting", "running")]
        assert actions[0].fields == {"pid": 7, "kind": "process", "restarts": 2}  # type: ignore[union-attr]
        assert new.started_at == NOW and new.pid == 7

    @pytest.mark.parametrize("state", [S.STARTING, S.RUNNING])
    def test_stop_while_live_stops_the_child(self, state: ActorState) -> None:
        """starting/running + Stop -> stopping with the pid, and a graceful StopChild."""
        new, actions = decide(life(state, pid=42), m.Stop(), POLICY, NOW)
        assert moves(actions) == [(state.value, "stopping")] and others(actions) == [m.StopChild()]
        assert actions[0].fields == {"pid": 42}  # type: ignore[union-attr]
        assert new.stop_requested and not new.want_running

    def test_stop_of_a_run_being_killed_adds_nothing(self) -> None:
        """running + Stop while the supervisor already ends the run: no stopping event, no second signal."""
        new, actions = decide(dataclasses.replace(RUNNING, kill_reason="heartbeat_timeout"), m.Stop(), POLICY, NOW)
        assert actions == [] and new.state is S.RUNNING and not new.want_running

    def test_stop_while_stopping_only_forgets_wanting(self) -> None:
        """stopping + Stop changes nothing but want_running."""
        new, actions = decide(life(S.STOPPING), m.Stop(), POLICY, NOW)
        assert actions == [] and new.state is S.STOPPING and not new.want_running

    @pytest.mark.parametrize("state", [S.STARTING, S.RUNNING, S.STOPPING])
    def test_kill_run_sigkills(self, state: ActorState) -> None:
        """starting/running/stopping + KillRun: SIGKILL at once, the reason kept for the exit."""
        new, actions = decide(life(state), m.KillRun("heartbeat_timeout"), POLICY, NOW)
        assert actions == [m.KillChild()] and new.kill_reason == "heartbeat_timeout" and new.state is state

    def test_first_kill_reason_wins(self) -> None:
        """A second KillRun signals again but keeps the first reason."""
        first, _ = decide(RUNNING, m.KillRun("protocol_error"), POLICY, NOW)
        second, actions = decide(first, m.KillRun("heartbeat_timeout"), POLICY, NOW)
        assert actions == [m.KillChild()] and second.kill_reason == "protocol_error"

    def test_running_stop_run_is_a_graceful_restart(self) -> None:
        """running + StopRun: StopChild without a stopping transition; the reason ends the run."""
        new, actions = decide(RUNNING, m.StopRun("unhealthy"), POLICY, NOW)
        assert actions == [m.StopChild()] and new.kill_reason == "unhealthy" and new.want_running

    def test_stop_run_after_a_stop_is_ignored(self) -> None:
        """A failing health check during a user's stop does not turn the stop into a restart."""
        stopping, _ = decide(RUNNING, m.Stop(), POLICY, NOW)
        stopping = dataclasses.replace(stopping, state=S.RUNNING)  # as if the stop had no event yet
        new, actions = decide(stopping, m.StopRun("unhealthy"), POLICY, NOW)
        assert actions == [] and new.kill_reason is None

    def test_crash_goes_through_errored_to_backoff(self) -> None:
        """running + a crash -> errored -> backoff, one restart counted, a timer at now + delay."""
        new, actions = decide(RUNNING, m.ChildExited(1, "error", "Traceback\nValueError: x"), POLICY, NOW)
        assert moves(actions) == [("running", "errored"), ("errored", "backoff")]
        errored, backoff = (a for a in actions if isinstance(a, m.Transition))
        assert errored.fields == {"reason": "crash", "exit_code": 1, "signal": None}
        assert backoff.fields == {"attempt": 1, "delay": 1.0, "reason": "crash"}
        assert others(actions) == [m.StartTimer(NOW + 1.0)]
        assert new.restarts == 1 and new.attempt == 1 and new.last_error == "ValueError: x"
        assert new.pid is None and new.started_at is None

    def test_exit_is_logged_with_pid_and_code_or_signal(self) -> None:
        """A child's exit emits actor.exited (published), with exit_code or signal, never both."""
        _, actions = decide(RUNNING, m.ChildExited(-9), POLICY, NOW)
        (emit,) = emits(actions)
        assert (emit.event, emit.level, emit.publish) == ("actor.exited", 30, True)
        assert emit.fields == {"pid": 42, "reason": "crash", "signal": "SIGKILL"}
        stopped, _ = decide(RUNNING, m.Stop(), POLICY, NOW)
        _, actions = decide(stopped, m.ChildExited(0), POLICY, NOW)
        assert emits(actions)[0].fields == {"pid": 42, "reason": "stopped", "exit_code": 0}
        assert emits(actions)[0].level == 20

    def test_stopping_exit_stops(self) -> None:
        """stopping + exit -> stopped with reason stopped; no errored, no restart."""
        stopping, _ = decide(RUNNING, m.Stop(), POLICY, NOW)
        new, actions = decide(stopping, m.ChildExited(-15), POLICY, NOW)
        assert moves(actions) == [("stopping", "stopped")] and others(actions) == []
        assert actions[-1].fields == {"reason": "stopped"}  # type: ignore[union-attr]
        assert new.restarts == 0 and not new.want_running

    def test_temporary_crash_errors_then_stops(self) -> None:
        """restart=temporary: a crash -> errored -> stopped, never backoff."""
        policy = dataclasses.replace(POLICY, restart="temporary")
        new, actions = decide(RUNNING, m.ChildExited(1), policy, NOW)
        assert moves(actions) == [("running", "errored"), ("errored", "stopped")]
        assert new.state is S.STOPPED and not new.want_running

    def test_transient_completion_stops_without_error(self) -> None:
        """restart=transient: run() returning -> stopped with reason completed, no errored."""
        policy = dataclasses.replace(POLICY, restart="transient")
        new, actions = decide(RUNNING, m.ChildExited(0, "completed"), policy, NOW)
        assert moves(actions) == [("running", "stopped")]
        assert new.last_exit == m.Exit("completed", 0) and new.last_error is None

    def test_intensity_exceeded_fails(self) -> None:
        """The (max_restarts+1)-th restart within the window -> errored -> failed, with a hint."""
        busy = dataclasses.replace(RUNNING, restart_times=(NOW - 3, NOW - 2, NOW - 1), restarts=3)
        new, actions = decide(busy, m.ChildExited(1), POLICY, NOW)
        assert moves(actions) == [("running", "errored"), ("errored", "failed")] and others(actions) == []
        failed = actions[-1].fields  # type: ignore[union-attr]
        assert failed["restarts"] == 3 and failed["max_restarts"] == 3 and failed["window"] == 60.0
        assert "actorsup start" in failed["hint"] and not new.want_running

    def test_backoff_elapsed_starts_again(self) -> None:
        """backoff + BackoffElapsed -> starting with the attempt number, and a Spawn."""
        _new, actions = decide(life(S.BACKOFF, attempt=2), m.BackoffElapsed(), POLICY, NOW)
        assert moves(actions) == [("backoff", "starting")] and others(actions) == [m.Spawn()]
        assert actions[0].fields == {"attempt": 2, "kind": "process"}  # type: ignore[union-attr]

    def test_stop_during_backoff_cancels_the_timer(self) -> None:
        """backoff + Stop -> stopped (reason stopped) at once, and the timer is cancelled."""
        new, actions = decide(life(S.BACKOFF), m.Stop(), POLICY, NOW)
        assert moves(actions) == [("backoff", "stopped")] and others(actions) == [m.CancelTimer()]
        assert new.state is S.STOPPED and not new.want_running

    def test_retire_during_backoff_stops(self) -> None:
        """backoff + Retire (a shutdown began) -> stopped at once; the timer is cancelled."""
        new, actions = decide(life(S.BACKOFF), m.Retire(), POLICY, NOW)
        assert moves(actions) == [("backoff", "stopped")] and others(actions) == [m.CancelTimer()]
        assert not new.want_running

    @pytest.mark.parametrize("state", [S.STARTING, S.RUNNING, S.STOPPING, S.STOPPED, S.FAILED])
    def test_retire_lets_the_run_end_but_never_restarts(self, state: ActorState) -> None:
        """Retire changes no state; a crash afterwards stops the actor instead of restarting it."""
        new, actions = decide(life(state, pid=5), m.Retire(), POLICY, NOW)
        assert actions == [] and new.state is state and not new.want_running
        if state in (S.STARTING, S.RUNNING):
            after, actions = decide(new, m.ChildExited(1), POLICY, NOW)
            assert after.state is S.STOPPED and "backoff" not in [n for _, n in moves(actions)]

    def test_spawn_failure_takes_the_restart_path_silently(self) -> None:
        """starting + SpawnFailed -> errored -> backoff, without actor.exited (no process ran)."""
        new, actions = decide(life(S.STARTING), m.SpawnFailed("handshake_timeout", "too slow"), POLICY, NOW)
        assert moves(actions) == [("starting", "errored"), ("errored", "backoff")] and emits(actions) == []
        assert new.last_error == "too slow"

    def test_program_that_cannot_run_is_an_exit_then_the_restart_path(self) -> None:
        """starting + SpawnFailed(exited) -> a published actor.exited with the reason, then errored -> backoff."""
        failed = m.SpawnFailed("program_not_found", "program not found: nosuch (PATH=/bin)", exited=True)
        new, actions = decide(life(S.STARTING), failed, POLICY, NOW)
        assert emits(actions) == [m.Emit(30, "actor.exited", {
            "pid": None, "reason": "program_not_found", "error": "program not found: nosuch (PATH=/bin)",
        }, publish=True)]
        assert moves(actions) == [("starting", "errored"), ("errored", "backoff")]
        assert new.last_error == "program not found: nosuch (PATH=/bin)" and new.restarts == 1

    def test_program_that_cannot_run_under_temporary_is_stopped(self) -> None:
        """A temporary command actor whose program is missing: actor.exited, errored -> stopped, no restart."""
        temporary = dataclasses.replace(POLICY, restart="temporary")
        failed = m.SpawnFailed("program_not_executable", "not executable: /tmp/x", exited=True)
        _new, actions = decide(life(S.STARTING), failed, temporary, NOW)
        assert [e.event for e in emits(actions)] == ["actor.exited"]
        assert moves(actions) == [("starting", "errored"), ("errored", "stopped")] and others(actions) == []

    def test_program_exit_0_says_no_run(self) -> None:
        """A command actor's program that exits 0 is reason exit, worded without Python's run()."""
        _new, actions = decide(RUNNING, m.ChildExited(0, program=True), POLICY, NOW)
        assert emits(actions)[0].fields == {"pid": 42, "reason": "exit", "exit_code": 0}
        assert _new.last_error == "exited with status 0"

    def test_cancelled_task_is_stopped(self) -> None:
        """A task actor cancelled by a stop ends with reason stopped and a log-only actor.exited."""
        stopping, _ = decide(RUNNING, m.Stop(), POLICY, NOW)
        _new, actions = decide(stopping, m.TaskEnded(None), POLICY, NOW)
        assert moves(actions) == [("stopping", "stopped")]
        assert emits(actions) == [m.Emit(20, "actor.exited", {"pid": 42, "reason": "stopped"})]

    def test_long_run_resets_the_backoff(self) -> None:
        """A crash after more than backoff_reset seconds of running waits the initial delay again."""
        veteran = dataclasses.replace(RUNNING, attempt=3, started_at=NOW - 61)
        new, actions = decide(veteran, m.ChildExited(1), POLICY, NOW)
        assert new.attempt == 1 and others(actions) == [m.StartTimer(NOW + 1.0)]

    def test_backoff_doubles_with_each_attempt(self) -> None:
        """Consecutive quick crashes wait 1, 2, 4, 8, 8 s (jitter pinned to the ceiling)."""
        policy = dataclasses.replace(POLICY, max_restarts=10)
        state, delays = RUNNING, []
        for _ in range(5):
            state, actions = decide(state, m.ChildExited(1), policy, NOW)
            delays.append(others(actions)[0].deadline - NOW)  # type: ignore[union-attr]
            state, _ = decide(state, m.BackoffElapsed(), policy, NOW)
            state, _ = decide(state, m.Ready(1), policy, NOW)
        assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]


class TestClassify:
    @pytest.mark.parametrize(
        ("kw", "event", "expected"),
        [
            ({"kill_reason": "unhealthy", "stop_requested": True}, m.ChildExited(-15),
             m.Exit("unhealthy", None, "SIGTERM")),
            ({"stop_requested": True}, m.ChildExited(-15), m.Exit("stopped", None, "SIGTERM")),
            ({}, m.ChildExited(0, "completed"), m.Exit("completed", 0)),
            ({}, m.ChildExited(0), m.Exit("exit", 0, error="exited with status 0 without returning from run()")),
            ({}, m.ChildExited(3, "error", "E"), m.Exit("crash", 3, None, "E")),
            ({}, m.TaskEnded("crash", "E"), m.Exit("crash", error="E")),
            ({"kill_reason": "run_killed"}, m.TaskEnded(None), m.Exit("run_killed")),
        ],
    )
    def test_reason_order(self, kw: dict[str, object], event: m.ChildExited | m.TaskEnded, expected: m.Exit) -> None:
        """The supervisor's own reason beats a stop, a stop beats the child's word."""
        assert m.classify(dataclasses.replace(RUNNING, **kw), event) == expected  # type: ignore[arg-type]


EVENTS: list[m.Event] = [
    m.Start(), m.Stop(), m.Retire(), m.Spawned(1), m.Ready(1), m.KillRun("x"), m.StopRun("x"), m.ChildExited(1),
    m.TaskEnded(None), m.SpawnFailed("spawn_error", "e"), m.BackoffElapsed(), m.Resume(0),
]
Edge = tuple[ActorState, type]
EDGES: set[Edge] = {
    (S.STOPPED, m.Start), (S.FAILED, m.Start), (S.STARTING, m.Spawned), (S.STARTING, m.Ready),
    (S.RUNNING, m.Spawned), (S.STARTING, m.Stop), (S.RUNNING, m.Stop), (S.STOPPING, m.Stop), (S.BACKOFF, m.Stop),
    (S.STARTING, m.KillRun), (S.RUNNING, m.KillRun), (S.STOPPING, m.KillRun), (S.RUNNING, m.StopRun),
    (S.BACKOFF, m.BackoffElapsed), *((s, m.Retire) for s in ActorState if s is not S.ERRORED),
    *((s, e) for s in (S.STARTING, S.RUNNING, S.STOPPING) for e in (m.ChildExited, m.TaskEnded, m.SpawnFailed)),
}
EDGE_LIST = sorted(EDGES, key=lambda edge: (edge[0].value, edge[1].__name__))


class TestTable:
    @pytest.mark.parametrize(
        ("state", "event"),
        [(s, e) for s, e in itertools.product(ActorState, EVENTS) if (s, type(e)) not in EDGES],
        ids=lambda v: v.value if isinstance(v, ActorState) else type(v).__name__,
    )
    def test_every_other_pair_changes_nothing(self, state: ActorState, event: m.Event) -> None:
        """An event with no edge from the state (late, duplicate, stale) leaves the life as it is."""
        before = life(state, pid=5)
        assert decide(before, event, POLICY, NOW) == (before, [])

    @pytest.mark.parametrize(("state", "event_type"), EDGE_LIST, ids=str)
    def test_every_edge_moves_only_along_allowed(self, state: ActorState, event_type: type) -> None:
        """Each edge's transitions are legal moves of the state chart, chained from the state."""
        event = next(e for e in EVENTS if type(e) is event_type)
        _, actions = decide(life(state, pid=5), event, POLICY, NOW)
        current = state
        for t in (a for a in actions if isinstance(a, m.Transition)):
            assert t.old is current and t.new in ALLOWED[current]
            current = t.new
        assert current is not S.ERRORED  # errored is never a resting state


RETRY = dataclasses.replace(POLICY, failed_retry_after=300.0)


class TestFailedRetryAndAbandon:
    def test_failing_arms_the_retry_timer(self) -> None:
        """With failed_retry_after, reaching failed starts a timer of that length."""
        crashing = life(S.RUNNING, pid=42, started_at=NOW - 1, restart_times=(NOW - 3, NOW - 2, NOW - 1))
        after, actions = decide(crashing, m.ChildExited(1), RETRY, NOW)
        assert after.state is S.FAILED
        assert others(actions) == [m.StartTimer(NOW + 300.0)]

    def test_failing_without_retry_arms_nothing(self) -> None:
        """Without failed_retry_after, failed is a resting state (no timer)."""
        crashing = life(S.RUNNING, pid=42, started_at=NOW - 1, restart_times=(NOW - 3, NOW - 2, NOW - 1))
        _, actions = decide(crashing, m.ChildExited(1), POLICY, NOW)
        assert others(actions) == []

    def test_retry_timer_starts_afresh(self) -> None:
        """When failed_retry_after runs out, the actor starts with a fresh intensity window."""
        failed = life(S.FAILED, want_running=False, attempt=4, restart_times=(NOW - 1, NOW - 2), restarts=4)
        after, actions = decide(failed, m.BackoffElapsed(), RETRY, NOW)
        assert after.state is S.STARTING and after.restart_times == () and after.attempt == 0
        assert after.restarts == 4
        assert others(actions) == [m.CancelTimer(), m.Spawn()]

    @pytest.mark.parametrize("event", [m.Stop(), m.Retire()])
    def test_stop_or_shutdown_ends_the_retry_timer(self, event: m.Event) -> None:
        """A stop or a shutdown of a failed actor cancels its retry; it stays failed."""
        failed = life(S.FAILED, want_running=False)
        assert decide(failed, event, RETRY, NOW) == (failed, [m.CancelTimer()])

    def test_abandon_makes_a_stopped_member_failed(self) -> None:
        """Its top-level group gave up: a stopped actor becomes failed, naming the group, with the contract's
        restarts and window."""
        after, actions = decide(life(S.STOPPED, restarts=2), m.Abandon("pipeline"), RETRY, NOW)
        assert after.state is S.FAILED
        assert moves(actions) == [("stopped", "failed")]
        fields = next(a for a in actions if isinstance(a, m.Transition)).fields
        assert (fields["group"], fields["restarts"], fields["window"]) == ("pipeline", 2, 60.0)  # contract fields
        assert others(actions) == [m.StartTimer(NOW + 300.0)]

    @pytest.mark.parametrize("state", [S.STARTING, S.RUNNING, S.BACKOFF, S.FAILED])
    def test_abandon_of_a_live_actor_changes_nothing(self, state: ActorState) -> None:
        """Abandon only applies to a stopped actor (the group stops its members first)."""
        before = life(state, pid=5)
        assert decide(before, m.Abandon("g"), POLICY, NOW) == (before, [])


DEFERRED = dataclasses.replace(POLICY, deferred=True)


class TestDeferredToTheGroup:
    def test_crash_waits_in_backoff_without_a_timer(self) -> None:
        """A member whose group restarts it: errored -> backoff as usual, but no timer of its own."""
        new, actions = decide(RUNNING, m.ChildExited(1), DEFERRED, NOW)
        assert moves(actions) == [("running", "errored"), ("errored", "backoff")]
        assert others(actions) == []
        assert new.restarts == 1 and new.resume_at == NOW + 1.0

    def test_resume_arms_the_timer_at_the_backoff_deadline(self) -> None:
        """The group leaves the restart to it: the timer runs to the deadline the exit computed."""
        waiting, _ = decide(RUNNING, m.ChildExited(1), DEFERRED, NOW)
        new, actions = decide(waiting, m.Resume(waiting.restarts), DEFERRED, NOW + 0.25)
        assert actions == [m.StartTimer(NOW + 1.0)] and new.state is S.BACKOFF and new.resume_at is None
        assert decide(new, m.Resume(new.restarts), DEFERRED, NOW + 0.5) == (new, [])  # only once

    def test_resume_of_an_earlier_exit_is_ignored(self) -> None:
        """A resume that answers an earlier exit (the member went down again since) arms nothing."""
        waiting, _ = decide(RUNNING, m.ChildExited(1), DEFERRED, NOW)
        assert decide(waiting, m.Resume(waiting.restarts - 1), DEFERRED, NOW) == (waiting, [])

    def test_the_group_stops_and_starts_it(self) -> None:
        """The group's Stop ends the wait at once; its Start spawns it: one start, the group's."""
        waiting, _ = decide(RUNNING, m.ChildExited(1), DEFERRED, NOW)
        stopped, actions = decide(waiting, m.Stop(), DEFERRED, NOW)
        assert moves(actions) == [("backoff", "stopped")]
        started, actions = decide(stopped, m.Start(), DEFERRED, NOW)
        assert started.state is S.STARTING and others(actions) == [m.Spawn()] and started.resume_at is None

    def test_intensity_still_applies(self) -> None:
        """A member's own max_restarts still makes it failed: the group hears that it gave up."""
        crashing = life(S.RUNNING, pid=42, started_at=NOW - 1, restart_times=(NOW - 3, NOW - 2, NOW - 1))
        new, _ = decide(crashing, m.ChildExited(1), DEFERRED, NOW)
        assert new.state is S.FAILED
