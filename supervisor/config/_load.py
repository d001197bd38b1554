"""Load a TOML config, once, into the frozen specs of ``_schema``.

Every problem becomes one :class:`~supervisor.exceptions.ConfigError` line,
``file: key.path: problem, got VALUE``: the converter and the checks raise
:class:`~._types.Invalid` with the path inside the document, and only this
module knows the file's name.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from ..exceptions import ConfigError
from ..tree._validate import StructureError, check_tables
from ._checks import CHECKS
from ._convert import MAX_DEPTH, UNKNOWN_KEY, at, build, keys_of, read_keys
from ._schema import ActorSpec, Config, CronSpec, GroupSpec, LogsSettings, RaySettings, SupervisorSettings
from ._targets import check_runnable, class_interval
from ._types import NAME, Invalid, show

__all__ = ["check_spec", "load_config", "parse_config"]

# The tables of a config file; each is read by a function below.
SECTIONS = ("supervisor", "groups", "actors", "cron", "logs", "ray")
# Actor keys that, when unset, come from [supervisor].
INHERITED = ("heartbeat_interval", "heartbeat_timeout", "start_timeout", "stop_timeout")
_DEFAULTS = SupervisorSettings()

S = TypeVar("S", bound=ActorSpec)


def load_config(path: str | Path, *, import_targets: bool = True) -> Config:
    """Read, parse and validate ``path``; raise :class:`ConfigError` on any problem.

    ``import_targets=False`` skips importing the actors' modules and looking at
    the file system for ``cwd`` (a CLI client must not run user code just to
    find the control socket).
    """
    path = Path(path)
    label = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(label, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(label, "", f"cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(label, "", f"invalid TOML: {exc}") from None
    except RecursionError:  # the parser recurses once per level of [ or {
        raise ConfigError(
            label, "", f"invalid TOML: arrays or tables nested too deeply (at most {MAX_DEPTH} levels are accepted)"
        ) from None
    config = parse_config(data, source=path.resolve(), label=label, import_targets=import_targets)
    return msgspec.structs.replace(config, table_order=table_order(text))


_HEADER = re.compile(  # [actors.NAME], [groups."NAME"], [ actors . 'NAME' ]
    r"^[ \t]*\[[ \t]*(groups|actors)[ \t]*\.[ \t]*"
    r"""(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))[ \t]*\]""",
    re.MULTILINE,
)


def table_order(text: str) -> tuple[str, ...]:
    """The names of the ``[groups.NAME]`` and ``[actors.NAME]`` tables in the order of the file.

    TOML keeps order within a section but not across the two, and member order
    in a group is file order (``tree.build_tree``). Tables written inline are
    not found here; they keep their order within their section.
    """
    names = []
    for match in _HEADER.finditer(text):
        quoted, literal, bare = match.group(2, 3, 4)
        names.append(bare if bare is not None else literal if literal is not None else _unescape(quoted))
    return tuple(dict.fromkeys(names))


def _unescape(quoted: str) -> str:
    try:
        value: str = tomllib.loads(f'k = "{quoted}"')["k"]
    except tomllib.TOMLDecodeError:
        return quoted
    return value


def parse_config(
    data: dict[str, Any],
    *,
    source: Path | None = None,
    label: str = "<config>",
    import_targets: bool = True,
) -> Config:
    """Validate an already-parsed TOML document."""
    base_dir = source.parent if source else Path.cwd()
    try:
        return _document(data, source, base_dir, import_targets)
    except Invalid as exc:
        raise ConfigError(label, _dotted(exc.path), exc.problem) from None


def check_spec(spec: ActorSpec) -> None:
    """Check a spec built in code (not read from a file) as the loader would.

    Raise :class:`ConfigError` whose ``path`` is the key inside the spec.
    """
    given = {key: getattr(spec, key) for key in keys_of(type(spec))}
    try:
        read_keys(given, type(spec), Path.cwd())
        CHECKS[type(spec)](spec)
    except Invalid as exc:
        raise ConfigError(f"<{type(spec).__name__} {spec.name!r}>", _dotted(exc.path), exc.problem) from None


def _dotted(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _document(data: dict[str, Any], source: Path | None, base_dir: Path, import_targets: bool) -> Config:
    for key, value in data.items():
        if key not in SECTIONS:
            raise Invalid(UNKNOWN_KEY, (key,))
        if not isinstance(value, dict):
            raise Invalid(f"expected a table, got {show(value)}", (key,))
    sup = at("supervisor", _supervisor, data.get("supervisor", {}), base_dir)

    def named(section: str, cls: type[S], base_class: str) -> tuple[S, ...]:
        specs = []
        for name, raw in data.get(section, {}).items():
            try:
                given = read_keys(raw, cls, base_dir)
                if cls is CronSpec and import_targets and _takes_class_interval(given):
                    given["interval"] = class_interval(given["target"], base_dir)
                spec = _actor(cls, name, given, sup)
                if spec.kind == "command":
                    spec = _command(spec, raw)
                if import_targets:
                    check_runnable(spec, base_class, base_dir)
            except Invalid as exc:
                raise exc.within(name).within(section) from None
            specs.append(spec)
        return tuple(specs)

    actors = named("actors", ActorSpec, "Actor")
    cron = named("cron", CronSpec, "CronTask")
    for spec in cron:
        if any(a.name == spec.name for a in actors):
            raise Invalid(f"name already used by actors.{spec.name}", ("cron", spec.name))
    groups = []
    for name, raw in data.get("groups", {}).items():
        try:
            if not NAME.holds(name):
                raise Invalid("names may hold letters, digits, '_', '.' and '-' only")
            groups.append(build(GroupSpec, {"name": name, **read_keys(raw, GroupSpec, base_dir)}))
        except Invalid as exc:
            raise exc.within(name).within("groups") from None
    try:  # across tables: group names, nesting, depends_on, instances
        check_tables(data.get("groups", {}), data.get("actors", {}), data.get("cron", {}))
    except StructureError as exc:
        raise Invalid(exc.problem, exc.path) from None
    logs = at("logs", _logs, data.get("logs", {}), base_dir)
    ray = at("ray", _ray, data.get("ray", {}), base_dir)
    return Config(
        source=source, supervisor=sup, actors=actors, cron=cron, groups=tuple(groups), logs=logs, ray=ray
    )


def _ray(raw: Any, base_dir: Path) -> RaySettings:
    settings: RaySettings = build(RaySettings, read_keys(raw, RaySettings, base_dir))
    return settings


def _supervisor(raw: Any, base_dir: Path) -> SupervisorSettings:
    given = read_keys(raw, SupervisorSettings, base_dir)
    given.setdefault("heartbeat_timeout", 2 * given.get("heartbeat_interval", _DEFAULTS.heartbeat_interval))
    given.setdefault("state_dir", base_dir / ".actorsup")
    settings: SupervisorSettings = build(SupervisorSettings, given)
    return settings


def _actor(cls: type[S], name: str, given: dict[str, Any], sup: SupervisorSettings) -> S:
    if not NAME.holds(name):
        raise Invalid("names may hold letters, digits, '_', '.' and '-' only")
    inherited = {key: getattr(sup, key) for key in INHERITED}
    if "heartbeat_interval" in given:
        inherited["heartbeat_timeout"] = 2 * given["heartbeat_interval"]
    spec: S = build(cls, {"name": name, **inherited, **given})
    return spec


def _takes_class_interval(given: dict[str, Any]) -> bool:
    """A cron task that sets neither ``interval`` nor ``schedule`` runs at its class's ``interval``."""
    return "target" in given and "interval" not in given and "schedule" not in given


def _command(spec: S, raw: dict[str, Any]) -> S:
    """A command actor's own keys, parsed by supervisor.command (imported only for such a config)."""
    from ..command._errors import SpecError
    from ..command._spec import parse_command_spec

    # `group` names a supervision group (design: supervision trees), never a Unix group here
    table = {key: value for key, value in raw.items() if key != "group"}
    try:
        command = parse_command_spec(table)
    except SpecError as exc:
        raise Invalid(str(exc), tuple(exc.key.split(".")) if exc.key else ()) from None
    return msgspec.structs.replace(
        spec, command_spec=command, watchdog_from_ready="heartbeat_timeout" in raw
    )


def _logs(raw: Any, base_dir: Path) -> LogsSettings:
    given = read_keys(raw, LogsSettings, base_dir)
    if not given.get("sinks"):
        return LogsSettings()
    logs: LogsSettings = build(LogsSettings, given)
    return logs
