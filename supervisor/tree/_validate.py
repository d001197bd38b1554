"""The config rules of the tree keys, on the parsed TOML tables.

:func:`check_tables` takes the raw ``[groups]`` and ``[actors]`` tables (as
``tomllib`` returns them) and raises :class:`StructureError` for the first
problem, with the key path inside the document and a message in the config's
words (``problem, got VALUE``); the loader adds the file name. The value
checks (:func:`parse_strategy`, :func:`parse_stop_signal`, ...) raise
``ValueError`` with what is accepted, for a schema that reads one key at a time.
Keys that are not the tree's are left to the schema.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._model import STRATEGIES, Strategy, build_tree
from ._order import DependencyCycle, DependencyError, build_graph

__all__ = [
    "DEFAULT_GROUP_MAX_RESTARTS",
    "DEFAULT_GROUP_RESTART_WINDOW",
    "StructureError",
    "check_tables",
    "parse_instances",
    "parse_stop_signal",
    "parse_strategy",
]

DEFAULT_GROUP_MAX_RESTARTS = 5
DEFAULT_GROUP_RESTART_WINDOW = 60.0


class StructureError(ValueError):
    """``problem`` at key ``path`` (keys and array indexes), as the config's ``Invalid``."""

    def __init__(self, problem: str, path: tuple[str | int, ...]) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path = path

    @property
    def dotted(self) -> str:
        return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.path).lstrip(".")

    def __str__(self) -> str:
        return f"{self.dotted}: {self.problem}"


def show(value: Any) -> str:
    """``value`` as it is written in TOML-ish JSON, cut to one short line."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = str(value)
    return text if len(text) <= 200 else text[:197] + "..."


# --- one key at a time ---------------------------------------------------------------
def parse_strategy(value: object) -> Strategy:
    for strategy in STRATEGIES:
        if value == strategy:
            return strategy
    raise ValueError("expected one of " + ", ".join(show(s) for s in sorted(STRATEGIES)))


def parse_instances(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("expected an integer >= 1")
    return value


_SIGNALS = {s.name: s for s in signal.Signals if not s.name.startswith("SIG_")}
# Signals whose default action does not end a program: as a stop signal each would only wait out
# stop_timeout before the SIGKILL (signal(7): Ign, Stop, Cont). SIGKILL itself is allowed, as in
# supervisord and systemd (KillSignal=). SIGWINCH stays allowed although ignored by default:
# it is Apache httpd's graceful stop (its official image sets STOPSIGNAL SIGWINCH).
_IGNORED, _PAUSES = "is ignored by a program that does not handle it", "pauses a program instead of ending it"
_NO_END = {
    "SIGCHLD": _IGNORED, "SIGURG": _IGNORED, "SIGCONT": "resumes a program instead of ending it",
    "SIGSTOP": _PAUSES, "SIGTSTP": _PAUSES, "SIGTTIN": _PAUSES, "SIGTTOU": _PAUSES,
}
_SUGGESTED = '"SIGTERM", "SIGINT" or "SIGQUIT"'


def parse_stop_signal(value: object) -> str:
    """A signal name (``"SIGINT"``; ``"INT"`` is accepted too) -> its canonical name.

    Refused: signals that do not end a program that leaves them at their default action.
    """
    if isinstance(value, str):
        name = value.upper() if value.upper().startswith("SIG") else "SIG" + value.upper()
        if name in _SIGNALS:
            canonical = _SIGNALS[name].name
            if canonical in _NO_END:
                raise ValueError(f"{canonical} {_NO_END[canonical]}; use one that ends it, such as {_SUGGESTED}")
            return canonical
    raise ValueError(f"expected a signal name such as {_SUGGESTED}")


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _positive(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError("expected a number > 0")
    return float(value)


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("expected an integer >= 0")
    return value


def _name(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string (the name of a [groups.NAME] table)")
    return value


def _names(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected an array of actor or group names")
    return tuple(value)


# --- across tables -------------------------------------------------------------------
@dataclass(frozen=True)
class _Group:
    name: str
    strategy: str
    max_restarts: int
    restart_window: float
    group: str | None
    critical: bool


@dataclass(frozen=True)
class _Actor:
    name: str
    group: str | None
    restart: str
    critical: bool
    instances: int | None
    depends_on: tuple[str, ...]


def _read(table: Mapping[str, Any], key: str, path: tuple[str, ...], parse: Any, default: Any) -> Any:
    if key not in table:
        return default
    value = table[key]
    try:
        return parse(value)
    except ValueError as exc:
        raise StructureError(f"{exc}, got {show(value)}", (*path, key)) from None


def check_tables(groups: Mapping[str, Any], actors: Mapping[str, Any], cron: Iterable[str] = ()) -> None:
    """Raise :class:`StructureError` for the first problem in the tables' tree keys.

    ``cron`` holds the names of the ``[cron.NAME]`` tables, which share the actors' names.
    """
    gs = [_group(name, table) for name, table in groups.items() if isinstance(table, Mapping)]
    acts = [_actor(name, table) for name, table in actors.items() if isinstance(table, Mapping)]
    for where, name, parent in [("groups", g.name, g.group) for g in gs] + [("actors", a.name, a.group) for a in acts]:
        if parent is None or parent in groups:
            continue
        if parent in actors:
            problem = f"{show(parent)} is an actor; name a [groups.NAME] table"
        else:
            known = ", ".join(show(g) for g in groups) or "none are defined"
            problem = f"unknown group (the groups are: {known})"
        raise StructureError(f"{problem}, got {show(parent)}", (where, name, "group"))
    _refuse_group_cycles(gs)
    _refuse_instance_clashes(acts, cron)
    tree = build_tree(gs, acts)
    try:
        build_graph(tree, {a.name: a.depends_on for a in acts})
    except DependencyError as exc:
        path: tuple[str | int, ...] = ("actors", exc.actor, "depends_on")
        spec = next(a for a in acts if a.name == exc.actor)
        if isinstance(exc, DependencyCycle):
            raise StructureError(f"{exc}, got {show(list(spec.depends_on))}", path) from None
        assert exc.index is not None
        raise StructureError(f"{exc.problem}, got {show(spec.depends_on[exc.index])}", (*path, exc.index)) from None


def _group(name: str, table: Mapping[str, Any]) -> _Group:
    path = ("groups", name)
    return _Group(
        name,
        _read(table, "strategy", path, parse_strategy, "one_for_one"),
        _read(table, "max_restarts", path, _count, DEFAULT_GROUP_MAX_RESTARTS),
        _read(table, "restart_window", path, _positive, DEFAULT_GROUP_RESTART_WINDOW),
        _read(table, "group", path, _name, None),
        _read(table, "critical", path, _bool, False),
    )


def _actor(name: str, table: Mapping[str, Any]) -> _Actor:
    path = ("actors", name)
    restart = table.get("restart", "permanent")
    critical = _read(table, "critical", path, _bool, False)
    if critical and restart == "temporary":
        raise StructureError(
            'a temporary actor is never restarted, so it never gives up: use restart = "transient" '
            "or drop critical, got true",
            (*path, "critical"),
        )
    _read(table, "stop_signal", path, parse_stop_signal, None)
    _read(table, "failed_retry_after", path, _positive, None)
    return _Actor(
        name,
        _read(table, "group", path, _name, None),
        restart if isinstance(restart, str) else "permanent",
        critical,
        _read(table, "instances", path, parse_instances, None),
        _read(table, "depends_on", path, _names, ()),
    )


def _refuse_group_cycles(groups: list[_Group]) -> None:
    parent = {g.name: g.group for g in groups}
    for g in groups:
        seen = [g.name]
        up = g.group
        while up is not None:
            if up in seen:
                cycle = " -> ".join((*seen[seen.index(up):], up))
                problem = f"groups nest in a cycle ({cycle}), got {show(g.group)}"
                raise StructureError(problem, ("groups", g.name, "group"))
            seen.append(up)
            up = parent.get(up)


def _refuse_instance_clashes(actors: list[_Actor], cron: Iterable[str]) -> None:
    taken = {a.name for a in actors if a.instances is None}
    cron_names = set(cron)
    for a in actors:
        if a.instances is None:
            continue
        names = [f"{a.name}.{i}" for i in range(a.instances)]
        clash = next((n for n in names if n in taken or n in cron_names), None)
        if clash is not None:
            table = "actors" if clash in taken else "cron"
            raise StructureError(
                f"instance {clash} would take the name of {table}.{clash}, got {a.instances}",
                ("actors", a.name, "instances"),
            )
        taken.update(f"{a.name}.{i}" for i in range(a.instances))
