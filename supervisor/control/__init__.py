"""The control plane: a Unix-socket server inside the supervisor, and the CLI side.

docs/CONTROL_PROTOCOL.md describes the wire protocol. The names load on first
use (PEP 562): a CLI command imports the client side only, never the server's
anyio and structlog.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..exceptions import ControlError as ControlError
    from ._api import ControlTarget as ControlTarget
    from ._client import ControlClient as ControlClient
    from ._client import arequest as arequest
    from ._client import request as request
    from ._commands import add_control_commands as add_control_commands
    from ._commands import socket_path_for as socket_path_for
    from ._errors import BadSocketPath as BadSocketPath
    from ._errors import NoReply as NoReply
    from ._errors import NotListening as NotListening
    from ._errors import RequestFailed as RequestFailed
    from ._errors import SocketInUse as SocketInUse
    from ._server import ControlServer as ControlServer
    from ._server import PeerCred as PeerCred
    from ._server import peer_credentials as peer_credentials
    from ._wire import COMMANDS as COMMANDS
    from ._wire import MAX_REQUEST as MAX_REQUEST

_WHERE = {
    "COMMANDS": "._wire",
    "MAX_REQUEST": "._wire",
    "BadSocketPath": "._errors",
    "ControlClient": "._client",
    "ControlError": "..exceptions",
    "ControlServer": "._server",
    "ControlTarget": "._api",
    "NoReply": "._errors",
    "NotListening": "._errors",
    "PeerCred": "._server",
    "RequestFailed": "._errors",
    "SocketInUse": "._errors",
    "add_control_commands": "._commands",
    "arequest": "._client",
    "peer_credentials": "._server",
    "request": "._client",
    "socket_path_for": "._commands",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'supervisor.control' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
