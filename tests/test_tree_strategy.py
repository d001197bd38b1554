"""Group decisions: strategies, temporary/transient members, intensity, nesting, escalation.

Times are explicit (``now``): the group intensity is exact without any clock.
"""

from __future__ import annotations

import logging

from tree_helpers import A, G, tree

from supervisor.tree import Emit, GiveUp, MarkFailed, StartLeaves, StopLeaves, TreeState
from supervisor.tree._strategy import Action


def events(actions: list[Action]) -> list[tuple[str, dict[str, object]]]:
    return [(a.event, dict(a.fields)) for a in actions if isinstance(a, Emit)]


def io(actions: list[Action]) -> list[Action]:
    """The actions that touch actors, in order."""
    return [a for a in actions if not isinstance(a, Emit)]


def three(strategy: str, **kw: object) -> TreeState:
    return TreeState(tree(G("p", strategy=strategy, **kw), A("a", group="p"), A("b", group="p"), A("c", group="p")))  # type: ignore[arg-type]


class TestStrategies:
    def test_one_for_one_leaves_the_restart_to_the_member(self) -> None:
        """one_for_one only counts the restart; the member restarts itself under its backoff."""
        state = three("one_for_one")
        actions = state.exited("b", abnormal=True, now=0.0)
        assert io(actions) == []
        assert events(actions) == [("group.restarting", {
            "group": "p", "strategy": "one_for_one", "trigger": "b", "restarts": 1})]

    def test_one_for_all_stops_all_in_reverse_and_starts_all_in_order(self) -> None:
        """one_for_all: the trigger and every other member go down (reverse order), all start in order."""
        actions = three("one_for_all").exited("b", abnormal=True, now=0.0)
        assert io(actions) == [StopLeaves(("b", "c", "a")), StartLeaves(("a", "b", "c"))]
        assert events(actions)[0][1]["strategy"] == "one_for_all"

    def test_rest_for_one_restarts_the_trigger_and_those_after_it(self) -> None:
        """rest_for_one: the members before the trigger are left alone."""
        actions = three("rest_for_one").exited("b", abnormal=True, now=0.0)
        assert io(actions) == [StopLeaves(("b", "c")), StartLeaves(("b", "c"))]

    def test_rest_for_one_last_member_restarts_alone(self) -> None:
        """rest_for_one with the last member as trigger touches only it."""
        actions = three("rest_for_one").exited("c", abnormal=True, now=0.0)
        assert io(actions) == [StopLeaves(("c",)), StartLeaves(("c",))]

    def test_instances_are_members_in_their_own_right(self) -> None:
        """One instance crashing in a one_for_all group restarts every instance and sibling."""
        state = TreeState(tree(G("p", strategy="one_for_all"), A("r", group="p", instances=2), A("w", group="p")))
        assert io(state.exited("r.1", abnormal=True, now=0.0)) == [
            StopLeaves(("r.1", "w", "r.0")), StartLeaves(("r.0", "r.1", "w"))]


class TestRestartTypes:
    def test_temporary_trigger_is_never_restarted(self) -> None:
        """A temporary member that crashes changes nothing, not even in one_for_all."""
        state = TreeState(tree(G("p", strategy="one_for_all"), A("a", group="p", restart="temporary"),
                               A("b", group="p")))
        assert state.exited("a", abnormal=True, now=0.0) == []
        assert state.intensity["p"].recent == 0

    def test_transient_trigger_restarts_only_after_an_abnormal_exit(self) -> None:
        """A transient member that completes normally is not restarted; one that crashes is."""
        state = TreeState(tree(G("p", strategy="one_for_all"), A("a", group="p", restart="transient"),
                               A("b", group="p")))
        assert state.exited("a", abnormal=False, now=0.0) == []
        assert io(state.exited("a", abnormal=True, now=1.0)) == [StopLeaves(("a", "b")), StartLeaves(("a", "b"))]

    def test_permanent_trigger_restarts_after_a_normal_exit(self) -> None:
        """A permanent member is restarted even when it returned normally (OTP)."""
        actions = three("one_for_all").exited("a", abnormal=False, now=0.0)
        assert StartLeaves(("a", "b", "c")) in actions

    def test_temporary_sibling_taken_down_is_not_started_again(self) -> None:
        """A temporary member that a sibling's restart stops stays stopped."""
        state = TreeState(tree(G("p", strategy="one_for_all"), A("a", group="p"),
                               A("t", group="p", restart="temporary"), A("c", group="p")))
        assert io(state.exited("a", abnormal=True, now=0.0)) == [
            StopLeaves(("a", "c", "t")), StartLeaves(("a", "c"))]

    def test_transient_sibling_taken_down_is_started_again(self) -> None:
        """A transient sibling is restarted with the rest: it did not exit by itself."""
        state = TreeState(tree(G("p", strategy="one_for_all"), A("a", group="p"),
                               A("t", group="p", restart="transient")))
        assert StartLeaves(("a", "t")) in state.exited("a", abnormal=True, now=0.0)

    def test_user_stopped_member_stays_stopped(self) -> None:
        """A member the user stopped is held: it goes unstarted by a group restart until started again."""
        state = three("one_for_all")
        state.stopped_by_user("c")
        assert StartLeaves(("a", "b")) in state.exited("a", abnormal=True, now=0.0)
        state.started_by_user("c")
        assert StartLeaves(("a", "b", "c")) in state.exited("a", abnormal=True, now=1.0)

    def test_ungrouped_actor_is_left_to_its_own_policy(self) -> None:
        """An actor outside every group gets no group decision."""
        state = TreeState(tree(A("solo")))
        assert state.exited("solo", abnormal=True, now=0.0) == []
        assert state.gave_up("solo", now=0.0) == []


class TestIntensity:
    def test_restarts_within_the_window_exhaust_the_group(self) -> None:
        """More than max_restarts within restart_window fails the group (OTP intensity)."""
        state = three("one_for_one", max_restarts=2, restart_window=10.0)
        assert events(state.exited("a", True, 0.0))[0][0] == "group.restarting"
        assert events(state.exited("b", True, 1.0))[0][0] == "group.restarting"
        actions = state.exited("c", True, 2.0)
        assert events(actions)[0] == ("group.failed", {
            "group": "p", "trigger": "c", "reason": "intensity", "restarts": 3, "max_restarts": 2, "window": 10.0})
        assert io(actions) == [StopLeaves(("c", "b", "a")), MarkFailed("p", ("a", "b", "c"))]

    def test_restarts_older_than_the_window_do_not_count(self) -> None:
        """A restart that left the window is forgotten."""
        state = three("one_for_one", max_restarts=1, restart_window=10.0)
        state.exited("a", True, 0.0)
        assert events(state.exited("a", True, 10.0))[0][0] == "group.restarting"
        assert events(state.exited("a", True, 15.0))[0][0] == "group.failed"

    def test_one_restart_of_many_members_counts_once(self) -> None:
        """A one_for_all restart of three members is one restart against the intensity."""
        state = three("one_for_all", max_restarts=1)
        state.exited("a", True, 0.0)
        assert state.intensity["p"].recent == 1

    def test_max_restarts_zero_fails_at_the_first_restart(self) -> None:
        """max_restarts = 0: the group gives up instead of restarting at all."""
        state = three("one_for_all", max_restarts=0)
        assert events(state.exited("a", True, 0.0))[0][0] == "group.failed"

    def test_a_failed_group_ignores_its_members(self) -> None:
        """After a top-level group gave up, exits of its leaves decide nothing."""
        state = three("one_for_one", max_restarts=0)
        state.exited("a", True, 0.0)
        assert state.exited("b", True, 1.0) == []

    def test_member_giving_up_on_its_own_fails_the_group(self) -> None:
        """A member past its own max_restarts is one the group cannot keep up: the group fails."""
        state = three("one_for_one")
        actions = state.gave_up("b", 0.0)
        assert events(actions)[0][1]["reason"] == "member_failed"
        assert MarkFailed("p", ("a", "b", "c")) in actions

    def test_starting_a_member_of_a_failed_group_revives_it(self) -> None:
        """`actorsup start` on a member clears the group's failure and its intensity."""
        state = three("one_for_one", max_restarts=0)
        state.exited("a", True, 0.0)
        state.started_by_user("a")
        assert "p" not in state.failed and state.intensity["p"].recent == 0
        state.stopped_by_user("b")
        assert events(state.exited("c", True, 1.0))[0][0] == "group.failed"


class TestNesting:
    def nested(self, outer: str = "one_for_all", **inner: object) -> TreeState:
        return TreeState(tree(
            G("outer", strategy=outer, max_restarts=1), G("inner", group="outer", **inner),  # type: ignore[arg-type]
            A("x", group="outer"), A("i1", group="inner"), A("i2", group="inner"), A("y", group="outer"),
            file_order=("outer", "x", "inner", "i1", "i2", "y"),
        ))

    def test_failed_child_group_is_restarted_by_its_parent_as_one_child(self) -> None:
        """The parent restarts a failed group under its own strategy (here one_for_all: everything)."""
        state = self.nested(max_restarts=0)
        actions = state.exited("i1", True, 0.0)
        assert [e for e, _ in events(actions)] == ["group.failed", "group.restarting"]
        assert events(actions)[1][1] == {"group": "outer", "strategy": "one_for_all", "trigger": "inner", "restarts": 1}
        assert io(actions) == [StopLeaves(("i2", "i1")), StopLeaves(("y", "x")), StartLeaves(("x", "i1", "i2", "y"))]
        assert "inner" not in state.failed

    def test_one_for_one_parent_restarts_only_the_failed_group(self) -> None:
        """Under one_for_one, the parent starts just the failed group's leaves again."""
        state = self.nested(outer="one_for_one", max_restarts=0)
        assert io(state.exited("i2", True, 0.0)) == [StopLeaves(("i2", "i1")), StartLeaves(("i1", "i2"))]

    def test_rest_for_one_parent_restarts_the_group_and_what_follows(self) -> None:
        """Under rest_for_one, the members after the failed group restart with it."""
        state = self.nested(outer="rest_for_one", max_restarts=0)
        assert io(state.exited("i1", True, 0.0)) == [
            StopLeaves(("i2", "i1")), StopLeaves(("y",)), StartLeaves(("i1", "i2", "y"))]

    def test_restarted_group_starts_with_a_fresh_intensity(self) -> None:
        """A group restarted by its parent has forgotten its earlier restarts."""
        state = self.nested(outer="one_for_one", max_restarts=1)
        state.exited("i1", True, 0.0)
        state.exited("i1", True, 1.0)  # inner fails, outer restarts it
        assert state.intensity["inner"].recent == 0
        assert events(state.exited("i1", True, 2.0))[0][0] == "group.restarting"

    def test_a_sibling_restart_restarts_a_child_group_fresh(self) -> None:
        """A child group taken down by a sibling's one_for_all restart starts every leaf, fresh."""
        state = self.nested()
        state.exited("i1", True, 0.0)  # one restart counted in inner
        actions = state.exited("x", True, 1.0)
        assert io(actions) == [StopLeaves(("x", "y", "i2", "i1")), StartLeaves(("x", "i1", "i2", "y"))]
        assert state.intensity["inner"].recent == 0

    def test_failure_climbs_until_a_group_can_restart(self) -> None:
        """When the parent is past its intensity too, it fails as well; at the top its leaves are failed."""
        state = self.nested(max_restarts=0)
        state.exited("i1", True, 0.0)  # outer: 1 restart
        actions = state.exited("i1", True, 1.0)  # inner fails, outer would restart: 2 > 1
        assert [e for e, _ in events(actions)] == ["group.failed", "group.failed"]
        assert MarkFailed("outer", ("x", "i1", "i2", "y")) in actions
        assert state.failed == {"inner", "outer"}


class TestEscalation:
    def test_critical_actor_that_gives_up_ends_the_supervisor(self) -> None:
        """A critical actor reaching failed: supervisor.give_up, then GiveUp (exit 3)."""
        state = TreeState(tree(A("db", critical=True)))
        actions = state.gave_up("db", 0.0)
        assert actions == [
            Emit("supervisor.give_up", {"actor": "db", "reason": "failed", "exit_status": 3}, logging.CRITICAL),
            GiveUp(actor="db"),
        ]

    def test_critical_actor_in_a_group_gives_up_at_once(self) -> None:
        """A critical member does not wait for its group: its own failure ends the supervisor."""
        state = TreeState(tree(G("p", strategy="one_for_all"), A("db", group="p", critical=True), A("b", group="p")))
        assert state.gave_up("db", 0.0)[-1] == GiveUp(actor="db")

    def test_critical_group_that_fails_ends_the_supervisor(self) -> None:
        """A critical group past its intensity gives up even when it has a parent."""
        state = TreeState(tree(G("top"), G("g", group="top", critical=True, max_restarts=0), A("a", group="g")))
        actions = state.exited("a", True, 0.0)
        assert [e for e, _ in events(actions)] == ["group.failed", "supervisor.give_up"]
        assert events(actions)[1][1]["group"] == "g"
        assert actions[-1] == GiveUp(group="g")
        assert not any(isinstance(a, StartLeaves) for a in actions)

    def test_critical_actor_left_failed_by_its_top_group_gives_up(self) -> None:
        """A top-level group that gives up leaves a critical member failed, and that ends the supervisor."""
        state = TreeState(tree(G("p", max_restarts=0), A("a", group="p"), A("db", group="p", critical=True)))
        actions = state.exited("a", True, 0.0)
        assert actions[-1] == GiveUp(actor="db")
        assert events(actions)[-1][1]["reason"] == "group_failed"

    def test_a_restarted_group_does_not_escalate(self) -> None:
        """A non-critical group that its parent restarts gives nothing up."""
        state = TreeState(tree(G("top"), G("g", group="top", max_restarts=0), A("a", group="g", critical=True)))
        assert not any(isinstance(a, GiveUp) for a in state.exited("a", True, 0.0))


class TestRetree:
    def test_retree_keeps_intensity_of_unchanged_groups(self) -> None:
        """A reload that keeps a group's limits keeps its recent restarts; changed limits start afresh."""
        state = three("one_for_one")
        state.exited("a", True, 0.0)
        kept = state.retree(tree(G("p"), A("a", group="p"), A("b", group="p")))
        assert kept.intensity["p"].recent == 1
        changed = state.retree(tree(G("p", max_restarts=9), A("a", group="p")))
        assert changed.intensity["p"].recent == 0

    def test_retree_drops_names_that_are_gone(self) -> None:
        """Held leaves and failed groups that no longer exist are forgotten."""
        state = three("one_for_one", max_restarts=0)
        state.stopped_by_user("c")
        state.exited("a", True, 0.0)
        new = state.retree(tree(G("q"), A("a", group="q")))
        assert new.failed == set() and new.held == set()
