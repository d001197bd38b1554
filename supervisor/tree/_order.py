"""Start and stop order: ``depends_on`` (systemd's ``After=``) and member order.

A leaf *needs* another when it may start only once that one is running, and
must stop before it. Two things make a leaf need another:

- ``depends_on``: an actor (all its instances), one instance, or a group (all
  its leaves);
- member order in a ``one_for_all`` or ``rest_for_one`` group, whose members
  start one after the other in file order (as an OTP supervisor starts its
  children). ``one_for_one`` members are independent of each other.

Start waves are the topological levels of that graph: each wave starts
concurrently once the waves before it are running. Stop waves are the levels
of the reversed graph, so a leaf stops as soon as everything that needs it has
stopped, and independent leaves all stop in the first wave.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from ._model import Tree

__all__ = ["DependencyCycle", "DependencyError", "Graph", "SelfDependency", "UnknownDependency", "build_graph"]

ORDERED = ("one_for_all", "rest_for_one")


class DependencyError(ValueError):
    """A ``depends_on`` problem; ``actor`` is the table whose key is to blame."""

    def __init__(self, message: str, actor: str, index: int | None = None, problem: str | None = None) -> None:
        super().__init__(message)
        self.problem = problem or message  # without the value, for "problem, got VALUE"
        self.actor = actor
        self.index = index  # the entry of depends_on, where one entry is to blame


class UnknownDependency(DependencyError):
    def __init__(self, actor: str, index: int, target: str) -> None:
        problem = "unknown actor or group (depends_on names [actors.NAME] or [groups.NAME] tables)"
        super().__init__(f"unknown actor or group {target!r}", actor, index, problem)
        self.target = target


class SelfDependency(DependencyError):
    def __init__(self, actor: str, index: int, target: str) -> None:
        how = "itself" if target == actor else f"group {target!r}, which contains it"
        super().__init__(f"an actor cannot depend on {how}", actor, index)
        self.target = target


class DependencyCycle(DependencyError):
    def __init__(self, cycle: tuple[str, ...], notes: tuple[str, ...]) -> None:
        text = " -> ".join((*cycle, cycle[0]))
        why = f" ({'; '.join(notes)})" if notes else ""
        super().__init__(f"dependency cycle {text}{why}", cycle[0])
        self.cycle = cycle


@dataclass(frozen=True)
class Graph:
    order: tuple[str, ...]  # every leaf, in tree order (the tie-break everywhere)
    needs: Mapping[str, frozenset[str]]
    dependents: Mapping[str, frozenset[str]] = field(init=False)

    def __post_init__(self) -> None:
        dependents: dict[str, set[str]] = {name: set() for name in self.order}
        for name, needed in self.needs.items():
            for other in needed:
                dependents[other].add(name)
        object.__setattr__(self, "dependents", {k: frozenset(v) for k, v in dependents.items()})

    def start_waves(self, names: Collection[str] | None = None) -> tuple[tuple[str, ...], ...]:
        """``names`` (default: all) in waves; a leaf comes after every leaf it needs among them."""
        return self._levels(self.needs, names)

    def stop_waves(self, names: Collection[str] | None = None) -> tuple[tuple[str, ...], ...]:
        """``names`` in waves; a leaf comes after every leaf among them that needs it."""
        return self._levels(self.dependents, names)

    def _levels(
        self, before: Mapping[str, frozenset[str]], names: Collection[str] | None
    ) -> tuple[tuple[str, ...], ...]:
        chosen = set(self.order if names is None else names)
        # names outside the graph (cron tasks) have no order: they go in the first wave
        pending = [*(n for n in names or () if n not in self.needs), *(n for n in self.order if n in chosen)]
        waves: list[tuple[str, ...]] = []
        done: set[str] = set()
        while pending:
            wave = tuple(n for n in pending if all(b in done or b not in chosen for b in before.get(n, ())))
            if not wave:  # build_graph refuses cycles; this guards graphs built by hand
                raise DependencyCycle(tuple(pending), ())
            waves.append(wave)
            done.update(wave)
            pending = [n for n in pending if n not in done]
        return tuple(waves)


def build_graph(tree: Tree, depends_on: Mapping[str, Iterable[str]]) -> Graph:
    """The order graph of ``tree`` and the actors' ``depends_on`` (keyed by actor name).

    Raise :class:`UnknownDependency`, :class:`SelfDependency` or
    :class:`DependencyCycle` (named in actor and group names, not instances).
    """
    needs: dict[str, set[str]] = {leaf: set() for leaf in tree.leaves}
    why: dict[tuple[str, str], str] = {}  # (base, base) -> a note for edges that come from a group
    for actor, targets in depends_on.items():
        for index, target in enumerate(targets):
            wanted = _resolve(tree, actor, index, target)
            for leaf in tree.instances_of(actor):
                needs[leaf].update(wanted)
    for group in tree.groups.values():
        if group.strategy not in ORDERED:
            continue
        for earlier, later in zip(group.members, group.members[1:], strict=False):
            for leaf in tree.leaves_of(later):
                needs[leaf].update(tree.leaves_of(earlier))
            note = f"{later} starts after {earlier} in {group.strategy} group {group.name}"
            for a in _bases(tree, later):
                for b in _bases(tree, earlier):
                    why.setdefault((a, b), note)
    _refuse_cycles(tree, needs, why)
    return Graph(tuple(tree.leaves), {k: frozenset(v) for k, v in needs.items()})


def _resolve(tree: Tree, actor: str, index: int, target: str) -> tuple[str, ...]:
    if target in tree.groups:
        leaves = tree.leaves_of(target)
        if any(tree.leaves[leaf].base == actor for leaf in leaves):
            raise SelfDependency(actor, index, target)
        return leaves
    if target == actor:
        raise SelfDependency(actor, index, target)
    instances = tree.instances_of(target)
    if instances:
        return instances
    leaf = tree.leaves.get(target)
    if leaf is None:
        raise UnknownDependency(actor, index, target)
    if leaf.base == actor:
        raise SelfDependency(actor, index, actor)
    return (target,)


def _bases(tree: Tree, member: str) -> set[str]:
    return {tree.leaves[leaf].base for leaf in tree.leaves_of(member)}


def _refuse_cycles(tree: Tree, needs: Mapping[str, set[str]], why: Mapping[tuple[str, str], str]) -> None:
    """Find a cycle among actors (instances of one actor chain in order, never in a cycle)."""
    bases = list(dict.fromkeys(leaf.base for leaf in tree.leaves.values()))
    edges: dict[str, list[str]] = {b: [] for b in bases}
    for leaf, needed in needs.items():
        a = tree.leaves[leaf].base
        for other in needed:
            b = tree.leaves[other].base
            if a != b and b not in edges[a]:
                edges[a].append(b)
    for b in edges:
        edges[b].sort(key=bases.index)
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for root in bases:
        if root in state:
            continue
        path, stack = [root], [iter(edges[root])]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                cycle = tuple(path[path.index(nxt):])
                pairs = zip(cycle, (*cycle[1:], cycle[0]), strict=True)
                notes = tuple(dict.fromkeys(why[p] for p in pairs if p in why))
                raise DependencyCycle(cycle, notes)
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(edges[nxt]))
