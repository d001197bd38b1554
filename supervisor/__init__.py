"""actorsup's supervisor side (the parent process): the public Python API.

The names load on first use (PEP 562), so that `import supervisor`, and with it
every `actorsup` command, pays only for what it uses: a control command never
imports the supervisor core, structlog or prometheus_client.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_WHERE = {
    "ActorState": ".lifecycle._states",
    "Config": ".config",
    "ConfigError": ".exceptions",
    "ControlError": ".exceptions",
    "CronManager": ".cron",
    "EventBus": ".core._bus",
    "HandshakeTimeout": ".exceptions",
    "HeartbeatMonitor": ".monitor",
    "Metrics": ".metrics",
    "ProtocolError": ".exceptions",
    "Supervisor": "._supervisor",
    "SupervisorError": ".exceptions",
    "UnknownActor": ".exceptions",
    "load_config": ".config",
    "parse_config": ".config",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'supervisor' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
