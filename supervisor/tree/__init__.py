"""Supervision trees: groups with OTP strategies, start-up dependencies, instances.

- ``_model``: the tree as plain data (groups, members in file order, leaves).
- ``_instances``: ``NAME.i`` names and the ``scale`` plan.
- ``_order``: ``depends_on`` and member order as start and stop waves; cycles.
- ``_strategy``: what a group does when a member goes down (decisions, no I/O).
- ``_validate``: the config rules of the tree keys, on the parsed tables.
"""

from ._instances import ScalePlan as ScalePlan
from ._instances import instance_names as instance_names
from ._instances import parse_instance as parse_instance
from ._instances import scale_plan as scale_plan
from ._model import STRATEGIES as STRATEGIES
from ._model import Group as Group
from ._model import Leaf as Leaf
from ._model import Tree as Tree
from ._model import build_tree as build_tree
from ._order import DependencyCycle as DependencyCycle
from ._order import DependencyError as DependencyError
from ._order import Graph as Graph
from ._order import build_graph as build_graph
from ._strategy import Action as Action
from ._strategy import Emit as Emit
from ._strategy import GiveUp as GiveUp
from ._strategy import MarkFailed as MarkFailed
from ._strategy import StartLeaves as StartLeaves
from ._strategy import StopLeaves as StopLeaves
from ._strategy import TreeState as TreeState
from ._validate import StructureError as StructureError
from ._validate import check_tables as check_tables

__all__ = [
    "STRATEGIES", "Action", "DependencyCycle", "DependencyError", "Emit", "GiveUp", "Graph", "Group",
    "Leaf", "MarkFailed", "ScalePlan", "StartLeaves", "StopLeaves", "StructureError", "Tree", "TreeState",
    "build_graph", "build_tree", "check_tables", "instance_names", "parse_instance", "scale_plan",
]
