"""Why `actorsup run` could not start, as the usual one-line errors and an exit status.

Start-up failures surface from inside task groups, wrapped in exception
groups: a user gets one line per distinct cause instead of the traceback.
Exit 2 is a config problem to fix, 1 a conflict at run time (something else
holds the socket or the port). Unexpected exceptions are bugs and keep
their traceback.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

from ..config import Config
from ..control import BadSocketPath, SocketInUse
from ..exceptions import ConfigError, SupervisorError
from ..ray._backend import RayUnavailable

__all__ = ["explain"]

EXIT_CONFIG = 2
EXIT_CONFLICT = 1


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _one(exc: BaseException, config: Config) -> tuple[int, str] | None:
    if isinstance(exc, (ConfigError, BadSocketPath, RayUnavailable)):  # Ray: not there, or not installed
        return EXIT_CONFIG, str(exc)
    if isinstance(exc, SocketInUse):
        return EXIT_CONFLICT, str(exc)
    if isinstance(exc, SupervisorError):
        return EXIT_CONFLICT, str(exc)
    port = config.supervisor.metrics_port
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE and port is not None:
        # The metrics endpoint is the only TCP listener actorsup opens.
        return EXIT_CONFLICT, (f"metrics_port {port}: 127.0.0.1:{port} is already in use by another "
                               "process; stop that process or set another [supervisor] metrics_port")
    if isinstance(exc, OSError):
        return EXIT_CONFLICT, f"cannot start: {exc}"
    return None


def explain(exc: BaseException, config: Config) -> tuple[int, list[str]] | None:
    """``(exit status, lines)`` for an expected start-up failure; None for a bug."""
    found: list[tuple[int, str]] = []
    for leaf in _leaves(exc):
        one = _one(leaf, config)
        if one is None:
            return None
        if one not in found:
            found.append(one)
    if not found:
        return None
    return max(code for code, _ in found), [line for _, line in found]
