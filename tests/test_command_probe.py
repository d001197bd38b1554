"""Liveness probes: table validation, Kubernetes counting on a fake clock, and real http/tcp/exec checks."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor.command._errors import ProbeError
from supervisor.command._probe import (
    HttpTarget,
    ProbeResult,
    ProbeRunner,
    ProbeSpec,
    exec_check,
    http_check,
    parse_probe,
    tcp_check,
)
from tests.fakeclock import FakeClock
from tests.harness import wait_gone

pytestmark = pytest.mark.anyio


class TestParseProbe:
    def test_defaults_are_kubernetes_defaults(self) -> None:
        """Only a target given: every 10 s, timeout 1 s, 3 failures, no initial delay."""
        spec = parse_probe({"tcp": "127.0.0.1:6390"})
        assert spec == ProbeSpec("tcp", tcp=("127.0.0.1", 6390), every=10.0, timeout=1.0, failures=3)

    @pytest.mark.parametrize(
        ("url", "target"),
        [
            ("http://127.0.0.1:8080/healthz", HttpTarget("http://127.0.0.1:8080/healthz", False, "127.0.0.1", 8080,
                                                         "/healthz")),
            ("http://localhost", HttpTarget("http://localhost", False, "localhost", 80, "/")),
            ("https://[::1]/a?b=1#frag", HttpTarget("https://[::1]/a?b=1#frag", True, "::1", 443, "/a?b=1")),
        ],
    )
    def test_http_urls(self, url: str, target: HttpTarget) -> None:
        """An http(s) URL gives host, port (default 80/443) and the path with its query."""
        spec = parse_probe({"http": url, "every": 5, "timeout": 0.5, "failures": 2, "initial_delay": 1})
        assert spec.http == target and (spec.every, spec.timeout, spec.failures, spec.initial_delay) == (5, 0.5, 2, 1)

    def test_exec_takes_a_list_or_a_string(self) -> None:
        """exec is an argv, or a string split as a shell would."""
        assert parse_probe({"exec": ["redis-cli", "ping"]}).exec == ("redis-cli", "ping")
        assert parse_probe({"exec": "redis-cli -p 6390 ping"}).exec == ("redis-cli", "-p", "6390", "ping")

    def test_ipv6_tcp(self) -> None:
        """A bracketed IPv6 literal is accepted for tcp."""
        assert parse_probe({"tcp": "[::1]:22"}).tcp == ("::1", 22)

    @pytest.mark.parametrize(
        ("table", "key", "message"),
        [
            ("http://x", "", 'expected a table such as { http = "http://127.0.0.1:8080/healthz" }, got "http://x"'),
            ({}, "", "expected exactly one of http, tcp or exec, got {}"),
            ({"every": 5}, "", 'expected exactly one of http, tcp or exec, got {"every": 5}'),
            ({"http": "http://a", "tcp": "a:1"}, "",
             'expected exactly one of http, tcp or exec, not http and tcp, got {"http": "http://a", "tcp": "a:1"}'),
            ({"tcp": "a:1", "period": 3}, "period",
             "unknown key (expected one of http, tcp, exec, every, timeout, failures, initial_delay), got 3"),
            ({"http": "ftp://host/"}, "http", 'expected an http:// or https:// URL with a host, got "ftp://host/"'),
            ({"http": "http:///path"}, "http", 'expected an http:// or https:// URL with a host, got "http:///path"'),
            ({"http": "127.0.0.1:80"}, "http", 'expected an http:// or https:// URL with a host, got "127.0.0.1:80"'),
            ({"http": "http://a b/"}, "http", 'expected an http:// or https:// URL with a host, got "http://a b/"'),
            ({"http": "http://h:99999/"}, "http", 'expected a port from 1 to 65535 in the URL, got "http://h:99999/"'),
            ({"http": "http://h:0/"}, "http", 'expected a port from 1 to 65535 in the URL, got "http://h:0/"'),
            ({"tcp": "localhost"}, "tcp", 'expected "host:port" with a port from 1 to 65535, got "localhost"'),
            ({"tcp": ":80"}, "tcp", 'expected "host:port" with a port from 1 to 65535, got ":80"'),
            ({"tcp": "h:0"}, "tcp", 'expected "host:port" with a port from 1 to 65535, got "h:0"'),
            ({"tcp": "h:http"}, "tcp", 'expected "host:port" with a port from 1 to 65535, got "h:http"'),
            ({"tcp": "::1:80"}, "tcp", 'expected "host:port" with a port from 1 to 65535, got "::1:80"'),
            ({"tcp": 80}, "tcp", 'expected "host:port" with a port from 1 to 65535, got 80'),
            ({"exec": []}, "exec", "expected a non-empty argv list, got []"),
            ({"exec": "a | b"}, "exec",
             'expected one program and its arguments (| is shell syntax; no shell runs it: write ["sh", "-c", '
             '"..."] to use one), got "a | b"'),
            ({"tcp": "h:1", "every": 0}, "every", "expected a number > 0, got 0"),
            ({"tcp": "h:1", "every": "5s"}, "every", 'expected a number > 0, got "5s"'),
            ({"tcp": "h:1", "timeout": True}, "timeout", "expected a number > 0, got true"),
            ({"tcp": "h:1", "initial_delay": -1}, "initial_delay", "expected a number >= 0, got -1"),
            ({"tcp": "h:1", "failures": 0}, "failures", "expected an integer >= 1, got 0"),
            ({"tcp": "h:1", "failures": 2.5}, "failures", "expected an integer >= 1, got 2.5"),
            ({"tcp": "h:1", "every": 1, "timeout": 2}, "timeout",
             "must be at most every (1), so that checks never overlap, got 2"),
        ],
    )
    def test_invalid(self, table: Any, key: str, message: str) -> None:
        """Each bad table is one ProbeError with the key below `probe` and `problem, got VALUE`."""
        with pytest.raises(ProbeError) as info:
            parse_probe(table)
        assert (info.value.key, str(info.value)) == (key, message)


class _Script:
    """A fake check: results in order; None blocks until cancelled. Records the fake time of each call."""

    def __init__(self, clock: FakeClock, results: list[bool | None], cost: float = 0.0) -> None:
        self.clock = clock
        self.results = list(results)
        self.cost = cost
        self.times: list[float] = []

    async def __call__(self) -> ProbeResult:
        self.times.append(self.clock.now())
        result = self.results.pop(0) if self.results else True
        if self.cost:
            await self.clock.sleep_until(self.clock.now() + self.cost)
        if result is None:
            await anyio.sleep_forever()
        return (True, None) if result else (False, "nope")


@contextlib.asynccontextmanager
async def _running(runner: ProbeRunner) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run)
        yield
        tg.cancel_scope.cancel()


class TestProbeRunner:
    async def test_consecutive_failures_report_once_and_success_resets(self) -> None:
        """failures=3: F F T resets; F F F reports once; a 4th failure does not report again."""
        clock = FakeClock()
        check = _Script(clock, [False, False, True, False, False, False, False, True, False, False, False])
        unhealthy: list[tuple[int, str]] = []
        results: list[bool] = []
        runner = ProbeRunner(check, every=1, timeout=0.5, failures=3, clock=clock,
                             on_unhealthy=lambda n, why: unhealthy.append((n, why)),
                             on_result=lambda ok, why: results.append(ok))
        async with _running(runner):
            await clock.advance(0)
            for step in range(11):
                assert len(results) == step + 1
                expected = [] if step < 5 else [(3, "nope")] if step < 10 else [(3, "nope"), (3, "nope")]
                assert unhealthy == expected, step
                await clock.advance(1)

    async def test_initial_delay_then_fixed_rate(self) -> None:
        """The first check runs at start + initial_delay, then at every multiple of every (no drift)."""
        clock = FakeClock(start=100.0)
        check = _Script(clock, [], cost=0.3)
        runner = ProbeRunner(check, every=2, timeout=1, failures=1, initial_delay=5, clock=clock,
                             on_unhealthy=lambda n, why: None)
        async with _running(runner):
            await clock.advance(4.9)
            assert check.times == []
            await clock.advance(10)
            assert check.times == [105.0, 107.0, 109.0, 111.0, 113.0]

    async def test_timeout_is_a_failure_on_the_injected_clock(self) -> None:
        """A check that hangs fails at exactly `timeout`, and is cancelled."""
        clock = FakeClock()
        check = _Script(clock, [None, None])
        unhealthy: list[tuple[int, str]] = []
        results: list[tuple[bool, str | None]] = []
        runner = ProbeRunner(check, every=5, timeout=2, failures=2, clock=clock,
                             on_unhealthy=lambda n, why: unhealthy.append((n, why)),
                             on_result=lambda ok, why: results.append((ok, why)))
        async with _running(runner):
            await clock.advance(1.999)
            assert results == []
            await clock.advance(0.001)
            assert results == [(False, "timed out after 2s")]
            await clock.advance(5)
            assert unhealthy == [(2, "timed out after 2s")]

    async def test_a_slow_probe_does_not_delay_another(self) -> None:
        """While one runner's check hangs to its timeout, another keeps its own rhythm."""
        clock = FakeClock()
        slow = _Script(clock, [None])
        fast = _Script(clock, [])
        a = ProbeRunner(slow, every=10, timeout=8, failures=1, clock=clock, on_unhealthy=lambda n, w: None)
        b = ProbeRunner(fast, every=1, timeout=1, failures=1, clock=clock, on_unhealthy=lambda n, w: None)
        async with _running(a), _running(b):
            await clock.advance(5)
            assert slow.times == [1000.0] and fast.times == [1000.0 + i for i in range(6)]

    async def test_crashing_check_is_a_failure(self) -> None:
        """An exception in the check counts as a failure with its type and message."""
        async def broken() -> ProbeResult:
            raise RuntimeError("boom")

        runner = ProbeRunner(broken, every=1, timeout=1, failures=1, on_unhealthy=lambda n, w: None)
        assert await runner.check_once() == (False, "RuntimeError: boom")


# --- real programs ---------------------------------------------------------------------
@contextlib.asynccontextmanager
async def _server(argv: list[str], marker: bytes) -> AsyncIterator[tuple[subprocess.Popen[bytes], int]]:
    """Start a server that prints its port on stdout in a line containing ``marker``; kill it after."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    pidfd = os.pidfd_open(proc.pid)
    try:
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        out = b""
        with anyio.fail_after(15):
            while marker not in out or not out.split(marker, 1)[1].split(b"\n", 1)[1:]:
                await anyio.wait_readable(proc.stdout)
                out += proc.stdout.read() or b""
        after = out.split(marker, 1)[1].split()[0]
        port = int(after.rsplit(b":", 1)[-1].strip(b"()/"))
        yield proc, port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGCONT)
            os.killpg(proc.pid, signal.SIGKILL)
        with anyio.fail_after(10):
            await anyio.wait_readable(pidfd)
        proc.wait()
        os.close(pidfd)
        if proc.stdout is not None:
            proc.stdout.close()


def _http_server(directory: Path) -> contextlib.AbstractAsyncContextManager[tuple[subprocess.Popen[bytes], int]]:
    argv = [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(directory)]
    return _server(argv, b" port ")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _target(port: int, path: str, tls: bool = False) -> HttpTarget:
    scheme = "https" if tls else "http"
    url = f"{scheme}://127.0.0.1:{port}{path}"
    return HttpTarget(url, tls, "127.0.0.1", port, path)


class TestHttpProbe:
    async def test_http_server_statuses(self, tmp_path: Path) -> None:
        """python3 -m http.server: 200 and a 301 redirect pass, 404 fails with the status."""
        (tmp_path / "sub").mkdir()
        async with _http_server(tmp_path) as (_, port):
            with anyio.fail_after(10):
                assert await http_check(_target(port, "/")) == (True, None)
                assert await http_check(_target(port, "/sub")) == (True, None)  # 301 to /sub/
                assert await http_check(_target(port, "/missing")) == (
                    False, f"HTTP 404 from http://127.0.0.1:{port}/missing")

    async def test_sigstopped_server_is_reported_unhealthy(self, tmp_path: Path) -> None:
        """SIGSTOP the server: the probe times out `failures` times in a row and reports unhealthy once."""
        async with _http_server(tmp_path) as (server, port):
            unhealthy = anyio.Event()
            reports: list[tuple[int, str]] = []
            results: list[bool] = []

            def report(failures: int, reason: str) -> None:
                reports.append((failures, reason))
                unhealthy.set()

            runner = ProbeRunner(lambda: http_check(_target(port, "/")), every=0.3, timeout=0.3, failures=3,
                                 on_unhealthy=report, on_result=lambda ok, why: results.append(ok))
            assert await runner.check_once() == (True, None)
            os.kill(server.pid, signal.SIGSTOP)
            async with _running(runner):
                with anyio.fail_after(15):
                    await unhealthy.wait()
            assert reports == [(3, "timed out after 0.3s")] and results[-3:] == [False, False, False]

    async def test_closed_port(self) -> None:
        """Nothing listening: the http check fails with the connect error."""
        port = _closed_port()
        ok, why = await http_check(_target(port, "/"))
        assert not ok and why == f"cannot connect to 127.0.0.1:{port}: Connection refused"

    async def test_not_http(self) -> None:
        """A server that answers something else than HTTP fails with what it said."""
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            port = listener.getsockname()[1]
            listener.setblocking(False)

            async def answer() -> None:
                await anyio.wait_readable(listener)
                conn, _ = listener.accept()
                with conn:
                    conn.sendall(b"SSH-2.0-OpenSSH\r\n")

            async with anyio.create_task_group() as tg:
                tg.start_soon(answer)
                with anyio.fail_after(10):
                    ok, why = await http_check(_target(port, "/"))
        assert not ok and why == f"no HTTP status line from http://127.0.0.1:{port}/ (got 'SSH-2.0-OpenSSH')"

    @pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
    async def test_https_with_a_self_signed_certificate(self, tmp_path: Path) -> None:
        """openssl s_server -www over TLS passes: as in Kubernetes, the certificate is not verified."""
        key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
                       check=True, capture_output=True)
        argv = ["openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", str(cert), "-key", str(key), "-www"]
        async with _server(argv, b"ACCEPT ") as (_, port):
            with anyio.fail_after(10):
                assert await http_check(_target(port, "/", tls=True)) == (True, None)


class TestTcpProbe:
    async def test_open_and_closed_port(self) -> None:
        """A listening port passes; a closed one fails with the connect error."""
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            with anyio.fail_after(10):
                assert await tcp_check("127.0.0.1", listener.getsockname()[1]) == (True, None)
        port = _closed_port()
        assert await tcp_check("127.0.0.1", port) == (False, f"cannot connect to 127.0.0.1:{port}: Connection refused")


class TestExecProbe:
    async def test_exit_status(self) -> None:
        """true passes; false and a failing script fail with the exit code and the last output line."""
        with anyio.fail_after(10):
            assert await exec_check(("true",)) == (True, None)
            assert await exec_check(("false",)) == (False, "exit code 1")
            assert await exec_check(("sh", "-c", "echo one; echo 'Could not connect' >&2; exit 3")) == (
                False, "exit code 3: Could not connect")
            assert await exec_check(("sh", "-c", "kill -SEGV $$")) == (False, "killed by SIGSEGV")

    async def test_missing_program(self) -> None:
        """A program that does not exist fails with the reason, not an exception."""
        assert await exec_check(("/nonexistent/probe",)) == (False, "program not found: /nonexistent/probe")

    async def test_env_and_cwd_are_the_actors(self, tmp_path: Path) -> None:
        """The check runs with the env and cwd it is given."""
        check = ("sh", "-c", 'test "$PWD" = "$WANT" && test "$FLAG" = on')
        env = {"PATH": os.defpath, "WANT": str(tmp_path), "FLAG": "on"}
        assert await exec_check(check, env=env, cwd=str(tmp_path)) == (True, None)

    async def test_timeout_kills_the_process_group(self, tmp_path: Path) -> None:
        """sleep 10 under a 0.3 s timeout: the check fails at the timeout, its group (with a grandchild) killed."""
        pids = tmp_path / "pids"
        argv = ("sh", "-c", f'sleep 30 & echo $$ $! > {pids}; exec sleep 10')
        runner = ProbeRunner(lambda: exec_check(argv), every=1, timeout=0.3, failures=1, on_unhealthy=lambda n, w: None)
        with anyio.fail_after(10):
            assert await runner.check_once() == (False, "timed out after 0.3s")
        leader, grandchild = map(int, pids.read_text().split())
        await wait_gone(leader)
        await wait_gone(grandchild)

    async def test_background_process_of_a_passing_check_is_killed(self, tmp_path: Path) -> None:
        """A check that exits 0 but leaves a background process behind: that process is killed too."""
        pid_file = tmp_path / "pid"
        with anyio.fail_after(10):
            assert await exec_check(("sh", "-c", f"sleep 30 & echo $! > {pid_file}")) == (True, None)
        await wait_gone(int(pid_file.read_text()))

    async def test_chatty_check_does_not_block_on_its_pipe(self) -> None:
        """A check writing 1 MiB (more than a pipe holds) still finishes: its output is drained."""
        with anyio.fail_after(10):
            assert await exec_check(("sh", "-c", "yes | head -c 1048576; exit 4")) == (False, "exit code 4: y")
