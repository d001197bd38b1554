"""The value types of config keys, as ``Annotated`` markers the converter reads.

A spec field's annotation is its whole schema: ``Annotated[float, Range(gt=0)]``
accepts a number > 0, ``Literal[...]`` one of its values, and ``Parse(fn)``
hands the raw TOML value to ``fn`` (sizes, paths, addresses, level names).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

__all__ = [
    "LEVELS",
    "NAME",
    "Address",
    "AtLeastOne",
    "Count",
    "Folder",
    "Invalid",
    "Level",
    "Match",
    "Module",
    "Name",
    "NonNegative",
    "Parse",
    "Port",
    "Positive",
    "Range",
    "Size",
    "SomePath",
    "StopSignal",
    "Target",
    "parse_size",
    "show",
]


class Invalid(Exception):
    """A bad value: ``problem`` at ``path`` (keys and indexes) inside the value being read."""

    def __init__(self, problem: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path = path

    def within(self, key: str | int) -> Invalid:
        return Invalid(self.problem, (key, *self.path))


def show(value: Any) -> str:
    """``value`` as it would be written in the config (JSON), cut to one short line."""
    try:
        text = json.dumps(value)
    except TypeError:
        text = str(value)  # TOML dates and times
    except (ValueError, RecursionError):  # circular, or nested past the stack
        text = f"a {type(value).__name__} nested too deeply to show"
    return text if len(text) <= 200 else text[:197] + "..."


@dataclass(frozen=True)
class Range:
    """A numeric bound, shown in messages as "> 0", ">= 1" or "from 0 to 64"."""

    gt: float | None = None
    ge: float | None = None
    le: float | None = None

    def holds(self, value: float) -> bool:
        return (
            (self.gt is None or value > self.gt)
            and (self.ge is None or value >= self.ge)
            and (self.le is None or value <= self.le)
        )

    def __str__(self) -> str:
        if self.ge is not None and self.le is not None:
            return f"from {self.ge:g} to {self.le:g}"
        parts = [f"{op} {v:g}" for op, v in ((">", self.gt), (">=", self.ge), ("<=", self.le)) if v is not None]
        return " and ".join(parts)


@dataclass(frozen=True)
class Match:
    """A string that matches ``pattern`` in full; ``expected`` says what is accepted."""

    pattern: str
    expected: str

    def holds(self, value: str) -> bool:
        return re.fullmatch(self.pattern, value, re.DOTALL) is not None


@dataclass(frozen=True)
class Parse:
    """``fn(raw, base_dir)`` builds the value; a ValueError says what is accepted."""

    fn: Callable[[Any, Path], Any]


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_size(value: object) -> int:
    """``"10MiB"`` -> 10485760. Raise ValueError with the accepted forms."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("expected a size >= 0")
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError('expected a size such as 1048576, "512KiB", "10MiB" or "1GB"')
    number, unit = match.groups()
    return int(float(number) * _UNITS[(unit or "b").lower()])


def _path(value: object, base_dir: Path) -> Path:
    """A path, relative ones taken from the config file's folder."""
    if not isinstance(value, str) or not value or "\0" in value:
        raise ValueError("expected a path (a non-empty string without NUL characters)")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def _address(value: object, base_dir: Path) -> tuple[str, int]:
    host, sep, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError('expected "host:port"')
    return host.strip("[]"), int(port)


LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def _level(value: object, base_dir: Path) -> int:
    if not isinstance(value, str) or value not in LEVELS:
        raise ValueError("expected one of " + ", ".join(map(show, sorted(LEVELS))))
    return LEVELS[value]


Positive = Annotated[float, Range(gt=0)]
NonNegative = Annotated[float, Range(ge=0)]
Count = Annotated[int, Range(ge=0)]
AtLeastOne = Annotated[int, Range(ge=1)]
Port = Annotated[int, Range(ge=0, le=65535)]
NAME = Match(r"[A-Za-z0-9_.-]+", "a string made of letters, digits, '_', '.' or '-'")
Name = Annotated[str, NAME]  # of an actor, a cron task, ...
Target = Annotated[str, Match(r"[^:]+:.+", '"module:Class"')]
Module = Annotated[str, Match(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", 'a module name such as "myapp.models"')]
Size = Annotated[int, Parse(lambda value, _: parse_size(value))]  # bytes, or "10MiB"
SomePath = Annotated[Path, Parse(_path)]
Folder = Annotated[str, Parse(lambda value, base: str(_path(value, base)))]
Address = Annotated[tuple[str, int], Parse(_address)]  # "host:port"
Level = Annotated[int, Parse(_level)]  # a level name, kept as its number
StopSignal = Annotated[str, Parse(lambda value, _: _stop_signal(value))]  # "SIGINT", kept by name


def _stop_signal(value: object) -> str:
    from ..tree._validate import parse_stop_signal

    return parse_stop_signal(value)
