"""Config: one schema of frozen typed specs, validated once when it is loaded.

- ``_types``: the value types of keys (bounds, choices, sizes, paths) and ``Invalid``.
- ``_schema``: the specs, one class per table; a field is a key.
- ``_checks``: checks across the fields of one spec.
- ``_convert``: raw TOML values into the field types, with our messages.
- ``_targets``: importing targets and checking that they can run.
- ``_load``: files and documents into a :class:`Config`; ``file: key.path: problem`` errors.
"""

from ._load import check_spec as check_spec
from ._load import load_config as load_config
from ._load import parse_config as parse_config
from ._schema import ActorSpec as ActorSpec
from ._schema import Config as Config
from ._schema import CronSpec as CronSpec
from ._schema import LogsSettings as LogsSettings
from ._schema import SinkSpec as SinkSpec
from ._schema import SupervisorSettings as SupervisorSettings
from ._targets import import_target as import_target
from ._types import LEVELS as LEVELS
from ._types import parse_size as parse_size

__all__ = [
    "LEVELS",
    "ActorSpec",
    "Config",
    "CronSpec",
    "LogsSettings",
    "SinkSpec",
    "SupervisorSettings",
    "check_spec",
    "import_target",
    "load_config",
    "parse_config",
    "parse_size",
]
