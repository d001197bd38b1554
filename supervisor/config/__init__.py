"""Config: one schema of frozen typed specs, validated once when it is loaded.

- ``_types``: the value types of keys (bounds, choices, sizes, paths) and ``Invalid``.
- ``_schema``: the specs, one class per table; a field is a key.
- ``_checks``: checks across the fields of one spec, keyed by spec class.
- ``_convert``: raw TOML values into the field types, with our messages.
- ``_targets``: importing targets and checking that they can run.
- ``_load``: files and documents into a :class:`Config`; ``file: key.path: problem`` errors.

Adding a key is one line in ``_schema``: ``restart_delay: NonNegative = 0.0`` (an
enum is a ``Literal[...]``, a table of fields a new spec class). A rule across keys
goes in that class's check in ``_checks``; one that needs imports or the file system
goes in ``_targets.check_runnable``. A key that is not in ``[cron.NAME]`` goes into
``CronSpec._not_keys``. A new top-level table is a field of :class:`Config`, a name
in ``_load.SECTIONS`` and a few lines in ``_load._document``.
"""

from ._load import check_spec as check_spec
from ._load import load_config as load_config
from ._load import parse_config as parse_config
from ._schema import ActorSpec as ActorSpec
from ._schema import Config as Config
from ._schema import CronSpec as CronSpec
from ._schema import GroupSpec as GroupSpec
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
    "GroupSpec",
    "LogsSettings",
    "SinkSpec",
    "SupervisorSettings",
    "check_spec",
    "import_target",
    "load_config",
    "parse_config",
    "parse_size",
]
