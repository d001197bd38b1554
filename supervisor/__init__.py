"""actorsup's supervisor side (the parent process): the public Python API."""

from ._supervisor import Supervisor as Supervisor
from .config import Config as Config
from .config import load_config as load_config
from .config import parse_config as parse_config
from .core._bus import EventBus as EventBus
from .cron import CronManager as CronManager
from .exceptions import ConfigError as ConfigError
from .exceptions import ControlError as ControlError
from .exceptions import HandshakeTimeout as HandshakeTimeout
from .exceptions import ProtocolError as ProtocolError
from .exceptions import SupervisorError as SupervisorError
from .exceptions import UnknownActor as UnknownActor
from .lifecycle._states import ActorState as ActorState
from .metrics import Metrics as Metrics
from .monitor import HeartbeatMonitor as HeartbeatMonitor

__all__ = [
    "ActorState",
    "Config",
    "ConfigError",
    "ControlError",
    "CronManager",
    "EventBus",
    "HandshakeTimeout",
    "HeartbeatMonitor",
    "Metrics",
    "ProtocolError",
    "Supervisor",
    "SupervisorError",
    "UnknownActor",
    "load_config",
    "parse_config",
]
