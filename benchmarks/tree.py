"""Supervision-tree benchmark (issue 12): concurrent stop, and a one_for_all group restart.

Measures, through the public contract only (``actorsup run CONFIG`` as a
subprocess, JSON log lines on its stdout):

1. stop: SIGTERM to ``actorsup run`` with 50 independent idle actors, until
   the process has exited (every child stopped); the same for supervisord 4.3
   with 50 programs (``--skip-peer`` leaves it out);
2. group: SIGKILL of one member of a ``one_for_all`` group of 10, until
   ``group.restarting`` and until the 10th new member's ``actor.started``;
3. independent: while one ``one_for_all`` group waits out a member that
   ignores SIGTERM (``stop_timeout`` 3 s), SIGKILL of a member of another
   ``one_for_all`` group of 3, until its 3rd new member's ``actor.started``
   (the groups are separate subtrees: the slow stop must not delay it).

Run from the repository root:  .venv/bin/python benchmarks/tree.py [--repeat N]
``--actorsup CMD`` measures another build (``--only stop`` for one without groups).
It exits 1 only when a figure could not be measured.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._peers import descendants, peer_bin, peer_python, stop_tree, supervisord_head
from benchmarks._stats import Figure, report, summarize
from benchmarks.restart import (
    FIXTURES,
    SUPERVISORD_PEER,
    SUPERVISORD_REQ,
    BenchError,
    Supervised,
    actorsup_command,
    run_actorsup,
)
from supervisor.exceptions import SupervisorError

GROUP = "g"
_NO_BACKOFF = {"max_restarts": 1_000_000, "restart_window": 1.0, "backoff_initial": 0.0, "backoff_max": 0.0}


def _toml(supervisor: dict[str, Any], tables: dict[str, dict[str, Any]]) -> str:
    """TOML for flat tables of scalars; ``tables`` keys are full table names (``actors.x``)."""
    lines = ["[supervisor]", *(f"{k} = {json.dumps(v)}" for k, v in supervisor.items())]
    for name, table in tables.items():
        lines += ["", f"[{name}]", *(f"{k} = {json.dumps(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


def _wait_started(run: Supervised, names: set[str], timeout: float) -> dict[str, int]:
    """Wait for ``actor.started`` of every name; return name -> pid."""
    pids: dict[str, int] = {}
    while len(pids) < len(names):
        _, event = run.events.until(
            lambda e: e.get("event") == "actor.started" and e.get("actor") in names - pids.keys(),
            timeout, f"actor.started of {len(names) - len(pids)} more actors")
        pids[event["actor"]] = int(event["pid"])
        run.record(pids[event["actor"]])
    return pids


def bench_stop(cmd: list[str], actors: int, repeat: int, settle: float, problems: list[str]) -> list[float]:
    """SIGTERM -> exit of ``actorsup run`` with ``actors`` idle actors, in ms, one per run."""
    samples: list[float] = []
    names = {f"idle{i:02d}" for i in range(actors)}
    with tempfile.TemporaryDirectory(prefix="actorsup-tree-") as tmp:
        config = Path(tmp) / "stop.toml"
        config.write_text(_toml({"heartbeat_interval": 1.0},
                                {f"actors.{n}": {"target": "bench_actors:Idle"} for n in sorted(names)}))
        for _ in range(repeat):
            with run_actorsup(cmd, config, problems) as run:
                _wait_started(run, names, 120)
                time.sleep(settle)
                t0 = time.monotonic()
                run.proc.send_signal(signal.SIGTERM)
                try:
                    run.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    raise BenchError("actorsup run did not exit within 60s of SIGTERM") from None
                samples.append((time.monotonic() - t0) * 1000)
                alive = [p.pid for p in run.children.values() if p.is_running()]
                if alive:
                    problems.append(f"stop: {len(alive)} children alive after actorsup exited")
                if run.proc.returncode != 0:
                    problems.append(f"stop: actorsup run exited with {run.proc.returncode}")
    return samples


def _wall(event: dict[str, Any]) -> float:
    """An event's ``timestamp`` (ISO 8601, UTC) as seconds since the epoch."""
    return datetime.fromisoformat(str(event["timestamp"])).timestamp()


def _member_event(names: list[str]) -> Callable[[dict[str, Any]], bool]:
    """Matches a member's ``actor.started``, ``actor.stopping`` or ``actor.exited``."""
    return lambda e: (e.get("actor") in names
                      and e.get("event") in ("actor.started", "actor.stopping", "actor.exited"))


class _Restart:
    """A group restart seen through its members' events: who is up again, and when the last came."""

    def __init__(self, names: list[str], old: set[int], t: float, event: dict[str, Any]) -> None:
        self.names, self.old = names, old
        self.fresh: dict[str, int] = {}  # member -> pid started since the kill and still up
        self.t_last, self.last = t, event
        self.twice = 0  # members started, then taken down again by the same restart

    @property
    def done(self) -> bool:
        return len(self.fresh) == len(self.names)

    @property
    def waiting(self) -> str:
        return f"actor.started of {len(self.names) - len(self.fresh)} more members"

    def hear(self, t: float, event: dict[str, Any]) -> None:
        name, pid = event["actor"], event.get("pid")
        if event["event"] == "actor.started" and pid not in self.old:
            self.fresh[name], self.t_last, self.last = int(event["pid"]), t, event
        elif self.fresh.get(name) == pid:
            del self.fresh[name]
            self.twice += 1

    def record(self, run: Supervised) -> dict[str, int]:
        for started in self.fresh.values():
            run.record(started)
        return dict(self.fresh)


def bench_group(cmd: list[str], members: int, repeat: int, settle: float,
                problems: list[str]) -> tuple[list[float], list[float], list[float], list[float]]:
    """SIGKILL of one member of a one_for_all group -> group.restarting, -> all running; ms.

    Each by the time the benchmark read the event, and by the event's own ``timestamp``
    (the supervisor's view, without the delivery through its stdout sink)."""
    to_event: list[float] = []
    to_all: list[float] = []
    stamped: tuple[list[float], list[float]] = ([], [])  # the same, by the events' own timestamps
    twice = 0
    names = [f"m{i:02d}" for i in range(members)]
    with tempfile.TemporaryDirectory(prefix="actorsup-tree-") as tmp:
        config = Path(tmp) / "group.toml"
        tables: dict[str, dict[str, Any]] = {
            f"groups.{GROUP}": {"strategy": "one_for_all", "max_restarts": 1_000_000, "restart_window": 1.0}}
        for name in names:
            tables[f"actors.{name}"] = {"target": "bench_actors:Stamper", "group": GROUP, **_NO_BACKOFF}
        config.write_text(_toml({"heartbeat_interval": 1.0, "stop_timeout": 1.0}, tables))
        with run_actorsup(cmd, config, problems) as run:
            pids = _wait_started(run, set(names), 120)
            for i in range(repeat):
                time.sleep(settle)
                victim = names[i % members]
                run.events.drain()
                t_kill, wall_kill = time.monotonic(), time.time()
                _kill(run, pids[victim])
                t_event, restarting = run.events.until(
                    lambda e: e.get("event") == "group.restarting" and e.get("group") == GROUP,
                    30, "group.restarting")
                restart = _Restart(names, set(pids.values()), t_event, restarting)
                while not restart.done:
                    restart.hear(*run.events.until(_member_event(names), 30, restart.waiting))
                twice += restart.twice
                pids = restart.record(run)
                t_last, last = restart.t_last, restart.last
                to_event.append((t_event - t_kill) * 1000)
                to_all.append((t_last - t_kill) * 1000)
                stamped[0].append((_wall(restarting) - wall_kill) * 1000)
                stamped[1].append((_wall(last) - wall_kill) * 1000)
    if twice:
        problems.append(f"group: {twice} members were started and then stopped again by the group restart")
    return to_event, to_all, *stamped


# a program that ignores SIGTERM, and so does its sleep (an ignored signal stays ignored across exec)
_STUBBORN = "sh -c 'trap \"\" TERM; while :; do sleep 1; done'"


def bench_independent(cmd: list[str], stop_timeout: float, repeat: int, settle: float,
                      problems: list[str]) -> tuple[list[float], list[float]]:
    """Group B's one_for_all restart while group A waits out a stubborn stop; ms, by the events' timestamps.

    Returns (SIGKILL of a B member -> all 3 B members started, that -> A's actor.stop_timeout): the
    second is how long A's stop was still pending when B was up again (negative: B waited for it).
    """
    slow, fast = ["stuck", "s1"], ["f0", "f1", "f2"]
    to_all: list[float] = []
    ahead: list[float] = []
    with tempfile.TemporaryDirectory(prefix="actorsup-tree-") as tmp:
        config = Path(tmp) / "independent.toml"
        one_for_all = {"strategy": "one_for_all", "max_restarts": 1_000_000, "restart_window": 1.0}
        tables: dict[str, dict[str, Any]] = {"groups.slow": one_for_all, "groups.fast": one_for_all}
        tables["actors.stuck"] = {"kind": "command", "command": _STUBBORN, "group": "slow",
                                  "stop_timeout": stop_timeout, **_NO_BACKOFF}
        tables["actors.s1"] = {"target": "bench_actors:Stamper", "group": "slow", **_NO_BACKOFF}
        for name in fast:
            tables[f"actors.{name}"] = {"target": "bench_actors:Stamper", "group": "fast", **_NO_BACKOFF}
        config.write_text(_toml({"heartbeat_interval": 1.0}, tables))
        with run_actorsup(cmd, config, problems) as run:
            pids = _wait_started(run, {*slow, *fast}, 120)
            for i in range(repeat):
                time.sleep(settle)
                run.events.drain()
                _kill(run, pids["s1"])
                run.events.until(lambda e: e.get("event") == "actor.stopping" and e.get("actor") == "stuck",
                                 30, "actor.stopping of stuck")
                wall_kill = time.time()
                _kill(run, pids[fast[i % len(fast)]])
                restart = _Restart(fast, {pids[n] for n in fast}, 0.0, {})
                again = _Restart(slow, {pids[n] for n in slow}, 0.0, {})  # group A up again, for the next round
                timeout: dict[str, Any] | None = None
                while not (restart.done and again.done and timeout is not None):
                    t, event = run.events.until(
                        lambda e: _member_event([*fast, *slow])(e) or (e.get("event") == "actor.stop_timeout"
                                                                       and e.get("actor") == "stuck"),
                        stop_timeout + 30, "both groups' restarts and stuck's actor.stop_timeout")
                    if event["event"] == "actor.stop_timeout":
                        timeout = event
                    else:
                        (restart if event["actor"] in fast else again).hear(t, event)
                pids.update(restart.record(run), **again.record(run))
                to_all.append((_wall(restart.last) - wall_kill) * 1000)
                ahead.append((_wall(timeout) - _wall(restart.last)) * 1000)
    return to_all, ahead


def _kill(run: Supervised, pid: int) -> None:
    child = run.children[pid]
    if psutil.Process(child.pid).create_time() != child.create_time():
        raise BenchError(f"pid {child.pid} was reused; not killing it")
    child.send_signal(signal.SIGKILL)


_SD_HEAD = supervisord_head()
_SD_PROGRAM = """
[program:idle{i:02d}]
command = {python} {script} {stamp_socket}
autorestart = true
startsecs = 0
stopsignal = TERM
stopwaitsecs = 10
stdout_logfile = {tmp}/idle{i:02d}.log
redirect_stderr = true
"""


def bench_supervisord_stop(programs: int, repeat: int, settle: float, one_group: bool,
                           problems: list[str]) -> list[float]:
    """SIGTERM -> exit of supervisord 4.3 with ``programs`` running programs, in ms.

    Each ``[program:]`` is a group of its own, and supervisord stops its groups one after
    another; ``one_group`` puts all of them into one ``[group:]``, whose members it stops together.
    """
    peer_python(SUPERVISORD_PEER, SUPERVISORD_REQ)
    supervisord = peer_bin(SUPERVISORD_PEER, "supervisord")
    samples: list[float] = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="sd-tree-") as tmp, \
                socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as stamps:
            stamp_path = f"{tmp}/stamp.sock"
            stamps.bind(stamp_path)
            fmt = {"tmp": tmp, "python": sys.executable, "script": FIXTURES / "sd_child.py",
                   "stamp_socket": stamp_path}
            conf = Path(tmp) / "supervisord.conf"
            conf.write_text(_SD_HEAD.format(**fmt) + "".join(
                _SD_PROGRAM.format(i=i, **fmt) for i in range(programs))
                + (f"\n[group:all]\nprograms = {','.join(f'idle{i:02d}' for i in range(programs))}\n"
                   if one_group else ""))
            proc = subprocess.Popen([str(supervisord), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            children: dict[int, psutil.Process] = {}
            try:
                stamps.settimeout(120)
                while len(children) < programs:
                    msg = json.loads(stamps.recv(4096))
                    if msg["pid"] not in {p.pid for p in descendants(proc.pid)}:
                        raise BenchError(f"stamp from pid {msg['pid']}, not a child of supervisord")
                    children[msg["pid"]] = psutil.Process(msg["pid"])
                time.sleep(settle)
                t0 = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
                samples.append((time.monotonic() - t0) * 1000)
            except (TimeoutError, subprocess.TimeoutExpired):
                raise BenchError("supervisord: no start or no exit in time") from None
            finally:
                problems += [f"supervisord: {p}" for p in stop_tree(proc, timeout=15, known=children.values())]
    return samples


def _figures(label: str, samples: list[float], note: str) -> list[Figure]:
    s = summarize(samples)
    return [Figure(f"{label} p50", s.p50, "ms", note=f"n={s.n}; {note}"),
            Figure(f"{label} p95", s.p95, "ms", note=f"min {s.min:.0f}, max {s.max:.0f}")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["stop", "group", "independent", "peer"], action="append",
                        help="run only these parts (repeatable)")
    parser.add_argument("--skip-peer", action="store_true", help="do not measure supervisord")
    parser.add_argument("--actors", type=int, default=50, help="idle actors for the stop part (50)")
    parser.add_argument("--members", type=int, default=10, help="members of the one_for_all group (10)")
    parser.add_argument("--stop-timeout", type=float, default=3.0,
                        help="stop_timeout of the stubborn member in the independent part (3)")
    parser.add_argument("--repeat", type=int, default=5, help="stops (one supervisor each) and group restarts")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds between all running and the signal")
    parser.add_argument("--actorsup", metavar="CMD", help='command to run (default: "actorsup")')
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the figures as JSON")
    parser.add_argument("--plain", action="store_true", help="plain-text table instead of rich")
    args = parser.parse_args(argv)
    parts = set(args.only or ["stop", "group", "independent", "peer"])
    if args.skip_peer:
        parts.discard("peer")
    cmd = actorsup_command(args.actorsup)
    figures: list[Figure] = []
    problems: list[str] = []
    errors: list[str] = []
    load_before = os.getloadavg()
    for part in ("stop", "peer", "group", "independent"):
        if part not in parts:
            continue
        print(f"measuring {part} ...", file=sys.stderr, flush=True)
        try:
            if part == "stop":
                figures += _figures("SIGTERM -> exit", bench_stop(cmd, args.actors, args.repeat, args.settle,
                                                                   problems), f"{args.actors} idle actors")
            elif part == "peer":
                for one_group in (False, True):
                    samples = bench_supervisord_stop(args.actors, args.repeat, args.settle, one_group, problems)
                    figures += _figures(f"supervisord 4.3 SIGTERM -> exit{', one group' if one_group else ''}",
                                        samples, f"{args.actors} programs"
                                        + (" in one [group:]" if one_group else ", a group each"))
            elif part == "independent":
                to_all, ahead = bench_independent(cmd, args.stop_timeout, args.repeat, args.settle, problems)
                figures += _figures("one_for_all of 3 kill -> all 3 started, another group stuck", to_all,
                                    f"while a member of another group ignores SIGTERM ({args.stop_timeout:g}s)")
                figures += _figures("  the other group's stop still pending then", ahead,
                                    "its actor.stop_timeout minus the 3rd start (negative: it waited)")
            else:
                to_event, to_all, st_event, st_all = bench_group(cmd, args.members, args.repeat, args.settle,
                                                                 problems)
                figures += _figures("one_for_all kill -> group.restarting", st_event,
                                    f"{args.members} members; by the event's timestamp")
                figures += _figures(f"one_for_all kill -> all {args.members} started", st_all,
                                    "the last new member's actor.started, by its timestamp")
                figures += _figures("  same, group.restarting read", to_event, "when the benchmark read it")
                figures += _figures(f"  same, all {args.members} started read", to_all, "when the benchmark read it")
        except (SupervisorError, OSError, psutil.Error) as exc:
            errors.append(f"{part}: {exc}")
            figures.append(Figure(part, None, note=f"not measured: {str(exc).splitlines()[0]}"))
    return report("actorsup supervision-tree benchmark", figures, setup=f"actorsup: {' '.join(cmd)}",
                  load_before=load_before,
                  problems=problems, errors=errors, plain=args.plain, json_path=args.json)


if __name__ == "__main__":
    sys.exit(main())
