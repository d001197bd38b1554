"""``instances = N``: the names ``NAME.0`` ... ``NAME.(N-1)``, and what ``scale`` changes.

Scaling up starts the new instances in index order; scaling down stops the
highest ones first, so the survivors keep their names (and ``self.instance``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ScalePlan", "instance_names", "parse_instance", "scale_plan"]


def instance_names(base: str, count: int) -> tuple[str, ...]:
    return tuple(f"{base}.{i}" for i in range(count))


def parse_instance(name: str) -> tuple[str, int] | None:
    """``"reader.2"`` -> ``("reader", 2)``; None for a name without an index."""
    base, dot, index = name.rpartition(".")
    if not dot or not base or not index.isdigit() or (len(index) > 1 and index[0] == "0"):
        return None
    return base, int(index)


@dataclass(frozen=True)
class ScalePlan:
    start: tuple[str, ...]  # in index order
    stop: tuple[str, ...]  # highest index first


def scale_plan(base: str, current: int, target: int) -> ScalePlan:
    """What ``actorsup scale BASE TARGET`` does to ``current`` running instances."""
    if isinstance(target, bool) or not isinstance(target, int) or target < 1:
        raise ValueError(f"the number of instances must be an integer >= 1, got {target!r}")
    start = tuple(f"{base}.{i}" for i in range(current, target))
    stop = tuple(f"{base}.{i}" for i in range(current - 1, target - 1, -1))
    return ScalePlan(start, stop)
