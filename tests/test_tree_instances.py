"""Instance names and the scale plan."""

from __future__ import annotations

import pytest

from supervisor.tree import instance_names, parse_instance, scale_plan


class TestNames:
    def test_names_run_from_zero(self) -> None:
        """instances = 3 names reader.0, reader.1 and reader.2."""
        assert instance_names("reader", 3) == ("reader.0", "reader.1", "reader.2")

    def test_parse_instance(self) -> None:
        """An instance name splits at its last dot; other names are not instances."""
        assert parse_instance("reader.2") == ("reader", 2)
        assert parse_instance("a.b.10") == ("a.b", 10)
        for name in ("reader", "reader.", ".2", "reader.x", "reader.01"):
            assert parse_instance(name) is None, name


class TestScale:
    def test_scale_up_starts_the_new_indexes_in_order(self) -> None:
        """2 -> 4 starts NAME.2 then NAME.3 and stops nothing."""
        plan = scale_plan("w", 2, 4)
        assert plan.start == ("w.2", "w.3") and plan.stop == ()

    def test_scale_down_stops_the_highest_first(self) -> None:
        """4 -> 1 stops NAME.3, NAME.2, NAME.1, so NAME.0 keeps its name."""
        plan = scale_plan("w", 4, 1)
        assert plan.stop == ("w.3", "w.2", "w.1") and plan.start == ()

    def test_same_count_changes_nothing(self) -> None:
        """Scaling to the current count is a no-op."""
        assert scale_plan("w", 3, 3) == scale_plan("w", 3, 3).__class__((), ())

    @pytest.mark.parametrize("bad", [0, -1, True, 2.0, "3"])
    def test_count_must_be_an_integer_of_at_least_one(self, bad: object) -> None:
        """As in the config, a count is an integer >= 1."""
        with pytest.raises(ValueError, match=r"^the number of instances must be an integer >= 1, got "):
            scale_plan("w", 1, bad)  # type: ignore[arg-type]
