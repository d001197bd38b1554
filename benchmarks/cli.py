"""Wall time of one CLI status call: `actorsup status --json` beside `supervisorctl status`.

Starts a real ``actorsup run CONFIG`` with ``--actors`` idle actors and a
control socket in a temporary folder, and a real supervisord 4.3 (installed
into benchmarks/.peers/) with the same number of idle programs. Then it runs,
interleaved so that both see the same machine load, ``--count`` invocations
each of

* ``actorsup status --json --socket PATH`` (the console script of this venv), and
* ``supervisorctl -c CONF status`` (the console script of the peer venv),

timing each from fork to exit: interpreter start-up, imports, one round trip
and the output. ``--repeat`` repeats the whole series against the same two
supervisors and pools the samples. Target (issue 15): actorsup <= 50 ms.

Run from the repository root:  .venv/bin/python benchmarks/cli.py [--count 30]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._peers import peer_bin, peer_python, stop_tree, supervisord_head
from benchmarks._stats import Figure, figures_json, print_figures, summarize
from benchmarks.restart import SUPERVISORD_PEER, SUPERVISORD_REQ, BenchError, write_config
from supervisor.control import ControlError, request

TARGET_MS = 50.0

IDLE_MODULE = '''
import anyio
from actors import Actor


class Idle(Actor):
    async def run(self) -> None:
        await anyio.sleep_forever()
'''

SUPERVISORD_CONF = supervisord_head(loglevel="warn") + """\
[program:idle]
command = {python} -c "import time; time.sleep(1e9)"
process_name = %(program_name)s%(process_num)02d
numprocs = {n}
startsecs = 0
stopwaitsecs = 5
stdout_logfile = NONE
redirect_stderr = true
"""


def actorsup_script() -> Path:
    """The ``actorsup`` console script of this venv: what a user types."""
    script = Path(sys.executable).parent / "actorsup"
    if not script.exists():
        raise BenchError(f"{script} does not exist: install the project into this venv (pip install -e .)")
    return script


def _wait(ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise BenchError(f"{what} within {timeout:g}s")
        time.sleep(0.1)


@contextmanager
def actorsup(folder: Path, n: int, timeout: float) -> Iterator[list[str]]:
    """Run ``actorsup run`` with ``n`` idle actors; yield the status command line."""
    (folder / "cli_bench_actors.py").write_text(IDLE_MODULE)
    config = write_config(folder, {"control_socket": "s.sock"},
                          {f"a{i:02d}": {"target": "cli_bench_actors:Idle"} for i in range(n)})
    sock = folder / "s.sock"
    proc = subprocess.Popen([str(actorsup_script()), "run", str(config)], cwd=folder,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def up() -> bool:
        if proc.poll() is not None:
            raise BenchError(f"actorsup run exited with {proc.returncode} before it was up")
        try:
            rows: list[dict[str, object]] = request(sock, "status", timeout=10)
        except (ControlError, OSError):
            return False
        return sum(r.get("state") == "running" for r in rows) >= n

    try:
        _wait(up, timeout, f"actorsup: {n} actors not running")
        yield [str(actorsup_script()), "status", "--json", "--socket", str(sock)]
    finally:
        for line in stop_tree(proc, timeout=30):
            print(f"LEAK/WARNING: actorsup: {line}", file=sys.stderr)


@contextmanager
def supervisord(folder: Path, n: int, timeout: float) -> Iterator[list[str]]:
    """Run supervisord 4.3 with ``n`` idle programs; yield the status command line."""
    peer_python(SUPERVISORD_PEER, SUPERVISORD_REQ)
    conf = folder / "supervisord.conf"
    conf.write_text(SUPERVISORD_CONF.format(tmp=folder, python=sys.executable, n=n))
    proc = subprocess.Popen([str(peer_bin(SUPERVISORD_PEER, "supervisord")), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    command = [str(peer_bin(SUPERVISORD_PEER, "supervisorctl")), "-c", str(conf), "status"]

    def up() -> bool:
        if proc.poll() is not None:
            raise BenchError(f"supervisord exited with {proc.returncode} before it was up")
        done = subprocess.run(command, capture_output=True, text=True)
        return done.returncode == 0 and done.stdout.count("RUNNING") >= n

    try:
        _wait(up, timeout, f"supervisord: {n} programs not RUNNING")
        yield command
    finally:
        for line in stop_tree(proc, timeout=30):
            print(f"LEAK/WARNING: supervisord: {line}", file=sys.stderr)


def timed(command: list[str]) -> float:
    """Wall time of one invocation in ms; a failed call is an error, not a sample."""
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise BenchError(f"{command[0]} exited with {done.returncode}: {done.stderr.decode().strip()[-300:]}")
    return elapsed


def measure(ours: list[str], theirs: list[str], count: int, repeat: int) -> tuple[list[float], list[float]]:
    """``count`` x ``repeat`` interleaved invocations of both (after one warm-up each)."""
    timed(ours), timed(theirs)  # page cache and .pyc files, not a first-ever start
    a: list[float] = []
    s: list[float] = []
    for _ in range(repeat):
        for _ in range(count):
            a.append(timed(ours))
            s.append(timed(theirs))
    return a, s


def figures(a: list[float], s: list[float], n: int) -> list[Figure]:
    ours, theirs = summarize(a), summarize(s)
    note = f"{ours.n} calls, {n} actors"
    return [
        Figure("actorsup status --json: median", ours.p50, "ms", target=TARGET_MS, note=note),
        Figure("actorsup status --json: p95", ours.p95, "ms", target=TARGET_MS,
               note=f"min {ours.min:.1f}, max {ours.max:.1f}"),
        Figure("supervisorctl status: median", theirs.p50, "ms", note=f"{theirs.n} calls, {n} programs"),
        Figure("supervisorctl status: p95", theirs.p95, "ms",
               note=f"min {theirs.min:.1f}, max {theirs.max:.1f}"),
        Figure("median ratio actorsup / supervisorctl", ours.p50 / theirs.p50, "x"),
        Figure("p95 ratio actorsup / supervisorctl", ours.p95 / theirs.p95, "x"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--actors", type=int, default=5, help="idle actors / programs in each (default 5)")
    parser.add_argument("--count", type=int, default=30, help="invocations of each per series (default 30)")
    parser.add_argument("--repeat", type=int, default=1, help="series, pooled (default 1)")
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the figures as JSON")
    parser.add_argument("--plain", action="store_true", help="plain-text table instead of rich")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="cli-bench-", dir="/tmp") as tmp:
            folder = Path(tmp)
            (folder / "sd").mkdir()
            with actorsup(folder, args.actors, args.startup_timeout) as ours, \
                    supervisord(folder / "sd", args.actors, args.startup_timeout) as theirs:
                a, s = measure(ours, theirs, args.count, args.repeat)
    except BenchError as exc:
        print(f"cli benchmark: {exc}", file=sys.stderr)
        return 1
    out = figures(a, s, args.actors)
    print_figures(f"CLI wall time, one status call ({args.count} x {args.repeat}, interleaved)", out,
                  plain=args.plain)
    if args.json:
        args.json.write_text(figures_json(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
