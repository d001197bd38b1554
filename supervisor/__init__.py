"""actorsup's supervisor side (the parent process)."""

from .config import Config as Config
from .config import load_config as load_config
from .exceptions import ConfigError as ConfigError
from .exceptions import ProtocolError as ProtocolError
from .exceptions import SupervisorError as SupervisorError

__all__ = ["Config", "ConfigError", "ProtocolError", "SupervisorError", "load_config"]
