"""Load and validate a TOML config, once, into frozen typed objects.

msgspec does the type and range checks against the ``_Raw*`` schemas below;
this module translates its messages into the one-line form the CLI prints
(``file: key.path: problem, got VALUE``) and then checks what a schema cannot:
cron expressions, time zones, importable targets and mutually exclusive keys.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from .exceptions import ConfigError

__all__ = [
    "ActorSpec",
    "Config",
    "CronSpec",
    "LogsSettings",
    "SinkSpec",
    "SupervisorSettings",
    "load_config",
    "parse_config",
    "parse_size",
]

Positive = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Count = Annotated[int, msgspec.Meta(ge=0)]
Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]+$")]
Size = int | str  # bytes, or "10MiB"
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}

_Struct = dict(forbid_unknown_fields=True, frozen=True, kw_only=True)


class _RawSupervisor(msgspec.Struct, **_Struct):
    heartbeat_interval: Positive = 30.0
    heartbeat_timeout: Positive | None = None
    start_timeout: Positive = 10.0
    stop_timeout: NonNegative = 5.0
    control_socket: str | None = None
    state_dir: str | None = None
    backend: Literal["trio", "asyncio"] = "trio"
    spare_processes: Count = 1
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] | None = None
    log_buffer: Count = 1000
    channel_ring: Size = "128KiB"


class _RawRestartable(msgspec.Struct, **_Struct):
    target: str
    heartbeat_interval: Positive | None = None
    heartbeat_timeout: Positive | None = None
    start_timeout: Positive | None = None
    stop_timeout: NonNegative | None = None
    max_restarts: Count = 5
    restart_window: Positive = 60.0
    backoff_initial: NonNegative = 0.1
    backoff_max: NonNegative = 30.0
    backoff_reset: Positive = 30.0
    args: dict[str, Any] = {}
    env: dict[str, str] = {}
    cwd: str | None = None
    health_interval: Positive = 10.0
    health_timeout: Positive = 5.0
    health_failure_threshold: Annotated[int, msgspec.Meta(ge=1)] = 3
    max_rss: Size | None = None
    max_cpu: Positive | None = None
    cpu_window: Positive = 10.0


class _RawActor(_RawRestartable, **_Struct):
    kind: Literal["process", "task"] = "process"
    restart: Literal["permanent", "transient", "temporary"] = "permanent"


class _RawCron(_RawRestartable, **_Struct):
    interval: Positive | None = None
    schedule: str | None = None
    timezone: str | None = None
    jitter: NonNegative = 0.0
    overlap: Literal["skip", "queue", "replace"] = "skip"
    timeout: Positive | None = None
    misfire_grace: NonNegative = 1.0
    catch_up: bool = False
    isolation: Literal["resident", "per-run"] = "resident"
    history_limit: Annotated[int, msgspec.Meta(ge=1)] = 100


class _RawSink(msgspec.Struct, **_Struct):
    type: Literal["stdout", "file", "tcp", "syslog", "relp"]
    path: str | None = None
    max_bytes: Size = "10MiB"
    backups: Count = 5
    daily: bool = True
    address: str | None = None
    spool_dir: str | None = None
    spool_max_bytes: Size = "256MiB"
    spool_fsync: Literal["never", "batch", "always"] = "batch"
    queue_size: Annotated[int, msgspec.Meta(ge=1)] = 10000
    level: Literal["debug", "info", "warning", "error", "critical"] = "debug"
    actors: list[Name] | None = None
    app_name: str = "actorsup"


class _RawLogs(msgspec.Struct, **_Struct):
    sinks: list[dict[str, Any]] = []


class _RawTop(msgspec.Struct, **_Struct):
    supervisor: dict[str, Any] = {}
    actors: dict[str, dict[str, Any]] = {}
    cron: dict[str, dict[str, Any]] = {}
    logs: dict[str, Any] = {}


# --- resolved, frozen objects ----------------------------------------------
class SupervisorSettings(msgspec.Struct, frozen=True, kw_only=True):
    heartbeat_interval: float = 30.0
    heartbeat_timeout: float = 60.0
    start_timeout: float = 10.0
    stop_timeout: float = 5.0
    control_socket: Path | None = None
    state_dir: Path = Path(".actorsup")
    backend: str = "trio"
    spare_processes: int = 1
    metrics_port: int | None = None
    log_buffer: int = 1000
    channel_ring: int = 128 * 1024


class ActorSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One supervised actor (``[actors.NAME]``) or cron task (``[cron.NAME]``)."""

    name: str
    target: str
    kind: str = "process"
    restart: str = "permanent"
    heartbeat_interval: float = 30.0
    heartbeat_timeout: float = 60.0
    start_timeout: float = 10.0
    stop_timeout: float = 5.0
    max_restarts: int = 5
    restart_window: float = 60.0
    backoff_initial: float = 0.1
    backoff_max: float = 30.0
    backoff_reset: float = 30.0
    args: dict[str, Any] = {}
    env: dict[str, str] = {}
    cwd: str | None = None
    health_interval: float = 10.0
    health_timeout: float = 5.0
    health_failure_threshold: int = 3
    max_rss: int | None = None
    max_cpu: float | None = None
    cpu_window: float = 10.0


class CronSpec(ActorSpec, frozen=True, kw_only=True):
    interval: float | None = None
    schedule: str | None = None
    timezone: str | None = None
    jitter: float = 0.0
    overlap: str = "skip"
    timeout: float | None = None
    misfire_grace: float = 1.0
    catch_up: bool = False
    isolation: str = "resident"
    history_limit: int = 100


class SinkSpec(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    path: Path | None = None
    max_bytes: int = 10 * 1024**2
    backups: int = 5
    daily: bool = True
    address: tuple[str, int] | None = None
    spool_dir: Path | None = None
    spool_max_bytes: int = 256 * 1024**2
    spool_fsync: str = "batch"
    queue_size: int = 10000
    level: int = 10
    actors: frozenset[str] | None = None
    app_name: str = "actorsup"


class LogsSettings(msgspec.Struct, frozen=True, kw_only=True):
    sinks: tuple[SinkSpec, ...] = (SinkSpec(type="stdout"),)


class Config(msgspec.Struct, frozen=True, kw_only=True):
    source: Path | None
    supervisor: SupervisorSettings = SupervisorSettings()
    actors: tuple[ActorSpec, ...] = ()
    cron: tuple[CronSpec, ...] = ()
    logs: LogsSettings = LogsSettings()

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    def spec(self, name: str) -> ActorSpec | None:
        for spec in (*self.actors, *self.cron):
            if spec.name == name:
                return spec
        return None


# --- loading -----------------------------------------------------------------
def load_config(path: str | Path, *, import_targets: bool = True) -> Config:
    """Read, parse and validate ``path``; raise :class:`ConfigError` on any problem.

    ``import_targets=False`` skips importing the actors' modules (a CLI client
    must not run user code just to find the control socket).
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
    return parse_config(data, source=path.resolve(), label=label, import_targets=import_targets)


def parse_config(
    data: dict[str, Any],
    *,
    source: Path | None = None,
    label: str = "<config>",
    import_targets: bool = True,
) -> Config:
    """Validate an already-parsed TOML document."""
    check = _Checker(label, source.parent if source else Path.cwd())
    top = check.convert(data, _RawTop, "")
    sup = check.supervisor(top.supervisor)
    actors = tuple(
        check.actor(name, raw, sup, import_targets) for name, raw in top.actors.items()
    )
    cron = tuple(
        check.cron(name, raw, sup, import_targets) for name, raw in top.cron.items()
    )
    clash = set(top.actors) & set(top.cron)
    if clash:
        name = sorted(clash)[0]
        raise ConfigError(label, f"cron.{name}", "name already used by actors." + name)
    raw_logs = check.convert(top.logs, _RawLogs, "logs")
    sinks = tuple(
        check.sink(i, raw) for i, raw in enumerate(raw_logs.sinks)
    ) or LogsSettings().sinks
    return Config(
        source=source,
        supervisor=sup,
        actors=actors,
        cron=cron,
        logs=LogsSettings(sinks=sinks),
    )


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_size(value: int | str) -> int:
    """``"10MiB"`` -> 10485760. Raise ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 1048576 or \"10MiB\"")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("expected a size >= 0")
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError('expected a size such as 1048576, "512KiB", "10MiB" or "1GB"')
    number, unit = match.groups()
    return int(float(number) * _UNITS[(unit or "b").lower()])


_TYPE_WORDS = {
    "float": "a number",
    "int": "an integer",
    "str": "a string",
    "bool": "true or false",
    "object": "a table",
    "array": "an array",
    "null": "nothing",
}
_MSGSPEC = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<at>[^`]*)`)?$")


def _field_bound(schema: type, field: str) -> str:
    """The numeric bound of ``schema.field`` ("> 0", ">= 0"), for a wrong-type message."""
    info = msgspec.inspect.type_info(schema)
    for f in getattr(info, "fields", ()):
        if f.name != field:
            continue
        types = f.type.types if isinstance(f.type, msgspec.inspect.UnionType) else (f.type,)
        for t in types:
            for attr, op in (("gt", ">"), ("ge", ">=")):
                value = getattr(t, attr, None)
                if value is not None:
                    return f"{op} {value:g}"
    return ""


def _field_choices(schema: type, field: str) -> tuple[Any, ...]:
    """The accepted values of a Literal field, for an invalid-value message."""
    for f in getattr(msgspec.inspect.type_info(schema), "fields", ()):
        if f.name == field and isinstance(f.type, msgspec.inspect.LiteralType):
            return tuple(f.type.values)
    return ()


def _show(value: Any) -> str:
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


class _Checker:
    def __init__(self, label: str, base_dir: Path) -> None:
        self.label = label
        self.base_dir = base_dir

    def fail(self, path: str, problem: str) -> ConfigError:
        return ConfigError(self.label, path, problem)

    def convert(self, data: Any, schema: type, prefix: str) -> Any:
        try:
            return msgspec.convert(data, schema)
        except msgspec.ValidationError as exc:
            raise self._translate(str(exc), data, prefix, schema) from None

    def _translate(self, message: str, data: Any, prefix: str, schema: type) -> ConfigError:
        match = _MSGSPEC.match(message)
        assert match is not None
        msg, at = match["msg"], match["at"] or ""
        keys = [k for k in re.findall(r"\.([^.\[]+)|\[(\d+)\]", at)]
        path_parts = [prefix] if prefix else []
        value: Any = data
        for key, index in keys:
            part = key or index
            path_parts.append(part if key else f"[{index}]")
            try:
                value = value[key] if key else value[int(index)]
            except (KeyError, IndexError, TypeError):
                value = None
        path = ".".join(path_parts).replace(".[", "[")
        if m := re.match(r"Object contains unknown field `(.+)`", msg):
            return self.fail(
                f"{path}.{m[1]}" if path else m[1],
                "unknown key (check the spelling against the README's config reference)",
            )
        if m := re.match(r"Object missing required field `(.+)`", msg):
            return self.fail(f"{path}.{m[1]}" if path else m[1], "required key is missing")
        if m := re.match(r"Invalid enum value (.+)", msg):
            choices = _field_choices(schema, keys[-1][0]) if len(keys) == 1 and keys[-1][0] else ()
            accepted = f"expected one of {', '.join(map(_show, choices))}, " if choices else "invalid value, "
            return self.fail(path, f"{accepted}got {_show(value)}")
        if m := re.match(r"Expected `([^`]+)`(.*)", msg):
            wanted = " or ".join(
                _TYPE_WORDS.get(t.strip(), t.strip()) for t in m[1].split("|")
                if t.strip() != "null"
            )
            bound = m[2].strip().replace(".0", "").split(", got")[0].strip()
            if not bound and keys and keys[-1][0]:
                bound = _field_bound(schema, keys[-1][0]) if len(keys) == 1 else ""
            text = f"expected {wanted}" + (f" {bound}" if bound.startswith(("<", ">")) else "")
            if bound.startswith("matching"):
                text += " made of letters, digits, '_', '.' or '-'"
            return self.fail(path, f"{text}, got {_show(value)}")
        return self.fail(path, msg[0].lower() + msg[1:])

    def path_value(self, value: str | None) -> Path | None:
        if value is None:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def size(self, value: Any, path: str) -> int:
        try:
            return parse_size(value)
        except ValueError as exc:
            raise self.fail(path, f"{exc}, got {_show(value)}") from None

    def supervisor(self, data: dict[str, Any]) -> SupervisorSettings:
        raw = self.convert(data, _RawSupervisor, "supervisor")
        timeout = raw.heartbeat_timeout or 2 * raw.heartbeat_interval
        if timeout <= raw.heartbeat_interval:
            raise self.fail(
                "supervisor.heartbeat_timeout",
                f"must be greater than heartbeat_interval ({raw.heartbeat_interval:g}), got {timeout:g}",
            )
        state_dir = self.path_value(raw.state_dir) or self.base_dir / ".actorsup"
        ring = self.size(raw.channel_ring, "supervisor.channel_ring")
        if ring and (ring < 4096 or ring & (ring - 1)):
            raise self.fail(
                "supervisor.channel_ring",
                f'must be 0 (frames on the socket) or a power of two >= 4096 such as "128KiB", got {ring}',
            )
        return SupervisorSettings(
            heartbeat_interval=raw.heartbeat_interval,
            heartbeat_timeout=timeout,
            start_timeout=raw.start_timeout,
            stop_timeout=raw.stop_timeout,
            control_socket=self.path_value(raw.control_socket),
            state_dir=state_dir,
            backend=raw.backend,
            spare_processes=raw.spare_processes,
            metrics_port=raw.metrics_port,
            log_buffer=raw.log_buffer,
            channel_ring=ring,
        )

    def _common(
        self, section: str, name: str, raw: _RawRestartable, sup: SupervisorSettings,
        base_class: str, import_targets: bool,
    ) -> dict[str, Any]:
        prefix = f"{section}.{name}"
        if not re.match(r"^[A-Za-z0-9_.-]+$", name):
            raise self.fail(prefix, "names may hold letters, digits, '_', '.' and '-' only")
        self.target(raw.target, f"{prefix}.target", base_class, import_targets)
        interval = raw.heartbeat_interval or sup.heartbeat_interval
        timeout = raw.heartbeat_timeout or (
            2 * interval if raw.heartbeat_interval else sup.heartbeat_timeout
        )
        if timeout <= interval:
            raise self.fail(
                f"{prefix}.heartbeat_timeout",
                f"must be greater than heartbeat_interval ({interval:g}), got {timeout:g}",
            )
        if raw.backoff_max < raw.backoff_initial:
            raise self.fail(
                f"{prefix}.backoff_max",
                f"must be >= backoff_initial ({raw.backoff_initial:g}), got {raw.backoff_max:g}",
            )
        fields = {
            f: getattr(raw, f) for f in raw.__struct_fields__
            if f not in ("heartbeat_interval", "heartbeat_timeout", "start_timeout",
                         "stop_timeout", "max_rss", "cwd")
        }
        fields.update(
            name=name,
            heartbeat_interval=interval,
            heartbeat_timeout=timeout,
            start_timeout=raw.start_timeout or sup.start_timeout,
            stop_timeout=sup.stop_timeout if raw.stop_timeout is None else raw.stop_timeout,
            max_rss=None if raw.max_rss is None else self.size(raw.max_rss, f"{prefix}.max_rss"),
            cwd=str(self.path_value(raw.cwd)) if raw.cwd else None,
        )
        return fields

    def actor(
        self, name: str, data: Any, sup: SupervisorSettings, import_targets: bool
    ) -> ActorSpec:
        raw = self.convert(data, _RawActor, f"actors.{name}")
        fields = self._common("actors", name, raw, sup, "Actor", import_targets)
        return ActorSpec(**fields)

    def cron(
        self, name: str, data: Any, sup: SupervisorSettings, import_targets: bool
    ) -> CronSpec:
        prefix = f"cron.{name}"
        raw = self.convert(data, _RawCron, prefix)
        if raw.interval is not None and raw.schedule is not None:
            raise self.fail(prefix, "set either interval or schedule, not both")
        if raw.interval is None and raw.schedule is None:
            raise self.fail(prefix, 'set interval (seconds) or schedule (a cron expression such as "*/5 * * * *")')
        if raw.timezone is not None:
            try:
                ZoneInfo(raw.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise self.fail(
                    f"{prefix}.timezone",
                    f"unknown time zone {_show(raw.timezone)} (use an IANA name such as \"Europe/Berlin\")",
                ) from None
        if raw.schedule is not None:
            from .cron._expr import CronExpressionError, validate_expression

            try:
                validate_expression(raw.schedule)
            except CronExpressionError as exc:
                raise self.fail(f"{prefix}.schedule", f"{exc}, got {_show(raw.schedule)}") from None
        fields = self._common("cron", name, raw, sup, "CronTask", import_targets)
        return CronSpec(**fields)

    def sink(self, index: int, data: Any) -> SinkSpec:
        prefix = f"logs.sinks[{index}]"
        raw = self.convert(data, _RawSink, prefix)
        address = None
        if raw.type in ("tcp", "syslog", "relp"):
            if raw.address is None:
                raise self.fail(f"{prefix}.address", f'required for type "{raw.type}" (for example "127.0.0.1:5140")')
            host, sep, port = raw.address.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise self.fail(f"{prefix}.address", f'expected "host:port", got {_show(raw.address)}')
            address = (host.strip("[]"), int(port))
        if raw.type == "file" and raw.path is None:
            raise self.fail(f"{prefix}.path", 'required for type "file"')
        spool = self.path_value(raw.spool_dir)
        return SinkSpec(
            type=raw.type,
            path=self.path_value(raw.path),
            max_bytes=self.size(raw.max_bytes, f"{prefix}.max_bytes"),
            backups=raw.backups,
            daily=raw.daily,
            address=address,
            spool_dir=spool,
            spool_max_bytes=self.size(raw.spool_max_bytes, f"{prefix}.spool_max_bytes"),
            spool_fsync=raw.spool_fsync,
            queue_size=raw.queue_size,
            level=LEVELS[raw.level],
            actors=frozenset(raw.actors) if raw.actors is not None else None,
            app_name=raw.app_name,
        )

    def target(self, target: str, path: str, base_class: str, import_targets: bool) -> None:
        module_name, sep, attr = target.partition(":")
        if not sep or not module_name or not attr:
            raise self.fail(path, f'expected "module:Class", got {_show(target)}')
        if not import_targets:
            return
        try:
            import_target(target, self.base_dir, base_class)
        except ImportError as exc:
            raise self.fail(path, f"cannot import {_show(target)}: {exc}") from None
        except TypeError as exc:
            raise self.fail(path, str(exc)) from None


def import_target(target: str, base_dir: Path | None = None, base_class: str = "Actor") -> type:
    """Import ``module:Class`` and check that it subclasses ``actors.<base_class>``."""
    import actors

    module_name, _, attr = target.partition(":")
    if base_dir is not None and str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise
    except Exception as exc:  # a module that raises on import is an import failure too
        raise ImportError(f"{type(exc).__name__}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportError(f"module {module_name!r} has no attribute {part!r}") from None
    base = getattr(actors, base_class)
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise TypeError(f"{target!r} is not a subclass of actors.{base_class}")
    if base_class == "Actor" and issubclass(obj, actors.CronTask):
        raise TypeError(f"{target!r} is a CronTask: configure it under [cron.NAME]")
    return obj
