"""The actor lifecycle as one pure decision function, after OTP's ``gen_statem``.

``decide(life, event, policy, now)`` returns the next :class:`Life` and the
actions to take. It does no I/O and knows nothing of anyio or processes: the
:class:`~supervisor.lifecycle._handle.ActorHandle` feeds events in and carries
the actions out. Restart policy (``should_restart``, backoff, restart
intensity) is consulted only here.

The table (state, event -> next state; every other pair leaves the life as it is)::

    stopped  | Start          -> starting        [Spawn]
    failed   | Start          -> starting        [Spawn]   (intensity and backoff reset)
    starting | Spawned        -> starting        (records the pid)
    running  | Spawned        -> running         (records the pid: MAINPID= moved a program's main process)
    starting | Ready          -> running
    starting | Stop           -> stopping        [StopChild]
    running  | Stop           -> stopping        [StopChild]
    starting | KillRun        -> starting        [KillChild]   (first reason wins)
    running  | KillRun        -> running         [KillChild]
    stopping | KillRun        -> stopping        [KillChild]
    running  | StopRun        -> running         [StopChild]   (a graceful restart: unhealthy, limits)
    starting | exit event     -> (after exit)
    running  | exit event     -> (after exit)
    stopping | exit event     -> (after exit)
    backoff  | BackoffElapsed -> starting        [Spawn]
    backoff  | Resume         -> backoff         [StartTimer]   (its group leaves the restart to it)
    backoff  | Stop           -> stopped         [CancelTimer]
    backoff  | Retire         -> stopped         [CancelTimer]
    stopped  | Abandon        -> failed          [StartTimer if failed_retry_after]   (its group gave up)
    failed   | BackoffElapsed -> starting        [Spawn]   (failed_retry_after: intensity and backoff reset)
    failed   | Stop, Retire   -> failed          [CancelTimer]
    any      | Retire         -> (same state)    (no run starts again: a shutdown began)

A command actor's program that cannot run (``SpawnFailed(exited=True)``) is
an ``actor.exited`` with the reason (``program_not_found``...) and the error.

After exit (``ChildExited``, ``TaskEnded``, ``SpawnFailed``), in one step:
stopping or policy says no -> [errored ->] stopped; intensity exceeded ->
errored -> failed; otherwise errored -> backoff [StartTimer]. ``errored`` is
never a resting state. With ``Policy.deferred`` (a member of a ``one_for_all``
or ``rest_for_one`` group) the backoff arms no timer: the group decides, by a
Stop and a Start of its own, or by ``Resume`` (the timer, at the same deadline).
"""

from __future__ import annotations

import dataclasses
import random
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._policy import backoff_delay, intensity_allows, should_restart
from ._states import ALLOWED, ActorState, IllegalTransition

__all__ = [
    "Abandon", "Action", "BackoffElapsed", "CancelTimer", "ChildExited", "Emit", "Event", "Exit", "KillChild",
    "KillRun", "Life", "Policy", "Ready", "Resume", "Retire", "Spawn", "SpawnFailed", "Spawned", "Start",
    "StartTimer", "Stop", "StopChild", "StopRun", "TaskEnded", "Transition", "decide",
]

S = ActorState
FAILED_HINT = "restart intensity exceeded; fix the actor, then `actorsup start NAME`"
GROUP_FAILED_HINT = "its group exceeded its restart intensity; fix it, then `actorsup start GROUP`"


@dataclass(frozen=True)
class Exit:
    """How one run of an actor ended."""

    reason: str  # completed | exit | crash | stopped | heartbeat_timeout | handshake_timeout | ...
    exit_code: int | None = None
    signal: str | None = None
    error: str | None = None

    @property
    def abnormal(self) -> bool:
        return self.reason not in ("completed", "stopped")


@dataclass(frozen=True)
class Policy:
    """The parts of an actor's spec that decisions read."""

    kind: str = "actor"
    restart: str = "permanent"
    backoff_initial: float = 0.1
    backoff_max: float = 30.0
    backoff_reset: float = 60.0
    max_restarts: int = 5
    restart_window: float = 60.0
    jitter: Callable[[], float] = random.random  # the one source of chance, injectable
    failed_retry_after: float | None = None  # a failed actor starts again after this long
    deferred: bool = False  # its group restarts it: after an exit it waits in backoff for the group's word

    @classmethod
    def of(cls, spec: Any, jitter: Callable[[], float] = random.random) -> Policy:
        return cls(
            kind=spec.kind, restart=spec.restart, backoff_initial=spec.backoff_initial,
            backoff_max=spec.backoff_max, backoff_reset=spec.backoff_reset,
            max_restarts=spec.max_restarts, restart_window=spec.restart_window, jitter=jitter,
            failed_retry_after=getattr(spec, "failed_retry_after", None),
        )


@dataclass(frozen=True)
class Life:
    """Everything decisions depend on: the actor's state, counters and the current run."""

    state: ActorState = S.STOPPED
    want_running: bool = False
    restarts: int = 0
    attempt: int = 0  # backoff attempt of the next start
    restart_times: tuple[float, ...] = ()  # for restart intensity
    # the current run
    pid: int | None = None
    started_at: float | None = None
    kill_reason: str | None = None  # set when the supervisor ends the run itself
    stop_requested: bool = False
    resume_at: float | None = None  # a deferred backoff: when Resume lets it restart itself
    # the last finished run
    last_exit: Exit | None = None
    last_error: str | None = None


# --- events ------------------------------------------------------------------------
@dataclass(frozen=True)
class Start:
    """The user (or the supervisor) wants the actor running."""


@dataclass(frozen=True)
class Stop:
    """The user wants the actor stopped."""


@dataclass(frozen=True)
class Abandon:
    """The actor's top-level group gave up: a stopped member is left ``failed``."""

    group: str


@dataclass(frozen=True)
class Retire:
    """The supervisor is shutting down: the current run may end, but none starts again."""


@dataclass(frozen=True)
class Spawned:
    pid: int


@dataclass(frozen=True)
class Ready:
    pid: int


@dataclass(frozen=True)
class KillRun:
    """End the run at once with SIGKILL (hang, handshake timeout, protocol error, killed cron run)."""

    reason: str


@dataclass(frozen=True)
class StopRun:
    """End the run gracefully and restart it (unhealthy, resource limit)."""

    reason: str


@dataclass(frozen=True)
class ChildExited:
    returncode: int
    exiting_reason: str | None = None  # from the child's Exiting frame, if it sent one
    exiting_error: str | None = None
    program: bool = False  # a command actor's program: it has no run() to return from


@dataclass(frozen=True)
class TaskEnded:
    outcome: str | None  # completed | crash | None (cancelled by a stop)
    error: str | None = None


@dataclass(frozen=True)
class SpawnFailed:
    reason: str  # handshake_timeout | protocol_error | spawn_error | program_not_found | ...
    error: str
    exited: bool = False  # a command actor's program could not run: say so in actor.exited


@dataclass(frozen=True)
class BackoffElapsed:
    pass


@dataclass(frozen=True)
class Resume:
    """The group of a deferred actor leaves this restart to it (``restarts``: the exit it answers)."""

    restarts: int


Event = (
    Start | Stop | Retire | Abandon | Spawned | Ready | KillRun | StopRun | ChildExited | TaskEnded | SpawnFailed
    | BackoffElapsed | Resume
)


# --- actions -----------------------------------------------------------------------
@dataclass(frozen=True)
class Transition:
    old: ActorState
    new: ActorState
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Emit:
    """Log one event (the handle adds ``actor``); ``publish`` also puts it on the event bus."""

    level: int
    event: str
    fields: Mapping[str, Any]
    publish: bool = False


@dataclass(frozen=True)
class Spawn:
    pass


@dataclass(frozen=True)
class StopChild:
    """SIGTERM, then SIGKILL after stop_timeout (or cancel a task actor)."""


@dataclass(frozen=True)
class KillChild:
    pass


@dataclass(frozen=True)
class StartTimer:
    deadline: float


@dataclass(frozen=True)
class CancelTimer:
    pass


Action = Transition | Emit | Spawn | StopChild | KillChild | StartTimer | CancelTimer

_RUN_ENDED = (ChildExited, TaskEnded, SpawnFailed)
_LIVE = (S.STARTING, S.RUNNING, S.STOPPING)


def decide(life: Life, event: Event, policy: Policy, now: float) -> tuple[Life, list[Action]]:
    """The next life and the actions for ``event``; a stale or irrelevant event changes nothing."""
    state = life.state
    retries = policy.failed_retry_after is not None
    if state is S.FAILED and (isinstance(event, Start) or (retries and isinstance(event, BackoffElapsed))):
        # a start, or failed_retry_after ran out: a fresh intensity window, and no retry timer left
        life = dataclasses.replace(life, restart_times=(), attempt=0, want_running=True)
        life, actions = _begin(life, policy)
        return life, [CancelTimer(), *actions] if retries else actions
    if isinstance(event, Start) and state is S.STOPPED:
        return _begin(dataclasses.replace(life, want_running=True), policy)
    if isinstance(event, BackoffElapsed) and state is S.BACKOFF:
        return _begin(life, policy)
    if isinstance(event, Resume) and state is S.BACKOFF and life.resume_at is not None:
        if event.restarts != life.restarts:  # an answer to an earlier exit
            return life, []
        return dataclasses.replace(life, resume_at=None), [StartTimer(life.resume_at)]
    if retries and isinstance(event, Stop | Retire) and state is S.FAILED:
        return life, [CancelTimer()]
    if isinstance(event, Abandon) and state is S.STOPPED:
        failed = {"reason": "group_failed", "group": event.group, "restarts": life.restarts,
                  "window": policy.restart_window, "hint": GROUP_FAILED_HINT}  # restarts, window: as every actor.failed
        return _moves(life, _retry(policy, now), (S.FAILED, failed))
    if isinstance(event, Retire) and state is not S.ERRORED:
        life = dataclasses.replace(life, want_running=False)
        if state is S.BACKOFF:
            return _moves(life, [CancelTimer()], (S.STOPPED, {"reason": "stopped"}))
        return life, []
    if isinstance(event, Stop):
        if state is S.BACKOFF:
            life = dataclasses.replace(life, want_running=False)
            return _moves(life, [CancelTimer()], (S.STOPPED, {"reason": "stopped"}))
        if state in (S.STARTING, S.RUNNING):
            life = dataclasses.replace(life, want_running=False, stop_requested=True)
            if life.kill_reason is not None:  # already being ended: it stops once it is gone
                return life, []
            return _moves(life, [StopChild()], (S.STOPPING, {"pid": life.pid}))
        if state is S.STOPPING:
            return dataclasses.replace(life, want_running=False), []
        return life, []
    if isinstance(event, Spawned) and state in (S.STARTING, S.RUNNING):
        return dataclasses.replace(life, pid=event.pid), []
    if isinstance(event, Ready) and state is S.STARTING:
        life = dataclasses.replace(life, pid=event.pid, started_at=now)
        return _moves(life, [], (S.RUNNING, {"pid": event.pid, "kind": policy.kind, "restarts": life.restarts}))
    if isinstance(event, KillRun) and state in _LIVE:
        return dataclasses.replace(life, kill_reason=life.kill_reason or event.reason), [KillChild()]
    if isinstance(event, StopRun) and state is S.RUNNING:
        if life.kill_reason is not None or life.stop_requested:
            return life, []
        return dataclasses.replace(life, kill_reason=event.reason), [StopChild()]
    if isinstance(event, _RUN_ENDED) and state in _LIVE:
        return _after_exit(life, event, policy, now)
    return life, []


def _retry(policy: Policy, now: float) -> list[Action]:
    """The failed_retry_after timer of a life that just became failed."""
    return [] if policy.failed_retry_after is None else [StartTimer(now + policy.failed_retry_after)]


def _begin(life: Life, policy: Policy) -> tuple[Life, list[Action]]:
    life = dataclasses.replace(life, pid=None, started_at=None, kill_reason=None, stop_requested=False,
                               resume_at=None)
    return _moves(life, [Spawn()], (S.STARTING, {"attempt": life.attempt, "kind": policy.kind}))


def _moves(
    life: Life, actions: list[Action], *steps: tuple[ActorState, dict[str, Any]]
) -> tuple[Life, list[Action]]:
    """Apply transitions in order (checked against ALLOWED); ``actions`` come after them."""
    out: list[Action] = []
    for new, fields in steps:
        if new not in ALLOWED[life.state]:
            raise IllegalTransition(f"{life.state.value} -> {new.value}")
        out.append(Transition(life.state, new, fields))
        life = dataclasses.replace(life, state=new)
    return life, out + actions


def classify(life: Life, event: ChildExited | TaskEnded | SpawnFailed) -> Exit:
    """Why the run ended: the supervisor's own reason first, then a stop, then the child's word."""
    if isinstance(event, SpawnFailed):
        return Exit(event.reason, error=event.error)
    if isinstance(event, TaskEnded):
        if event.outcome is None:
            return Exit(life.kill_reason or "stopped")
        return Exit(event.outcome, error=event.error)
    rc = event.returncode
    sig = _signal_name(-rc) if rc < 0 else None
    code = rc if rc >= 0 else None
    if life.kill_reason is not None:
        return Exit(life.kill_reason, code, sig, event.exiting_error)
    if life.stop_requested:
        return Exit("stopped", code, sig)
    if event.exiting_reason == "completed" and rc == 0:
        return Exit("completed", code)
    if rc == 0:
        return Exit("exit", code, error="exited with status 0" if event.program else
                    "exited with status 0 without returning from run()")
    return Exit("crash", code, sig, event.exiting_error)


def _after_exit(
    life: Life, event: ChildExited | TaskEnded | SpawnFailed, policy: Policy, now: float
) -> tuple[Life, list[Action]]:
    ended = classify(life, event)
    actions: list[Action] = []
    if isinstance(event, ChildExited):
        how: dict[str, Any] = {"exit_code": ended.exit_code} if ended.signal is None else {"signal": ended.signal}
        fields = {"pid": life.pid, "reason": ended.reason, **how}
        actions.append(Emit(30 if ended.abnormal else 20, "actor.exited", fields, publish=True))
    elif isinstance(event, TaskEnded):
        actions.append(Emit(20, "actor.exited", {"pid": life.pid, "reason": ended.reason}))
    elif event.exited:
        fields = {"pid": None, "reason": ended.reason, "error": ended.error}
        actions.append(Emit(30, "actor.exited", fields, publish=True))
    ran_for = now - life.started_at if life.started_at is not None else 0.0
    last_error = life.last_error
    if ended.error:
        last_error = ended.error.strip().splitlines()[-1][:500]
    elif ended.abnormal:
        last_error = ended.reason + (f" ({ended.signal})" if ended.signal else "")
    life = dataclasses.replace(life, last_exit=ended, last_error=last_error, started_at=None, pid=None)
    stopping = not life.want_running or ended.reason == "stopped" or life.state is S.STOPPING
    if stopping or not should_restart(policy.restart, ended.abnormal):
        steps = [(S.ERRORED, {"reason": ended.reason})] if ended.abnormal and not stopping else []
        life, moved = _moves(dataclasses.replace(life, want_running=False), [], *steps,
                             (S.STOPPED, {"reason": ended.reason}))
        return life, actions + moved
    errored = (S.ERRORED, {"reason": ended.reason, "exit_code": ended.exit_code, "signal": ended.signal,
                           **({"error": ended.error} if isinstance(event, SpawnFailed) and ended.error else {})})
    allowed, times = intensity_allows(life.restart_times, now, policy.max_restarts, policy.restart_window)
    life = dataclasses.replace(life, restart_times=times)
    if not allowed:
        failed = {"restarts": life.restarts, "window": policy.restart_window,
                  "max_restarts": policy.max_restarts, "hint": FAILED_HINT}
        life, moved = _moves(dataclasses.replace(life, want_running=False), _retry(policy, now), errored,
                             (S.FAILED, failed))
        return life, actions + moved
    attempt = (0 if ran_for >= policy.backoff_reset else life.attempt) + 1
    delay = backoff_delay(attempt, policy.backoff_initial, policy.backoff_max, policy.jitter())
    deadline = now + delay
    life = dataclasses.replace(life, attempt=attempt, restarts=life.restarts + 1,
                               resume_at=deadline if policy.deferred else None)
    backoff = (S.BACKOFF, {"attempt": attempt, "delay": round(delay, 6), "reason": ended.reason})
    life, moved = _moves(life, [] if policy.deferred else [StartTimer(deadline)], errored, backoff)
    return life, actions + moved


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"
