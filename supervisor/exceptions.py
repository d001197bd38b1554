"""The one exception hierarchy of actorsup.

Every error carries structured fields, so callers can branch on them instead of
parsing messages. Timeout errors deliberately do not subclass ``TimeoutError``:
a generic ``except TimeoutError`` elsewhere must not swallow them.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConfigError",
    "ControlError",
    "HandshakeTimeout",
    "ProtocolError",
    "SupervisorError",
    "UnknownActor",
]


class SupervisorError(Exception):
    """Base class of every error raised by actorsup."""


class ConfigError(SupervisorError):
    """A config file is missing, malformed or holds a bad value.

    ``str(err)`` is the one-line message the CLI prints:
    ``actorsup.toml: actors.fetcher.heartbeat_timeout: expected a number > 0, got "soon"``.
    """

    def __init__(self, file: str, path: str, problem: str) -> None:
        self.file = file
        self.path = path
        self.problem = problem
        where = f"{file}: {path}: " if path else f"{file}: "
        super().__init__(where + problem)

    def __reduce__(self) -> tuple[Any, ...]:  # keep it picklable despite the custom __init__
        return (type(self), (self.file, self.path, self.problem))


class ProtocolError(SupervisorError):
    """A peer sent a frame that is not valid for the channel protocol."""

    def __init__(self, reason: str, actor: str | None = None) -> None:
        self.reason = reason
        self.actor = actor
        super().__init__(reason if actor is None else f"actor {actor!r}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, self.actor))


class HandshakeTimeout(SupervisorError):
    """A child did not finish the handshake within its start timeout."""

    def __init__(self, actor: str, timeout: float, stage: str) -> None:
        self.actor = actor
        self.timeout = timeout
        self.stage = stage
        super().__init__(
            f"actor {actor!r}: no {stage} within start_timeout={timeout:g}s"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.actor, self.timeout, self.stage))


class UnknownActor(SupervisorError):
    """A request named an actor or cron task that the supervisor does not have."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no actor or cron task named {name!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name,))


class ControlError(SupervisorError):
    """A control request could not be served (bad request, no supervisor, ...)."""
