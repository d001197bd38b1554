"""Scale benchmark: many idle actors under actorsup (fork server), and under supervisord 4.3.

For each ``--actors`` N (default 100), through the public contract only (``actorsup
run CONFIG`` as a subprocess, JSON lines on its stdout, its control socket):

1. an idle run, N ``bench_actors:Stamper`` actors beating at 1 Hz: time from
   ``actorsup run`` until every actor's first statement in ``run()``;
   the supervisor's RSS; the actors' total PSS and mean USS; the supervisor's
   idle CPU; ``status --json`` round trips (p50, p95); SIGTERM to exit, and
   whether anything was left;
2. a storm run, the same N plus 20 actors that crash 0.1 s after each start
   (backoff 0): ``status --json`` round trips during the storm, and crash ->
   the replacement's first statement for the crashing actors.

supervisord 4.3 (installed into benchmarks/.peers/) runs the same two
programs in the same invocation: Python processes with the same imports
(fixtures/scale_child.py, ``numprocs``); its status is XML-RPC
``getAllProcessInfo`` on its unix socket, what ``supervisorctl status`` asks.

Run from the repository root:  .venv/bin/python benchmarks/scale.py [--actors 100 1000]
It exits 0 when a target is missed (misses are marked MISS) and 1 only when a
measurement could not be made.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

from benchmarks._peers import descendants, peer_bin, peer_python, stop_tree, supervisord_head
from benchmarks._stats import Figure, report, summarize
from benchmarks.restart import (
    _NO_BACKOFF,
    FIXTURES,
    SUPERVISORD_PEER,
    SUPERVISORD_REQ,
    BenchError,
    EventStream,
    actorsup_command,
    write_config,
)
from supervisor.control import request
from supervisor.exceptions import SupervisorError

# Targets from issue 13 (per N where they differ).
STARTED_S = {100: 1.5, 1000: 20.0}
CRASH_P50_MS, CRASH_P95_MS = 3.0, 10.0
USS_MB = 5.0
RSS_MB = {1000: 200.0}
IDLE_CPU_PCT = {1000: 3.0}
STATUS_P95_MS = {1000: 100.0}
SIGTERM_S = {1000: 10.0}
CRASHERS = 20
CRASH_AFTER = 0.1


@dataclass
class Run:
    """Figures of one supervisor at one N (None: not measured)."""

    started_s: float | None = None
    rss_mb: float | None = None
    pss_mb: float | None = None
    uss_mb: float | None = None
    cpu_pct: float | None = None
    status_idle: list[float] = field(default_factory=list)
    status_storm: list[float] = field(default_factory=list)
    crash_ms: list[float] = field(default_factory=list)
    sigterm_s: float | None = None
    left: int | None = None
    note: str = ""


def _memory(procs: list[psutil.Process]) -> tuple[float, float]:
    """Total PSS and mean USS of ``procs``, in MB."""
    pss = uss = 0
    n = 0
    for proc in procs:
        try:
            full = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        pss += full.pss
        uss += full.uss
        n += 1
    return pss / 2**20, uss / 2**20 / max(n, 1)


def _cpu_pct(proc: psutil.Process, seconds: float) -> float:
    before = proc.cpu_times()
    t0 = time.monotonic()
    time.sleep(seconds)
    after = proc.cpu_times()
    used = (after.user - before.user) + (after.system - before.system)
    return 100 * used / (time.monotonic() - t0)


def _sample(call: Callable[[], object], n: int, pause: float) -> list[float]:
    latencies = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - start) * 1000)
        time.sleep(pause)
    return latencies


def _sigterm(proc: subprocess.Popen[bytes], watched: list[psutil.Process]) -> tuple[float, int]:
    """SIGTERM ``proc``: seconds until it exited, and how many of ``watched`` were alive 1 s later."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    took = time.monotonic() - t0
    _, alive = psutil.wait_procs(watched, timeout=1.0)
    left = 0
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            left += proc.status() != psutil.STATUS_ZOMBIE
    return took, left


# --- actorsup -----------------------------------------------------------------------
def _actors(n: int, crashers: int) -> dict[str, dict[str, Any]]:
    actors: dict[str, dict[str, Any]] = {f"idle{i:04d}": {"target": "bench_actors:Stamper"} for i in range(n)}
    for i in range(crashers):
        actors[f"crash{i:02d}"] = {"target": "bench_actors:Crasher", "args": {"after": CRASH_AFTER}, **_NO_BACKOFF}
    return actors


def _start_actorsup(cmd: list[str], folder: Path, supervisor: dict[str, Any],
                    actors: dict[str, dict[str, Any]]) -> tuple[subprocess.Popen[bytes], EventStream, float]:
    config = write_config(folder, {"heartbeat_interval": 1.0, "control_socket": "ctl.sock", **supervisor}, actors)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(FIXTURES), os.environ.get("PYTHONPATH")])))
    t0 = time.monotonic()
    proc = subprocess.Popen([*cmd, "run", str(config)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    assert proc.stdout is not None
    return proc, EventStream(proc.stdout), t0


def _wait_started(events: EventStream, names: set[str], timeout: float) -> tuple[dict[str, int], float]:
    """Every actor's first statement: their pids, and the last stamp."""
    pids: dict[str, int] = {}
    last = 0.0
    while len(pids) < len(names):
        _, event = events.until(
            lambda e: e.get("event") == "bench.first_statement" and e.get("actor") in names
            and e.get("actor") not in pids, timeout, f"the first statement of {len(names) - len(pids)} more actors")
        pids[event["actor"]] = event["pid"]
        last = max(last, float(event["t"]))
    return pids, last


def bench_actorsup(cmd: list[str], n: int, args: argparse.Namespace, problems: list[str]) -> Run:
    run = Run()
    supervisor = {"spawner": args.spawner}
    with tempfile.TemporaryDirectory(prefix="actorsup-scale-") as tmp:
        folder = Path(tmp)
        sock = folder / "ctl.sock"
        proc, events, t0 = _start_actorsup(cmd, folder, supervisor, _actors(n, 0))
        try:
            pids, last = _wait_started(events, {f"idle{i:04d}" for i in range(n)}, args.startup_timeout)
            run.started_s = last - t0
            time.sleep(args.settle)
            sup = psutil.Process(proc.pid)
            actors = [psutil.Process(pid) for pid in pids.values()]
            run.cpu_pct = _cpu_pct(sup, args.idle_seconds)
            run.rss_mb = sup.memory_info().rss / 2**20
            run.pss_mb, run.uss_mb = _memory(actors)
            run.status_idle = _sample(lambda: request(sock, "status", timeout=30), args.requests, args.pause)
            everything = descendants(proc.pid)
            run.sigterm_s, run.left = _sigterm(proc, everything)
        finally:
            problems += [f"actorsup: {p}" for p in stop_tree(proc, timeout=30)]
            events.close()
        proc, events, t0 = _start_actorsup(cmd, folder, supervisor, _actors(n, CRASHERS))
        try:
            names = {f"idle{i:04d}" for i in range(n)} | {f"crash{i:02d}" for i in range(CRASHERS)}
            _wait_started(events, names, args.startup_timeout)
            events.drain()
            run.status_storm = _sample(lambda: request(sock, "status", timeout=30), args.requests, args.pause)
            crashed: dict[str, float] = {}
            for event in events.drain():
                actor = event.get("actor", "")
                if not actor.startswith("crash"):
                    continue
                if event.get("event") == "bench.crashing":
                    crashed[actor] = float(event["t"])
                elif event.get("event") == "bench.first_statement" and actor in crashed:
                    run.crash_ms.append((float(event["t"]) - crashed.pop(actor)) * 1000)
        finally:
            problems += [f"actorsup: {p}" for p in stop_tree(proc, timeout=60)]
            events.close()
    return run


# --- supervisord --------------------------------------------------------------------
_SUPERVISORD_CONF = supervisord_head(loglevel="warn", extra="minfds = 16384\n") + """\
[program:idle]
command = {python} {script} {stamps}
process_name = %(program_name)s%(process_num)04d
numprocs = {n}
startsecs = 0
stopwaitsecs = 5
stdout_logfile = NONE
redirect_stderr = true
{crash}"""

_CRASH_PROGRAM = """
[program:crash]
command = {python} {script} {stamps} --crash {after}
process_name = %(program_name)s%(process_num)02d
numprocs = {crashers}
autorestart = true
startsecs = 0
startretries = 1000000
stdout_logfile = NONE
redirect_stderr = true
"""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixConnection(self._path)


def _sd_status(path: str) -> object:
    """One `supervisorctl status` round trip, on a fresh connection."""
    return xmlrpc.client.ServerProxy("http://localhost", transport=_UnixTransport(path)).supervisor.getAllProcessInfo()


class _Stamps:
    """Datagrams from scale_child.py, read in a thread."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.got: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while True:
            try:
                self.got.append(json.loads(self.sock.recv(4096)))
            except OSError:
                return

    def firsts(self) -> set[int]:
        return {m["pid"] for m in self.got if m["kind"] == "first"}

    def close(self) -> None:
        self.sock.close()


def _run_supervisord(tmp: str, n: int, crashers: int, stamps: str) -> subprocess.Popen[bytes]:
    supervisord = peer_bin(SUPERVISORD_PEER, "supervisord")
    script = FIXTURES / "scale_child.py"
    crash = _CRASH_PROGRAM.format(python=sys.executable, script=script, stamps=stamps, after=CRASH_AFTER,
                                  crashers=crashers) if crashers else ""
    conf = Path(tmp) / "supervisord.conf"
    conf.write_text(_SUPERVISORD_CONF.format(tmp=tmp, python=sys.executable, script=script, stamps=stamps,
                                             n=n, crash=crash))
    return subprocess.Popen([str(supervisord), "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchError(f"supervisord: no {what} within {timeout:g}s")
        time.sleep(0.02)


def bench_supervisord(n: int, args: argparse.Namespace, problems: list[str]) -> Run:
    peer_python(SUPERVISORD_PEER, SUPERVISORD_REQ)
    run = Run()
    with tempfile.TemporaryDirectory(prefix="sd-scale-") as tmp:
        rpc = f"{tmp}/supervisor.sock"
        stamps = _Stamps(f"{tmp}/stamps.sock")
        t0 = time.monotonic()
        proc = _run_supervisord(tmp, n, 0, stamps.sock.getsockname())
        try:
            _wait(lambda: len(stamps.firsts()) >= n, args.startup_timeout, f"first stamps of {n} programs")
            run.started_s = max(m["t"] for m in stamps.got) - t0
            time.sleep(args.settle)
            sup = psutil.Process(proc.pid)
            kids = [psutil.Process(pid) for pid in stamps.firsts()]
            run.cpu_pct = _cpu_pct(sup, args.idle_seconds)
            run.rss_mb = sup.memory_info().rss / 2**20
            run.pss_mb, run.uss_mb = _memory(kids)
            run.status_idle = _sample(lambda: _sd_status(rpc), args.requests, args.pause)
            run.sigterm_s, run.left = _sigterm(proc, descendants(proc.pid))
        finally:
            problems += [f"supervisord: {p}" for p in stop_tree(proc, timeout=30)]
            stamps.close()
    with tempfile.TemporaryDirectory(prefix="sd-scale-") as tmp:
        rpc = f"{tmp}/supervisor.sock"
        stamps = _Stamps(f"{tmp}/stamps.sock")
        proc = _run_supervisord(tmp, n, CRASHERS, stamps.sock.getsockname())
        try:
            _wait(lambda: len(stamps.firsts()) >= n + CRASHERS, args.startup_timeout, "the first stamps")
            seen = len(stamps.got)
            run.status_storm = _sample(lambda: _sd_status(rpc), args.requests, args.pause)
            crashed: dict[int, float] = {}  # supervisord reuses no name per pid: pair by order of arrival
            pending: list[float] = []
            for m in stamps.got[seen:]:
                if m["kind"] == "crash":
                    crashed[m["pid"]] = m["t"]
                    pending.append(m["t"])
                elif pending:
                    run.crash_ms.append((m["t"] - pending.pop(0)) * 1000)
            run.note = "crash -> next program's first stamp, in order (supervisord gives no per-name stamp)"
        finally:
            problems += [f"supervisord: {p}" for p in stop_tree(proc, timeout=60)]
            stamps.close()
    return run


# --- report -------------------------------------------------------------------------
def _figures(n: int, who: str, run: Run, targets: bool) -> list[Figure]:
    def t(table: dict[int, float] | float) -> float | None:
        if not targets:
            return None
        return table if isinstance(table, float) else table.get(n)

    p = f"{n} {who}:"
    out = [
        Figure(f"{p} all started", run.started_s, "s", target=t(STARTED_S), note="run -> every first statement"),
        Figure(f"{p} supervisor RSS", run.rss_mb, "MB", target=t(RSS_MB)),
        Figure(f"{p} children PSS, total", run.pss_mb, "MB"),
        Figure(f"{p} children USS, mean", run.uss_mb, "MB", target=t(USS_MB)),
        Figure(f"{p} idle CPU, supervisor", run.cpu_pct, "% core", target=t(IDLE_CPU_PCT), note="beats at 1 Hz"),
    ]
    for phase, samples in (("idle", run.status_idle), ("storm", run.status_storm)):
        if samples:
            s = summarize(samples)
            out.append(Figure(f"{p} status p50, {phase}", s.p50, "ms", note=f"n={s.n}"))
            out.append(Figure(f"{p} status p95, {phase}", s.p95, "ms", target=t(STATUS_P95_MS),
                              note=f"max {s.max:.1f}"))
    if run.crash_ms:
        s = summarize(run.crash_ms)
        out.append(Figure(f"{p} storm crash -> first statement p50", s.p50, "ms", target=t(CRASH_P50_MS),
                          note=f"n={s.n}; {CRASHERS} actors crashing {CRASH_AFTER:g}s after start. {run.note}"))
        out.append(Figure(f"{p} storm crash -> first statement p95", s.p95, "ms", target=t(CRASH_P95_MS)))
    out.append(Figure(f"{p} SIGTERM -> exit", run.sigterm_s, "s", target=t(SIGTERM_S),
                      note=f"processes left after 1 s: {run.left}"))
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--actors", type=int, nargs="+", default=[100], help="N idle actors per run (default 100)")
    parser.add_argument("--spawner", choices=["forkserver", "spawn"], default="forkserver")
    parser.add_argument("--skip-peer", action="store_true", help="do not measure supervisord")
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="idle CPU window (s)")
    parser.add_argument("--settle", type=float, default=3.0, help="pause after start-up before measuring (s)")
    parser.add_argument("--requests", type=int, default=100, help="status round trips per phase")
    parser.add_argument("--pause", type=float, default=0.02, help="pause between status round trips (s)")
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the figures as JSON")
    parser.add_argument("--plain", action="store_true", help="plain-text table instead of rich")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cmd = actorsup_command(None)
    figures: list[Figure] = []
    problems: list[str] = []
    errors: list[str] = []
    load_before = os.getloadavg()
    for n in args.actors:
        runs: list[tuple[str, Callable[[], Run], bool]] = [
            (f"actorsup ({args.spawner})", lambda n=n: bench_actorsup(cmd, n, args, problems), True)]
        if not args.skip_peer:
            runs.append(("supervisord 4.3", lambda n=n: bench_supervisord(n, args, problems), False))
        for who, bench, targets in runs:
            print(f"measuring {who}, {n} actors ...", file=sys.stderr, flush=True)
            try:
                figures += _figures(n, who, bench(), targets)
            except (SupervisorError, OSError, psutil.Error, subprocess.TimeoutExpired) as exc:
                errors.append(f"{who} {n}: {exc}")
                figures.append(Figure(f"{n} {who}", None, note=f"not measured: {str(exc).splitlines()[0]}"))
    return report("actorsup scale benchmark", figures, setup=f"actorsup: {' '.join(cmd)}",
                  load_before=load_before,
                  problems=problems, errors=errors, plain=args.plain, json_path=args.json)


if __name__ == "__main__":
    sys.exit(main())
