"""Built-in cron tasks: :class:`CleanupTask` and :class:`HeartbeatTask`.

Configure them like any task, e.g.::

    [cron.cleanup]
    target = "actors.builtin:CleanupTask"
    args = { paths = ["logs", "spool"], max_age = 604800, pattern = "*.jsonl*" }
"""

from __future__ import annotations

import inspect
import os
import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import psutil

from ._base import CronTask

__all__ = ["CleanupTask", "HeartbeatTask"]


class CleanupTask(CronTask):
    """Deletes files older than ``max_age`` seconds in ``paths`` (every hour by default).

    Only regular files whose name matches ``pattern`` are removed; folders and
    symbolic links are left alone, and ``recursive`` extends the sweep to
    subfolders. Run history is pruned by the history store itself, to each
    task's ``history_limit``.
    """

    interval = 3600.0

    def __init__(
        self,
        interval: float | None = None,
        *,
        paths: Sequence[str | os.PathLike[str]] = (),
        max_age: float = 7 * 86400.0,
        pattern: str = "*",
        recursive: bool = False,
        schedule: str | None = None,
        timezone: str | None = None,
    ) -> None:
        super().__init__(interval, schedule=schedule, timezone=timezone)
        if isinstance(paths, (str, os.PathLike)):
            raise TypeError(f"paths must be a list of folders (got {str(paths)!r})")
        if not max_age >= 0:
            raise ValueError(f"max_age must be >= 0 seconds (got {max_age})")
        self.paths = [Path(p) for p in paths]
        self.max_age = float(max_age)
        self.pattern = pattern
        self.recursive = recursive

    async def run(self) -> None:
        # The sweep blocks on the file system: keep it off the event loop so
        # that the actor keeps beating.
        counts = await anyio.to_thread.run_sync(self.sweep, time.time())
        self.log.info(
            "cleanup.finished", paths=[str(p) for p in self.paths], max_age=self.max_age,
            pattern=self.pattern, **counts,
        )

    def sweep(self, now: float) -> dict[str, int]:
        """Delete what is older than ``now - max_age``; return the counts."""
        counts = {"removed": 0, "kept": 0, "bytes_freed": 0, "errors": 0, "missing": 0}
        cutoff = now - self.max_age
        for folder in self.paths:
            if not folder.is_dir():
                counts["missing"] += 1
                continue
            found = folder.rglob(self.pattern) if self.recursive else folder.glob(self.pattern)
            for path in found:
                try:
                    info = path.lstat()
                    if not stat.S_ISREG(info.st_mode):  # not folders, links, sockets
                        continue
                    if info.st_mtime >= cutoff:
                        counts["kept"] += 1
                        continue
                    path.unlink()
                except FileNotFoundError:
                    continue  # removed by someone else meanwhile
                except OSError as exc:
                    counts["errors"] += 1
                    self.log.warning("cleanup.error", path=str(path), error=str(exc))
                    continue
                counts["removed"] += 1
                counts["bytes_freed"] += info.st_size
        return counts


class HeartbeatTask(CronTask):
    """Emits a ``system.heartbeat`` summary event (every 30 s by default).

    The summary covers this process and the host: uptime, memory, CPU and load.
    From Python, ``status`` (a callable, sync or async, returning a mapping)
    adds more, e.g. ``HeartbeatMonitor.get_system_status``.
    """

    interval = 30.0

    def __init__(
        self,
        interval: float | None = None,
        *,
        status: Callable[[], Any] | None = None,
        schedule: str | None = None,
        timezone: str | None = None,
    ) -> None:
        super().__init__(interval, schedule=schedule, timezone=timezone)
        self._status = status
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # starts the measurement window
        self.beats = 0

    async def run(self) -> None:
        self.beats += 1
        self.log.info("system.heartbeat", **await self.summary())

    async def summary(self) -> dict[str, Any]:
        proc = self._process
        with proc.oneshot():
            summary: dict[str, Any] = {
                "beat": self.beats,
                "pid": proc.pid,
                "uptime": round(time.time() - proc.create_time(), 3),
                "rss": proc.memory_info().rss,
                "cpu_percent": proc.cpu_percent(None),
                "threads": proc.num_threads(),
            }
        summary["load1"] = round(os.getloadavg()[0], 2)
        summary["memory_percent"] = psutil.virtual_memory().percent
        if self._status is not None:
            status = self._status()
            if inspect.isawaitable(status):
                status = await status
            summary["status"] = status
        return summary
