"""Errors of the control plane; all are :class:`~supervisor.exceptions.ControlError`."""

from __future__ import annotations

from pathlib import Path

from ..exceptions import ControlError

__all__ = ["BadSocketPath", "NoReply", "NotListening", "RequestFailed", "SocketInUse"]


class NotListening(ControlError):
    """No supervisor answers at the control socket (missing file or refused)."""

    def __init__(self, path: str | Path, reason: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(
            f"no supervisor is listening at {self.path}"
            + (f" ({reason})" if reason else "")
            + "; start one with `actorsup run CONFIG`, or point --socket / -c at a running one"
        )

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.path, self.reason))


class RequestFailed(ControlError):
    """The supervisor answered a request with an error reply."""

    def __init__(self, cmd: str, code: str, message: str) -> None:
        self.cmd = cmd
        self.code = code
        self.message = message
        super().__init__(message)

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        return (type(self), (self.cmd, self.code, self.message))


class SocketInUse(ControlError):
    """Another live supervisor already answers at the control socket path."""

    def __init__(self, path: str | Path, reason: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(
            f"control socket {self.path} is in use"
            + (f" ({reason})" if reason else " by another running supervisor")
            + "; stop it with `actorsup shutdown --socket "
            + f"{self.path}` or set another [supervisor] control_socket"
        )

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.path, self.reason))


class NoReply(ControlError):
    """The supervisor closed the connection before it replied (e.g. it is shutting down)."""

    def __init__(self, path: str | Path, cmd: str) -> None:
        self.path = str(path)
        self.cmd = cmd
        super().__init__(f"the supervisor at {self.path} closed the connection without replying "
                         f"to {cmd!r} (it may be shutting down)")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.path, self.cmd))


class BadSocketPath(ControlError):
    """The configured control socket path cannot be used (a config problem, not a conflict)."""

    SERVER_ADVICE = "set another [supervisor] control_socket (or pass --socket PATH)"
    CLIENT_ADVICE = "point --socket or -c at a running supervisor's socket"

    def __init__(self, path: str | Path, problem: str, advice: str = SERVER_ADVICE) -> None:
        self.path = str(path)
        self.problem = problem
        self.advice = advice
        super().__init__(f"control socket {self.path}: {problem}; {advice}")

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        return (type(self), (self.path, self.problem, self.advice))
