"""What a handle tells the rest of the supervisor: transition and beat records.

Read models (the event bus, the HeartbeatMonitor, the Prometheus metrics) are
:class:`Observer` s of the handles. The handle notifies each one of every
state transition and every beat; none of them decides anything for the actor,
except the supervision tree, which claims the restarts of the members of its
``one_for_all`` and ``rest_for_one`` groups (``decides_restart``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core._bus import EventBus
from ..process._resources import ResourceSample
from ._states import ActorState

__all__ = ["BeatRecord", "BusPublisher", "HealthRecord", "Observer", "TransitionRecord"]


@dataclass(frozen=True)
class TransitionRecord:
    actor: str
    old: ActorState
    new: ActorState
    event: str  # the log event of the transition (actor.started, ...)
    fields: Mapping[str, Any]  # every field of that log event, "actor" first
    restarts: int
    error: str | None  # the actor's last error, if any
    at: float  # the supervisor's monotonic time
    timeout: float  # the actor's heartbeat_timeout
    has_health_check: bool = False  # its child said so in its Ready frame (health results will come)


@dataclass(frozen=True)
class BeatRecord:
    actor: str
    at: float
    restarts: int
    sample: ResourceSample | None  # a psutil sample when one was taken on this beat


@dataclass(frozen=True)
class HealthRecord:
    actor: str
    at: float
    ok: bool
    error: str | None


class Observer:
    """Base of the read models fed by handles; every hook is optional."""

    wants_samples = False  # True: the handle samples psutil on every beat for it

    def on_transition(self, record: TransitionRecord) -> None:
        pass

    def on_beat(self, record: BeatRecord) -> None:
        pass

    def on_health(self, record: HealthRecord) -> None:
        pass

    def decides_restart(self, actor: str) -> bool:
        """True if this observer restarts ``actor`` after an exit (the supervision tree), not its handle."""
        return False


class BusPublisher(Observer):
    """Every transition's log event, as a dict on the event bus (``actorsup events``)."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    def on_transition(self, record: TransitionRecord) -> None:
        self.bus.publish({"event": record.event, **record.fields})
