"""The config rules of the tree keys: one error line per problem, with the key path and the value."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from supervisor.config import load_config, parse_config
from supervisor.tree import StructureError, check_tables
from supervisor.tree._shell import tree_of
from supervisor.tree._validate import parse_stop_signal


def refused(groups: dict[str, Any], actors: dict[str, Any]) -> str:
    with pytest.raises(StructureError) as info:
        check_tables(groups, actors)
    return str(info.value)


class TestGood:
    def test_a_full_tree_passes(self) -> None:
        """The design's example (groups, nesting, depends_on, instances, critical, stop_signal) is valid."""
        check_tables(
            {"backend": {}, "pipeline": {"strategy": "rest_for_one", "max_restarts": 3, "restart_window": 30.0,
                                         "group": "backend", "critical": False}},
            {"cache": {"target": "m:C"},
             "reader": {"target": "m:R", "group": "pipeline", "depends_on": ["cache"], "instances": 3,
                        "critical": True, "stop_signal": "SIGINT", "failed_retry_after": 300}},
        )

    def test_signal_names_are_canonical(self) -> None:
        """stop_signal takes SIGINT or INT, any case, and keeps the SIG name."""
        assert parse_stop_signal("SIGINT") == "SIGINT"
        assert parse_stop_signal("hup") == "SIGHUP"


class TestBad:
    def test_unknown_strategy(self) -> None:
        """A strategy that does not exist names the three that do."""
        assert refused({"p": {"strategy": "one_for_none"}}, {}) == (
            'groups.p.strategy: expected one of "one_for_all", "one_for_one", "rest_for_one", got "one_for_none"')

    def test_group_naming_an_actor(self) -> None:
        """group = an actor's name says it is an actor."""
        assert refused({}, {"cache": {}, "r": {"group": "cache"}}) == (
            'actors.r.group: "cache" is an actor; name a [groups.NAME] table, got "cache"')

    def test_group_naming_an_unknown_group(self) -> None:
        """group = a name that is nothing lists the groups there are."""
        assert refused({"pipeline": {}}, {"r": {"group": "pipline"}}) == (
            'actors.r.group: unknown group (the groups are: "pipeline"), got "pipline"')

    def test_parent_of_a_group_must_be_a_group(self) -> None:
        """A group's own group key is checked the same way."""
        assert refused({"g": {"group": "nope"}}, {}) == (
            'groups.g.group: unknown group (the groups are: "g"), got "nope"')

    def test_group_cycle(self) -> None:
        """Groups that nest in a circle are refused, with the circle."""
        assert refused({"a": {"group": "b"}, "b": {"group": "c"}, "c": {"group": "a"}}, {}) == (
            'groups.a.group: groups nest in a cycle (a -> b -> c -> a), got "b"')

    def test_group_inside_itself(self) -> None:
        """A group naming itself as its parent is a cycle of one."""
        assert refused({"a": {"group": "a"}}, {}) == 'groups.a.group: groups nest in a cycle (a -> a), got "a"'

    def test_depends_on_itself(self) -> None:
        """depends_on naming the actor itself blames that entry."""
        assert refused({}, {"x": {}, "w": {"depends_on": ["x", "w"]}}) == (
            'actors.w.depends_on[1]: an actor cannot depend on itself, got "w"')

    def test_depends_on_unknown(self) -> None:
        """depends_on naming nothing is refused."""
        assert refused({}, {"w": {"depends_on": ["cahce"]}}) == (
            "actors.w.depends_on[0]: unknown actor or group (depends_on names [actors.NAME] or [groups.NAME] "
            'tables), got "cahce"')

    def test_depends_on_cycle(self) -> None:
        """A dependency cycle is refused, naming the cycle."""
        assert refused({}, {"a": {"depends_on": ["b"]}, "b": {"depends_on": ["a"]}}) == (
            'actors.a.depends_on: dependency cycle a -> b -> a, got ["b"]')

    def test_depends_on_not_an_array(self) -> None:
        """depends_on is an array of names."""
        assert refused({}, {"a": {"depends_on": "b"}}) == (
            'actors.a.depends_on: expected an array of actor or group names, got "b"')

    @pytest.mark.parametrize(("value", "shown"), [(0, "0"), (-2, "-2"), ("3", '"3"'), (2.5, "2.5"), (True, "true")])
    def test_instances_must_be_a_positive_integer(self, value: object, shown: str) -> None:
        """instances = 0, a negative, a string, a float or a bool is refused."""
        assert refused({}, {"r": {"instances": value}}) == f"actors.r.instances: expected an integer >= 1, got {shown}"

    def test_instances_clashing_with_an_actor(self) -> None:
        """An instance name that another actor already has is refused."""
        assert refused({}, {"r.1": {}, "r": {"instances": 2}}) == (
            "actors.r.instances: instance r.1 would take the name of actors.r.1, got 2")

    def test_instances_clashing_with_a_cron_task(self) -> None:
        """Cron tasks share the actors' names: an instance may not take one."""
        with pytest.raises(StructureError) as info:
            check_tables({}, {"r": {"instances": 2}}, cron=["r.1"])
        assert str(info.value) == "actors.r.instances: instance r.1 would take the name of cron.r.1, got 2"

    def test_critical_on_a_temporary_actor(self) -> None:
        """critical on a temporary actor can never fire, so it is an error."""
        assert refused({}, {"t": {"restart": "temporary", "critical": True}}) == (
            'actors.t.critical: a temporary actor is never restarted, so it never gives up: '
            'use restart = "transient" or drop critical, got true')

    def test_unknown_stop_signal(self) -> None:
        """stop_signal must be a signal name."""
        assert refused({}, {"a": {"stop_signal": "SIGFOO"}}) == (
            'actors.a.stop_signal: expected a signal name such as "SIGTERM", "SIGINT" or "SIGQUIT", got "SIGFOO"')

    @pytest.mark.parametrize(("value", "why"), [
        *((v, "is ignored by a program that does not handle it") for v in ("SIGCHLD", "URG")),
        ("cont", "resumes a program instead of ending it"),
        *((v, "pauses a program instead of ending it") for v in ("SIGSTOP", "SIGTSTP", "ttin", "SIGTTOU")),
    ])
    def test_a_signal_that_does_not_end_a_program_is_refused(self, value: str, why: str) -> None:
        """A signal ignored by default, or one that pauses or resumes, cannot be the first signal of a stop."""
        name = value.upper() if value.upper().startswith("SIG") else "SIG" + value.upper()
        assert refused({}, {"a": {"stop_signal": value}}) == (
            f'actors.a.stop_signal: {name} {why}; use one that ends it, such as "SIGTERM", "SIGINT" or "SIGQUIT", '
            f'got "{value}"')

    @pytest.mark.parametrize(
        "value", ["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGKILL", "SIGWINCH"]
    )
    def test_signals_that_end_a_program_are_accepted(self, value: str) -> None:
        """The usual stop signals, SIGKILL (as supervisord and systemd allow) and SIGWINCH (httpd's) are accepted."""
        assert parse_stop_signal(value) == value

    def test_stop_signal_number_is_refused(self) -> None:
        """A signal number is not a name."""
        assert refused({}, {"a": {"stop_signal": 15}}).endswith("got 15")

    @pytest.mark.parametrize("value", [0, -1, "soon"])
    def test_failed_retry_after_is_a_positive_number(self, value: object) -> None:
        """failed_retry_after is seconds > 0."""
        assert refused({}, {"a": {"failed_retry_after": value}}).startswith(
            "actors.a.failed_retry_after: expected a number > 0, got ")

    def test_critical_must_be_a_bool(self) -> None:
        """critical is true or false."""
        assert refused({"g": {"critical": "yes"}}, {}) == 'groups.g.critical: expected true or false, got "yes"'


class TestFileOrder:
    def test_members_follow_the_file_across_sections(self, tmp_path: Path) -> None:
        """A group's actors and child groups keep the order of their tables in the file."""
        path = tmp_path / "a.toml"
        path.write_text(textwrap.dedent("""
            [groups.top]
            strategy = "rest_for_one"
            [actors.first]
            target = "tests.sample_actors:Steady"
            group = "top"
            [ groups . "inner" ]
            group = "top"
            [actors.'in.one']
            target = "tests.sample_actors:Steady"
            group = "inner"
            [actors.last]
            target = "tests.sample_actors:Steady"
            group = "top"
        """))
        config = load_config(path)
        assert config.table_order == ("top", "first", "inner", "in.one", "last")
        tree, graph = tree_of(config.groups, config.actors, config.table_order)
        assert tree.groups["top"].members == ("first", "inner", "last")
        assert graph.start_waves() == (("first",), ("in.one",), ("last",))

    def test_without_a_file_actors_come_first(self) -> None:
        """A config parsed from data (no file) puts a group's actors before its child groups."""
        config = parse_config({"groups": {"top": {}, "inner": {"group": "top"}},
                               "actors": {"a": {"target": "tests.sample_actors:Steady", "group": "top"}}})
        assert config.table_order == ()
        tree, _ = tree_of(config.groups, config.actors, config.table_order)
        assert tree.groups["top"].members == ("a", "inner")
