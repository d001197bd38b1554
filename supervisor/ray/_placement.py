"""Where a host may go, as pure functions over Ray's node table (no Ray import).

Two questions the driver answers without waiting for Ray: why a host is not
placed yet (no alive node has the resources it asks for, or Ray is still
placing it), and which node a replacement goes to while the node of a host
that stopped answering is *suspect*. Ray declares a lost node dead only after
its health checks fail (20-70 s); a suspect node is avoided at once, until a
probe task placed on it returns (then it is fine: the host itself hung) or
Ray drops it from the alive nodes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..config._schema import RayOptions

__all__ = ["Placement", "demand", "node_resources"]

ACTOR_CPUS = 1.0  # what Ray reserves to place an actor that sets no num_cpus


def demand(options: RayOptions) -> dict[str, float]:
    """The resources Ray needs free on one node to place a host with ``options``."""
    need = {"CPU": ACTOR_CPUS if options.num_cpus is None else float(options.num_cpus)}
    if options.num_gpus:
        need["GPU"] = float(options.num_gpus)
    if options.memory:
        need["memory"] = float(options.memory)
    need.update((k, float(v)) for k, v in options.resources.items())
    return {k: v for k, v in need.items() if v > 0}


def node_resources(nodes: Iterable[Mapping[str, Any]]) -> list[tuple[str, dict[str, float]]]:
    """(node id, total resources) of each alive node in ``ray.nodes()``."""
    return [
        (str(n["NodeID"]), {k: float(v) for k, v in (n.get("Resources") or {}).items()})
        for n in nodes
        if n.get("Alive")
    ]


def _fits(need: Mapping[str, float], total: Mapping[str, float]) -> bool:
    return all(total.get(k, 0.0) >= v for k, v in need.items())


def _show(resources: Mapping[str, float]) -> str:
    return json.dumps({k: int(v) if v == int(v) else v for k, v in resources.items()})


class Placement:
    """The suspect nodes, each with the reference of the probe that would clear it."""

    def __init__(self) -> None:
        self.suspects: dict[str, Any] = {}  # node id -> probe reference

    def suspect(self, node: str, probe: Any) -> None:
        self.suspects[node] = probe

    def probes(self) -> Iterable[Any]:
        return self.suspects.values()

    def settle(self, answered: Iterable[Any]) -> list[str]:
        """Clear the nodes whose probe answered; the nodes cleared."""
        done = {id(ref) for ref in answered}
        cleared = [node for node, ref in self.suspects.items() if id(ref) in done]
        for node in cleared:
            del self.suspects[node]
        return cleared

    def avoiding_suspects(
        self, need: Mapping[str, float], nodes: list[tuple[str, dict[str, float]]],
        free: Callable[[], Mapping[str, Mapping[str, float]]],
    ) -> str | None:
        """A node for a new host while some node is suspect (None: leave it to Ray's strategy).

        ``free()`` reads the resources available now per node (only asked while a node is
        suspect). The alive, unsuspected node with the most free CPU among those that can
        hold ``need`` now; none: Ray's own choice (which may wait for the suspect node to be
        declared dead).
        """
        alive = {node for node, _ in nodes}
        for node in [n for n in self.suspects if n not in alive]:  # Ray declared it dead
            del self.suspects[node]
        if not self.suspects:
            return None
        available = free()
        fitting = [(available[node].get("CPU", 0.0), node) for node, _ in nodes
                   if node not in self.suspects and node in available and _fits(need, available[node])]
        return max(fitting)[1] if fitting else None

    def why_waiting(self, need: Mapping[str, float], nodes: list[tuple[str, dict[str, float]]]) -> str:
        """One line: why a host that is not alive yet waits."""
        if any(_fits(need, total) for _, total in nodes):
            return "waiting for Ray to place it"
        missing = {k: v for k, v in need.items() if not any(total.get(k, 0.0) >= v for _, total in nodes)}
        if missing:
            return f"no node has {_show(missing)}"
        return f"no node has all of {_show(dict(need))} at once"
