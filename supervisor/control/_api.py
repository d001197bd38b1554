"""What the control server needs from a supervisor: the :class:`ControlTarget` protocol.

The supervisor implements it; the server only ever calls these methods, so the
server (and its tests) never depend on the process core.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from anyio.abc import ObjectReceiveStream

__all__ = ["ControlTarget"]


class ControlTarget(Protocol):
    def status(self) -> list[dict[str, Any]]:
        """One row per actor and cron task.

        Keys: ``name``, ``kind`` (process|task|command|ray|cron), ``state``, ``pid``, ``uptime``,
        ``restarts``, ``last_beat_age``, ``cpu_percent``, ``rss``, ``last_error``, and
        ``pending`` (why Ray has not placed a starting ray actor, else None).
        Must be cheap and must not await: the server calls it on every request.
        """

    def heartbeat_status(self) -> dict[str, Any]:
        """``{"status": healthy|error|unknown, "counts": {...}, "components": {name: {...}}}``."""

    async def start_actor(self, name: str) -> None:
        """Start a stopped actor; raise :class:`~supervisor.exceptions.UnknownActor`."""

    async def stop_actor(self, name: str) -> None:
        """Stop an actor (it stays stopped); raise ``UnknownActor``."""

    async def restart_actor(self, name: str) -> None:
        """Stop then start an actor; raise ``UnknownActor``."""

    async def scale(self, name: str, count: int) -> dict[str, list[str]]:
        """Run ``count`` instances of actor ``name``: ``{"started": [...], "stopped": [...]}``.

        Raise ``UnknownActor``, or :class:`~supervisor.exceptions.ControlError` for an
        actor without ``instances``.
        """

    async def reload(self) -> dict[str, list[str]]:
        """Re-read the config: ``{"added": [...], "removed": [...], "changed": [...]}``.

        Raise :class:`~supervisor.exceptions.ConfigError` and keep the running config
        when the new one is invalid.
        """

    async def shutdown(self) -> None:
        """Begin a graceful shutdown. Return promptly: the reply is sent afterwards."""

    def log_tail(self, n: int | None, actor: str | None) -> list[bytes]:
        """The last ``n`` (all when None) buffered log lines, each one JSON object."""

    def follow_logs(self, actor: str | None) -> AbstractAsyncContextManager[ObjectReceiveStream[bytes]]:
        """A stream of new log lines (JSON objects as bytes), optionally of one actor."""

    def subscribe_events(self) -> AbstractAsyncContextManager[ObjectReceiveStream[dict[str, Any]]]:
        """A stream of state-change events from the event bus."""

    def cron_list(self) -> list[dict[str, Any]]:
        """One row per cron task (schedule, next run, last outcome, ...)."""

    async def cron_trigger(self, name: str) -> str:
        """Run a cron task now; return its ``run_id``. Raise ``UnknownActor``."""
