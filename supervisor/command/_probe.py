"""Liveness probes of a command actor, with Kubernetes semantics.

``probe = { http = URL | tcp = "HOST:PORT" | exec = [argv], every, timeout,
failures, initial_delay }``: the first check runs ``initial_delay`` after the
process starts, then one every ``every`` seconds (at start + k x every, no
drift). ``failures`` consecutive failures report the actor unhealthy once; a
success resets the count. Each check is bounded by ``timeout`` on the injected
clock: an ``http`` check passes on a 2xx or 3xx status, ``tcp`` on connect,
``exec`` on exit 0, and an ``exec`` check still running at its timeout is
killed with its whole process group.

Every :class:`ProbeRunner` is its own task doing non-blocking I/O, so a slow
probe never delays another actor's (nor the loop).
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio
import anyio.abc

from ..core._clock import Clock, MonotonicClock
from ..lifecycle._health import HealthTracker
from ._argv import exec_failure_reason, parse_command
from ._errors import CommandError, ProbeError

__all__ = ["HttpTarget", "ProbeCheck", "ProbeResult", "ProbeRunner", "ProbeSpec", "make_check", "parse_probe"]

ProbeResult = tuple[bool, "str | None"]  # (passed, why it failed)
ProbeCheck = Callable[[], Awaitable[ProbeResult]]

_KINDS = ("http", "tcp", "exec")
_DEFAULTS = {"every": 10.0, "timeout": 1.0, "failures": 3, "initial_delay": 0.0}  # Kubernetes' defaults
_KEYS = (*_KINDS, *_DEFAULTS)
_STATUS_LINE_MAX = 8192  # bytes read for the status line, at most
_OUTPUT_TAIL = 512  # bytes of an exec check's output kept for its failure reason
_REAP_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class HttpTarget:
    url: str
    tls: bool
    host: str
    port: int
    path: str  # path and query, as sent in the request line


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """A validated ``probe`` table."""

    kind: Literal["http", "tcp", "exec"]
    http: HttpTarget | None = None
    tcp: tuple[str, int] | None = None
    exec: tuple[str, ...] | None = None
    every: float = 10.0
    timeout: float = 1.0
    failures: int = 3
    initial_delay: float = 0.0


# --- validation --------------------------------------------------------------------
def parse_probe(table: Any) -> ProbeSpec:
    """A :class:`ProbeSpec` from a ``probe`` table, or :class:`ProbeError` naming the key."""
    if not isinstance(table, Mapping):
        raise ProbeError('expected a table such as { http = "http://127.0.0.1:8080/healthz" }', table)
    for key, value in table.items():
        if key not in _KEYS:
            raise ProbeError(f"unknown key (expected one of {', '.join(_KEYS)})", value, key)
    kinds = [k for k in _KINDS if k in table]
    if len(kinds) != 1:
        extra = f", not {' and '.join(kinds)}" if kinds else ""
        raise ProbeError(f"expected exactly one of http, tcp or exec{extra}", dict(table))
    kind = kinds[0]
    every = _number(table, "every", minimum=0.0, inclusive=False)
    timeout = _number(table, "timeout", minimum=0.0, inclusive=False)
    initial_delay = _number(table, "initial_delay", minimum=0.0, inclusive=True)
    failures = table.get("failures", _DEFAULTS["failures"])
    if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
        raise ProbeError("expected an integer >= 1", failures, "failures")
    if timeout > every:
        problem = f"must be at most every ({every:g}), so that checks never overlap"
        raise ProbeError(problem, table["timeout"], "timeout")
    value = table[kind]
    common: dict[str, Any] = {"every": every, "timeout": timeout, "failures": failures, "initial_delay": initial_delay}
    if kind == "http":
        return ProbeSpec("http", http=_http_target(value), **common)
    if kind == "tcp":
        return ProbeSpec("tcp", tcp=_host_port(value), **common)
    try:
        argv = parse_command(value)
    except CommandError as exc:
        raise ProbeError(exc.problem, exc.value, "exec") from None
    return ProbeSpec("exec", exec=argv, **common)


def _number(table: Mapping[str, Any], key: str, *, minimum: float, inclusive: bool) -> float:
    value = table.get(key, _DEFAULTS[key])
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value == value
    if not ok or not (value >= minimum if inclusive else value > minimum) or value == float("inf"):
        raise ProbeError(f"expected a number {'>=' if inclusive else '>'} {minimum:g}", value, key)
    return float(value)


def _http_target(value: Any) -> HttpTarget:
    problem = "expected an http:// or https:// URL with a host"
    if not isinstance(value, str) or any(c.isspace() for c in value):
        raise ProbeError(problem, value, "http")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProbeError(problem, value, "http")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ProbeError("expected a port from 1 to 65535 in the URL", value, "http")
    tls = parts.scheme == "https"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return HttpTarget(value, tls, parts.hostname, port or (443 if tls else 80), path)


def _host_port(value: Any) -> tuple[str, int]:
    problem = 'expected "host:port" with a port from 1 to 65535'
    if not isinstance(value, str):
        raise ProbeError(problem, value, "tcp")
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # an IPv6 literal
    if not sep or not host or (":" in host and not value.startswith("[")) or any(c.isspace() for c in host):
        raise ProbeError(problem, value, "tcp")
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ProbeError(problem, value, "tcp")
    return host, int(port)


# --- the checks --------------------------------------------------------------------
def make_check(spec: ProbeSpec, *, env: Mapping[str, str] | None = None, cwd: str | None = None) -> ProbeCheck:
    """The check of ``spec``, unbounded: :class:`ProbeRunner` applies its timeout by cancelling it.

    An ``exec`` check runs with the actor's ``env`` and ``cwd``.
    """
    if spec.http is not None:
        target = spec.http
        return lambda: http_check(target)
    if spec.tcp is not None:
        host, port = spec.tcp
        return lambda: tcp_check(host, port)
    assert spec.exec is not None
    argv = spec.exec
    child_env = dict(env) if env is not None else None
    return lambda: exec_check(argv, env=child_env, cwd=cwd)


_tls_context: ssl.SSLContext | None = None


def _insecure_tls() -> ssl.SSLContext:
    # As a Kubernetes HTTPS probe: the program's own certificate is not verified.
    global _tls_context
    if _tls_context is None:
        _tls_context = ssl.create_default_context()
        _tls_context.check_hostname = False
        _tls_context.verify_mode = ssl.CERT_NONE
    return _tls_context


async def http_check(target: HttpTarget) -> ProbeResult:
    """GET ``target`` with HTTP/1.0; pass on a 2xx or 3xx status (the body is not read)."""
    host = f"[{target.host}]" if ":" in target.host else target.host
    request = (
        f"GET {target.path} HTTP/1.0\r\nHost: {host}:{target.port}\r\n"
        "User-Agent: actorsup-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    ).encode()
    stream: anyio.abc.ByteStream
    try:
        if target.tls:
            stream = await anyio.connect_tcp(
                target.host, target.port, ssl_context=_insecure_tls(), tls_standard_compatible=False
            )
        else:
            stream = await anyio.connect_tcp(target.host, target.port)
    except OSError as exc:
        return False, f"cannot connect to {host}:{target.port}: {_connect_error(exc)}"
    head = b""
    try:
        async with stream:
            await stream.send(request)
            while b"\n" not in head and len(head) < _STATUS_LINE_MAX:
                head += await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
        pass
    line = head.split(b"\n", 1)[0].decode("latin-1").strip()
    words = line.split()
    if len(words) < 2 or not words[0].startswith("HTTP/") or not (words[1].isdigit() and len(words[1]) == 3):
        return False, f"no HTTP status line from {target.url}" + (f" (got {line[:80]!r})" if line else "")
    status = int(words[1])
    if 200 <= status < 400:
        return True, None
    return False, f"HTTP {status} from {target.url}"


def _connect_error(exc: OSError) -> str:
    """The OS's words for a failed connect (anyio wraps them in "All connection attempts failed")."""
    cause = exc.__cause__
    errors = cause.exceptions if isinstance(cause, BaseExceptionGroup) else [cause or exc]
    words = [os.strerror(e.errno) if isinstance(e, OSError) and e.errno else str(e) for e in errors]
    return "; ".join(dict.fromkeys(words))


async def tcp_check(host: str, port: int) -> ProbeResult:
    """Pass when a TCP connection to ``host:port`` opens."""
    try:
        stream = await anyio.connect_tcp(host, port)
    except OSError as exc:
        shown = f"[{host}]" if ":" in host else host
        return False, f"cannot connect to {shown}:{port}: {_connect_error(exc)}"
    await stream.aclose()
    return True, None


async def exec_check(
    argv: tuple[str, ...], *, env: dict[str, str] | None = None, cwd: str | None = None
) -> ProbeResult:
    """Run ``argv`` in its own process group; pass on exit 0.

    Cancelling it (the probe's timeout) kills the whole group, and so does its
    end: a probe leaves no background process behind. The group is killed
    while the exited leader is still unreaped, so its pid cannot have been reused.
    """
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        try:
            popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=write_fd, stderr=write_fd,
                start_new_session=True, env=env, cwd=cwd,
            )
        except OSError as exc:
            return False, exec_failure_reason(exc, argv[0])
        finally:
            os.close(write_fd)
        tail = bytearray()
        try:
            pidfd = os.pidfd_open(popen.pid)
        except OSError:  # pragma: no cover - kernel < 5.3
            pidfd = -1
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_drain, read_fd, tail)
                await _exited(pidfd, popen)
                _read_available(read_fd, tail)  # what it wrote just before exiting
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await _kill_and_reap(popen, pidfd)
    finally:
        os.close(read_fd)
    rc = popen.returncode
    if rc == 0:
        return True, None
    output = bytes(tail).decode("utf-8", "replace").strip().splitlines()
    how = f"killed by {signal.Signals(-rc).name}" if rc is not None and rc < 0 else f"exit code {rc}"
    return False, f"{how}" + (f": {output[-1][:200]}" if output else "")


async def _drain(fd: int, tail: bytearray) -> None:
    """Read the check's output so it never blocks on a full pipe; keep the last bytes."""
    os.set_blocking(fd, False)
    while True:
        await anyio.wait_readable(fd)
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not data:
            return
        tail += data
        del tail[:-_OUTPUT_TAIL]


def _read_available(fd: int, tail: bytearray) -> None:
    os.set_blocking(fd, False)
    with contextlib.suppress(BlockingIOError):
        while data := os.read(fd, 65536):
            tail += data
            del tail[:-_OUTPUT_TAIL]


async def _exited(pidfd: int, popen: subprocess.Popen[bytes]) -> None:
    """Return once the child has exited, without reaping it."""
    if pidfd >= 0:
        await anyio.wait_readable(pidfd)
        return
    while True:  # pragma: no cover - no pidfd: poll the zombie state through waitid
        if os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return
        await anyio.sleep(0.01)


async def _kill_and_reap(popen: subprocess.Popen[bytes], pidfd: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGKILL)  # the leader is unreaped, so the group id is still ours
    try:
        with anyio.move_on_after(_REAP_TIMEOUT):
            await _exited(pidfd, popen)
        popen.poll()
    finally:
        if pidfd >= 0:
            os.close(pidfd)


# --- scheduling --------------------------------------------------------------------
class ProbeRunner:
    """Run one check at start + initial_delay + k x every; report ``failures`` consecutive failures.

    ``on_unhealthy(failures, reason)`` is called once when the threshold is
    reached (again only after a success); ``on_result(passed, reason)`` after
    every check. Timing reads the injected clock only.
    """

    def __init__(
        self,
        check: ProbeCheck,
        *,
        every: float,
        timeout: float,
        failures: int,
        initial_delay: float = 0.0,
        on_unhealthy: Callable[[int, str], None],
        on_result: Callable[[bool, str | None], None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not every > 0 or not timeout > 0 or not initial_delay >= 0:
            raise ValueError(
                f"every and timeout must be > 0, initial_delay >= 0 (got {every}, {timeout}, {initial_delay})"
            )
        self.check = check
        self.every = every
        self.timeout = timeout
        self.initial_delay = initial_delay
        self.tracker = HealthTracker(failures)
        self._on_unhealthy = on_unhealthy
        self._on_result = on_result
        self._clock = clock or MonotonicClock()
        self.checks = 0

    @classmethod
    def from_spec(
        cls,
        spec: ProbeSpec,
        *,
        on_unhealthy: Callable[[int, str], None],
        on_result: Callable[[bool, str | None], None] | None = None,
        clock: Clock | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> ProbeRunner:
        return cls(
            make_check(spec, env=env, cwd=cwd), every=spec.every, timeout=spec.timeout, failures=spec.failures,
            initial_delay=spec.initial_delay, on_unhealthy=on_unhealthy, on_result=on_result, clock=clock,
        )

    async def run(self) -> None:
        """Check until cancelled; start it when the actor's process has started."""
        clock = self._clock
        due = clock.now() + self.initial_delay
        while True:
            await clock.sleep_until(due)
            passed, reason = await self.check_once()
            if self._on_result is not None:
                self._on_result(passed, reason)
            if self.tracker.record(passed, reason):
                self._on_unhealthy(self.tracker.failures, reason or "probe failed")
            # The next check is due at the next multiple of every; one lost to a stall is skipped.
            due += self.every
            if due <= clock.now():
                due += (clock.now() - due) // self.every * self.every + self.every

    async def check_once(self) -> ProbeResult:
        """One check, bounded by ``timeout``: ``(True, None)`` or ``(False, why)``."""
        self.checks += 1
        clock = self._clock
        outcome: list[ProbeResult] = []
        async with anyio.create_task_group() as tg:

            async def deadline() -> None:
                await clock.sleep_until(clock.now() + self.timeout)
                outcome.append((False, f"timed out after {self.timeout:g}s"))
                tg.cancel_scope.cancel()

            async def run() -> None:
                try:
                    result = await self.check()
                except Exception as exc:  # a crashing check is a failed check
                    result = (False, f"{type(exc).__name__}: {exc}")
                outcome.append(result)
                tg.cancel_scope.cancel()

            tg.start_soon(deadline)
            tg.start_soon(run)
        return outcome[0]
