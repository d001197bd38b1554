"""A fake :class:`~supervisor.control.ControlTarget` for tests and benchmarks.

It keeps rows in memory, records every mutating call, and lets a test feed log
lines and events to followers, hold an operation open, or make reload fail.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
import msgspec
from anyio.abc import ObjectReceiveStream
from anyio.streams.memory import MemoryObjectSendStream

from ..core._bus import EventBus
from ..exceptions import ConfigError, UnknownActor

__all__ = ["FakeTarget", "make_rows"]


def make_rows(n: int) -> list[dict[str, Any]]:
    """``n`` plausible status rows (``actor-000`` ...), every tenth one a cron task."""
    return [
        {"name": f"actor-{i:03d}", "kind": "cron" if i % 10 == 9 else "process",
         "state": "running", "pid": 10_000 + i, "uptime": 12.5 + i, "restarts": i % 3,
         "last_beat_age": 0.25, "cpu_percent": 1.5, "rss": 30 * 2**20 + i,
         "last_error": None}
        for i in range(n)
    ]


class FakeTarget:
    def __init__(self, rows: list[dict[str, Any]] | None = None, ring: int = 1000) -> None:
        self.rows = {row["name"]: row for row in (make_rows(3) if rows is None else rows)}
        self.calls: list[tuple[str, str | None]] = []
        self.bus = EventBus()
        self.logs: deque[bytes] = deque(maxlen=ring)
        self.reload_error: ConfigError | None = None
        self.reload_result: dict[str, list[str]] = {"added": [], "removed": [], "changed": []}
        self.gate: anyio.Event | None = None  # when set, lifecycle calls wait on it
        self.shutdown_requested = False
        self.start_outcome: dict[str, dict[str, Any]] = {}  # name -> row fields after start/restart
        self._followers: list[tuple[str | None, MemoryObjectSendStream[bytes]]] = []
        self._runs = itertools.count(1)

    # --- helpers for tests -------------------------------------------------------
    def log(self, event: str, actor: str | None = None, **kw: Any) -> bytes:
        """Append one log line to the ring and hand it to followers."""
        line = msgspec.json.encode({"timestamp": "2024-01-01T00:00:00Z", "level": "info",
                                    "event": event, "actor": actor, **kw})
        self.logs.append(line)
        for want, send in self._followers:
            if want is None or want == actor:
                with suppress(anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    send.send_nowait(line)
        return line

    def end_streams(self) -> None:
        """Close every log follower, as a supervisor does when it stops."""
        for _, send in self._followers:
            send.close()

    def _named(self, name: str) -> dict[str, Any]:
        row = self.rows.get(name)
        if row is None:
            raise UnknownActor(name)
        return row

    async def _lifecycle(self, op: str, name: str, state: str) -> None:
        row = self._named(name)
        self.calls.append((op, name))
        if self.gate is not None:
            await self.gate.wait()
        row["state"] = state
        if op != "stop":
            row.update(self.start_outcome.get(name, {}))
        self.bus.publish({"event": f"actor.{op}", "actor": name, "state": state})

    # --- ControlTarget ---------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        return list(self.rows.values())

    def heartbeat_status(self) -> dict[str, Any]:
        components = {name: {"status": "healthy" if row["state"] == "running" else "error",
                             "last_heartbeat_age": row["last_beat_age"], "errors": []}
                      for name, row in self.rows.items()}
        counts = {"healthy": 0, "error": 0, "unknown": 0}
        for info in components.values():
            counts[info["status"]] += 1
        overall = "error" if counts["error"] else ("healthy" if components else "unknown")
        return {"status": overall, "counts": {"total": len(components), **counts},
                "components": components}

    async def start_actor(self, name: str) -> None:
        await self._lifecycle("start", name, "running")

    async def stop_actor(self, name: str) -> None:
        await self._lifecycle("stop", name, "stopped")

    async def restart_actor(self, name: str) -> None:
        await self._lifecycle("restart", name, "running")

    async def reload(self) -> dict[str, list[str]]:
        self.calls.append(("reload", None))
        if self.reload_error is not None:
            raise self.reload_error
        return self.reload_result

    async def shutdown(self) -> None:
        self.calls.append(("shutdown", None))
        self.shutdown_requested = True

    def log_tail(self, n: int | None, actor: str | None) -> list[bytes]:
        lines = [line for line in self.logs
                 if actor is None or msgspec.json.decode(line).get("actor") == actor]
        return lines if n is None else (lines[-n:] if n else [])

    @asynccontextmanager
    async def follow_logs(self, actor: str | None) -> AsyncIterator[ObjectReceiveStream[bytes]]:
        if actor is not None:
            self._named(actor)
        send, receive = anyio.create_memory_object_stream[bytes](1000)
        entry = (actor, send)
        self._followers.append(entry)
        try:
            async with send, receive:
                yield receive
        finally:
            self._followers.remove(entry)

    def subscribe_events(self) -> Any:
        return self.bus.subscribe()

    def cron_list(self) -> list[dict[str, Any]]:
        return [{"name": name, "schedule": "interval 60s", "next_run_in": 12.0,
                 "last_outcome": "ok", "running": False}
                for name, row in self.rows.items() if row["kind"] == "cron"]

    async def cron_trigger(self, name: str) -> str:
        row = self._named(name)
        if row["kind"] != "cron":
            raise UnknownActor(name)
        self.calls.append(("cron_trigger", name))
        return f"{name}-{next(self._runs)}"
