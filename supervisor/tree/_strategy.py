"""What a group does when a member goes down: OTP's restart strategies, as decisions.

:class:`TreeState` holds the groups' restart intensities and which groups have
given up; its methods take what happened to a leaf (and ``now``) and return
the actions to carry out. It does no I/O. The rules, after ``supervisor.erl``:

- A leaf outside any group is left to its own restart policy.
- A member that must be restarted (``permanent`` always, ``transient`` after an
  abnormal exit, ``temporary`` never) counts one restart against its group's
  intensity (``intensity_allows``, as for an actor), then: ``one_for_one``
  restarts it alone; ``one_for_all`` stops every other member and starts them all; ``rest_for_one`` does the same for
  the members after it. Members stop in reverse order and start in order; a
  ``temporary`` member that a sibling took down is not started again, and
  neither is a member that the user stopped (it is *held*).
- A ``one_for_one`` leaf restarts itself, under its own backoff; the group
  only counts it. In the other strategies the group stops the leaf (ending
  its backoff) and starts it in its place in the order.
- A group past its intensity, or with a member that gave up on its own
  ``max_restarts``, stops all its leaves (``group.failed``). Its parent then
  restarts it as one permanent child, fresh (new intensity, every leaf). A
  top-level group leaves its leaves ``failed``.
- Anything ``critical`` that gives up (an actor that reaches ``failed``, a
  group that fails) ends the supervisor: ``supervisor.give_up`` and
  :class:`GiveUp`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..lifecycle._policy import intensity_allows, should_restart
from ._model import Tree

__all__ = ["Action", "Emit", "GiveUp", "Intensity", "MarkFailed", "StartLeaves", "StopLeaves", "TreeState"]


@dataclass(frozen=True)
class Emit:
    event: str
    fields: Mapping[str, Any]
    level: int = logging.WARNING


@dataclass(frozen=True)
class StopLeaves:
    """Stop these leaves (listed in stop order; run through the stop waves)."""

    leaves: tuple[str, ...]


@dataclass(frozen=True)
class StartLeaves:
    """Start these leaves (listed in start order; run through the start waves)."""

    leaves: tuple[str, ...]


@dataclass(frozen=True)
class MarkFailed:
    """A top-level group gave up: these leaves (already stopped) are ``failed``."""

    group: str
    leaves: tuple[str, ...]


@dataclass(frozen=True)
class GiveUp:
    """Stop everything gracefully, then exit with status 3."""

    actor: str | None = None
    group: str | None = None


Action = Emit | StopLeaves | StartLeaves | MarkFailed | GiveUp


@dataclass
class Intensity:
    """One group's restart intensity (OTP's): the restart times still inside ``window``."""

    max_restarts: int
    window: float
    times: tuple[float, ...] = ()

    def allow(self, now: float) -> bool:
        """Record a restart at ``now``; False once there are more than ``max_restarts`` in the window."""
        allowed, self.times = intensity_allows(self.times, now, self.max_restarts, self.window)
        return allowed

    def reset(self) -> None:
        self.times = ()

    @property
    def recent(self) -> int:
        return len(self.times)


@dataclass
class TreeState:
    tree: Tree
    intensity: dict[str, Intensity] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)  # groups that gave up
    held: set[str] = field(default_factory=set)  # leaves the user stopped

    def __post_init__(self) -> None:
        for name, group in self.tree.groups.items():
            self.intensity.setdefault(name, Intensity(group.max_restarts, group.restart_window))

    # --- what happened to a leaf ---------------------------------------------------
    def exited(self, leaf: str, abnormal: bool, now: float) -> list[Action]:
        """``leaf``'s run ended without anyone asking it to (a crash, or a normal exit)."""
        if not self._supervised(leaf) or not should_restart(self.tree.leaves[leaf].restart, abnormal):
            return []
        group = self.tree.leaves[leaf].group
        assert group is not None  # _supervised
        return self._child_down(group, leaf, now)

    def gave_up(self, leaf: str, now: float) -> list[Action]:
        """``leaf`` reached ``failed`` on its own restart intensity."""
        if self.tree.leaves[leaf].critical:
            return _give_up(actor=leaf, reason="failed")
        if not self._supervised(leaf):
            return []
        group = self.tree.leaves[leaf].group
        assert group is not None
        return self._group_fails(group, now, trigger=leaf, reason="member_failed")

    # --- what the user did ---------------------------------------------------------
    def stopped_by_user(self, name: str) -> None:
        """``name`` (a leaf or group) was stopped on request: group restarts leave it stopped."""
        self.held.update(self._leaves(name))

    def started_by_user(self, name: str) -> None:
        """``name`` was started on request: it is no longer held, and its groups try afresh."""
        self.held.difference_update(self._leaves(name))
        above = self.tree.ancestors(name)
        for group in (*self.tree.groups_under(name), *above):
            if group in self.failed:
                self.failed.discard(group)
                self.intensity[group].reset()

    def retree(self, tree: Tree) -> TreeState:
        """The state for a changed tree (reload, scale, dynamic children): kept where names remain."""
        intensity = {name: self.intensity[name] for name in tree.groups if name in self.intensity}
        for name, group in tree.groups.items():
            if name in intensity and (intensity[name].max_restarts, intensity[name].window) != (
                group.max_restarts, group.restart_window
            ):
                del intensity[name]
        return TreeState(
            tree, intensity, self.failed & tree.groups.keys(), self.held & tree.leaves.keys()
        )

    # --- the rules -----------------------------------------------------------------
    def _leaves(self, name: str) -> tuple[str, ...]:
        return self.tree.leaves_of(name)

    def _supervised(self, leaf: str) -> bool:
        """In a group, none of whose ancestors has given up, and not held."""
        tree = self.tree
        return tree.leaves[leaf].group is not None and leaf not in self.held and not any(
            g in self.failed for g in tree.ancestors(leaf)
        )

    def _child_down(self, group: str, child: str, now: float) -> list[Action]:
        """``child`` (a leaf or a group) of ``group`` must be restarted."""
        spec = self.tree.groups[group]
        intensity = self.intensity[group]
        if not intensity.allow(now):
            return self._group_fails(group, now, trigger=child, reason="intensity")
        members = spec.members
        at = members.index(child)
        affected = {
            "one_for_one": (child,), "one_for_all": members, "rest_for_one": members[at:]
        }[spec.strategy]
        restarted = tuple(m for m in affected if m == child or self.tree.restart_of(m) != "temporary")
        actions: list[Action] = [
            Emit("group.restarting", {
                "group": group, "strategy": spec.strategy, "trigger": child, "restarts": intensity.recent,
            }),
        ]
        child_is_leaf = child in self.tree.leaves
        if spec.strategy == "one_for_one" and child_is_leaf:
            return actions  # it restarts itself, under its own backoff
        # the trigger first (it is down already: this ends its backoff), then the rest in reverse
        others = tuple(leaf for m in reversed(affected) if m != child for leaf in reversed(self._leaves(m)))
        down = ((child,) if child_is_leaf else ()) + others
        if down:
            actions.append(StopLeaves(down))
        for member in restarted:
            for g in self.tree.groups_under(member):  # a group restarts fresh
                self.failed.discard(g)
                self.intensity[g].reset()
        up = tuple(leaf for m in restarted for leaf in self._leaves(m) if leaf not in self.held)
        if up:
            actions.append(StartLeaves(up))
        return actions

    def _group_fails(self, group: str, now: float, trigger: str, reason: str) -> list[Action]:
        spec = self.tree.groups[group]
        intensity = self.intensity[group]
        self.failed.add(group)
        leaves = self._leaves(group)
        actions: list[Action] = [
            Emit("group.failed", {
                "group": group, "trigger": trigger, "reason": reason, "restarts": intensity.recent,
                "max_restarts": spec.max_restarts, "window": spec.restart_window,
            }, logging.ERROR),
            StopLeaves(tuple(reversed(leaves))),
        ]
        if spec.critical:
            return actions + _give_up(group=group, reason=reason)
        if spec.parent is not None:
            return actions + self._child_down(spec.parent, group, now)
        actions.append(MarkFailed(group, leaves))
        critical = next((leaf for leaf in leaves if self.tree.leaves[leaf].critical), None)
        if critical is not None:  # a critical actor left failed has given up
            actions += _give_up(actor=critical, reason="group_failed")
        return actions


def _give_up(*, actor: str | None = None, group: str | None = None, reason: str) -> list[Action]:
    who = {"actor": actor} if actor is not None else {"group": group}
    return [Emit("supervisor.give_up", {**who, "reason": reason, "exit_status": 3}, logging.CRITICAL),
            GiveUp(actor, group)]
