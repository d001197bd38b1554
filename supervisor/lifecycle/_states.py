"""The per-actor state machine: the states, the legal moves, the event of each.

    stopped --> starting --> running --> stopping --> stopped
                   ^  |         |
                   |  +---------+--> errored --> backoff --> starting
                   |                    |
                   +---- (start) ---- failed   (restart intensity exceeded)

Each transition emits exactly one log event, named in TRANSITION_EVENTS.
``errored`` is never a resting state: the same decision moves on to backoff,
failed or stopped. Which event causes which move is decided in ``_machine``.
"""

from __future__ import annotations

import enum

__all__ = ["ALLOWED", "TRANSITION_EVENTS", "ActorState", "IllegalTransition"]


class ActorState(enum.Enum):
    STOPPED = "stopped"  # not running, and not meant to (initial; after stop)
    STARTING = "starting"  # spawning, handshake under way
    RUNNING = "running"  # handshake done; beats expected
    ERRORED = "errored"  # crashed, hung or unhealthy; restart policy decides next
    BACKOFF = "backoff"  # waiting out the restart delay
    STOPPING = "stopping"  # SIGTERM sent; SIGKILL after stop_timeout
    FAILED = "failed"  # restart intensity exceeded; only an explicit start revives it


S = ActorState
ALLOWED: dict[ActorState, frozenset[ActorState]] = {
    S.STOPPED: frozenset({S.STARTING, S.FAILED}),  # failed: its group gave up
    S.STARTING: frozenset({S.RUNNING, S.ERRORED, S.STOPPING, S.STOPPED}),
    S.RUNNING: frozenset({S.ERRORED, S.STOPPING, S.STOPPED}),
    S.ERRORED: frozenset({S.BACKOFF, S.FAILED, S.STOPPED}),
    S.BACKOFF: frozenset({S.STARTING, S.STOPPED}),
    S.STOPPING: frozenset({S.STOPPED}),
    S.FAILED: frozenset({S.STARTING}),
}

TRANSITION_EVENTS: dict[ActorState, str] = {
    S.STARTING: "actor.starting",
    S.RUNNING: "actor.started",
    S.ERRORED: "actor.errored",
    S.BACKOFF: "actor.restarting",
    S.STOPPING: "actor.stopping",
    S.STOPPED: "actor.stopped",
    S.FAILED: "actor.failed",
}


class IllegalTransition(AssertionError):
    """A bug: the handle tried a move the state machine does not allow."""
