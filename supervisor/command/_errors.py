"""The errors of command actors: bad config values (ValueError) and programs that cannot run."""

from __future__ import annotations

import json
from typing import Any

from ..exceptions import SupervisorError

__all__ = ["MISSING", "CommandError", "ProbeError", "ProgramError", "SpecError", "show"]

MISSING: Any = object()  # no value to show: the message has no ``, got ...`` part


def show(value: Any) -> str:
    """A value as the config's error messages show it (TOML-ish, JSON spelling)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


class SpecError(ValueError):
    """A bad value in a command actor's table; ``str(err)`` is ``problem, got VALUE``.

    ``key`` is the path below the checked value (``"http"`` in a probe table,
    ``""`` for the value itself), so the config layer can report
    ``file: actors.NAME.probe.http: problem, got VALUE``.
    """

    def __init__(self, problem: str, value: Any = MISSING, key: str = "") -> None:
        self.problem = problem
        self.value = value
        self.key = key
        super().__init__(problem if value is MISSING else f"{problem}, got {show(value)}")

    @property
    def message(self) -> str:
        """``problem, got VALUE`` without the key: what follows ``key.path: `` in the config's error."""
        return str(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problem, self.value, self.key))


class CommandError(SpecError):
    """``command`` (or an exec probe's argv) is not a usable argv."""


class ProbeError(SpecError):
    """A ``probe`` table is malformed."""


_CODES = (
    ("program not found", "program_not_found"),
    ("interpreter not found", "program_not_found"),
    ("not executable", "program_not_executable"),
    ("working directory", "cwd_not_found"),
)


class ProgramError(SupervisorError):
    """The program cannot be run: ``reason`` is the text for ``actor.exited``, ``code`` its category.

    ``code`` is ``program_not_found``, ``program_not_executable``,
    ``cwd_not_found`` or ``spawn_error`` (anything else).
    """

    def __init__(self, program: str, reason: str) -> None:
        self.program = program
        self.reason = reason
        self.code = next((code for prefix, code in _CODES if reason.startswith(prefix)), "spawn_error")
        super().__init__(reason)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.program, self.reason))
