"""Prometheus metrics for actors and cron tasks, served over HTTP from anyio.

The supervisor already knows each actor's restart count and beat age, so the
values are kept as plain state and exported by one custom collector at scrape
time (a prometheus ``Counter`` cannot be *set* to the supervisor's count).
Metrics live in their own ``CollectorRegistry``, never the process-global
one, so two supervisors in one process (or in one test run) never clash.

``serve()`` is a tiny HTTP/1.1 responder on an anyio TCP listener rather than
prometheus_client's thread server: it is cancelled with its task group and
leaves no thread or socket behind.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import structlog
from anyio.abc import SocketAttribute, SocketStream, TaskStatus
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from .lifecycle._observers import BeatRecord, Observer, TransitionRecord
from .lifecycle._states import ActorState

__all__ = ["CRON_OUTCOMES", "Metrics"]

log = structlog.get_logger("actorsup.metrics")

CRON_OUTCOMES = ("ok", "error", "timeout", "killed")
_MAX_REQUEST = 8192  # bytes of request head we are willing to read
_READ_TIMEOUT = 5.0  # seconds a client may take to send its request head
_MAX_CONNECTIONS = 32


class _ActorRow:
    __slots__ = ("beat_age", "cpu", "restarts", "rss", "up")

    def __init__(self) -> None:
        self.up = False
        self.restarts = 0
        self.beat_age: float | None = None
        self.rss: int | None = None
        self.cpu: float | None = None


class Metrics(Observer):
    """Actor and cron metrics in a private registry, with an optional /metrics endpoint.

    Actor series are fed as an observer of the handles (transitions and beats).
    """

    wants_samples = True  # RSS and CPU on every beat

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._actors: dict[str, _ActorRow] = {}
        self._cron: dict[tuple[str, str], int] = {}
        self.registry.register(_Collector(self))

    # --- updates (called by the supervisor) ---------------------------------
    def set_actor(
        self,
        name: str,
        up: bool,
        restarts: int,
        beat_age: float | None = None,
        rss: int | None = None,
        *,
        cpu_percent: float | None = None,
    ) -> None:
        """Set one actor's current values; None leaves that series out."""
        row = self._actors.get(name)
        if row is None:
            row = self._actors[name] = _ActorRow()
        row.up = bool(up)
        row.restarts = restarts
        row.beat_age = beat_age
        row.rss = rss
        row.cpu = cpu_percent

    def on_transition(self, record: TransitionRecord) -> None:
        self.set_actor(record.actor, record.new is ActorState.RUNNING, record.restarts)

    def on_beat(self, record: BeatRecord) -> None:
        sample = record.sample
        if sample is not None:
            self.set_actor(record.actor, True, record.restarts, beat_age=0.0, rss=sample.rss,
                           cpu_percent=sample.cpu_percent)

    def remove_actor(self, name: str) -> None:
        """Drop every series of an actor that is no longer configured."""
        self._actors.pop(name, None)

    def add_cron_task(self, task: str) -> None:
        """Export zeros for every outcome of ``task``, so rates work from the first run."""
        for outcome in CRON_OUTCOMES:
            self._cron.setdefault((task, outcome), 0)

    def cron_run(self, task: str, outcome: str) -> None:
        """Count one finished run of ``task`` (outcome ok, error, timeout or killed)."""
        self.add_cron_task(task)
        self._cron[(task, outcome)] = self._cron.get((task, outcome), 0) + 1

    def remove_cron_task(self, task: str) -> None:
        for key in [k for k in self._cron if k[0] == task]:
            del self._cron[key]

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)

    # --- HTTP endpoint --------------------------------------------------------
    async def serve(
        self,
        port: int,
        host: str = "127.0.0.1",
        *,
        task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Answer ``GET /metrics`` on ``host:port`` until cancelled; reports the bound port."""
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        limiter = anyio.CapacityLimiter(_MAX_CONNECTIONS)

        async def handle(stream: SocketStream) -> None:
            async with limiter, stream:
                await self._answer(stream)

        async with listener:
            bound = listener.extra(SocketAttribute.local_port)
            log.info("metrics.listening", host=host, port=bound, address=f"{host}:{bound}", path="/metrics")
            task_status.started(bound)
            await listener.serve(handle)

    async def _answer(self, stream: SocketStream) -> None:
        try:
            await stream.send(await self._reply_to(stream))
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass  # the client went away; nothing to answer
        except Exception as exc:  # one bad request must never stop the endpoint
            log.error("metrics.request_failed", error=repr(exc))

    async def _reply_to(self, stream: SocketStream) -> bytes:
        head = b""
        with anyio.move_on_after(_READ_TIMEOUT) as scope:
            while b"\r\n\r\n" not in head and b"\n\n" not in head:
                if len(head) > _MAX_REQUEST:
                    return _response(431, b"request head too large\n")
                head += await stream.receive()
        if scope.cancelled_caught:
            return _response(408, b"request timeout\n")
        return self._respond(head)

    def _respond(self, head: bytes) -> bytes:
        parts = head.split(b"\n", 1)[0].strip().split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return _response(400, b"bad request\n")
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return _response(405, b"only GET and HEAD\n", extra=b"Allow: GET, HEAD\r\n")
        if target == b"/metrics":
            # Negotiate the format as prometheus_client's own server does.
            encoder, content_type = choose_encoder(_header(head, b"accept"))
            body = encoder(self.registry)
            return _response(200, body, content_type.encode(), head_only=method == b"HEAD")
        if target == b"/":
            return _response(200, b"actorsup metrics: see /metrics\n", head_only=method == b"HEAD")
        return _response(404, b"not found: try /metrics\n", head_only=method == b"HEAD")


def _header(head: bytes, name: bytes) -> str:
    for line in head.split(b"\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip().decode("latin-1")
    return ""


_REASONS = {
    200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 431: "Request Header Fields Too Large",
}


def _response(
    code: int, body: bytes, content_type: bytes = b"text/plain; charset=utf-8",
    *, extra: bytes = b"", head_only: bool = False,
) -> bytes:
    head = (
        f"HTTP/1.1 {code} {_REASONS[code]}\r\n".encode()
        + b"Content-Type: " + content_type + b"\r\n"
        + f"Content-Length: {len(body)}\r\n".encode()
        + extra
        + b"Connection: close\r\n\r\n"
    )
    return head if head_only else head + body


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        actors = self._metrics._actors
        up = GaugeMetricFamily("actor_up", "1 if the actor is running, else 0.", labels=["actor"])
        restarts = CounterMetricFamily(
            "actor_restarts", "Restarts of the actor since the supervisor started.", labels=["actor"]
        )
        age = GaugeMetricFamily(
            "actor_heartbeat_age_seconds", "Seconds since the actor's last heartbeat.", labels=["actor"]
        )
        rss = GaugeMetricFamily("actor_rss_bytes", "Resident set size of the actor's process.", labels=["actor"])
        cpu = GaugeMetricFamily(
            "actor_cpu_percent", "CPU use of the actor's process since the previous sample.", labels=["actor"]
        )
        for name, row in sorted(actors.items()):
            up.add_metric([name], 1.0 if row.up else 0.0)
            restarts.add_metric([name], row.restarts)
            if row.beat_age is not None:
                age.add_metric([name], row.beat_age)
            if row.rss is not None:
                rss.add_metric([name], row.rss)
            if row.cpu is not None:
                cpu.add_metric([name], row.cpu)
        runs = CounterMetricFamily(
            "cron_runs", "Finished cron runs by task and outcome.", labels=["task", "outcome"]
        )
        for (task, outcome), count in sorted(self._metrics._cron.items()):
            runs.add_metric([task, outcome], count)
        yield from (up, restarts, age, rss, cpu, runs)
