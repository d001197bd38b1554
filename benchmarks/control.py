"""Latency of `actorsup status --json` round trips: idle and during a restart storm.

One sample = connect to the control socket + send {"cmd": "status"} + read the
whole reply (what `actorsup status --json` does, minus interpreter start-up).

Three targets:

* default: an in-process fake ControlTarget with ``--rows`` rows, served by the
  real ControlServer on a trio loop in a background thread. In the storm phase
  a task on that loop mutates rows, publishes bus events and appends log lines
  every millisecond, and one `events` client streams the whole time.
* ``--real``: generates two configs (``--rows`` idle process actors; the same
  with ``--crashers`` of them crashing ``--crash-every`` seconds after each
  start, backoff 0) and runs ``actorsup run CONFIG`` for each as a subprocess.
* ``--config CONFIG``: runs ``actorsup run CONFIG`` as it is and measures once.

Run from the repository root:  .venv/bin/python benchmarks/control.py [--real]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio
import anyio.from_thread
import anyio.lowlevel
import psutil
import structlog

from benchmarks._peers import stop_tree
from benchmarks._stats import Figure, figures_json, print_figures, summarize
from supervisor.config import parse_config
from supervisor.control import ControlClient, ControlError, ControlServer, request, socket_path_for
from supervisor.control.testing import FakeTarget, make_rows

TARGET_P95_MS = 100.0
STATES = ("running", "errored", "backoff", "starting")

ACTORS_MODULE = '''
import anyio
from actors import Actor


class Idle(Actor):
    async def run(self) -> None:
        await anyio.sleep_forever()


class Crasher(Actor):
    def __init__(self, after: float = 0.1) -> None:
        self.after = after

    async def run(self) -> None:
        await anyio.sleep(self.after)
        raise RuntimeError("storm")
'''


# --- sampling -------------------------------------------------------------------
def sample(path: Path, n: int, pause: float) -> tuple[list[float], int]:
    """``n`` status round trips on fresh connections; latencies in ms and the last row count."""
    latencies: list[float] = []
    rows = 0
    for _ in range(n):
        start = time.perf_counter()
        result = request(path, "status", timeout=30)
        latencies.append((time.perf_counter() - start) * 1000)
        rows = len(result)
        if pause:
            time.sleep(pause)
    return latencies, rows


def figures(phase: str, latencies: list[float], rows: int, note: str = "",
            host: tuple[float, float] | None = None) -> list[Figure]:
    s = summarize(latencies)
    out = [
        Figure(f"{phase}: median", s.p50, "ms", note=f"{s.n} samples, {rows} rows"),
        Figure(f"{phase}: p95", s.p95, "ms", target=TARGET_P95_MS, note=note),
        Figure(f"{phase}: max", s.max, "ms"),
    ]
    if host is not None:  # the figures mean little on a saturated machine: say how busy it was
        busy, load = host
        out.append(Figure(f"{phase}: host CPU busy", busy, "%",
                          note=f"all {psutil.cpu_count()} cores; 1-min load average {load:.1f}"))
    return out


@contextmanager
def host_load() -> Iterator[list[tuple[float, float]]]:
    """Measure system-wide CPU use over the block; the result lands in the yielded list."""
    box: list[tuple[float, float]] = []
    psutil.cpu_percent()
    yield box
    box.append((psutil.cpu_percent(), os.getloadavg()[0]))


@contextmanager
def events_client(path: Path) -> Iterator[list[int]]:
    """Stream `events` in a thread for the duration; yields a one-item event counter."""
    count = [0]
    client = ControlClient(path, timeout=30)

    def read() -> None:
        try:
            for _ in client.stream("events"):
                count[0] += 1
        except (ControlError, OSError, ValueError):
            pass  # closed under our feet at the end

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        yield count
    finally:
        client._sock.shutdown(2)  # wake the reader, then close
        thread.join(5)
        client.close()


# --- in-process fake ---------------------------------------------------------------
@contextmanager
def fake_server(path: Path, rows: int, storm: bool) -> Iterator[FakeTarget]:
    """Serve a FakeTarget on a trio loop in a thread; with ``storm``, mutate it every ms."""
    target = FakeTarget(make_rows(rows))
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def mutate() -> None:
        names = list(target.rows)[:20]
        restarts = 0
        while True:
            await anyio.sleep(0.001)
            row = target.rows[random.choice(names)]
            restarts += 1
            row.update(state=random.choice(STATES), pid=random.randrange(10**5, 10**6),
                       restarts=restarts, uptime=0.0, last_error="RuntimeError: storm")
            target.bus.publish({"event": "actor.exited", "actor": row["name"], "exit_code": 1})
            target.log("actor.exited", actor=row["name"], exit_code=1)

    async def main() -> None:
        box["token"] = anyio.lowlevel.current_token()
        box["stop"] = stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            await tg.start(ControlServer(target, path).serve)
            if storm:
                tg.start_soon(mutate)
            ready.set()
            await stop.wait()
            tg.cancel_scope.cancel()

    thread = threading.Thread(target=lambda: anyio.run(main, backend="trio"), daemon=True)
    thread.start()
    if not ready.wait(10):
        raise SystemExit("the fake control server did not start")
    try:
        yield target
    finally:
        anyio.from_thread.run_sync(box["stop"].set, token=box["token"])
        thread.join(10)


def run_fake(args: argparse.Namespace) -> list[Figure]:
    out: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="ctlb-", dir="/tmp") as tmp:
        path = Path(tmp) / "s.sock"
        with fake_server(path, args.rows, storm=False):
            sample(path, 20, 0)  # warm up
            with host_load() as host:
                lat, rows = sample(path, args.requests, args.pause)
            out += figures("fake idle", lat, rows, host=host[0])
        with fake_server(path, args.rows, storm=True), events_client(path) as seen:
            sample(path, 20, 0)
            with host_load() as host:
                lat, rows = sample(path, args.requests, args.pause)
            out += figures("fake storm", lat, rows, note=f"1 mutation/ms; events client got {seen[0]}",
                           host=host[0])
    return out


# --- the real supervisor ------------------------------------------------------------
def actorsup_command() -> list[str]:
    script = Path(sys.executable).with_name("actorsup")
    return [str(script)] if script.exists() else [sys.executable, "-m", "supervisor"]


def write_config(folder: Path, rows: int, crashers: int, every: float) -> Path:
    (folder / "ctl_bench_actors.py").write_text(ACTORS_MODULE)
    lines = ["[supervisor]", "heartbeat_interval = 1.0", 'control_socket = "s.sock"', ""]
    for i in range(rows):
        crash = i < crashers
        lines += [f"[actors.a{i:03d}]", f'target = "ctl_bench_actors:{"Crasher" if crash else "Idle"}"']
        if crash:
            lines += [f"args = {{ after = {every} }}", "backoff_initial = 0",
                      "max_restarts = 1000000", "restart_window = 1"]
        lines.append("")
    path = folder / ("storm.toml" if crashers else "idle.toml")
    path.write_text("\n".join(lines))
    return path


def wait_until_up(proc: subprocess.Popen[bytes], path: Path, want: int, timeout: float) -> int:
    """Poll status until ``want`` actors are running (or the deadline); the count reached."""
    deadline = time.monotonic() + timeout
    running = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"actorsup run exited with {proc.returncode} before it was up")
        try:
            running = sum(r.get("state") == "running" for r in request(path, "status", timeout=10))
        except ControlError:
            running = 0
        if running >= want:
            return running
        time.sleep(0.5)
    return running


def run_real(config: Path, phase: str, args: argparse.Namespace, want: int) -> list[Figure]:
    cfg = parse_config(__import__("tomllib").loads(config.read_text()), source=config.resolve(),
                       import_targets=False)
    path = socket_path_for(cfg)
    proc = subprocess.Popen([*actorsup_command(), "run", str(config)], cwd=config.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        up = wait_until_up(proc, path, want, args.startup_timeout)
        time.sleep(args.settle)
        with events_client(path) as seen:
            sample(path, 20, 0)
            with host_load() as host:
                lat, rows = sample(path, args.requests, args.pause)
        note = f"{up}/{want} running at start; events client got {seen[0]}"
        return figures(phase, lat, rows, note=note, host=host[0])
    finally:
        for line in stop_tree(proc, timeout=30):
            print(f"LEAK/WARNING: {line}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--real", action="store_true", help="generate idle and storm configs and run actorsup")
    target.add_argument("--config", type=Path, help="run `actorsup run CONFIG` and measure it as it is")
    parser.add_argument("--rows", type=int, default=200, help="actors / rows (default 200)")
    parser.add_argument("--crashers", type=int, default=20, help="--real: actors that crash (default 20)")
    parser.add_argument("--crash-every", type=float, default=0.1, help="--real: seconds from start to crash")
    parser.add_argument("--requests", type=int, default=300, help="samples per phase (default 300)")
    parser.add_argument("--pause", type=float, default=0.01, help="seconds between samples")
    parser.add_argument("--settle", type=float, default=2.0, help="--real/--config: seconds after start-up")
    parser.add_argument("--startup-timeout", type=float, default=180.0)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--plain", action="store_true", help="plain-text table")
    args = parser.parse_args(argv)
    # The in-process server logs through structlog; keep its per-request debug lines off the table.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    if args.config:
        want = len(parse_config(__import__("tomllib").loads(args.config.read_text()),
                                source=args.config.resolve(), import_targets=False).actors)
        out = run_real(args.config, "config", args, want)
        title = f"status --json round trip, actorsup run {args.config}"
    elif args.real:
        with tempfile.TemporaryDirectory(prefix="ctlb-", dir="/tmp") as tmp:
            folder = Path(tmp)
            out = run_real(write_config(folder, args.rows, 0, args.crash_every), "real idle", args, args.rows)
            storm = write_config(folder, args.rows, args.crashers, args.crash_every)
            out += run_real(storm, "real storm", args, args.rows - args.crashers)
        title = (f"status --json round trip, actorsup run: {args.rows} actors, "
                 f"{args.crashers} crashing every {args.crash_every:g}s")
    else:
        out = run_fake(args)
        title = f"status --json round trip, in-process fake target, {args.rows} rows"
    print_figures(title, out, plain=args.plain)
    if args.json:
        args.json.write_text(figures_json(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
