"""Run history in an embedded SQLite database (``<state_dir>/cron-history.sqlite3``).

Writes are queued and committed in batches by :meth:`HistoryStore.run_writer`,
a task of the cron manager, in a worker thread: a hundred runs due at the same
second neither wait for a commit nor stall the event loop while one happens.
Reads flush the queue first, so they always see every run recorded so far. WAL
mode keeps commits cheap and lets ``actorsup cron list`` read while the
supervisor writes.

The store also keeps, per task, the last due time the scheduler dealt with
(ran, skipped or missed). After a supervisor restart that time tells which
runs were missed while it was down (``misfire_grace``, ``catch_up``).
"""

from __future__ import annotations

import sqlite3
import threading
from collections import deque
from pathlib import Path
from typing import Any

import anyio
import structlog

from ._model import RunRecord

__all__ = ["HISTORY_FILE", "HistoryStore"]

HISTORY_FILE = "cron-history.sqlite3"
_INTERRUPTED = "interrupted: the supervisor stopped during the run"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    scheduled_at REAL NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    duration REAL,
    outcome TEXT,
    error TEXT,
    trigger TEXT NOT NULL DEFAULT 'schedule'
);
CREATE INDEX IF NOT EXISTS runs_by_task ON runs (task, started_at);
CREATE TABLE IF NOT EXISTS schedule_state (
    task TEXT PRIMARY KEY,
    last_due REAL NOT NULL
);
"""
_INSERT_STARTED = (
    "INSERT OR REPLACE INTO runs (run_id, task, scheduled_at, started_at, trigger)"
    " VALUES (?, ?, ?, ?, ?)"
)
_UPDATE_FINISHED = (
    "UPDATE runs SET finished_at = ?, duration = ?, outcome = ?, error = ? WHERE run_id = ?"
)
_UPSERT_LAST_DUE = (
    "INSERT INTO schedule_state (task, last_due) VALUES (?, ?)"
    " ON CONFLICT (task) DO UPDATE SET last_due = max(last_due, excluded.last_due)"
)
_DELETE_RUNS = "DELETE FROM runs WHERE task = ?"
_DELETE_STATE = "DELETE FROM schedule_state WHERE task = ?"
_ORDER = (_INSERT_STARTED, _UPDATE_FINISHED, _UPSERT_LAST_DUE, _DELETE_RUNS, _DELETE_STATE)
_COLUMNS = "run_id, task, scheduled_at, started_at, finished_at, duration, outcome, error, trigger"

log = structlog.get_logger()


class HistoryStore:
    """Per-task run history, kept to a limit per task, that survives restarts.

    ``path=None`` keeps the history in memory (a CronManager without a state dir).
    """

    def __init__(self, path: str | Path | None, *, batch_delay: float = 0.05) -> None:
        self.batch_delay = batch_delay  # run_writer() gathers writes this long (s)
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            str(self.path) if self.path is not None else ":memory:",
            isolation_level=None,  # explicit transactions in flush()
            check_same_thread=False,
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across crashes of us, not of the OS
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()  # the connection is shared with the writer thread
        # deques: append (event loop) and popleft (writer thread) are atomic.
        self._pending: deque[tuple[str, tuple[Any, ...]]] = deque()
        self._to_prune: deque[str] = deque()
        self._limits: dict[str, int] = {}
        self._wakeup: anyio.Event | None = None  # set while run_writer() runs
        self._recover()

    @classmethod
    def in_dir(cls, state_dir: str | Path) -> HistoryStore:
        return cls(Path(state_dir) / HISTORY_FILE)

    # --- writes (queued) ---------------------------------------------------------
    def record_started(
        self, run_id: str, task: str, scheduled_at: float, started_at: float, trigger: str
    ) -> None:
        self._queue(_INSERT_STARTED, (run_id, task, scheduled_at, started_at, trigger))

    def record_finished(
        self, run_id: str, task: str, finished_at: float, duration: float,
        outcome: str, error: str | None, limit: int,
    ) -> None:
        self._queue(_UPDATE_FINISHED, (finished_at, duration, outcome, error, run_id))
        self._limits[task] = limit
        self._to_prune.append(task)

    def set_last_due(self, task: str, scheduled_at: float) -> None:
        self._queue(_UPSERT_LAST_DUE, (task, scheduled_at))

    def _queue(self, sql: str, params: tuple[Any, ...]) -> None:
        self._pending.append((sql, params))
        if self._wakeup is not None:
            self._wakeup.set()

    def flush(self) -> None:
        """Commit every queued write in one transaction, then prune to the limits."""
        with self._lock:
            # Writes queued while this batch commits wait for the next one.
            pending = _drain(self._pending)
            prune = set(_drain(self._to_prune))
            if not pending and not prune:
                return
            try:
                with self._db:
                    self._db.execute("BEGIN")
                    for sql, rows in _grouped(pending):
                        self._db.executemany(sql, rows)
                    for task in prune:
                        self._prune(task, self._limits[task])
            except sqlite3.Error as exc:
                # History is a record, not a reason to stop scheduling.
                log.error("cron.history.write_failed", error=str(exc), lost=len(pending))

    async def run_writer(self) -> None:
        """Commit queued writes in a worker thread as they come; runs until cancelled."""
        try:
            while True:
                self._wakeup = anyio.Event()
                if not self._pending:
                    await self._wakeup.wait()
                # Gather the writes of runs due together (a burst of firings)
                # into one commit that starts after the burst.
                await anyio.sleep(self.batch_delay)
                await anyio.to_thread.run_sync(self.flush)
        finally:
            self._wakeup = None
            self.flush()

    def _prune(self, task: str, limit: int) -> None:
        self._db.execute(
            "DELETE FROM runs WHERE task = ? AND outcome IS NOT NULL AND run_id NOT IN"
            " (SELECT run_id FROM runs WHERE task = ? ORDER BY started_at DESC LIMIT ?)",
            (task, task, limit),
        )

    def prune(self, task: str, limit: int) -> None:
        """Keep only the newest ``limit`` runs of ``task``."""
        self._limits[task] = limit
        self._to_prune.append(task)
        self.flush()

    def forget(self, task: str) -> None:
        """Drop everything recorded for ``task``."""
        self._queue(_DELETE_RUNS, (task,))
        self._queue(_DELETE_STATE, (task,))
        self.flush()

    def _recover(self) -> None:
        # A run still open was cut short by a supervisor crash or kill.
        with self._db:
            self._db.execute(
                "UPDATE runs SET outcome = 'killed', error = ? WHERE outcome IS NULL",
                (_INTERRUPTED,),
            )

    # --- reads -------------------------------------------------------------------
    def history(self, task: str, limit: int | None = None) -> list[RunRecord]:
        """Runs of ``task``, newest first."""
        self.flush()
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM runs WHERE task = ? ORDER BY started_at DESC, rowid DESC"
                " LIMIT ?",
                (task, -1 if limit is None else limit),
            ).fetchall()
        return [RunRecord(*row) for row in rows]

    def last_due(self, task: str) -> float | None:
        """The last due time the scheduler dealt with, from any earlier supervisor run."""
        self.flush()
        with self._lock:
            row = self._db.execute(
                "SELECT last_due FROM schedule_state WHERE task = ?", (task,)
            ).fetchone()
        return None if row is None else float(row[0])

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._db.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _grouped(pending: list[tuple[str, tuple[Any, ...]]]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    # One executemany per statement, in _ORDER: a run's INSERT always precedes
    # its UPDATE (same batch or an earlier one), and deletions come last.
    groups: dict[str, list[tuple[Any, ...]]] = {sql: [] for sql in _ORDER}
    for sql, params in pending:
        groups[sql].append(params)
    return [(sql, rows) for sql, rows in groups.items() if rows]


def _drain(queue: deque[Any]) -> list[Any]:
    items = []
    while True:
        try:
            items.append(queue.popleft())
        except IndexError:
            return items
