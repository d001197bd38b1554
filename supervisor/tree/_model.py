"""The supervision tree as plain data: groups, their members in file order, and leaves.

Built once from the config's specs (anything with the attributes of
:class:`ActorDecl` and :class:`GroupDecl`) after the structure has been
validated (``_validate``); decisions (``_strategy``, ``_order``) only read it.
An actor with ``instances`` appears as its instances ``NAME.0`` ... here.
Actors without a ``group`` sit at the top level, beside the top-level groups;
the top level has no strategy of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from ._instances import instance_names

__all__ = ["STRATEGIES", "ActorDecl", "Group", "GroupDecl", "Leaf", "Tree", "build_tree"]

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
STRATEGIES: tuple[Strategy, ...] = ("one_for_one", "one_for_all", "rest_for_one")


class ActorDecl(Protocol):
    """The keys of ``[actors.NAME]`` that shape the tree."""

    @property
    def name(self) -> str: ...
    @property
    def group(self) -> str | None: ...
    @property
    def restart(self) -> str: ...
    @property
    def critical(self) -> bool: ...
    @property
    def instances(self) -> int | None: ...
    @property
    def depends_on(self) -> tuple[str, ...]: ...


class GroupDecl(Protocol):
    """The keys of ``[groups.NAME]``."""

    @property
    def name(self) -> str: ...
    @property
    def strategy(self) -> str: ...
    @property
    def max_restarts(self) -> int: ...
    @property
    def restart_window(self) -> float: ...
    @property
    def group(self) -> str | None: ...
    @property
    def critical(self) -> bool: ...


@dataclass(frozen=True)
class Leaf:
    """One running unit: an actor, or one instance of it."""

    name: str  # "reader.1" for an instance
    base: str  # the config table's name: "reader"
    instance: int | None
    group: str | None
    restart: str
    critical: bool


@dataclass(frozen=True)
class Group:
    name: str
    strategy: Strategy
    max_restarts: int
    restart_window: float
    parent: str | None
    critical: bool
    members: tuple[str, ...]  # leaf and group names, in file order


@dataclass(frozen=True)
class Tree:
    leaves: Mapping[str, Leaf]
    groups: Mapping[str, Group]
    top: tuple[str, ...]  # top-level leaves and groups, in file order

    def is_group(self, name: str) -> bool:
        return name in self.groups

    def parent(self, name: str) -> str | None:
        """The group that ``name`` (a leaf or a group) is a member of."""
        leaf = self.leaves.get(name)
        return leaf.group if leaf is not None else self.groups[name].parent

    def restart_of(self, member: str) -> str:
        """A group is a permanent child of its parent, as in OTP."""
        leaf = self.leaves.get(member)
        return leaf.restart if leaf is not None else "permanent"

    def leaves_of(self, name: str) -> tuple[str, ...]:
        """The leaves under a member, in start order (a leaf is its own only leaf)."""
        if name in self.leaves:
            return (name,)
        return tuple(leaf for member in self.groups[name].members for leaf in self.leaves_of(member))

    def groups_under(self, name: str) -> tuple[str, ...]:
        """``name`` and every group nested in it, outermost first."""
        if name not in self.groups:
            return ()
        return (name, *(g for member in self.groups[name].members for g in self.groups_under(member)))

    def ancestors(self, name: str) -> tuple[str, ...]:
        """The groups above ``name``, innermost first."""
        out: list[str] = []
        parent = self.parent(name)
        while parent is not None:
            out.append(parent)
            parent = self.groups[parent].parent
        return tuple(out)

    def instances_of(self, base: str) -> tuple[str, ...]:
        return tuple(name for name, leaf in self.leaves.items() if leaf.base == base)


def build_tree(
    groups: Iterable[GroupDecl], actors: Iterable[ActorDecl], file_order: Sequence[str] = ()
) -> Tree:
    """The tree of validated specs, members in file order.

    TOML keeps the order of tables within ``[groups]`` and within ``[actors]``
    but not across the two, so ``file_order`` (table names as they appear in
    the file: ``Config.table_order``) places a group's actors and child groups
    among each other; without it a group's actors come before its child groups.
    """
    groups, actors = list(groups), list(actors)
    rank = {name: i for i, name in enumerate(file_order)}
    entries = [(g.name, g.group, True) for g in groups] + [(a.name, a.group, False) for a in actors]
    # stable: an unranked table keeps its section order, after the ranked ones
    entries.sort(key=lambda e: (rank.get(e[0], len(rank)), e[2]) if rank else e[2])
    specs = {a.name: a for a in actors}
    members: dict[str | None, list[str]] = {None: [], **{g.name: [] for g in groups}}
    leaves: dict[str, Leaf] = {}
    for name, parent, is_group in entries:
        if is_group:
            members[parent].append(name)
            continue
        a = specs[name]
        names = (name,) if a.instances is None else instance_names(name, a.instances)
        for i, leaf in enumerate(names):
            leaves[leaf] = Leaf(leaf, name, None if a.instances is None else i, parent, a.restart, a.critical)
            members[parent].append(leaf)
    built = {
        g.name: Group(
            g.name, _strategy(g.strategy), g.max_restarts, g.restart_window, g.group, g.critical,
            tuple(members[g.name]),
        )
        for g in groups
    }
    return Tree(leaves, built, tuple(members[None]))


def _strategy(value: str) -> Strategy:
    for strategy in STRATEGIES:
        if value == strategy:
            return strategy
    raise ValueError(f"unknown strategy {value!r} (validate the config first)")
