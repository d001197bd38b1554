"""Start and stop waves from depends_on and member order; cycles and bad names."""

from __future__ import annotations

import pytest
from tree_helpers import A, G, tree

from supervisor.tree import DependencyCycle, Graph, build_graph
from supervisor.tree._order import SelfDependency, UnknownDependency


def graph(*specs: G | A, file_order: tuple[str, ...] = ()) -> Graph:
    actors = [s for s in specs if isinstance(s, A)]
    return build_graph(tree(*specs, file_order=file_order), {a.name: a.depends_on for a in actors})


class TestStartWaves:
    def test_independent_actors_start_in_one_wave(self) -> None:
        """Fifty actors with no dependencies start together."""
        g = graph(*(A(f"a{i}") for i in range(50)))
        assert g.start_waves() == (tuple(f"a{i}" for i in range(50)),)

    def test_a_dependency_starts_in_an_earlier_wave(self) -> None:
        """depends_on puts an actor in the wave after everything it needs."""
        g = graph(A("web", depends_on=("db", "cache")), A("db"), A("cache", depends_on=("db",)), A("other"))
        assert g.start_waves() == (("db", "other"), ("cache",), ("web",))

    def test_depending_on_a_group_waits_for_all_its_leaves(self) -> None:
        """A group named in depends_on stands for every leaf under it."""
        g = graph(G("store"), G("inner", group="store"), A("db", group="store"), A("idx", group="inner"),
                  A("app", depends_on=("store",)))
        assert g.start_waves() == (("db", "idx"), ("app",))

    def test_depending_on_an_actor_with_instances_waits_for_all(self) -> None:
        """An actor with instances stands for all of them; one instance for itself."""
        g = graph(A("r", instances=2), A("all", depends_on=("r",)), A("one", depends_on=("r.1",)))
        assert g.needs["all"] == {"r.0", "r.1"}
        assert g.needs["one"] == {"r.1"}

    def test_instances_depend_on_what_their_actor_depends_on(self) -> None:
        """Each instance of an actor inherits its depends_on."""
        g = graph(A("db"), A("w", instances=3, depends_on=("db",)))
        assert g.start_waves() == (("db",), ("w.0", "w.1", "w.2"))

    @pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
    def test_ordered_groups_start_members_one_after_another(self, strategy: str) -> None:
        """In one_for_all and rest_for_one groups, member order is start order, as in OTP."""
        g = graph(G("p", strategy=strategy), A("a", group="p"), A("b", group="p", instances=2), A("c", group="p"))
        assert g.start_waves() == (("a",), ("b.0",), ("b.1",), ("c",))

    def test_one_for_one_members_are_independent(self) -> None:
        """one_for_one members start concurrently."""
        g = graph(G("p"), A("a", group="p"), A("b", group="p"), A("c", group="p"))
        assert g.start_waves() == (("a", "b", "c"),)

    def test_an_ordered_member_group_waits_for_the_member_before_it(self) -> None:
        """A child group in an ordered group starts (all its leaves) after the member before it."""
        g = graph(G("p", strategy="one_for_all"), G("kids", group="p"), A("first", group="p"),
                  A("k1", group="kids"), A("k2", group="kids"), file_order=("first", "kids", "k1", "k2"))
        assert g.start_waves() == (("first",), ("k1", "k2"))

    def test_waves_of_a_subset_ignore_the_others(self) -> None:
        """Restarting some leaves orders them among themselves only."""
        g = graph(A("db"), A("cache", depends_on=("db",)), A("web", depends_on=("cache",)))
        assert g.start_waves(["web", "db"]) == (("db", "web"),)
        assert g.start_waves(["web", "cache"]) == (("cache",), ("web",))


class TestStopWaves:
    def test_independent_actors_stop_in_one_wave(self) -> None:
        """Fifty actors with no dependencies stop together, not one by one."""
        g = graph(*(A(f"a{i}") for i in range(50)))
        assert len(g.stop_waves()) == 1

    def test_an_actor_stops_after_everything_that_needs_it(self) -> None:
        """Stop order is the reverse dependency order."""
        g = graph(A("web", depends_on=("cache",)), A("cache", depends_on=("db",)), A("db"))
        assert g.stop_waves() == (("web",), ("cache",), ("db",))

    def test_a_leaf_nobody_needs_stops_first(self) -> None:
        """An actor that nothing depends on stops in the first wave, however early it started."""
        g = graph(A("db"), A("web", depends_on=("db",)), A("lonely"))
        assert g.stop_waves() == (("web", "lonely"), ("db",))

    def test_ordered_group_stops_in_reverse_member_order(self) -> None:
        """A rest_for_one group stops its last member first."""
        g = graph(G("p", strategy="rest_for_one"), A("a", group="p"), A("b", group="p"), A("c", group="p"))
        assert g.stop_waves() == (("c",), ("b",), ("a",))


class TestBadGraphs:
    def test_cycle_names_the_cycle(self) -> None:
        """A depends_on cycle is refused, with its members in order."""
        with pytest.raises(DependencyCycle, match=r"^dependency cycle a -> b -> c -> a$") as info:
            graph(A("a", depends_on=("b",)), A("b", depends_on=("c",)), A("c", depends_on=("a",)), A("d"))
        assert info.value.cycle == ("a", "b", "c")
        assert info.value.actor == "a"

    def test_cycle_through_member_order_says_so(self) -> None:
        """depends_on against the order of an ordered group is a cycle, and the message says why."""
        with pytest.raises(
            DependencyCycle,
            match=r"^dependency cycle a -> b -> a \(b starts after a in rest_for_one group p\)$",
        ):
            graph(G("p", strategy="rest_for_one"), A("a", group="p", depends_on=("b",)), A("b", group="p"))

    def test_cycle_through_a_group(self) -> None:
        """A cycle that passes through a group names the actors on it."""
        with pytest.raises(DependencyCycle, match=r"^dependency cycle x -> y -> x$"):
            graph(G("g"), A("x", depends_on=("g",)), A("y", group="g", depends_on=("x",)))

    def test_instances_in_an_ordered_group_are_no_cycle(self) -> None:
        """The chain reader.0 -> reader.1 inside an ordered group is not a self-dependency."""
        g = graph(G("p", strategy="one_for_all"), A("r", group="p", instances=3))
        assert len(g.start_waves()) == 3

    def test_unknown_name(self) -> None:
        """A depends_on entry that names nothing is refused with its index."""
        with pytest.raises(UnknownDependency, match=r"^unknown actor or group 'cahce'$") as info:
            graph(A("cache"), A("web", depends_on=("cache", "cahce")))
        assert (info.value.actor, info.value.index) == ("web", 1)

    @pytest.mark.parametrize("target", ["web", "web.1"])
    def test_depending_on_itself(self, target: str) -> None:
        """An actor cannot depend on itself or on one of its own instances."""
        with pytest.raises(SelfDependency, match=r"^an actor cannot depend on itself$"):
            graph(A("web", instances=2, depends_on=(target,)))

    def test_depending_on_its_own_group(self) -> None:
        """An actor cannot depend on a group that contains it."""
        with pytest.raises(SelfDependency, match=r"^an actor cannot depend on group 'outer', which contains it$"):
            graph(G("outer"), G("inner", group="outer"), A("x", group="inner", depends_on=("outer",)))


def test_names_outside_the_graph_go_first() -> None:
    """A name the graph does not know (a cron task's handle) has no order: first wave."""
    g = graph(A("db"), A("web", depends_on=("db",)))
    assert g.start_waves(["web", "cron1", "db"]) == (("cron1", "db"), ("web",))
    assert g.stop_waves(["cron1", "db", "web"]) == (("cron1", "web"), ("db",))
