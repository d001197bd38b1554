"""The keys only a command actor has (``command``, ``notify``, ``probe``, ``user``), validated.

The config layer checks the keys every actor has (``env``, ``cwd``,
``stop_timeout``, the restart policy...) and hands the actor's table to
:func:`parse_command_spec`, which returns the frozen :class:`CommandSpec` or
raises a :class:`~supervisor.command._errors.SpecError` whose ``key`` is the
path below ``actors.NAME`` (``"probe.http"``, ``"user"``), so the message is
``file: actors.NAME.KEY: problem, got VALUE``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._argv import parse_command
from ._errors import MISSING, CommandError, ProbeError, SpecError
from ._privileges import Credentials, resolve_user
from ._probe import ProbeSpec, parse_probe

__all__ = ["COMMAND_KEYS", "CommandSpec", "parse_command_spec"]

COMMAND_KEYS = frozenset({"command", "notify", "probe", "user"})


@dataclass(frozen=True, slots=True)
class CommandSpec:
    argv: tuple[str, ...]
    notify: bool = False
    probe: ProbeSpec | None = None
    credentials: Credentials | None = None


def parse_command_spec(table: Mapping[str, Any], *, euid: int | None = None, egid: int | None = None) -> CommandSpec:
    """The command keys of ``[actors.NAME]`` with ``kind = "command"``, or :class:`SpecError`."""
    if "target" in table:
        raise SpecError('kind = "command" runs `command`, not a Python class: remove target', table["target"],
                        "target")
    if "command" not in table:
        raise SpecError('required key is missing (kind = "command" needs command = ["program", "arg"])', MISSING,
                        "command")
    try:
        argv = parse_command(table["command"])
    except CommandError as exc:
        raise CommandError(exc.problem, exc.value, "command") from None
    notify = table.get("notify", False)
    if not isinstance(notify, bool):
        raise SpecError("expected true or false", notify, "notify")
    probe = None
    if "probe" in table:
        try:
            probe = parse_probe(table["probe"])
        except ProbeError as exc:
            raise ProbeError(exc.problem, exc.value, "probe" + (f".{exc.key}" if exc.key else "")) from None
    credentials = resolve_user(
        table.get("user"), euid=os.geteuid() if euid is None else euid, egid=os.getegid() if egid is None else egid
    )
    return CommandSpec(argv, notify, probe, credentials)
