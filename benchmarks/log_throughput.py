"""Log pipeline throughput: child -> supervisor -> sinks, against supervisord.

    .venv/bin/python benchmarks/log_throughput.py [--events N] [--lines N] [--flood N] [--repeat N]

Prints:
* structured events/s from a child through ``actorsup run`` into the file sink,
  and into the tcp sink with syslog-ng as the aggregator;
* the supervisor's peak RSS (VmHWM) in each run, including a flood of
  1,000,000 events (the memory bound);
* the time for 200,000 stdout lines of a child to land in the file sink, next
  to supervisord capturing the same lines to its ``stdout_logfile`` in the same
  run (supervisord is installed into benchmarks/.peers/supervisord because its
  import name ``supervisor`` clashes with ours).

Times run from the child's first write (it records the wall time just before)
to the moment the last line is in the log file: polled every 2 ms, reading
only the file's last 8 KiB when its size changed, so that the watcher does
not compete with the measured supervisor for CPU. Once the clock has stopped,
every line is counted.

The stdout-lines part runs ``--repeat`` times (default 5) and reports median
and p95 of the wall time and of the CPU time the supervisor process (actorsup
or supervisord, not the child; every thread of it) spent meanwhile: psutil
``cpu_times`` (user + system, counted in 10 ms ticks) and
``/proc/PID/task/*/schedstat`` (nanoseconds).
The child waits for a go file, so start-up is not counted, and
``os.sync()`` runs before each go, so that no run pays for writing back an
earlier run's pages. On a loaded
machine the CPU time is the steadier figure. Every line of actorsup's
file is parsed with ``json.loads`` and checked for the keys and text it must
carry; a line missing or wrong counts as lost.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))
from benchmarks._stats import Figure, print_figures, summarize  # noqa: E402

ACTORSUP = ROOT / ".venv" / "bin" / "actorsup"
PEERS = ROOT / "benchmarks" / ".peers"
SUPERVISORD_VENV = PEERS / "supervisord"

ACTORS = textwrap.dedent(
    """
    import os, sys, time
    from actors import Actor

    class Events(Actor):
        def __init__(self, n, stamp, go=None):
            self.n, self.stamp, self.go = n, stamp, go
        async def run(self):
            import anyio
            log = self.log
            if self.go:
                open(self.go + ".ready", "w").close()
                while not os.path.exists(self.go):
                    await anyio.sleep(0.001)
            with open(self.stamp, "w") as f:
                f.write(repr(time.time()))
            cpu = time.process_time()
            for i in range(self.n):
                log.info("bench", i=i)
                if not i % 10000:
                    await anyio.sleep(0)  # let the heartbeat run: a long flood is not a hang
            log.info("bench.done")
            with open(self.stamp + ".cpu", "w") as f:
                f.write(repr(time.process_time() - cpu))
            os._exit(0)

    class Lines(Actor):
        def __init__(self, n, stamp, go):
            self.n, self.stamp, self.go = n, stamp, go
        async def run(self):
            import anyio
            data = lines_data(self.n)
            write_lines(warm_up_data(self.n))
            open(self.go + ".ready", "w").close()
            while not os.path.exists(self.go):
                await anyio.sleep(0.001)
            write_lines(data, self.stamp)
            os._exit(0)

    def lines_data(n):
        return "".join(f"line {i} of the benchmark output\\n" for i in range(n)).encode()

    def warm_up_data(n):
        return "".join(f"warm-up line {i}, untimed\\n" for i in range(n)).encode()

    def write_lines(data, stamp=None):
        if stamp is not None:
            with open(stamp, "w") as f:
                f.write(repr(time.time()))
        view = memoryview(data)
        while view:
            view = view[os.write(1, view[: 1 << 16]):]

    if __name__ == "__main__":
        data = lines_data(int(sys.argv[1]))
        write_lines(warm_up_data(int(sys.argv[1])))
        go = sys.argv[3]
        open(go + ".ready", "w").close()
        while not os.path.exists(go):
            time.sleep(0.001)
        write_lines(data, sys.argv[2])
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _vmhwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class _Tail:
    """Watches a growing file for a marker in its last bytes, reading only its tail.

    The writer appends lines in order, so once the last expected line is in the
    file, every line before it is too. Reading only the tail keeps the watcher
    off the CPU the measured supervisor needs (2 cores here: reading all 42 MB
    of actorsup's output at every poll cost it a third of its time, and
    supervisord's 6.6 MB far less). Completeness is checked after the clock stops.
    """

    def __init__(self, path: Path, marker: bytes) -> None:
        self.path, self.marker = path, marker
        self._size = -1

    def poll(self) -> bool:
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return False
        if size == self._size:
            return False
        self._size = size
        with open(self.path, "rb") as f:
            f.seek(max(0, size - 8192))
            return self.marker in f.read()


def _count(path: Path, needle: bytes) -> int:
    """Occurrences of ``needle`` in ``path``, read in 1 MiB steps.

    Each step keeps the last ``len(needle) - 1`` bytes in front of the next,
    so a needle across a boundary is found once: too short to hold one, they
    are never counted twice.
    """
    found, keep = 0, b""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            data = keep + chunk
            found += data.count(needle)
            keep = data[len(data) - len(needle) + 1 :]
    return found


def _wait_lines(path: Path, marker: bytes, timeout: float,
                proc: subprocess.Popen[bytes] | None = None) -> tuple[float, int]:
    """Poll until the last line (holding ``marker``) is in ``path``; return (wall time, peak RSS of proc)."""
    deadline = time.monotonic() + timeout
    peak = 0
    tail = _Tail(path, marker)
    while not tail.poll():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {path} lacks its last line ({marker.decode()!r})")
        if proc is not None:
            peak = max(peak, _vmhwm(proc.pid))
        time.sleep(0.002)
    return time.time(), peak


def _check_count(path: Path, needle: bytes, want: int) -> None:
    if (found := _count(path, needle)) != want:
        raise SystemExit(f"{path}: {found} lines hold {needle.decode()!r}, not {want}: events were lost")


def _wait_file(path: Path, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited with status {proc.returncode} before {path.name} appeared")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {path}")
        time.sleep(0.005)


def _settle() -> None:
    """Write back the dirty pages of earlier runs before a timed one starts.

    Otherwise the kernel's flusher threads write them back during the next
    run, on the same 2 cores, and whichever tool runs later pays for it.
    """
    os.sync()


def _cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of process ``pid`` so far, all its threads: (psutil user + system, in 10 ms ticks; schedstat).

    The second sums /proc/PID/task/*/schedstat (nanoseconds; actorsup's file
    sink writes on a thread of its own); NaN where that is missing.
    """
    times = psutil.Process(pid).cpu_times()
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        sched = sum(int((task / "schedstat").read_text().split()[0]) for task in tasks) / 1e9
    except (OSError, ValueError, IndexError):
        sched = float("nan")
    return times.user + times.system, sched


def _cpu_since(pid: int, before: tuple[float, float]) -> tuple[float, float]:
    now = _cpu(pid)
    return now[0] - before[0], now[1] - before[1]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _actorsup(work: Path, actor: str, args: str, sinks: str, marker: bytes, out: Path, timeout: float = 300,
              go: Path | None = None, child_cpu: list[float] | None = None,
              warm_up: bytes | None = None, poll_rss: bool = True) -> tuple[float, int, tuple[float, float]]:
    """Run one actor under ``actorsup run``.

    Returns (seconds from stamp to the line holding ``marker``, peak RSS,
    supervisor CPU seconds from go to that line). With ``go``, the actor waits for that file, and the
    CPU sample is taken once it is ready; without, the CPU figure is 0. An
    actor that writes its CPU seconds to ``STAMP.cpu`` has them appended to
    ``child_cpu``. With ``warm_up``, the line holding it must be in ``out`` before go.
    ``poll_rss=False`` leaves the supervisor's /proc/PID/status alone while the
    clock runs (the peak is read at the end only), as the supervisord runs do.
    """
    stamp = work / "stamp"
    stamp.unlink(missing_ok=True)
    go_arg = ""
    if go is not None:
        go.unlink(missing_ok=True)
        Path(f"{go}.ready").unlink(missing_ok=True)
        go_arg = f', go = "{go}"'
    (work / "actorsup.toml").write_text(
        textwrap.dedent(
            f"""
            [supervisor]
            heartbeat_interval = 5.0
            control_socket = "ctl.sock"
            [actors.bench]
            target = "bench_actors:{actor}"
            restart = "temporary"
            args = {{ {args}, stamp = "{stamp}"{go_arg} }}
            """
        )
        + sinks
    )
    proc = subprocess.Popen([str(ACTORSUP), "run", str(work / "actorsup.toml")], cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cpu = (0.0, 0.0)
    try:
        if go is not None:
            _wait_file(Path(f"{go}.ready"), proc)
            if warm_up is not None:
                _wait_lines(out, warm_up, timeout)
            _settle()
            cpu = _cpu(proc.pid)
            go.touch()
        end, peak = _wait_lines(out, marker, timeout, proc if poll_rss else None)
        if go is not None:
            cpu = _cpu_since(proc.pid, cpu)
        child_cpu_file = Path(f"{stamp}.cpu")
        deadline = time.monotonic() + 5  # written just after the last event
        while child_cpu is not None and not child_cpu_file.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        if child_cpu is not None and child_cpu_file.exists():
            child_cpu.append(float(child_cpu_file.read_text()))
            child_cpu_file.unlink()
    finally:
        peak_final = _vmhwm(proc.pid)
        _stop(proc)
    return end - float(stamp.read_text()), max(peak, peak_final), cpu


_DONE = b'"event":"bench.done"'  # the Events actor's last event
_BENCH = b'"event":"bench",'  # each of its n events


def _last_line(n: int) -> bytes:
    """The text of the Lines actor's last line."""
    return f"line {n - 1} of the benchmark output\n".encode()[:-1]


def _last_warm_up_line(n: int) -> bytes:
    """The text of the last line the Lines child writes before it is ready (untimed)."""
    return f"warm-up line {n - 1}, untimed".encode()


def _file_sink(path: Path) -> str:
    return f'[[logs.sinks]]\ntype = "file"\npath = "{path}"\nmax_bytes = "100GiB"\ndaily = false\n'


def bench_events(work: Path, n: int, repeat: int) -> None:
    out = work / "events.jsonl"
    rates: list[float] = []
    cpu_us: list[float] = []
    child_cpu: list[float] = []
    peak = 0
    for _ in range(repeat):
        out.unlink(missing_ok=True)
        secs, rss, cpu = _actorsup(work, "Events", f"n = {n}", _file_sink(out), _DONE, out, go=work / "go",
                                   child_cpu=child_cpu)
        _check_count(out, _BENCH, n)
        rates.append(n / secs)
        cpu_us.append(cpu[1] / n * 1e6 if cpu[1] == cpu[1] else cpu[0] / n * 1e6)  # schedstat unless NaN
        peak = max(peak, rss)
    r, c = summarize(rates), summarize(cpu_us)
    print(f"file sink:   {n:>9,} structured events, {repeat} runs: p50 {r.p50:>9,.0f} events/s "
          f"(slowest run {min(rates):,.0f}); target >= 300,000; CPU per event: supervisor {c.p50:.2f} us, "
          f"child {summarize(child_cpu).p50 / n * 1e6 if child_cpu else float('nan'):.2f} us; "
          f"peak RSS {peak / 2**20:.0f} MiB")


def bench_tcp(work: Path, n: int) -> None:
    binary = shutil.which("syslog-ng") or "/usr/sbin/syslog-ng"
    if not os.path.exists(binary):
        print("tcp sink:    skipped (syslog-ng not installed: apt-get install -y syslog-ng-core)")
        return
    sng = work / "syslog-ng"
    sng.mkdir(exist_ok=True)
    port = _free_port()
    conf = (ROOT / "tests" / "aggregator" / "syslog-ng.conf").read_text()
    conf = conf.replace("@TCP_PORT@", str(port)).replace("@SYSLOG_PORT@", str(_free_port()))
    conf = conf.replace("@OUT_DIR@", str(sng))
    (sng / "syslog-ng.conf").write_text(conf)
    server = subprocess.Popen([binary, "-F", "--no-caps", "-f", str(sng / "syslog-ng.conf"), "-R", str(sng / "persist"),
                               "-p", str(sng / "pid"), "-c", str(sng / "ctl")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        sink = f'[[logs.sinks]]\ntype = "tcp"\naddress = "127.0.0.1:{port}"\nspool_dir = "spool"\n'
        secs, rss, _ = _actorsup(work, "Events", f"n = {n}", sink, _DONE, sng / "tcp.log")
        _check_count(sng / "tcp.log", _BENCH, n)
        print(f"tcp sink:    {n:>9,} structured events in {secs:6.3f} s = {n / secs:>9,.0f} events/s "
              f"into syslog-ng, supervisor peak RSS {rss / 2**20:.0f} MiB")
    finally:
        _stop(server)


def bench_flood(work: Path, n: int) -> None:
    out = work / "flood.jsonl"
    out.unlink(missing_ok=True)
    secs, rss, _ = _actorsup(work, "Events", f"n = {n}", _file_sink(out), _DONE, out)
    _check_count(out, _BENCH, n)
    print(f"flood:       {n:>9,} events in {secs:6.3f} s, supervisor peak RSS {rss / 2**20:.0f} MiB (the memory bound)")


def _supervisord() -> Path | None:
    binary = SUPERVISORD_VENV / "bin" / "supervisord"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(SUPERVISORD_VENV)], check=True)
        subprocess.run([str(SUPERVISORD_VENV / "bin" / "pip"), "install", "-q", "supervisor>=4.3,<4.4"], check=True)
    return binary if binary.exists() else None


_LINE_KEYS = {"timestamp", "level", "event", "stream", "actor", "pid", "restarts", "seq", "id", "host"}


def _lost_lines(out: Path, n: int) -> int:
    """How many of the child's n lines are not in ``out`` as a complete, valid event."""
    expected = iter(f"line {i} of the benchmark output" for i in range(n))
    want = next(expected, None)
    found = 0
    with open(out, "rb") as f:
        for raw in f:
            event = json.loads(raw)
            if event.get("stream") != "stdout" or event.get("actor") != "bench":
                continue
            if event["event"] == want and event.keys() >= _LINE_KEYS and event["level"] == "info":
                found += 1
                want = next(expected, None)
    return n - found


def _supervisord_run(work: Path, binary: Path, n: int) -> tuple[float, tuple[float, float]]:
    """One supervisord run: (seconds from stamp to last line, supervisord CPU seconds)."""
    sd = work / "supervisord"
    sd.mkdir(exist_ok=True)
    stamp, log, go = sd / "stamp", sd / "lines.log", sd / "go"
    for path in (stamp, log, go, Path(f"{go}.ready")):
        path.unlink(missing_ok=True)
    (sd / "supervisord.conf").write_text(textwrap.dedent(f"""
        [supervisord]
        nodaemon=true
        logfile={sd}/supervisord.log
        pidfile={sd}/supervisord.pid
        [program:lines]
        command={sys.executable} {work / 'bench_actors.py'} {n} {stamp} {go}
        autorestart=false
        startsecs=0
        stdout_logfile={log}
        stdout_logfile_maxbytes=0
        """))
    # Its import name is ``supervisor``, like ours: a PYTHONPATH pointing at a checkout would shadow it.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen([str(binary), "-c", str(sd / "supervisord.conf")], cwd=sd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_file(Path(f"{go}.ready"), proc)
        _wait_lines(log, _last_warm_up_line(n), 120)
        _settle()
        cpu = _cpu(proc.pid)
        go.touch()
        end, _ = _wait_lines(log, _last_line(n), 120)
        cpu = _cpu_since(proc.pid, cpu)
        _check_count(log, b" of the benchmark output\n", n)
        return end - float(stamp.read_text()), cpu
    finally:
        _stop(proc)


def bench_lines(work: Path, n: int, repeat: int) -> None:
    out = work / "lines.jsonl"
    binary = _supervisord()
    # per tool: wall ms, psutil CPU ms, schedstat CPU ms
    ours: list[list[float]] = [[], [], []]
    theirs: list[list[float]] = [[], [], []]
    lost = 0
    for _ in range(repeat):
        out.unlink(missing_ok=True)
        secs, _, cpu = _actorsup(work, "Lines", f"n = {n}", _file_sink(out), _last_line(n), out, go=work / "go",
                                 warm_up=_last_warm_up_line(n), poll_rss=False)
        for series, value in zip(ours, (secs, *cpu), strict=False):
            series.append(value * 1000)
        lost += _lost_lines(out, n)
        if binary is not None:
            secs, cpu = _supervisord_run(work, binary, n)
            for series, value in zip(theirs, (secs, *cpu), strict=False):
                series.append(value * 1000)
    figures: list[Figure] = []
    for tool, series in (("actorsup", ours), ("supervisord", theirs)):
        if not series[0]:
            figures.append(Figure(tool, None, note="not installed: pip install failed"))
            continue
        for what, values in zip(("wall", "CPU (psutil cpu_times)", "CPU (schedstat)"), series, strict=False):
            stats = summarize(values)
            figures.append(Figure(f"{tool} {what} p50", stats.p50, "ms"))
            figures.append(Figure(f"{tool} {what} p95", stats.p95, "ms"))
    figures.append(Figure("lines lost (all runs)", lost, "", target=0))
    if theirs[0]:
        # Each actorsup run is followed by a supervisord run: the ratio within
        # a pair is taken seconds apart, so it cancels the VM's slow spells
        # that a ratio of two medians can catch on one side only.
        paired = summarize([mine / peer for mine, peer in zip(ours[0], theirs[0], strict=False)])
        figures.append(Figure("wall ratio actorsup/supervisord, median of paired runs", paired.p50, "x", target=2))
        for what, i in (("wall", 0), ("CPU (schedstat)", 2), ("CPU (psutil cpu_times)", 1)):
            mine, peer = summarize(ours[i]).p50, summarize(theirs[i]).p50
            if peer > 0:  # psutil counts 10 ms ticks: supervisord's may be 0
                # Only time has a target (the "in at most 2x supervisord's time").
                figures.append(Figure(f"{what} ratio actorsup/supervisord (p50)", mine / peer, "x",
                                      target=2 if what == "wall" else None))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print_figures(f"stdout: {n:,} lines of a child into the file sink, {repeat} runs (load average {load})",
                  figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--flood", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs of the events and stdout-lines parts (default 5)")
    parser.add_argument("--only", choices=["events", "tcp", "flood", "lines"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="actorsup-bench-") as tmp:
        work = Path(tmp)
        (work / "bench_actors.py").write_text(ACTORS)
        runs = {
            "events": lambda: bench_events(work, args.events, args.repeat),
            "tcp": lambda: bench_tcp(work, args.events),
            "lines": lambda: bench_lines(work, args.lines, args.repeat),
            "flood": lambda: bench_flood(work, args.flood),
        }
        for name, run in runs.items():
            if args.only in (None, name):
                run()


if __name__ == "__main__":
    main()
