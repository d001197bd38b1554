"""What ``check`` verifies beyond the file: the target imports, and can be run.

The target must be an ``actors.Actor`` (or ``CronTask``) subclass with an
``async def run``, whose constructor takes the ``args`` table, and ``cwd``
must be a directory: each would otherwise fail only once the actor starts.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

from ._schema import ActorSpec
from ._types import Invalid, show

__all__ = ["check_runnable", "class_interval", "import_target"]


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
    except SystemExit as exc:  # else `check` would end with the module's exit status
        raise ImportError(f"the module called sys.exit({exc.code!r})") from None
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


def check_runnable(spec: ActorSpec, base_class: str, base_dir: Path) -> None:
    """Import ``spec.target`` and check that its ``run`` and constructor fit the spec."""
    if spec.kind != "command":  # a command's program is looked up at each start (actor.exited if missing)
        _check_target(spec, base_class, base_dir)
    if spec.cwd is not None and not Path(spec.cwd).is_dir():
        raise Invalid(f"not a directory (create it or fix the path), got {show(spec.cwd)}", ("cwd",))


def class_interval(target: str, base_dir: Path) -> float:
    """The ``interval`` a CronTask class declares (``CleanupTask``: 3600 s): a cron task's default rate."""
    interval: float = _imported(target, base_dir, "CronTask").interval  # type: ignore[attr-defined]
    return interval


def _imported(target: str, base_dir: Path, base_class: str) -> type:
    try:
        return import_target(target, base_dir, base_class)
    except ImportError as exc:
        raise Invalid(f"cannot import {show(target)}: {exc}", ("target",)) from None
    except TypeError as exc:
        raise Invalid(str(exc), ("target",)) from None


def _check_target(spec: ActorSpec, base_class: str, base_dir: Path) -> None:
    cls = _imported(spec.target, base_dir, base_class)
    _check_run(spec.target, cls)
    _check_args(spec.target, cls, spec.args)


def _check_run(target: str, cls: type) -> None:
    import actors

    run = getattr(cls, "run", None)
    if run is actors.Actor.run:
        raise Invalid(f"{target} does not define async def run(self)", ("target",))
    if not callable(run) or not inspect.iscoroutinefunction(inspect.unwrap(run)):  # unwrap: a decorated async def
        raise Invalid(f"{target}.run is a plain def: declare it async def run(self)", ("target",))


def _check_args(target: str, cls: type, args: dict[str, Any]) -> None:
    """The ``args`` keys must be parameters of the constructor, and cover its required ones."""
    import actors

    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a C type, say): trust it
        return
    for p in params:
        if p.kind == p.POSITIONAL_ONLY and p.default is p.empty:
            raise Invalid(f"{target} takes {p.name!r} by position only, which args cannot give", ("args",))
    named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    owner = next(c for c in cls.__mro__ if "__init__" in vars(c))
    # Actor's own **kwargs refuses any key; a user's **kwargs may take anything.
    takes_any = owner not in (actors.Actor, actors.CronTask) and any(p.kind == p.VAR_KEYWORD for p in params)
    for key in args:
        if key not in named and not takes_any:
            raise Invalid(f"{target} has no parameter {key!r} (it takes: {', '.join(named) or 'none'})", ("args", key))
    for p in params:
        if p.name in named and p.default is p.empty and p.name not in args:
            raise Invalid(f"{target} needs {p.name!r}: add it to args", ("args",))
