"""Checks across the fields of one built spec: what a field's type cannot say.

Each check raises :class:`~._types.Invalid` with the key it blames; the loader
adds the table's path and the file name. :data:`CHECKS` maps a spec class to
its check, for the converter's nested tables and for specs built in code.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._schema import COMMAND_ONLY, ActorSpec, CronSpec, RaySettings, SinkSpec, SupervisorSettings
from ._types import Invalid, show

__all__ = [
    "CHECKS",
    "MAX_SOCKET_PATH",
    "RAY_RANGE",
    "check_actor",
    "check_cron",
    "check_ray",
    "check_sink",
    "check_supervisor",
]

MAX_SOCKET_PATH = 107  # sun_path is 108 bytes with the trailing NUL
RAY_RANGE = ((2, 40), (3, 0))  # the Ray versions supervisor/ray drives (also checked by its driver)
RAY_EXTRA = "pip install 'actorsup[ray]'"


def _timeout_above_interval(interval: float, timeout: float) -> None:
    if timeout <= interval:
        raise Invalid(
            f"must be greater than heartbeat_interval ({interval:g}), got {timeout:g}",
            ("heartbeat_timeout",),
        )


def check_supervisor(spec: SupervisorSettings) -> None:
    _timeout_above_interval(spec.heartbeat_interval, spec.heartbeat_timeout)
    ring = spec.channel_ring
    if ring and (ring < 4096 or ring & (ring - 1)):
        raise Invalid(
            f'must be 0 (frames on the socket) or a power of two >= 4096 such as "128KiB", got {ring}',
            ("channel_ring",),
        )
    path = spec.socket_path
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH:
        limit = f"a Unix socket path holds at most {MAX_SOCKET_PATH} bytes"
        if spec.control_socket is not None:
            raise Invalid(
                f"resolves to a {size}-byte path, but {limit}: choose a shorter path, got {show(str(path))}",
                ("control_socket",),
            )
        raise Invalid(
            f"puts the control socket at a {size}-byte path, but {limit}: set a shorter state_dir "
            f"or a control_socket, got {show(str(spec.state_dir))}",
            ("state_dir",),
        )


def check_actor(spec: ActorSpec) -> None:
    if spec.kind != "command":
        if not spec.target:
            raise Invalid("required key is missing", ("target",))
        for key in COMMAND_ONLY:
            if getattr(spec, key) not in (None, False):
                raise Invalid(f'only a command actor has {key}: add kind = "command" (and remove target)', (key,))
    elif spec.args:
        raise Invalid('a command actor has no constructor: put its arguments in command = ["program", "arg"]',
                      ("args",))
    _timeout_above_interval(spec.heartbeat_interval, spec.heartbeat_timeout)
    if spec.kind == "ray":
        _ray_installed()
    elif spec.ray is not None:
        raise Invalid('only a ray actor has a ray table: add kind = "ray" (or remove ray)', ("ray",))
    for key, value in spec.env.items():  # what exec() refuses
        if not key or "=" in key or "\0" in key:
            raise Invalid(f"a variable name may not be empty or hold '=' or NUL, got {show(key)}", ("env", key))
        if "\0" in value:
            raise Invalid(f"a value may not hold NUL, got {show(value)}", ("env", key))
    if spec.backoff_max < spec.backoff_initial:
        raise Invalid(
            f"must be >= backoff_initial ({spec.backoff_initial:g}), got {spec.backoff_max:g}",
            ("backoff_max",),
        )


def _ray_installed() -> None:
    """Ray is importable here, in a version the driver supports (read from its metadata: no import)."""
    from importlib import metadata, util

    if util.find_spec("ray") is None:
        raise Invalid(f'kind = "ray" needs Ray: {RAY_EXTRA}', ("kind",))
    try:
        version = metadata.version("ray")
    except metadata.PackageNotFoundError:  # importable but not installed as a distribution: let it be
        return
    parts = version.split(".")[:2]
    if not (len(parts) == 2 and all(p.isdigit() for p in parts)
            and RAY_RANGE[0] <= (int(parts[0]), int(parts[1])) < RAY_RANGE[1]):
        raise Invalid(f'kind = "ray" needs ray>=2.40,<3, but Ray {version} is installed: {RAY_EXTRA}', ("kind",))


def _host_port(value: str, *, port_required: bool) -> bool:
    host, sep, port = value.rpartition(":")
    if not sep:
        return not port_required and bool(value) and " " not in value
    return bool(host.strip("[]")) and " " not in host and port.isdigit() and 0 < int(port) < 65536


def check_ray(spec: RaySettings) -> None:
    address = spec.address
    if address.startswith("ray://"):
        raise Invalid(
            'Ray Client addresses (ray://) are not supported: run the supervisor on a node of the '
            f'cluster and use "auto" or the GCS\'s HOST:PORT, got {show(address)}',
            ("address",),
        )
    if address not in ("local", "auto") and not _host_port(address, port_required=True):
        raise Invalid(f'must be "local", "auto" or HOST:PORT (such as "10.0.0.5:6379"), got {show(address)}',
                      ("address",))
    if spec.listen is not None and not _host_port(spec.listen, port_required=False):
        raise Invalid(f'must be HOST or HOST:PORT (such as "10.0.0.7" or "10.0.0.7:7300"), got {show(spec.listen)}',
                      ("listen",))


def check_cron(spec: CronSpec) -> None:
    if spec.interval is not None and spec.schedule is not None:
        raise Invalid("set either interval or schedule, not both")
    if spec.interval is None and spec.schedule is None:
        raise Invalid('set interval (seconds) or schedule (a cron expression such as "*/5 * * * *")')
    if spec.timezone is not None:
        try:
            ZoneInfo(spec.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise Invalid(
                f'unknown time zone {show(spec.timezone)} (use an IANA name such as "Europe/Berlin")',
                ("timezone",),
            ) from None
    if spec.schedule is not None:
        from ..cron._expr import CronExpressionError, validate_expression

        try:
            validate_expression(spec.schedule)
        except CronExpressionError as exc:
            raise Invalid(f"{exc}, got {show(spec.schedule)}", ("schedule",)) from None
    check_actor(spec)


def check_sink(spec: SinkSpec) -> None:
    if spec.type in ("tcp", "syslog", "relp") and spec.address is None:
        raise Invalid(f'required for type "{spec.type}" (for example "127.0.0.1:5140")', ("address",))
    if spec.type == "file" and spec.path is None:
        raise Invalid('required for type "file"', ("path",))


CHECKS: dict[type, Callable[[Any], None]] = {
    SupervisorSettings: check_supervisor,
    ActorSpec: check_actor,
    CronSpec: check_cron,
    SinkSpec: check_sink,
    RaySettings: check_ray,
}
