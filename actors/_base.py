"""The base classes users subclass: :class:`Actor` and :class:`CronTask`."""

from __future__ import annotations

from typing import Any

__all__ = ["Actor", "CronTask"]


class _DefaultLog:
    """``self.log`` until the runtime binds the actor's own logger.

    structlog is imported on first use, not with this module: the child
    runtime imports structlog its own (leaner) way before any actor exists.
    """

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        import structlog

        return structlog.get_logger()


class Actor:
    """A long-lived component supervised by actorsup.

    Subclasses implement ``async run()``; it is cancelled on stop. Keyword
    arguments from the config's ``args`` table arrive in the constructor, and
    the runtime sets :attr:`name`, :attr:`log` and :attr:`instance` (the index of
    an actor with ``instances = N``; None otherwise) before ``run()`` starts.
    """

    name: str = ""
    log: Any = _DefaultLog()
    instance: int | None = None

    def __init__(self, **kwargs: Any) -> None:
        if kwargs:
            raise TypeError(
                f"{type(self).__name__} got unexpected args {sorted(kwargs)}; "
                "define __init__ to accept them"
            )

    async def run(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define async run()")

    async def health_check(self) -> bool:
        """Return False (or raise) when unhealthy. Sync ``def`` is accepted too."""
        return True

    def _bind(self, name: str, log: Any, instance: int | None = None) -> None:
        self.name = name
        self.log = log
        self.instance = instance


class CronTask(Actor):
    """One scheduled job: ``run()`` is one execution.

    Mirrors the origin document: ``CronTask(interval=60)``, ``get_interval()``,
    ``is_running()``. ``schedule`` (a cron expression) and ``timezone`` are the
    alternatives to ``interval``.
    """

    interval: float = 60.0
    schedule: str | None = None
    timezone: str | None = None
    _running: int = 0  # class default: subclasses may skip super().__init__()

    def __init__(
        self,
        interval: float | None = None,
        *,
        schedule: str | None = None,
        timezone: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if interval is not None:
            if interval <= 0:
                raise ValueError(f"interval must be > 0 (got {interval})")
            self.interval = float(interval)
        if schedule is not None:
            self.schedule = schedule
        if timezone is not None:
            self.timezone = timezone

    def get_interval(self) -> float:
        return self.interval

    def is_running(self) -> bool:
        return self._running > 0

    async def _execute(self) -> None:
        """Run once, keeping :meth:`is_running` truthful."""
        self._running += 1
        try:
            await self.run()
        finally:
            self._running -= 1
