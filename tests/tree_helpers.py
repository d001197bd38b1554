"""Plain specs for the tree tests: the keys of [groups.NAME] and [actors.NAME] that shape a tree."""

from __future__ import annotations

from dataclasses import dataclass

from supervisor.tree import Tree, build_tree


@dataclass(frozen=True)
class G:
    name: str
    strategy: str = "one_for_one"
    max_restarts: int = 5
    restart_window: float = 60.0
    group: str | None = None
    critical: bool = False


@dataclass(frozen=True)
class A:
    name: str
    group: str | None = None
    restart: str = "permanent"
    critical: bool = False
    instances: int | None = None
    depends_on: tuple[str, ...] = ()


def tree(*specs: G | A, file_order: tuple[str, ...] = ()) -> Tree:
    return build_tree(
        [s for s in specs if isinstance(s, G)], [s for s in specs if isinstance(s, A)], file_order
    )
