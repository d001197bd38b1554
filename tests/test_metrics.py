"""Prometheus metrics: values in a private registry, and the anyio /metrics endpoint."""

from __future__ import annotations

import anyio
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from supervisor.metrics import Metrics


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def _http(port: int, request: bytes) -> bytes:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(request)
        chunks = []
        try:
            while True:
                chunks.append(await stream.receive())
        except anyio.EndOfStream:
            pass
    return b"".join(chunks)


class TestMetrics:
    def test_actor_values(self) -> None:
        """set_actor exports up, restarts, beat age, rss and cpu, labelled by actor."""
        metrics = Metrics()
        metrics.set_actor("web", True, 3, 0.25, 50_000_000, cpu_percent=12.5)
        metrics.set_actor("idle", False, 0)
        got = _samples(metrics.render().decode())
        assert got[("actor_up", (("actor", "web"),))] == 1.0
        assert got[("actor_up", (("actor", "idle"),))] == 0.0
        assert got[("actor_restarts_total", (("actor", "web"),))] == 3.0
        assert got[("actor_heartbeat_age_seconds", (("actor", "web"),))] == 0.25
        assert got[("actor_rss_bytes", (("actor", "web"),))] == 50_000_000
        assert got[("actor_cpu_percent", (("actor", "web"),))] == 12.5
        assert ("actor_rss_bytes", (("actor", "idle"),)) not in got

    def test_remove_actor(self) -> None:
        """A removed actor leaves no series behind."""
        metrics = Metrics()
        metrics.set_actor("gone", True, 1, 0.1, 1)
        metrics.remove_actor("gone")
        assert b'actor="gone"' not in metrics.render()

    def test_cron_runs(self) -> None:
        """cron_run counts by task and outcome, with zeros for outcomes not seen yet."""
        metrics = Metrics()
        metrics.cron_run("cleanup", "ok")
        metrics.cron_run("cleanup", "ok")
        metrics.cron_run("cleanup", "timeout")
        got = _samples(metrics.render().decode())
        key = lambda outcome: ("cron_runs_total", (("outcome", outcome), ("task", "cleanup")))  # noqa: E731
        assert [got[key(o)] for o in ("ok", "error", "timeout", "killed")] == [2.0, 0.0, 1.0, 0.0]
        metrics.remove_cron_task("cleanup")
        assert b"cleanup" not in metrics.render()

    def test_private_registry(self) -> None:
        """Two Metrics never clash, and nothing lands in the global registry."""
        first, second = Metrics(), Metrics()
        first.set_actor("a", True, 0)
        assert b'actor="a"' not in second.render()
        assert b"actor_up" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)


class TestMetricsEndpoint:
    @pytest.mark.anyio
    async def test_serves_metrics(self) -> None:
        """GET /metrics answers 200 with the exposition format, on an ephemeral port."""
        metrics = Metrics()
        metrics.set_actor("web", True, 2, 0.5, 1024)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                port = await tg.start(metrics.serve, 0)
                assert port > 0
                reply = await _http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                tg.cancel_scope.cancel()
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n" in head
        assert f"Content-Length: {len(body)}".encode() in head
        assert _samples(body.decode())[("actor_restarts_total", (("actor", "web"),))] == 2.0

    @pytest.mark.anyio
    async def test_negotiates_openmetrics(self) -> None:
        """A scraper that asks for OpenMetrics gets it, as from prometheus_client's server."""
        metrics = Metrics()
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                port = await tg.start(metrics.serve, 0)
                reply = await _http(
                    port, b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n\r\n"
                )
                tg.cancel_scope.cancel()
        assert b"Content-Type: application/openmetrics-text" in reply
        assert reply.endswith(b"# EOF\n")

    @pytest.mark.anyio
    async def test_bad_requests_do_not_stop_it(self) -> None:
        """Garbage, wrong methods, unknown paths and hang-ups get errors; it keeps serving."""
        metrics = Metrics()
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                port = await tg.start(metrics.serve, 0)
                assert (await _http(port, b"\x00\xffjunk\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
                assert (await _http(port, b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405 ")
                assert (await _http(port, b"GET /nope HTTP/1.0\n\n")).startswith(b"HTTP/1.1 404 ")
                assert (await _http(port, b"GET /" + b"a" * 20_000)).startswith(b"HTTP/1.1 431 ")
                async with await anyio.connect_tcp("127.0.0.1", port):
                    pass  # connect and hang up without a request
                head = await _http(port, b"HEAD /metrics?x=1 HTTP/1.1\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200 OK") and head.endswith(b"\r\n\r\n")
                tg.cancel_scope.cancel()


class TestInTheSupervisor:
    @pytest.mark.anyio
    async def test_listening_is_logged_once_and_stopped_actors_lose_their_figures(self) -> None:
        """One metrics.listening event (host, port, address, path); a stopped actor exports up 0 and no RSS."""
        from tests.harness import running_supervisor

        async with running_supervisor({"s": {"target": "tests.sample_actors:Steady"}}, metrics_port=0) as (sup, log):
            (listening,) = log.find("metrics.listening")
            assert listening["address"] == f"{listening['host']}:{listening['port']}"
            assert listening["path"] == "/metrics"
            await log.wait_for("steady.up")
            assert sup.metrics is not None
            with anyio.fail_after(10):
                while ("actor_rss_bytes", (("actor", "s"),)) not in _samples(sup.metrics.render().decode()):
                    await anyio.sleep(0.05)
            await sup.stop_actor("s")
            got = _samples(sup.metrics.render().decode())
            assert got[("actor_up", (("actor", "s"),))] == 0.0
            assert ("actor_rss_bytes", (("actor", "s"),)) not in got
