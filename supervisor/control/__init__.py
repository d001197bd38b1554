"""The control plane: a Unix-socket server inside the supervisor, and the CLI side.

docs/CONTROL_PROTOCOL.md describes the wire protocol.
"""

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

__all__ = [
    "COMMANDS",
    "MAX_REQUEST",
    "BadSocketPath",
    "ControlClient",
    "ControlError",
    "ControlServer",
    "ControlTarget",
    "NoReply",
    "NotListening",
    "PeerCred",
    "RequestFailed",
    "SocketInUse",
    "add_control_commands",
    "arequest",
    "peer_credentials",
    "request",
    "socket_path_for",
]
