"""The config schema: frozen typed specs, one class per TOML table.

Each field is one config key: its annotation says what is accepted (see
``_types``) and its default is the key's default. Fields named in
``_not_keys`` are filled in by the loader, not read from the file. Checks
across fields live in ``_checks``, next door.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from ._types import (
    Address,
    AtLeastOne,
    Count,
    Folder,
    Level,
    Module,
    Name,
    NonNegative,
    Port,
    Positive,
    Range,
    Size,
    SomePath,
    StopSignal,
    Target,
)

__all__ = [
    "ActorSpec",
    "Config",
    "CronSpec",
    "GroupSpec",
    "LogsSettings",
    "RayOptions",
    "RaySettings",
    "SinkSpec",
    "SupervisorSettings",
]

# Bounds past which `run` cannot work (or would walk millions of files).
MAX_SPARE_PROCESSES = 64
MAX_BACKUPS = 1000
COMMAND_ONLY = ("command", "notify", "probe", "user")  # keys of kind = "command" alone


class SupervisorSettings(msgspec.Struct, frozen=True, kw_only=True):
    """``[supervisor]``."""

    _not_keys: ClassVar[frozenset[str]] = frozenset()

    heartbeat_interval: Positive = 30.0
    heartbeat_timeout: Positive = 60.0  # unset: 2 x heartbeat_interval
    start_timeout: Positive = 10.0
    stop_timeout: NonNegative = 5.0
    control_socket: SomePath | None = None  # unset: state_dir / "actorsup.sock"
    state_dir: SomePath = Path(".actorsup")  # unset: .actorsup in the config's folder
    backend: Literal["trio", "asyncio"] = "trio"
    spare_processes: Annotated[int, Range(ge=0, le=MAX_SPARE_PROCESSES)] = 1  # forked ones with the fork server
    spawner: Literal["forkserver", "spawn"] = "forkserver" if sys.platform == "linux" else "spawn"
    preload: tuple[Module, ...] = ()  # imported once by the fork server's template
    # Children run this many nice steps below the supervisor: a restart storm (or
    # hundreds of actors starting) then cannot take the CPU from the supervisor's
    # heartbeat checks and control socket; an actor busy for long still gets its share.
    child_nice: Annotated[int, Range(ge=0, le=19)] = 5
    metrics_port: Port | None = None
    log_buffer: Count = 1000
    channel_ring: Size = 128 * 1024

    @property
    def socket_path(self) -> Path:
        """Where the control socket listens."""
        return self.control_socket or self.state_dir / "actorsup.sock"


class ActorSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One supervised actor (``[actors.NAME]``) or cron task (``[cron.NAME]``)."""

    _not_keys: ClassVar[frozenset[str]] = frozenset({"name", "instance", "command_spec", "watchdog_from_ready"})

    name: str  # the table key ("reader.1" for an instance)
    target: Target = ""  # required but for kind = "command" (see _checks.check_actor)
    kind: Literal["process", "task", "command", "ray"] = "process"
    restart: Literal["permanent", "transient", "temporary"] = "permanent"
    # These four, when unset, come from [supervisor] (heartbeat_timeout: from
    # 2 x this table's heartbeat_interval if that is set).
    heartbeat_interval: Positive = 30.0
    heartbeat_timeout: Positive = 60.0
    start_timeout: Positive = 10.0
    stop_timeout: NonNegative = 5.0
    max_restarts: Count = 5
    restart_window: Positive = 60.0
    backoff_initial: NonNegative = 0.1
    backoff_max: NonNegative = 30.0
    backoff_reset: Positive = 30.0
    args: dict[str, Any] = {}
    env: dict[str, str] = {}
    cwd: Folder | None = None
    health_interval: Positive = 10.0
    health_timeout: Positive = 5.0
    health_failure_threshold: AtLeastOne = 3
    max_rss: Size | None = None
    max_cpu: Positive | None = None
    cpu_window: Positive = 10.0
    # the supervision tree (supervisor/tree)
    group: Name | None = None
    depends_on: tuple[Name, ...] = ()
    instances: AtLeastOne | None = None
    instance: int | None = None  # set on each instance's own spec
    critical: bool = False
    stop_signal: StopSignal = "SIGTERM"
    failed_retry_after: Positive | None = None
    # kind = "command": raw here, validated as a whole by supervisor.command.parse_command_spec
    command: Any = None
    notify: bool = False
    probe: Any = None
    user: str | None = None
    # filled in by the loader for kind = "command": the parsed CommandSpec (typed Any so that loading a
    # config without command actors does not import them), and whether the table set heartbeat_timeout
    command_spec: Any = None
    watchdog_from_ready: bool = False
    # kind = "ray": where and with what Ray places the actor (supervisor/ray)
    ray: RayOptions | None = None


class CronSpec(ActorSpec, frozen=True, kw_only=True):
    """``[cron.NAME]``: an actor's keys (but kind and restart) plus its timing."""

    _not_keys: ClassVar[frozenset[str]] = frozenset(
        {"name", "kind", "restart", "group", "depends_on", "instances", "instance", "critical", "failed_retry_after",
         *COMMAND_ONLY, "command_spec", "watchdog_from_ready", "ray"}
    )

    interval: Positive | None = None
    schedule: str | None = None
    timezone: str | None = None
    jitter: NonNegative = 0.0
    overlap: Literal["skip", "queue", "replace"] = "skip"
    timeout: Positive | None = None
    misfire_grace: NonNegative = 1.0
    catch_up: bool = False
    isolation: Literal["resident", "per-run"] = "resident"
    history_limit: AtLeastOne = 100


class RayOptions(msgspec.Struct, frozen=True, kw_only=True):
    """An actor's ``ray = {...}`` table: Ray's placement options (unset: Ray's own default)."""

    _not_keys: ClassVar[frozenset[str]] = frozenset()

    num_cpus: NonNegative | None = None
    num_gpus: NonNegative | None = None
    resources: dict[str, NonNegative] = {}
    memory: Size | None = None
    scheduling_strategy: Literal["DEFAULT", "SPREAD"] = "DEFAULT"


class RaySettings(msgspec.Struct, frozen=True, kw_only=True):
    """``[ray]``: which Ray cluster the ``kind = "ray"`` actors run on."""

    _not_keys: ClassVar[frozenset[str]] = frozenset()

    address: str = "local"  # "local": a private Ray on 127.0.0.1 for the run; "auto"; or "HOST:PORT"
    namespace: str = "actorsup"
    # Where the Ray actors dial back to (HOST or HOST:PORT); unset: 127.0.0.1 for
    # "local", else this machine's address as the cluster sees it.
    listen: str | None = None
    connect_timeout: Positive = 30.0  # bound on reaching the cluster at start-up
    # A Ray actor ends itself when it has heard nothing from the supervisor for
    # this long: the bound on leftovers after a SIGKILLed supervisor or a partition.
    lease_timeout: Positive = 5.0


class SinkSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One ``[[logs.sinks]]`` entry."""

    _not_keys: ClassVar[frozenset[str]] = frozenset()

    type: Literal["stdout", "file", "tcp", "syslog", "relp"]
    path: SomePath | None = None
    max_bytes: Size = 10 * 1024**2
    backups: Annotated[int, Range(ge=0, le=MAX_BACKUPS)] = 5
    daily: bool = True
    address: Address | None = None
    spool_dir: SomePath | None = None
    spool_max_bytes: Size = 256 * 1024**2
    spool_fsync: Literal["never", "batch", "always"] = "batch"
    queue_size: AtLeastOne = 10000
    level: Level = 10
    actors: frozenset[Name] | None = None
    app_name: str = "actorsup"


class GroupSpec(msgspec.Struct, frozen=True, kw_only=True):
    """``[groups.NAME]``: a supervision node with its own strategy and intensity."""

    _not_keys: ClassVar[frozenset[str]] = frozenset({"name"})

    name: str  # the table key
    strategy: Literal["one_for_one", "one_for_all", "rest_for_one"] = "one_for_one"
    max_restarts: Count = 5
    restart_window: Positive = 60.0
    group: Name | None = None
    critical: bool = False


class LogsSettings(msgspec.Struct, frozen=True, kw_only=True):
    """``[logs]``; no sinks configured means one stdout sink."""

    _not_keys: ClassVar[frozenset[str]] = frozenset()

    sinks: tuple[SinkSpec, ...] = (SinkSpec(type="stdout"),)


class Config(msgspec.Struct, frozen=True, kw_only=True):
    """A whole validated config file."""

    source: Path | None
    supervisor: SupervisorSettings = SupervisorSettings()
    actors: tuple[ActorSpec, ...] = ()
    cron: tuple[CronSpec, ...] = ()
    groups: tuple[GroupSpec, ...] = ()
    table_order: tuple[str, ...] = ()  # [groups.NAME] and [actors.NAME] names in file order
    logs: LogsSettings = LogsSettings()
    ray: RaySettings = RaySettings()

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    def spec(self, name: str) -> ActorSpec | None:
        for spec in (*self.actors, *self.cron):
            if spec.name == name:
                return spec
        return None
