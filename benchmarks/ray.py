"""Ray benchmark (issue 17): actorsup's ``kind = "ray"`` beside plain Ray, in the same run, on one cluster.

One loopback Ray cluster of three nodes (``ray.cluster_utils.Cluster``, 127.0.0.1)
serves both sides. actorsup is measured through its public contract
(``actorsup run CONFIG`` joining the cluster, JSON log lines on stdout); plain Ray
from this process as a driver, with actors of ``max_restarts=-1``:

1. crash -> the replacement's first statement (the actor's own wall-clock stamps);
2. hang (a blocked loop) -> detected: ``actor.heartbeat_timeout``; plain Ray never
   notices a hung actor (it stays ALIVE, calls just wait);
3. node removed (ungraceful) -> the replacement's first statement on another node;
4. events/s from one Ray actor into the file sink (the whole burst, until its last
   line is in the file).

Run from the repository root, under the shared lock:
    flock /tmp/actorsup-bench.lock .venv/bin/python benchmarks/ray.py [--repeat N]
It exits 1 only when a figure could not be measured.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if sys.path and sys.path[0] == _HERE:  # run as a script: this file must not shadow the ray package
    sys.path[0] = str(Path(_HERE).parent)

import argparse  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import datetime  # noqa: E402
from typing import Any  # noqa: E402

import anyio  # noqa: E402
import psutil  # noqa: E402

from actors import Actor  # noqa: E402
from benchmarks._stats import Figure, report, summarize  # noqa: E402
from benchmarks.restart import BenchError, Supervised, actorsup_command, run_actorsup  # noqa: E402

HEARTBEAT_INTERVAL = 0.5
HEARTBEAT_TIMEOUT = 1.5
LOST_WAIT = 120.0  # plain Ray: how long to wait for an actor of a removed node to run again
ROOT = Path(_HERE).parent


# --- the actors (imported by the Ray hosts' children as benchmarks.ray:NAME) ------------------
class CrashLoop(Actor):
    """Stamps its first statement, then crashes after a moment."""

    async def run(self) -> None:
        self.log.info("bench.up", t=time.time(), raylet=_raylet())
        await anyio.sleep(0.5)
        self.log.info("bench.crash", t=time.time())
        os._exit(1)


class HangLoop(Actor):
    """Stamps, then blocks its event loop (a hang: no more beats)."""

    async def run(self) -> None:
        self.log.info("bench.up", t=time.time())
        await anyio.sleep(0.5)
        self.log.info("bench.hang", t=time.time())
        time.sleep(3600)


class Where(Actor):
    """Stamps its first statement with its node's raylet pid, then idles."""

    async def run(self) -> None:
        self.log.info("bench.up", t=time.time(), raylet=_raylet())
        await anyio.sleep_forever()


class Burst(Actor):
    """Logs ``n`` events as fast as it can, then a last one."""

    def __init__(self, n: int = 20000) -> None:
        self.n = n

    async def run(self) -> None:
        self.log.info("bench.burst_start", t=time.time())
        for i in range(self.n):
            self.log.info("bench.burst", i=i)
        self.log.info("bench.burst_done", t=time.time())
        await anyio.sleep_forever()


def _raylet() -> int:
    """The raylet pid of this node: a host's child -> the Ray worker -> its raylet."""
    try:
        return psutil.Process(os.getppid()).ppid()
    except psutil.Error:
        return 0


# --- the cluster --------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node_args(resources: dict[str, float]) -> dict[str, Any]:
    return {"num_cpus": 2, "resources": resources, "node_ip_address": "127.0.0.1",
            "dashboard_agent_listen_port": _free_port()}


def _raylet_of(node: Any) -> int:
    return int(node.all_processes["raylet"][0].process.pid)


# --- actorsup ------------------------------------------------------------------------------
def _config(folder: Path, address: str, actors: dict[str, str], file_sink: Path | None = None) -> Path:
    lines = ["[supervisor]", f"heartbeat_interval = {HEARTBEAT_INTERVAL}", f"heartbeat_timeout = {HEARTBEAT_TIMEOUT}",
             "start_timeout = 60.0", "", "[ray]", f'address = "{address}"', 'namespace = "bench"', ""]
    if file_sink is not None:
        lines += ["[[logs.sinks]]", 'type = "stdout"', "", "[[logs.sinks]]", 'type = "file"',
                  f'path = "{file_sink}"', "max_bytes = 1073741824", ""]
    for name, body in actors.items():
        lines += [f"[actors.{name}]", body, ""]
    path = folder / "ray-bench.toml"
    path.write_text("\n".join(lines))
    return path


_NO_BACKOFF = 'max_restarts = 1000000\nrestart_window = 1.0\nbackoff_initial = 0.0\nbackoff_max = 0.0\nkind = "ray"'


def _stamp(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(event["timestamp"])).timestamp()


def _until(run: Supervised, match: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
    return run.events.until(match, timeout, what)[1]


def actorsup_crash(cmd: list[str], address: str, repeat: int, problems: list[str]) -> list[float]:
    samples = []
    with tempfile.TemporaryDirectory(prefix="actorsup-ray-") as tmp:
        config = _config(Path(tmp), address, {"c": f'target = "benchmarks.ray:CrashLoop"\n{_NO_BACKOFF}'})
        with run_actorsup(cmd, config, problems) as run:
            _until(run, lambda e: e.get("event") == "bench.up", 120, "the first bench.up")
            for _ in range(repeat):
                crash = _until(run, lambda e: e.get("event") == "bench.crash", 60, "bench.crash")
                up = _until(run, lambda e: e.get("event") == "bench.up", 60, "the replacement's bench.up")
                samples.append((up["t"] - crash["t"]) * 1000)
    return samples


def actorsup_hang(cmd: list[str], address: str, repeat: int, problems: list[str]) -> list[float]:
    samples = []
    with tempfile.TemporaryDirectory(prefix="actorsup-ray-") as tmp:
        config = _config(Path(tmp), address, {"h": f'target = "benchmarks.ray:HangLoop"\n{_NO_BACKOFF}'})
        with run_actorsup(cmd, config, problems) as run:
            for _ in range(repeat):
                hang = _until(run, lambda e: e.get("event") == "bench.hang", 120, "bench.hang")
                seen = _until(run, lambda e: e.get("event") == "actor.heartbeat_timeout", 60, "heartbeat_timeout")
                samples.append((_stamp(seen) - hang["t"]) * 1000)
    return samples


def actorsup_node_lost(cmd: list[str], cluster: Any, repeat: int, problems: list[str]) -> list[float]:
    samples = []
    for attempt in range(repeat):
        name = f"gone{attempt}"
        node = cluster.add_node(wait=True, **_node_args({name: 1}))
        gone = _raylet_of(node)
        body = (f'target = "benchmarks.ray:Where"\n{_NO_BACKOFF}\n'
                'ray = { num_cpus = 1, scheduling_strategy = "SPREAD" }')
        with tempfile.TemporaryDirectory(prefix="actorsup-ray-") as tmp:
            config = _config(Path(tmp), cluster.address, {f"w{i}": body for i in range(4)})
            with run_actorsup(cmd, config, problems) as run:
                ups = [_until(run, lambda e: e.get("event") == "bench.up", 120, "bench.up") for _ in range(4)]
                victims = [e["actor"] for e in ups if e["raylet"] == gone]
                if not victims:
                    problems.append(f"node lost #{attempt}: SPREAD put no actor on the new node; skipped")
                    cluster.remove_node(node, allow_graceful=False)
                    continue
                victim = victims[0]
                removed = time.time()
                cluster.remove_node(node, allow_graceful=False)
                up = _until(run, lambda e, v=victim: e.get("event") == "bench.up" and e.get("actor") == v, 120,
                            "the replacement on another node")
                if up["raylet"] == gone:
                    problems.append("node lost: the replacement ran on the removed node")
                samples.append((up["t"] - removed) * 1000)
    return samples


def actorsup_events(cmd: list[str], address: str, n: int, repeat: int, problems: list[str]) -> list[float]:
    rates = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="actorsup-ray-") as tmp:
            sink = Path(tmp) / "events.jsonl"
            config = _config(Path(tmp), address,
                             {"b": f'target = "benchmarks.ray:Burst"\nkind = "ray"\nargs = {{ n = {n} }}'}, sink)
            with run_actorsup(cmd, config, problems) as run:
                start = _until(run, lambda e: e.get("event") == "bench.burst_start", 120, "bench.burst_start")
                _until(run, lambda e: e.get("event") == "bench.burst_done", 120, "bench.burst_done")
                deadline = time.monotonic() + 60
                while b"bench.burst_done" not in sink.read_bytes()[-4096:]:
                    if time.monotonic() > deadline:
                        raise BenchError("the burst's last event never reached the file sink")
                    time.sleep(0.01)
                took = time.time() - start["t"]
                count = sum(1 for line in sink.read_bytes().splitlines() if b'"bench.burst"' in line)
                if count != n:
                    problems.append(f"events: {count} of {n} burst events in the file")
                rates.append(n / took)
    return rates


# --- plain Ray ------------------------------------------------------------------------------
def plain_ray(cluster: Any, repeat: int, problems: list[str], part: str) -> list[float]:
    """``crash`` -> first statement, or node ``lost`` -> first statement elsewhere, of max_restarts=-1 actors."""
    import ray
    from ray._private import services
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    services.resolve_ip_for_localhost = lambda host: host  # the cluster listens on loopback only
    ray.init(address=cluster.address, _node_ip_address="127.0.0.1", log_to_driver=False, logging_level="ERROR",
             namespace="bench-plain")
    try:
        with tempfile.TemporaryDirectory(prefix="plain-ray-") as tmp:
            stamps = Path(tmp) / "up"

            @ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0)
            class Plain:
                def __init__(self, path: str) -> None:
                    with open(path, "a") as f:
                        f.write(f"{time.time()} {ray.get_runtime_context().get_node_id()}\n")

                def ping(self) -> bool:
                    return True

                def crash(self, path: str) -> None:
                    with open(path, "a") as f:
                        f.write(f"crash {time.time()}\n")
                    os._exit(1)

            def ups() -> list[list[str]]:
                text = stamps.read_text() if stamps.exists() else ""
                return [line.split() for line in text.splitlines() if not line.startswith("crash")]

            def wait_ups(count: int, timeout: float) -> list[list[str]]:
                deadline = time.monotonic() + timeout
                while len(found := ups()) < count:
                    if time.monotonic() > deadline:
                        raise BenchError(f"plain Ray: no restart within {timeout:g} s")
                    time.sleep(0.005)
                return found

            if part == "crash":
                actor = Plain.remote(str(stamps))
                ray.get(actor.ping.remote(), timeout=60)
                crash_samples = []
                for i in range(repeat):
                    actor.crash.remote(str(stamps))
                    found = wait_ups(i + 2, 60)
                    crashed = float(stamps.read_text().split("crash ")[-1].split()[0])
                    crash_samples.append((float(found[-1][0]) - crashed) * 1000)
                ray.kill(actor)
                return crash_samples
            lost_samples = []
            for attempt in range(repeat):
                stamps.write_text("")
                node = cluster.add_node(wait=True, **_node_args({f"plain{attempt}": 1}))
                pinned = Plain.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=True))
                actor = pinned.remote(str(stamps))
                ray.get(actor.ping.remote(), timeout=60)
                removed = time.time()
                cluster.remove_node(node, allow_graceful=False)
                try:
                    found = wait_ups(2, LOST_WAIT)
                except BenchError:
                    problems.append(f"plain Ray: the actor of a removed node did not run again within {LOST_WAIT:g} s")
                    ray.kill(actor)
                    break
                lost_samples.append((float(found[-1][0]) - removed) * 1000)
                ray.kill(actor)
            return lost_samples
    finally:
        ray.shutdown()


# --- main -------------------------------------------------------------------------------------
def _figures(label: str, samples: list[float], unit: str, note: str) -> list[Figure]:
    s = summarize(samples)
    return [Figure(f"{label} median", s.p50, unit, note=f"{note}; n={s.n}"), Figure(f"{label} p95", s.p95, unit)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="crashes and hangs per side (5); node losses: half")
    parser.add_argument("--events", type=int, default=20000, help="events in the burst (20000)")
    parser.add_argument("--actorsup", metavar="CMD", help='command to run (default: "actorsup")')
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the figures as JSON")
    parser.add_argument("--plain", action="store_true", help="plain-text table instead of rich")
    args = parser.parse_args(argv)
    from ray.cluster_utils import Cluster

    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cmd = actorsup_command(args.actorsup)
    figures: list[Figure] = []
    problems: list[str] = []
    errors: list[str] = []
    load_before = os.getloadavg()
    losses = max(1, args.repeat // 2)
    cluster = Cluster(initialize_head=True, head_node_args={**_node_args({"head": 1}), "include_dashboard": False})
    try:
        for name in ("node_a", "node_b"):
            cluster.add_node(wait=True, **_node_args({name: 1}))
        steps: list[tuple[str, Callable[[], list[Figure]]]] = [
            ("actorsup crash", lambda: _figures("actorsup crash -> first statement", actorsup_crash(
                cmd, cluster.address, args.repeat, problems), "ms", "a new Ray actor, host and child")),
            ("actorsup hang", lambda: _figures("actorsup hang -> detected", actorsup_hang(
                cmd, cluster.address, args.repeat, problems), "ms", f"heartbeat_timeout {HEARTBEAT_TIMEOUT:g} s")),
            ("actorsup node", lambda: _figures("actorsup node removed -> replacement running", actorsup_node_lost(
                cmd, cluster, losses, problems), "ms", "its first statement on another node")),
            ("actorsup events", lambda: _figures("actorsup events/s into the file sink", actorsup_events(
                cmd, cluster.address, args.events, max(1, args.repeat // 2), problems), "ev/s",
                f"{args.events} events from one Ray actor")),
        ]
        print("measuring plain Ray crash ...", file=sys.stderr, flush=True)  # first: no dead node yet
        try:
            crash = plain_ray(cluster, args.repeat, problems, "crash")
            figures += _figures("plain Ray crash -> first statement", crash, "ms",
                                "max_restarts=-1: the same actor, restarted in place")
        except Exception as exc:
            errors.append(f"plain Ray crash: {exc}")
            figures.append(Figure("plain Ray crash", None, note=f"not measured: {str(exc).splitlines()[0]}"))
        figures.append(Figure("plain Ray hang -> detected", None,
                              note="never: a blocked actor stays ALIVE, its calls just wait"))
        for part, step in steps:
            print(f"measuring {part} ...", file=sys.stderr, flush=True)
            try:
                figures += step()
            except (BenchError, OSError, psutil.Error, ValueError) as exc:
                errors.append(f"{part}: {exc}")
                figures.append(Figure(part, None, note=f"not measured: {str(exc).splitlines()[0]}"))
        print("measuring plain Ray node loss ...", file=sys.stderr, flush=True)
        try:
            lost = plain_ray(cluster, 1, problems, "lost")
            if lost:
                figures += _figures("plain Ray node removed -> replacement running", lost, "ms",
                                    "Ray's node-death detection, then its restart")
            else:
                figures.append(Figure("plain Ray node removed -> replacement running", None,
                                      note=f"not within {LOST_WAIT:g} s (max_restarts=-1, soft node affinity)"))
        except Exception as exc:
            errors.append(f"plain Ray node loss: {exc}")
            figures.append(Figure("plain Ray node loss", None, note=f"not measured: {str(exc).splitlines()[0]}"))
    finally:
        cluster.shutdown()
    return report("actorsup on Ray beside plain Ray", figures,
                  setup=f"Ray {__import__('ray').__version__}, 3 loopback nodes; actorsup: {' '.join(cmd)}",
                  load_before=load_before, problems=problems, errors=errors, plain=args.plain, json_path=args.json)


if __name__ == "__main__":
    sys.exit(main())

