"""The tree as plain data: members in file order, leaves, ancestors, instances."""

from __future__ import annotations

from tree_helpers import A, G, tree


class TestBuild:
    def test_members_keep_file_order_within_a_section(self) -> None:
        """A group's actors are its members in the order of their tables."""
        t = tree(G("p"), A("c", group="p"), A("a", group="p"), A("b", group="p"))
        assert t.groups["p"].members == ("c", "a", "b")

    def test_actors_come_before_child_groups_without_file_order(self) -> None:
        """TOML loses the order across [groups] and [actors]: actors first, then child groups."""
        t = tree(G("top"), G("inner", group="top"), A("x", group="top"))
        assert t.groups["top"].members == ("x", "inner")

    def test_file_order_interleaves_groups_and_actors(self) -> None:
        """With the tables' file order, a child group sits where its table is."""
        t = tree(G("top"), G("inner", group="top"), A("x", group="top"), A("y", group="top"),
                 file_order=("top", "x", "inner", "y"))
        assert t.groups["top"].members == ("x", "inner", "y")

    def test_ungrouped_actors_and_top_groups_are_the_top_level(self) -> None:
        """Actors without a group and groups without a parent sit side by side at the top."""
        t = tree(G("g"), G("h", group="g"), A("solo"), A("m", group="h"))
        assert t.top == ("solo", "g")

    def test_instances_are_leaves_in_index_order(self) -> None:
        """instances = 3 puts NAME.0, NAME.1, NAME.2 at the actor's place, each with its index."""
        t = tree(G("p"), A("first", group="p"), A("reader", group="p", instances=3), A("last", group="p"))
        assert t.groups["p"].members == ("first", "reader.0", "reader.1", "reader.2", "last")
        assert [t.leaves[f"reader.{i}"].instance for i in range(3)] == [0, 1, 2]
        assert t.leaves["reader.1"].base == "reader"
        assert t.leaves["first"].instance is None


class TestQueries:
    def test_leaves_of_a_group_are_nested_leaves_in_start_order(self) -> None:
        """A group's leaves are its members' leaves, depth first, in order."""
        t = tree(G("top"), G("inner", group="top"), A("a", group="top"), A("b", group="inner"),
                 A("c", group="inner"), A("d", group="top"), file_order=("a", "inner", "b", "c", "d"))
        assert t.leaves_of("top") == ("a", "b", "c", "d")
        assert t.leaves_of("b") == ("b",)

    def test_ancestors_innermost_first(self) -> None:
        """ancestors() walks up from a leaf to the top-level group."""
        t = tree(G("a"), G("b", group="a"), G("c", group="b"), A("x", group="c"))
        assert t.ancestors("x") == ("c", "b", "a")
        assert t.ancestors("a") == ()

    def test_groups_under_outermost_first(self) -> None:
        """groups_under() lists a group and its nested groups, not leaves."""
        t = tree(G("a"), G("b", group="a"), A("x", group="a"), G("c", group="b"))
        assert t.groups_under("a") == ("a", "b", "c")
        assert t.groups_under("x") == ()

    def test_a_group_is_a_permanent_child(self) -> None:
        """restart_of() is a leaf's own restart type, and permanent for a child group."""
        t = tree(G("a"), G("b", group="a"), A("x", group="a", restart="temporary"))
        assert t.restart_of("x") == "temporary"
        assert t.restart_of("b") == "permanent"
