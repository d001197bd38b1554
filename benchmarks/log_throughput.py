"""Log pipeline throughput: child -> supervisor -> sinks, against supervisord.

    .venv/bin/python benchmarks/log_throughput.py [--events N] [--lines N] [--flood N]

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
to the moment the last line is in the log file (polled every 2 ms).
"""

from __future__ import annotations

import argparse
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

ROOT = Path(__file__).resolve().parents[1]
ACTORSUP = ROOT / ".venv" / "bin" / "actorsup"
PEERS = ROOT / "benchmarks" / ".peers"
SUPERVISORD_VENV = PEERS / "supervisord"

ACTORS = textwrap.dedent(
    """
    import os, sys, time
    from actors import Actor

    class Events(Actor):
        def __init__(self, n, stamp):
            self.n, self.stamp = n, stamp
        async def run(self):
            log = self.log
            with open(self.stamp, "w") as f:
                f.write(repr(time.time()))
            for i in range(self.n):
                log.info("bench", i=i)
            log.info("bench.done")
            os._exit(0)

    class Lines(Actor):
        def __init__(self, n, stamp):
            self.n, self.stamp = n, stamp
        async def run(self):
            write_lines(self.n, self.stamp)
            os._exit(0)

    def write_lines(n, stamp):
        data = "".join(f"line {i} of the benchmark output\\n" for i in range(n)).encode()
        with open(stamp, "w") as f:
            f.write(repr(time.time()))
        view = memoryview(data)
        while view:
            view = view[os.write(1, view[: 1 << 16]):]

    if __name__ == "__main__":
        write_lines(int(sys.argv[1]), sys.argv[2])
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


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def _wait_lines(path: Path, want: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> tuple[float, int]:
    """Poll until ``path`` holds ``want`` lines; return (wall time, peak RSS of proc)."""
    deadline = time.monotonic() + timeout
    peak = 0
    while time.monotonic() < deadline:
        if proc is not None:
            peak = max(peak, _vmhwm(proc.pid))
        if _count_lines(path) >= want:
            return time.time(), peak
        time.sleep(0.002)
    raise SystemExit(f"timed out: {path} has {_count_lines(path)} of {want} lines")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _actorsup(work: Path, actor: str, args: str, sinks: str, want: int, out: Path, timeout: float = 300) -> tuple[float, int]:
    """Run one actor under ``actorsup run``; return (seconds from stamp to last line, peak RSS)."""
    stamp = work / "stamp"
    stamp.unlink(missing_ok=True)
    (work / "actorsup.toml").write_text(
        textwrap.dedent(
            f"""
            [supervisor]
            heartbeat_interval = 5.0
            control_socket = "ctl.sock"
            [actors.bench]
            target = "bench_actors:{actor}"
            restart = "temporary"
            args = {{ {args}, stamp = "{stamp}" }}
            """
        )
        + sinks
    )
    proc = subprocess.Popen([str(ACTORSUP), "run", str(work / "actorsup.toml")], cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end, peak = _wait_lines(out, want, timeout, proc)
    finally:
        peak_final = _vmhwm(proc.pid)
        _stop(proc)
    return end - float(stamp.read_text()), max(peak, peak_final)


def _file_sink(path: Path) -> str:
    return f'[[logs.sinks]]\ntype = "file"\npath = "{path}"\nmax_bytes = "100GiB"\ndaily = false\n'


def bench_events(work: Path, n: int) -> None:
    out = work / "events.jsonl"
    out.unlink(missing_ok=True)
    secs, rss = _actorsup(work, "Events", f"n = {n}", _file_sink(out), n + 1, out)
    print(f"file sink:   {n:>9,} structured events in {secs:6.3f} s = {n / secs:>9,.0f} events/s, "
          f"supervisor peak RSS {rss / 2**20:.0f} MiB")


def bench_tcp(work: Path, n: int) -> None:
    binary = shutil.which("syslog-ng") or "/usr/sbin/syslog-ng"
    if not os.path.exists(binary):
        print("tcp sink:    skipped (syslog-ng not installed: apt-get install -y syslog-ng-core)")
        return
    sng = work / "syslog-ng"
    sng.mkdir(exist_ok=True)
    port = _free_port()
    conf = (ROOT / "tests" / "aggregator" / "syslog-ng.conf").read_text()
    conf = conf.replace("@TCP_PORT@", str(port)).replace("@SYSLOG_PORT@", str(_free_port())).replace("@OUT_DIR@", str(sng))
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
        secs, rss = _actorsup(work, "Events", f"n = {n}", sink, n + 1, sng / "tcp.log")
        print(f"tcp sink:    {n:>9,} structured events in {secs:6.3f} s = {n / secs:>9,.0f} events/s "
              f"into syslog-ng, supervisor peak RSS {rss / 2**20:.0f} MiB")
    finally:
        _stop(server)


def bench_flood(work: Path, n: int) -> None:
    out = work / "flood.jsonl"
    out.unlink(missing_ok=True)
    secs, rss = _actorsup(work, "Events", f"n = {n}", _file_sink(out), n + 1, out)
    print(f"flood:       {n:>9,} events in {secs:6.3f} s, supervisor peak RSS {rss / 2**20:.0f} MiB (the memory bound)")


def _supervisord() -> Path | None:
    binary = SUPERVISORD_VENV / "bin" / "supervisord"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(SUPERVISORD_VENV)], check=True)
        subprocess.run([str(SUPERVISORD_VENV / "bin" / "pip"), "install", "-q", "supervisor>=4.3,<4.4"], check=True)
    return binary if binary.exists() else None


def bench_lines(work: Path, n: int) -> None:
    out = work / "lines.jsonl"
    out.unlink(missing_ok=True)
    ours, _ = _actorsup(work, "Lines", f"n = {n}", _file_sink(out), n, out)
    lost = n - sum(1 for line in out.read_bytes().splitlines() if b'"stream":"stdout"' in line)
    binary = _supervisord()
    theirs = None
    if binary is not None:
        sd = work / "supervisord"
        sd.mkdir(exist_ok=True)
        stamp, log = sd / "stamp", sd / "lines.log"
        log.unlink(missing_ok=True)
        (sd / "supervisord.conf").write_text(textwrap.dedent(f"""
            [supervisord]
            nodaemon=true
            logfile={sd}/supervisord.log
            pidfile={sd}/supervisord.pid
            [program:lines]
            command={sys.executable} {work / 'bench_actors.py'} {n} {stamp}
            autorestart=false
            startsecs=0
            stdout_logfile={log}
            stdout_logfile_maxbytes=0
            """))
        proc = subprocess.Popen([str(binary), "-c", str(sd / "supervisord.conf")], cwd=sd,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            end, _ = _wait_lines(log, n, 120)
            theirs = end - float(stamp.read_text())
        finally:
            _stop(proc)
    print(f"stdout:      {n:>9,} lines into the file sink in {ours * 1000:6.1f} ms as structured events, {lost} lost")
    if theirs is not None:
        print(f"supervisord: {n:>9,} lines into stdout_logfile in {theirs * 1000:6.1f} ms as raw bytes "
              f"(actorsup/supervisord = {ours / theirs:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--flood", type=int, default=1_000_000)
    parser.add_argument("--only", choices=["events", "tcp", "flood", "lines"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="actorsup-bench-") as tmp:
        work = Path(tmp)
        (work / "bench_actors.py").write_text(ACTORS)
        runs = {
            "events": lambda: bench_events(work, args.events),
            "tcp": lambda: bench_tcp(work, args.events),
            "lines": lambda: bench_lines(work, args.lines),
            "flood": lambda: bench_flood(work, args.flood),
        }
        for name, run in runs.items():
            if args.only in (None, name):
                run()


if __name__ == "__main__":
    main()
