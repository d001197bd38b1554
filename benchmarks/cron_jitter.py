"""Cron firing lateness and drift: actorsup's scheduler against APScheduler 3.x.

100 tasks at a 1 s interval for 60 s, each with a no-op job. Lateness is the
wall time at which the job function is entered minus the wall time it was due
(actorsup: ``CronRun.scheduled_at``; APScheduler: ``start_date + k x interval``).
Drift is, per task, ``last start - first start - (runs - 1) x interval``: a
scheduler that sleeps ``interval`` after each run would drift by the run's
duration plus its lateness every time.

actorsup runs first (with its SQLite history on, as in production), then
APScheduler 3.x (``AsyncIOScheduler``), installed into its own venv at
``benchmarks/.peers/apscheduler`` and driven as a separate process that
prints its figures as JSON. The two never run at the same time.

    .venv/bin/python benchmarks/cron_jitter.py                 # 100 tasks x 60 s
    .venv/bin/python benchmarks/cron_jitter.py --seconds 5     # quick run
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path
from typing import Any

APSCHEDULER_PEER = "apscheduler"
APSCHEDULER_REQ = ["apscheduler<4"]


def _figures(starts: dict[int, list[float]], lateness: list[float], interval: float) -> dict[str, Any]:
    """Lateness percentiles (ms) and per-task drift (ms) from raw start times (s)."""
    ordered = sorted(lateness)

    def pct(p: float) -> float:  # linear, like numpy (benchmarks._stats.percentile)
        rank = (len(ordered) - 1) * p / 100
        low = math.floor(rank)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)

    drifts = sorted(
        (s[-1] - s[0] - (len(s) - 1) * interval) * 1000 for s in starts.values() if len(s) > 1
    )
    # The trend of each task's start times against the ideal grid: a scheduler that
    # accumulates drift shows a slope; jitter alone averages out to ~0.
    trends = sorted(_slope(s, interval) * 3600 * 1000 for s in starts.values() if len(s) > 2)
    return {
        "runs": len(lateness),
        "lateness_ms": {"p50": pct(50) * 1000, "p99": pct(99) * 1000, "max": ordered[-1] * 1000},
        "drift_ms": {
            "median": drifts[len(drifts) // 2] if drifts else None,
            "max_abs": max((abs(d) for d in drifts), default=None),
            "trend_per_hour": trends[len(trends) // 2] if trends else None,
        },
    }


def _slope(starts: list[float], interval: float) -> float:
    """Least-squares slope of (start - first - k x interval) over k x interval: seconds per second."""
    xs = [k * interval for k in range(len(starts))]
    ys = [t - starts[0] - x for t, x in zip(starts, xs, strict=False)]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=False)) / var if var else 0.0


# --- APScheduler, run in its own venv (stdlib + apscheduler only) ---------------
def apscheduler_peer(tasks: int, seconds: float, interval: float) -> None:
    import asyncio
    from datetime import datetime

    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    starts: dict[int, list[float]] = {i: [] for i in range(tasks)}
    lateness: list[float] = []

    async def main() -> None:
        t0 = math.ceil(time.time()) + 1.0

        async def job(i: int) -> None:
            now = time.time()
            k = round((now - t0) / interval)  # lateness stays far below interval / 2
            starts[i].append(now)
            lateness.append(now - (t0 + k * interval))

        scheduler = AsyncIOScheduler(
            job_defaults={"coalesce": False, "max_instances": 1, "misfire_grace_time": None}
        )
        first = datetime.fromtimestamp(t0, UTC)
        for i in range(tasks):
            scheduler.add_job(job, IntervalTrigger(seconds=interval, start_date=first), args=[i])
        scheduler.start()
        await asyncio.sleep(t0 - time.time() + seconds - interval / 2)
        scheduler.shutdown(wait=False)

    asyncio.run(main())
    print(json.dumps(_figures(starts, lateness, interval)))


def run_apscheduler(tasks: int, seconds: float, interval: float) -> dict[str, Any]:
    if __package__ in (None, ""):
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks._peers import peer_python

    python = peer_python(APSCHEDULER_PEER, APSCHEDULER_REQ)
    done = subprocess.run(
        [str(python), __file__, "--as-apscheduler-peer", "--tasks", str(tasks),
         "--seconds", str(seconds), "--interval", str(interval)],
        capture_output=True, text=True, timeout=seconds + 120, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"APScheduler peer failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- actorsup --------------------------------------------------------------------
def run_actorsup(tasks: int, seconds: float, interval: float, backend: str) -> dict[str, Any]:
    import anyio
    import structlog

    if __package__ in (None, ""):
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from supervisor.config import CronSpec
    from supervisor.cron import CronManager, CronRun, RunResult

    structlog.configure(processors=[_drop])  # measure scheduling, not log rendering
    starts: dict[int, list[float]] = {i: [] for i in range(tasks)}
    scheduled: dict[int, list[float]] = {i: [] for i in range(tasks)}
    lateness: list[float] = []

    class NoOp:
        def __init__(self, index: int) -> None:
            self.index = index

        def is_ready(self) -> bool:
            return True

        async def wait_ready(self) -> None:
            return None

        async def execute(self, run: CronRun) -> RunResult:
            now = time.time()
            starts[self.index].append(now)
            lateness.append(now - run.scheduled_at)
            scheduled[self.index].append(run.scheduled_at)
            return RunResult()

    async def main(state_dir: str) -> None:
        async with CronManager(state_dir=state_dir) as cron:
            for i in range(tasks):
                spec = CronSpec(name=f"t{i:03d}", target="bench:NoOp", interval=interval)
                cron.register_task(spec.name, spec=spec, executor=NoOp(i))
            gc.collect()
            gc.freeze()  # as `actorsup run` does once started (supervisor/app/_serve.py)
            await cron.start_all_tasks()
            await anyio.sleep(seconds + interval / 2)
            await cron.stop_all_tasks()

    with tempfile.TemporaryDirectory(prefix="actorsup-cron-bench-") as state_dir:
        anyio.run(main, state_dir, backend=backend)
    figures = _figures(starts, lateness, interval)
    figures["scheduled_drift_ms"] = max(
        abs(s[-1] - s[0] - (len(s) - 1) * interval) * 1000 for s in scheduled.values() if len(s) > 1
    )
    return figures


def _drop(logger: Any, method: str, event: dict[str, Any]) -> Any:
    import structlog

    raise structlog.DropEvent


# --- report ----------------------------------------------------------------------
def _row(label: str, ours: float | None, peer: float | None, target: str) -> str:
    def cell(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    return f"{label:<26}{cell(ours):>14}{cell(peer):>16}   {target}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--backend", choices=["trio", "asyncio"], default="trio")
    parser.add_argument("--skip-peer", action="store_true", help="do not run APScheduler")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--as-apscheduler-peer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.as_apscheduler_peer:
        apscheduler_peer(args.tasks, args.seconds, args.interval)
        return 0

    print(f"{args.tasks} tasks, every {args.interval:g}s, for {args.seconds:g}s; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    ours = run_actorsup(args.tasks, args.seconds, args.interval, args.backend)
    peer: dict[str, Any] | None = None
    note = ""
    if not args.skip_peer:
        try:
            peer = run_apscheduler(args.tasks, args.seconds, args.interval)
        except Exception as exc:  # report, still print our figures
            note = f"APScheduler not measured: {exc}"
    p = peer or {"runs": None, "lateness_ms": {}, "drift_ms": {}}
    print()
    print(f"{'':<26}{'actorsup/' + args.backend:>14}{'APScheduler 3.x':>16}   target")
    print(_row("runs", ours["runs"], p["runs"], ""))
    for key in ("p50", "p99", "max"):
        target = {"p99": "<= 10 ms, and <= APScheduler's"}.get(key, "")
        print(_row(f"lateness {key} (ms)", ours["lateness_ms"][key], p["lateness_ms"].get(key), target))
    print(_row("drift median (ms)", ours["drift_ms"]["median"], p["drift_ms"].get("median"), "0"))
    print(_row("drift max |.| (ms)", ours["drift_ms"]["max_abs"], p["drift_ms"].get("max_abs"), "0"))
    print(_row("drift trend (ms/hour)", ours["drift_ms"]["trend_per_hour"],
               p["drift_ms"].get("trend_per_hour"), "0 (median slope of start - grid)"))
    print(_row("scheduled-time drift (ms)", ours["scheduled_drift_ms"], None,
               "0 (last due - first due - (runs - 1) x interval)"))
    if note:
        print(note)
    if args.json:
        Path(args.json).write_text(json.dumps({"actorsup": ours, "apscheduler": peer}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
