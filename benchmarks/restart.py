"""Restart benchmark: actorsup against its targets, and against supervisord 4.3.

Measures, through the public contract only (``actorsup run CONFIG`` as a
subprocess, JSON log lines on its stdout):

1. crash -> replacement running: SIGKILL of a child until the replacement's
   first statement in ``run()`` (a ``time.monotonic()`` stamp it logs),
   with the fork server, a warm spare, and a plain spawn;
2. hang -> ``actor.heartbeat_timeout``: when the benchmark reads that line,
   minus when the actor blocked its loop, minus ``heartbeat_timeout``;
3. supervisord 4.3 on the same crash (installed into benchmarks/.peers/);
4. idle CPU and RSS of the supervisor with 50 process actors beating at 1 Hz;
5. ``command``: ``sleep`` as a command actor and as a supervisord program, in
   the same run: SIGKILL -> the new ``sleep`` exists (both watched the same
   way, from /proc); and a command actor's last ``WATCHDOG=1`` (sd_notify) ->
   ``actor.heartbeat_timeout``, minus ``heartbeat_timeout``.

Run from the repository root:  .venv/bin/python benchmarks/restart.py [--quick]
It exits 0 when a target is missed (misses are marked MISS) and 1 only when a
measurement could not be made.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._peers import descendants, peer_bin, peer_python, stop_tree, supervisord_head
from benchmarks._stats import Figure, report, summarize
from supervisor.exceptions import SupervisorError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SUPERVISORD_PEER = "supervisord-4.3"
SUPERVISORD_REQ = ["supervisor>=4.3,<4.4"]

# Targets from the issue (section 9).
CRASH_P50_MS = 200.0
FORK_P50_MS = 3.0  # issue 13: crash -> first statement with the fork server
FORK_P95_MS = 10.0
HANG_EXCESS_MS = 50.0
IDLE_CPU_PCT = 1.0
SUPERVISOR_RSS_MB = 60.0

HEARTBEAT_INTERVAL = 0.1
HEARTBEAT_TIMEOUT = 0.3


class BenchError(SupervisorError):
    """A measurement could not be made (the supervisor died, an event never came)."""


# --- reading the supervisor's JSON lines -------------------------------------------
class EventStream:
    """Reads one JSON object per line from a pipe in a thread, stamping read times.

    The thread keeps the pipe drained at all times, so the supervisor never
    blocks on a full stdout while the benchmark is busy elsewhere.
    """

    def __init__(self, pipe: Any) -> None:
        self._queue: queue.Queue[tuple[float, dict[str, Any]] | None] = queue.Queue()
        self.tail: deque[str] = deque(maxlen=30)
        self._thread = threading.Thread(target=self._pump, args=(pipe,), daemon=True)
        self._thread.start()

    def _pump(self, pipe: Any) -> None:
        for raw in iter(pipe.readline, b""):
            now = time.monotonic()
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.tail.append(line)
            try:
                obj = json.loads(line)
            except ValueError:
                obj = {"event": "bench.non_json_line", "line": line}
            if not isinstance(obj, dict):
                obj = {"event": "bench.non_json_line", "line": line}
            self._queue.put((now, obj))
        self._queue.put(None)

    def until(
        self, match: Callable[[dict[str, Any]], bool], timeout: float, what: str
    ) -> tuple[float, dict[str, Any]]:
        """Skip events until ``match`` holds; return (read time, event)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=max(left, 0.0)) if left > 0 else None
            except queue.Empty:
                item = None
                left = 0
            if item is None:
                why = f"no {what} within {timeout:g}s" if left <= 0 else f"stdout closed before {what}"
                raise BenchError(why + "; last lines:\n  " + "\n  ".join(self.tail))
            _, event = item
            if event.get("event") == "actor.failed":
                raise BenchError(f"actor went to failed: {event}")
            if match(event):
                return item

    def drain(self) -> list[dict[str, Any]]:
        """Every event read so far and not yet consumed."""
        events: list[dict[str, Any]] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return events
            if item is not None:
                events.append(item[1])

    def close(self) -> None:
        self._thread.join(timeout=5)


def _is(event: dict[str, Any], name: str, actor: str) -> bool:
    return event.get("event") == name and event.get("actor") == actor


# --- running actorsup ---------------------------------------------------------------
def actorsup_command(override: str | None) -> list[str]:
    """``actorsup`` next to this interpreter, else ``python -m supervisor``."""
    if override:
        return override.split()
    script = Path(sys.executable).parent / "actorsup"
    return [str(script)] if script.exists() else [sys.executable, "-m", "supervisor"]


@dataclass
class Supervised:
    """One ``actorsup run`` subprocess; the children it started, by identity."""

    proc: subprocess.Popen[bytes]
    events: EventStream
    children: dict[int, psutil.Process] = field(default_factory=dict)

    def record(self, pid: int) -> psutil.Process:
        """Record child ``pid`` with its create_time, checking it is ours."""
        try:
            child = psutil.Process(pid)
        except psutil.NoSuchProcess:
            raise BenchError(f"child pid {pid} from actor.started is already gone") from None
        if pid not in {p.pid for p in descendants(self.proc.pid)}:
            raise BenchError(f"pid {pid} is not a descendant of the supervisor {self.proc.pid}")
        self.children[pid] = child
        return child


@contextmanager
def run_actorsup(cmd: list[str], config: Path, problems: list[str]) -> Iterator[Supervised]:
    """Start ``actorsup run config``; on exit stop it with SIGTERM and check for leftovers."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(FIXTURES), os.environ.get("PYTHONPATH")])))
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 (outlives this function: the caller reads it)
    proc = subprocess.Popen(
        [*cmd, "run", str(config)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=env,
        start_new_session=True,  # a ^C on the benchmark must not reach it first
    )
    assert proc.stdout is not None
    run = Supervised(proc, EventStream(proc.stdout))
    try:
        yield run
    except BenchError as exc:
        stderr.seek(0)
        err = stderr.read().decode("utf-8", "replace").strip()
        if err:
            raise BenchError(f"{exc}\nsupervisor stderr (tail):\n{err[-2000:]}") from None
        raise
    finally:
        leftovers = stop_tree(proc, timeout=15, known=run.children.values())
        problems += [f"actorsup: {p}" for p in leftovers]
        if proc.returncode not in (0, None):
            problems.append(f"actorsup run exited with {proc.returncode} after SIGTERM (expected 0)")
        run.events.close()
        proc.stdout.close()
        stderr.close()


def write_config(folder: Path, supervisor: dict[str, Any], actors: dict[str, dict[str, Any]]) -> Path:
    """Write a TOML config (only flat tables of scalars and inline tables are needed)."""

    def value(v: Any) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return json.dumps(v)  # strings, numbers and booleans are TOML-compatible

    lines = ["[supervisor]", *(f"{k} = {value(v)}" for k, v in supervisor.items())]
    for name, table in actors.items():
        lines += ["", f"[actors.{name}]", *(f"{k} = {value(v)}" for k, v in table.items())]
    path = folder / "bench.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


# Never reach "failed", and restart at once: we measure the restart itself, not backoff.
_NO_BACKOFF = {
    "max_restarts": 1_000_000,
    "restart_window": 1.0,
    "backoff_initial": 0.0,
    "backoff_max": 0.0,
}


def _replacement(run: Supervised, actor: str, old_pid: int | None, timeout: float) -> tuple[int, float]:
    """Wait for both actor.started and the first-statement stamp of a new child."""
    started: int | None = None
    stamps: dict[int, float] = {}
    while True:
        _, event = run.events.until(
            lambda e: e.get("actor") == actor
            and e.get("event") in ("actor.started", "bench.first_statement"),
            timeout, f"a replacement of {actor!r}",
        )
        pid = event.get("pid")
        if not isinstance(pid, int) or pid == old_pid:
            continue
        if event["event"] == "actor.started":
            started = pid
        else:
            stamps[pid] = float(event["t"])
        if started is not None and started in stamps:
            return started, stamps[started]


def _kill_verified(run: Supervised, pid: int) -> float:
    """SIGKILL child ``pid`` after checking its identity; return the kill time."""
    child = run.children[pid]
    if psutil.Process(pid).create_time() != child.create_time():
        raise BenchError(f"pid {pid} was reused by another process; not killing it")
    t_kill = time.monotonic()
    child.send_signal(signal.SIGKILL)  # psutil re-checks the identity as well
    return t_kill


def bench_crash(cmd: list[str], n: int, settle: float, problems: list[str],
                extra: dict[str, Any]) -> list[float]:
    """Crash -> replacement running, in ms, ``n`` samples."""
    samples: list[float] = []
    with tempfile.TemporaryDirectory(prefix="actorsup-bench-") as tmp:
        config = write_config(
            Path(tmp),
            {"heartbeat_interval": 1.0, "stop_timeout": 1.0, **extra},
            {"crash": {"target": "bench_actors:Stamper", **_NO_BACKOFF}},
        )
        with run_actorsup(cmd, config, problems) as run:
            pid, _ = _replacement(run, "crash", None, timeout=60)
            lost = 0
            while len(samples) < n:
                time.sleep(settle)  # let the child finish start-up work before the next kill
                try:
                    run.record(pid)
                    t_kill = _kill_verified(run, pid)
                except (BenchError, psutil.NoSuchProcess) as exc:
                    # It died on its own (a heartbeat timeout on a starved machine?): not a sample.
                    lost += 1
                    if lost > n:
                        raise BenchError(f"{lost} children exited before the benchmark killed them") from exc
                    pid, _ = _replacement(run, "crash", pid, timeout=30)
                    continue
                pid, t_first = _replacement(run, "crash", pid, timeout=30)
                samples.append((t_first - t_kill) * 1000)
            if lost:
                problems.append(f"crash: {lost} children exited on their own (not counted)")
    return samples


def bench_hang(cmd: list[str], n: int, problems: list[str],
               extra: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Hang -> heartbeat_timeout excess, in ms: by read time, and by ``last_beat_age``."""
    excess: list[float] = []
    beat_excess: list[float] = []
    with tempfile.TemporaryDirectory(prefix="actorsup-bench-") as tmp:
        config = write_config(
            Path(tmp),
            {"heartbeat_interval": HEARTBEAT_INTERVAL, "heartbeat_timeout": HEARTBEAT_TIMEOUT,
             "stop_timeout": 0.1, **extra},
            {"hang": {"target": "bench_actors:Hanger", **_NO_BACKOFF,
                      "args": {"settle": 0.3, "phase": HEARTBEAT_INTERVAL,
                               "block": 3600.0}}},
        )
        with run_actorsup(cmd, config, problems) as run:
            blocks: dict[Any, float] = {}  # pid -> when its loop blocked
            lost = 0
            while len(excess) < n:
                t_read, event = run.events.until(
                    lambda e: _is(e, "bench.block", "hang") or _is(e, "actor.heartbeat_timeout", "hang"),
                    60, "bench.block or actor.heartbeat_timeout")
                pid = event.get("pid")
                if event["event"] == "bench.block":
                    blocks[pid] = float(event["t"])
                    if isinstance(pid, int) and psutil.pid_exists(pid):
                        run.record(pid)
                    continue
                t_block = blocks.pop(pid, None)
                if t_block is None:
                    # Timed out before it blocked: a child starved at start-up. Not a sample.
                    lost += 1
                    if lost > n:
                        raise BenchError(f"{lost} heartbeat timeouts came before the actor blocked "
                                         "(is the machine overloaded?)")
                    continue
                excess.append((t_read - t_block - HEARTBEAT_TIMEOUT) * 1000)
                age = event.get("last_beat_age")
                if isinstance(age, (int, float)):
                    beat_excess.append((age - HEARTBEAT_TIMEOUT) * 1000)
            if lost:
                problems.append(f"hang: {lost} heartbeat timeouts before the block (not counted)")
    return excess, beat_excess


@dataclass
class IdleFigures:
    actors: int
    seconds: float
    cpu_pct: float
    rss_mb: float
    children: int
    children_rss_mb: float
    children_pss_mb: float | None
    children_cpu_pct: float
    restarts_at_start: str
    restarts_during: str


def bench_idle(cmd: list[str], actors: int, seconds: float, settle: float,
               problems: list[str], extra: dict[str, Any]) -> IdleFigures:
    """CPU and memory of the supervisor with ``actors`` idle process actors at 1 Hz."""
    with tempfile.TemporaryDirectory(prefix="actorsup-bench-") as tmp:
        names = [f"idle{i:02d}" for i in range(actors)]
        config = write_config(
            Path(tmp),
            {"heartbeat_interval": 1.0, **extra},
            {name: {"target": "bench_actors:Idle"} for name in names},
        )
        with run_actorsup(cmd, config, problems) as run:
            waiting = set(names)
            while waiting:
                _, event = run.events.until(
                    lambda e: e.get("event") == "actor.started" and e.get("actor") in waiting,
                    120, f"actor.started of {len(waiting)} more actors")
                waiting.discard(event["actor"])
            time.sleep(settle)  # start-up is over; measure the steady state
            early = _troubles(run.events.drain())
            sup = psutil.Process(run.proc.pid)
            kids = descendants(run.proc.pid)
            before = sup.cpu_times()
            kids_before = {k.pid: _cpu(k) for k in kids}
            t0 = time.monotonic()
            time.sleep(seconds)
            wall = time.monotonic() - t0
            after = sup.cpu_times()
            kids_cpu = sum(_cpu(k) - kids_before[k.pid] for k in kids if k.is_running())
            rss = sup.memory_info().rss
            kids_rss, kids_pss = 0, 0
            pss_ok = True
            for kid in kids:
                try:
                    full = kid.memory_full_info()
                    kids_rss += full.rss
                    kids_pss += getattr(full, "pss", 0)
                except psutil.AccessDenied:
                    kids_rss += kid.memory_info().rss
                    pss_ok = False
                except psutil.NoSuchProcess:
                    pass
            if run.proc.poll() is not None:
                raise BenchError("the supervisor exited during the idle measurement")
            run.children.update((k.pid, k) for k in kids)
            during = _troubles(run.events.drain())
    used = (after.user - before.user) + (after.system - before.system)
    return IdleFigures(
        actors=actors,
        seconds=wall,
        cpu_pct=100 * used / wall,
        rss_mb=rss / 2**20,
        children=len(kids),
        children_rss_mb=kids_rss / 2**20,
        children_pss_mb=kids_pss / 2**20 if pss_ok else None,
        children_cpu_pct=100 * kids_cpu / wall,
        restarts_at_start=early,
        restarts_during=during,
    )


def _troubles(events: list[dict[str, Any]]) -> str:
    """Actor exits among ``events``, by reason: "" when none, else "3 (crash/SIGKILL: 3)"."""
    reasons = Counter(
        f"{e.get('reason', '?')}/{e.get('signal') or e.get('exit_code')}"
        for e in events if e.get("event") == "actor.exited"
    )
    if not reasons:
        return ""
    return f"{reasons.total()} ({', '.join(f'{r}: {n}' for r, n in reasons.most_common(3))})"


def _cpu(proc: psutil.Process) -> float:
    try:
        t = proc.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(t.user + t.system)


# --- supervisord ----------------------------------------------------------------------
_SUPERVISORD_CONF = supervisord_head() + """\
[program:x]
command = {program}
autorestart = true
startsecs = 0
startretries = 1000000
stopsignal = TERM
stopwaitsecs = 2
stdout_logfile = {tmp}/x.log
redirect_stderr = true
"""


def bench_supervisord(n: int, settle: float, bare: bool, problems: list[str]) -> list[float]:
    """The same crash under supervisord 4.3: SIGKILL -> replacement's first stamp, in ms."""
    peer_python(SUPERVISORD_PEER, SUPERVISORD_REQ)
    supervisord = peer_bin(SUPERVISORD_PEER, "supervisord")
    samples: list[float] = []
    with tempfile.TemporaryDirectory(prefix="sd-bench-") as tmp, \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as stamps:
        stamp_path = f"{tmp}/stamp.sock"
        stamps.bind(stamp_path)
        conf = Path(tmp) / "supervisord.conf"
        program = f"{sys.executable} {FIXTURES / 'sd_child.py'} {stamp_path}{' --bare' if bare else ''}"
        conf.write_text(_SUPERVISORD_CONF.format(tmp=tmp, program=program))
        log = open(Path(tmp) / "supervisord.out", "wb")  # noqa: SIM115 (closed with the peer below)
        proc = subprocess.Popen([str(supervisord), "-c", str(conf)], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        children: dict[int, psutil.Process] = {}

        def next_stamp(old: int | None, timeout: float) -> tuple[int, float]:
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                stamps.settimeout(left)
                try:
                    msg = json.loads(stamps.recv(4096))
                except TimeoutError:
                    break
                if msg["pid"] != old:
                    if msg["pid"] not in {p.pid for p in descendants(proc.pid)}:
                        raise BenchError(f"stamp from pid {msg['pid']}, not a child of supervisord")
                    children[msg["pid"]] = psutil.Process(msg["pid"])
                    return msg["pid"], float(msg["t"])
            log.flush()
            raise BenchError(f"supervisord: no child stamp within {timeout:g}s; see "
                             f"{Path(tmp) / 'supervisord.log'}: "
                             + (Path(tmp) / "supervisord.log").read_text()[-1500:])

        try:
            pid, _ = next_stamp(None, 60)
            for _ in range(n):
                time.sleep(settle)
                child = children[pid]
                if psutil.Process(pid).create_time() != child.create_time():
                    raise BenchError(f"pid {pid} was reused; not killing it")
                t_kill = time.monotonic()
                child.send_signal(signal.SIGKILL)
                pid, t_first = next_stamp(pid, 30)
                samples.append((t_first - t_kill) * 1000)
        finally:
            leftovers = stop_tree(proc, timeout=15, known=children.values())
            problems += [f"supervisord: {p}" for p in leftovers]
            log.close()
    return samples


# --- command actors -----------------------------------------------------------------------
def _sleep_child(parent: int, old: int | None, timeout: float) -> tuple[int, float]:
    """Poll /proc until ``parent`` has a ``sleep`` child other than ``old``: (pid, when seen)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in _children(parent):
            if pid != old and _comm(pid) == "sleep":
                return pid, time.monotonic()
        time.sleep(0.0005)
    raise BenchError(f"no new sleep child of {parent} within {timeout:g}s")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += map(int, f.read().split())
    except OSError:
        pass
    return found


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _sleep_crashes(parent: int, n: int, settle: float, known: dict[int, psutil.Process]) -> list[float]:
    """SIGKILL the ``sleep`` child of ``parent`` ``n`` times; ms until its replacement exists."""
    samples: list[float] = []
    pid, _ = _sleep_child(parent, None, 60)
    for _ in range(n):
        time.sleep(settle)
        child = known.setdefault(pid, psutil.Process(pid))
        if child.create_time() != psutil.Process(pid).create_time():
            raise BenchError(f"pid {pid} was reused; not killing it")
        t_kill = time.monotonic()
        child.send_signal(signal.SIGKILL)
        pid, t_seen = _sleep_child(parent, pid, 30)
        known[pid] = psutil.Process(pid)
        samples.append((t_seen - t_kill) * 1000)
    return samples


def bench_command_crash(cmd: list[str], n: int, settle: float, problems: list[str],
                        extra: dict[str, Any]) -> list[float]:
    """``sleep`` as a command actor: SIGKILL -> the new sleep exists, in ms."""
    with tempfile.TemporaryDirectory(prefix="actorsup-bench-") as tmp:
        config = write_config(Path(tmp), {"heartbeat_interval": 1.0, "stop_timeout": 1.0, **extra},
                              {"sleeper": {"kind": "command", "command": ["sleep", "3600"], **_NO_BACKOFF}})
        with run_actorsup(cmd, config, problems) as run:
            return _sleep_crashes(run.proc.pid, n, settle, run.children)


def bench_supervisord_sleep(n: int, settle: float, problems: list[str]) -> list[float]:
    """``sleep`` as a supervisord 4.3 program: SIGKILL -> the new sleep exists, in ms."""
    peer_python(SUPERVISORD_PEER, SUPERVISORD_REQ)
    supervisord = peer_bin(SUPERVISORD_PEER, "supervisord")
    with tempfile.TemporaryDirectory(prefix="sd-bench-") as tmp:
        conf = Path(tmp) / "supervisord.conf"
        conf.write_text(_SUPERVISORD_CONF.format(tmp=tmp, program=f"{shutil.which('sleep') or 'sleep'} 3600"))
        with open(Path(tmp) / "supervisord.out", "wb") as log:
            proc = subprocess.Popen([str(supervisord), "-c", str(conf)], stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            children: dict[int, psutil.Process] = {}
            try:
                return _sleep_crashes(proc.pid, n, settle, children)
            finally:
                problems += [f"supervisord: {p}" for p in stop_tree(proc, timeout=15, known=children.values())]


@dataclass
class WatchdogFigures:
    """Last WATCHDOG=1 -> actor.heartbeat_timeout, minus the timeout, in ms, three ways."""

    logged: list[float] = field(default_factory=list)  # the event's own timestamp (wall clocks)
    read: list[float] = field(default_factory=list)  # when the benchmark read the line (+ stdout's flush)
    beat_age: list[float] = field(default_factory=list)  # the supervisor's last_beat_age


def bench_watchdog(cmd: list[str], n: int, problems: list[str], extra: dict[str, Any]) -> WatchdogFigures:
    """A command actor pings WATCHDOG=1 (sd_notify), then stops: how late is actor.heartbeat_timeout?"""
    out = WatchdogFigures()
    with tempfile.TemporaryDirectory(prefix="actorsup-bench-") as tmp:
        pinger = {"kind": "command", "notify": True, "heartbeat_timeout": HEARTBEAT_TIMEOUT, **_NO_BACKOFF,
                  "command": [sys.executable, str(FIXTURES / "watchdog_pinger.py"), "5", str(HEARTBEAT_INTERVAL)]}
        config = write_config(Path(tmp), {"heartbeat_interval": HEARTBEAT_INTERVAL, "stop_timeout": 0.1, **extra},
                              {"pinger": pinger})
        with run_actorsup(cmd, config, problems) as run:
            last: dict[Any, tuple[float, float]] = {}
            while len(out.read) < n:
                t_read, event = run.events.until(
                    lambda e: _is(e, "bench.last_watchdog", "pinger") or _is(e, "actor.heartbeat_timeout", "pinger"),
                    60, "bench.last_watchdog or actor.heartbeat_timeout")
                pid = event.get("pid")
                if event["event"] == "bench.last_watchdog":
                    last[pid] = (float(event["t"]), float(event["wall"]))
                    if isinstance(pid, int) and psutil.pid_exists(pid):
                        run.record(pid)
                    continue
                stamps = last.pop(pid, None)
                if stamps is None:
                    problems.append("watchdog: a heartbeat timeout before the last WATCHDOG=1 (not counted)")
                    continue
                logged = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
                out.logged.append((logged - stamps[1] - HEARTBEAT_TIMEOUT) * 1000)
                out.read.append((t_read - stamps[0] - HEARTBEAT_TIMEOUT) * 1000)
                age = event.get("last_beat_age")
                if isinstance(age, (int, float)):
                    out.beat_age.append((age - HEARTBEAT_TIMEOUT) * 1000)
    return out


# --- main -------------------------------------------------------------------------------
def _summary_figures(label: str, samples: list[float], target: float | None,
                     note: str = "", p95_target: float | None = None) -> list[Figure]:
    s = summarize(samples)
    return [
        Figure(f"{label} p50", s.p50, "ms", target=target, note=f"n={s.n}" + (f"; {note}" if note else "")),
        Figure(f"{label} p95", s.p95, "ms", target=p95_target, note=f"min {s.min:.1f}, max {s.max:.1f}"),
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--restarts", type=int, default=None,
                        help="samples per series (default 30; 10 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer samples and a shorter idle window (a smoke run)")
    parser.add_argument("--skip-peer", action="store_true", help="do not measure supervisord")
    parser.add_argument("--only", choices=["crash", "hang", "peer", "idle", "command"], action="append",
                        help="run only these parts (repeatable)")
    parser.add_argument("--idle-actors", type=int, default=50)
    parser.add_argument("--idle-seconds", type=float, default=None,
                        help="idle measurement window (default 20; 5 with --quick)")
    parser.add_argument("--settle", type=float, default=0.2,
                        help="pause between a replacement's stamp and the next kill (s)")
    parser.add_argument("--isolated-settle", type=float, default=None,
                        help="the same pause for the isolated-crash series (default 2; 1 with --quick)")
    parser.add_argument("--peer-bare", action="store_true",
                        help="supervisord's child skips importing actorsup's runtime libraries")
    parser.add_argument("--backend", choices=["trio", "asyncio"],
                        help="the supervisor's backend (default: the config default, trio)")
    parser.add_argument("--actorsup", metavar="CMD", help='command to run (default: "actorsup")')
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the figures as JSON")
    parser.add_argument("--plain", action="store_true", help="plain-text table instead of rich")
    args = parser.parse_args(argv)
    if args.restarts is None:
        args.restarts = 10 if args.quick else 30
    if args.isolated_settle is None:
        args.isolated_settle = 1.0 if args.quick else 2.0
    if args.idle_seconds is None:
        args.idle_seconds = 5.0 if args.quick else 20.0
    if args.restarts < 1:
        parser.error(f"--restarts must be >= 1 (got {args.restarts})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parts = set(args.only or ["crash", "hang", "peer", "idle", "command"])
    if args.skip_peer:
        parts.discard("peer")
    cmd = actorsup_command(args.actorsup)
    figures: list[Figure] = []
    problems: list[str] = []
    errors: list[str] = []
    crash_p50: float | None = None
    extra = {"backend": args.backend} if args.backend else {}

    def attempt(part: str, fn: Callable[[], None]) -> None:
        if part not in parts:
            return
        print(f"measuring {part} ...", file=sys.stderr, flush=True)
        try:
            fn()
        except (SupervisorError, OSError, psutil.Error) as exc:
            errors.append(f"{part}: {exc}")
            figures.append(Figure(f"{part}", None, note=f"not measured: {str(exc).splitlines()[0]}"))

    def crash() -> None:
        nonlocal crash_p50
        # The fork server (the default on Linux): a fork of the warm template per restart.
        samples = bench_crash(cmd, args.restarts, args.settle, problems, {**extra, "spawner": "forkserver"})
        crash_p50 = summarize(samples).p50
        figures.extend(_summary_figures(
            "crash -> running, fork server", samples, FORK_P50_MS,
            f"SIGKILL to first statement, backoff 0, kills {args.settle:g}s after start", p95_target=FORK_P95_MS))
        spawn = {**extra, "spawner": "spawn"}
        samples = bench_crash(cmd, args.restarts, args.settle, problems, spawn)
        figures.extend(_summary_figures(
            "crash -> running, warm spare", samples, CRASH_P50_MS,
            f"spawner = spawn, kills {args.settle:g}s after start"))
        # Spaced-out crashes: the warm spare has been refilled before each kill.
        samples = bench_crash(cmd, args.restarts, args.isolated_settle, problems, spawn)
        figures.extend(_summary_figures(
            "crash -> running, warm spare, isolated", samples, CRASH_P50_MS,
            f"kills {args.isolated_settle:g}s after start"))
        # Plain spawn, no warm spare: a fresh interpreter and its imports on every restart.
        samples = bench_crash(cmd, args.restarts, args.settle, problems, {**spawn, "spare_processes": 0})
        figures.extend(_summary_figures(
            "crash -> running, plain spawn", samples, CRASH_P50_MS, "spawner = spawn, spare_processes = 0"))

    def hang() -> None:
        excess, beat_excess = bench_hang(cmd, args.restarts, problems, extra)
        figures.extend(_summary_figures("hang excess", excess, HANG_EXCESS_MS,
                                        f"timeout {HEARTBEAT_TIMEOUT:g}s, beat {HEARTBEAT_INTERVAL:g}s"))
        if beat_excess:
            s = summarize(beat_excess)
            figures.append(Figure("  last_beat_age - timeout p50", s.p50, "ms",
                                  note=f"p95 {s.p95:.1f} ms (the supervisor's own view)"))

    def peer() -> None:
        samples = bench_supervisord(args.restarts, args.settle, args.peer_bare, problems)
        figures.extend(_summary_figures("supervisord 4.3 crash -> running", samples, None,
                                        "bare child" if args.peer_bare else "same imports"))
        if crash_p50:
            ratio = summarize(samples).p50 / crash_p50
            figures.append(Figure("ratio supervisord/actorsup (p50)", ratio, "x",
                                  note=f"> 1: actorsup is faster (both: kills {args.settle:g}s after start)"))

    def idle() -> None:
        f = bench_idle(cmd, args.idle_actors, args.idle_seconds, 3.0 if args.quick else 5.0,
                       problems, extra)
        note = f"{f.actors} actors at 1 Hz, {f.seconds:.0f}s"
        if f.restarts_during:
            note += f"; actor exits in the window (not idle!): {f.restarts_during}"
        if f.restarts_at_start:
            note += f"; actor exits while starting up: {f.restarts_at_start}"
        figures.append(Figure("idle CPU, supervisor", f.cpu_pct, "% core", target=IDLE_CPU_PCT,
                              note=note))
        figures.append(Figure("supervisor RSS", f.rss_mb, "MB", target=SUPERVISOR_RSS_MB))
        pss = f"; PSS {f.children_pss_mb:.0f} MB" if f.children_pss_mb is not None else ""
        figures.append(Figure("children RSS, total", f.children_rss_mb, "MB",
                              note=f"{f.children} processes{pss}"))
        figures.append(Figure("idle CPU, all children", f.children_cpu_pct, "% core"))

    def command() -> None:
        ours = bench_command_crash(cmd, args.restarts, args.settle, problems, extra)
        figures.extend(_summary_figures("sleep as a command actor: crash -> running", ours, None,
                                        "SIGKILL to the new sleep in /proc"))
        if not args.skip_peer:
            theirs = bench_supervisord_sleep(args.restarts, args.settle, problems)
            figures.extend(_summary_figures("sleep under supervisord 4.3: crash -> running", theirs, None,
                                            "the same watch, the same run"))
            figures.append(Figure("ratio supervisord/actorsup for sleep (p50)",
                                  summarize(theirs).p50 / summarize(ours).p50, "x", note="> 1: actorsup is faster"))
        w = bench_watchdog(cmd, args.restarts, problems, extra)
        figures.extend(_summary_figures("last WATCHDOG=1 -> heartbeat_timeout excess", w.logged, HANG_EXCESS_MS,
                                        f"timeout {HEARTBEAT_TIMEOUT:g}s; the event's timestamp"))
        s = summarize(w.read)
        figures.append(Figure("  the same, read from stdout p50", s.p50, "ms",
                              note=f"p95 {s.p95:.1f} ms; + the stdout sink's flush (<= 50 ms)"))
        if w.beat_age:
            s = summarize(w.beat_age)
            figures.append(Figure("  last_beat_age - timeout p50", s.p50, "ms",
                                  note=f"p95 {s.p95:.1f} ms (the supervisor's own view)"))

    load_before = os.getloadavg()
    attempt("crash", crash)
    attempt("hang", hang)
    attempt("peer", peer)
    attempt("idle", idle)
    attempt("command", command)

    setup = f"actorsup: {' '.join(cmd)}; backend: {args.backend or 'default'}"
    return report("actorsup restart benchmark", figures, setup=setup, load_before=load_before,
                  problems=problems, errors=errors, plain=args.plain, json_path=args.json)


if __name__ == "__main__":
    sys.exit(main())
