"""``RayDriverBackend``: the supervisor's side of the Ray driver process (``_driver.py``).

The backend starts the driver, sends it requests and waits for the replies
with timeouts, relays its stderr as log events, polls it for the reasons of
hosts not placed yet (``pending`` is synchronous and reads that cache), and
starts a new driver when one dies (``ray.driver_lost``). A driver that does not
answer in time is killed: a hung ``ray.init`` or GCS call never holds the
supervisor. The hosts of a lost driver die with it (Ray kills the actors of a
driver that ends; a private Ray goes with its processes), so the supervisor's
handles see their channels end and restart them through the new driver.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import anyio
import msgspec
import structlog
from anyio.abc import ByteReceiveStream, Process, TaskGroup, TaskStatus

from ..config._schema import RaySettings
from ..process._reaper import Reaper
from ._backend import CreateRequest, RayUnavailable
from ._wire import Create, Failed, Init, Kill, Pending, Reasons, Reply, Request, Shutdown, Started, decode_reply, encode

__all__ = ["RayDriverBackend"]

log = structlog.get_logger("actorsup.ray")

REQUEST_TIMEOUT = 10.0  # create, kill, pending: Ray answers these in milliseconds
INIT_MARGIN = 5.0  # beyond connect_timeout, for the driver's own start (importing Ray: ~1 s)
SHUTDOWN_TIMEOUT = 15.0  # ray.shutdown of a private Ray: 1-3 s here
PENDING_POLL = 1.0  # how often the reasons of unplaced hosts are refreshed
RESTART_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)  # between driver starts after a loss (then the last)
_LEVELS = frozenset({"debug", "info", "warning", "error", "critical"})


class _Driver:
    """One driver process and its in-flight requests (a reaper's ``Tracked`` child)."""

    def __init__(self, process: Process, token: str) -> None:
        self.process = process
        self.pid = process.pid
        self.token = token
        self.on_exit: Callable[[], None] | None = None  # the reaper's: kill what the driver left
        self.waiting: dict[int, anyio.Event] = {}
        self.replies: dict[int, Reply] = {}
        self.lost: str | None = None  # why it can no longer answer
        self.lock = anyio.Lock()  # one writer on its stdin


class RayDriverBackend:
    """A :class:`~._backend.RayBackend` over a ``python -m supervisor.ray._driver`` child."""

    def __init__(
        self,
        settings: RaySettings,
        *,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        reaper: Reaper | None = None,
    ) -> None:
        """``reaper``: the supervisor's, so that the driver and every Ray process it starts carry its
        tree cookie (the deathwatch kills them with a SIGKILLed supervisor) and what a dead driver
        left behind (a private Ray's GCS, raylet, workers) is killed."""
        self.settings = settings
        self._command = list(command or [sys.executable, "-m", "supervisor.ray._driver"])
        self._env = dict(os.environ if env is None else env)
        self._reaper = reaper
        self._driver: _Driver | None = None
        self._ready = anyio.Event()  # set while a driver is connected
        self._closing = False
        self._closed = anyio.Event()
        self._next_id = 0
        self._unplaced: set[str] = set()
        self._reasons: dict[str, str] = {}
        self.info: Started | None = None  # what the current driver connected to

    # --- the RayBackend interface --------------------------------------------------
    async def run(self, *, task_status: TaskStatus[Started] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start the driver and connect; ``task_status.started(info)``; then keep a driver until aclose.

        The first connection failing raises :class:`RayUnavailable` (the caller
        usually ends the run: the configured cluster is not there).
        """
        failure: RayUnavailable | None = None
        async with anyio.create_task_group() as tg:
            try:
                info = await self._start(tg)
            except RayUnavailable as exc:  # raised as itself, not inside this group's ExceptionGroup
                failure = exc
            else:
                task_status.started(info)
                tg.start_soon(self._poll_pending)
                await self._keep(tg)
            tg.cancel_scope.cancel()
        if failure is not None:
            raise failure

    async def create(self, request: CreateRequest) -> None:
        self._unplaced.add(request.key)
        try:
            await self._ask(Create(id=self._id(), request=request))
        except BaseException:
            self._unplaced.discard(request.key)
            raise

    async def kill(self, key: str, *, unresponsive: bool = False) -> None:
        self._unplaced.discard(key)
        self._reasons.pop(key, None)
        if self._driver is None or self._driver.lost is not None:
            return  # its driver is gone, and the host with it
        await self._ask(Kill(id=self._id(), key=key, unresponsive=unresponsive))

    def pending(self, key: str) -> str | None:
        return self._reasons.get(key)

    async def aclose(self) -> None:
        """Have the driver kill the hosts and disconnect (a private Ray is shut down), bounded.

        Needs no task of :meth:`run` (they may be cancelled already): Shutdown is
        written, stdin closed (EOF means the same to the driver), and its exit awaited.
        """
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        driver = self._driver
        try:
            with anyio.CancelScope(shield=True):
                if driver is not None and driver.process.returncode is None:
                    with anyio.move_on_after(SHUTDOWN_TIMEOUT):
                        stdin = driver.process.stdin
                        assert stdin is not None
                        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                            async with driver.lock:
                                await stdin.send(encode(Shutdown(id=self._id())))
                            await stdin.aclose()
                        await driver.process.wait()
                    await _end(driver.process)
                    _exited(driver)
                    log.info("ray.stopped", address=self.info.address if self.info else None)
        finally:
            self._ready.set()
            self._closed.set()

    # --- the driver ---------------------------------------------------------------------
    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def _start(self, tg: TaskGroup) -> Started:
        token = self._reaper.new_token() if self._reaper is not None else ""
        env = self._reaper.child_env(self._env, token) if self._reaper is not None else self._env
        try:
            process = await anyio.open_process(self._command, env=env, start_new_session=True)
        except OSError as exc:
            raise RayUnavailable(f"cannot start the Ray driver: {exc}") from None
        driver = _Driver(process, token)
        if self._reaper is not None:
            self._reaper.track(driver, token, "ray-driver")
        self._driver = driver
        tg.start_soon(self._read_replies, driver)
        tg.start_soon(self._relay_stderr, process)
        settings = self.settings
        request = Init(
            id=self._id(), address=settings.address, namespace=settings.namespace,
            connect_timeout=settings.connect_timeout,
        )
        try:
            reply = await self._ask(request, timeout=settings.connect_timeout + INIT_MARGIN)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await _end(process)
            raise
        assert isinstance(reply, Started)
        self.info = reply
        self._ready.set()
        log.info("ray.started", address=reply.address, namespace=reply.namespace, nodes=reply.nodes,
                 version=reply.version, pid=process.pid)
        return reply

    async def _keep(self, tg: TaskGroup) -> None:
        """Wait for the driver to end; unless closing, log it and start another (with a growing pause)."""
        while True:
            driver = self._driver
            assert driver is not None
            code = await driver.process.wait()
            _exited(driver)
            if self._closing:
                return
            self._ready = anyio.Event()
            self._fail_waiting(driver, f"the Ray driver exited (status {code})")
            self._unplaced.clear()
            self._reasons.clear()
            log.error("ray.driver_lost", status=code, pid=driver.process.pid, restart_in=RESTART_DELAYS[0])
            if not await self._restart(tg):
                return

    async def _restart(self, tg: TaskGroup) -> bool:
        """Start drivers until one connects (True) or aclose began (False)."""
        for attempt in range(sys.maxsize):
            await anyio.sleep(RESTART_DELAYS[min(attempt, len(RESTART_DELAYS) - 1)])
            if self._closing:
                break
            try:
                await self._start(tg)
                return True
            except RayUnavailable as exc:
                log.error("ray.driver_failed", error=str(exc),
                          restart_in=RESTART_DELAYS[min(attempt + 1, len(RESTART_DELAYS) - 1)])
        return False

    async def _ask(self, request: Request, *, timeout: float | None = None) -> Reply:
        timeout = REQUEST_TIMEOUT if timeout is None else timeout
        driver = self._driver
        if driver is None or driver.lost is not None:
            raise RayUnavailable(driver.lost if driver is not None else "the Ray driver is not running")
        event = driver.waiting[request.id] = anyio.Event()
        try:
            async with driver.lock:
                stdin = driver.process.stdin
                assert stdin is not None
                try:
                    await stdin.send(encode(request))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    raise RayUnavailable("the Ray driver exited") from None
            with anyio.move_on_after(timeout):
                await event.wait()
            reply = driver.replies.pop(request.id, None)
        finally:
            driver.waiting.pop(request.id, None)
        if reply is None:
            if driver.lost is not None:
                raise RayUnavailable(driver.lost)
            reason = f"the Ray driver did not answer {type(request).__name__} within {timeout:g} s"
            driver.lost = reason
            log.error("ray.driver_hung", request=type(request).__name__, timeout=timeout)
            await _end(driver.process)  # _keep starts another
            raise RayUnavailable(reason)
        if isinstance(reply, Failed):
            if reply.fatal:
                driver.lost = reply.error
            raise RayUnavailable(reply.error)
        return reply

    def _fail_waiting(self, driver: _Driver, reason: str) -> None:
        if driver.lost is None:
            driver.lost = reason
        for event in driver.waiting.values():
            event.set()

    async def _read_replies(self, driver: _Driver) -> None:
        stdout = driver.process.stdout
        assert stdout is not None
        async for line in _lines(stdout):
            self._on_reply(driver, line)
        self._fail_waiting(driver, "the Ray driver exited")

    def _on_reply(self, driver: _Driver, line: bytes) -> None:
        try:
            reply = decode_reply(line)
        except msgspec.DecodeError:
            log.error("ray.driver_garbled", line=line[:200].decode(errors="replace"))
            return
        event = driver.waiting.get(reply.id)
        if event is not None:
            driver.replies[reply.id] = reply
            event.set()

    async def _relay_stderr(self, process: Process) -> None:
        stderr = process.stderr
        assert stderr is not None
        text_level = "info"  # a continuation line of a multi-line Ray record keeps the record's level
        async for line in _lines(stderr):
            text_level = _relay(line, process.pid, text_level)

    async def _poll_pending(self) -> None:
        """Refresh the reasons of hosts Ray has not placed, while there are any."""
        while True:
            await anyio.sleep(PENDING_POLL)
            if not self._unplaced or not self._ready.is_set():
                continue
            try:
                reply = await self._ask(Pending(id=self._id()))
            except RayUnavailable:
                continue
            assert isinstance(reply, Reasons)
            for key in list(self._unplaced):
                reason = reply.reasons.get(key)
                if reason is None:
                    self._unplaced.discard(key)  # alive (or gone): no longer waiting
                    self._reasons.pop(key, None)
                else:
                    self._reasons[key] = reason  # the spawner logs it (actor.pending)


def _relay(line: bytes, pid: int, text_level: str) -> str:
    """One stderr line of the driver: its structlog JSON as the event it is, anything else as text at the level
    Ray gave it (its INFO chatter at debug), or at ``text_level`` if it continues the record before it.
    Returns the level for the next text line."""
    text = line.decode(errors="replace").rstrip()
    if not text:
        return text_level
    try:
        fields: Any = msgspec.json.decode(line)
    except msgspec.DecodeError:
        fields = None
    if isinstance(fields, dict) and isinstance(fields.get("event"), str):
        event = fields.pop("event")
        level = str(fields.pop("level", "info"))
        fields.pop("timestamp", None)
        getattr(log, level if level in _LEVELS else "info")(event, driver_pid=pid, **fields)
        return text_level
    # An indented line continues the record before it; any other line that is not Ray's (a traceback from the
    # driver, a message from a library) is shown at info.
    level = ray_line_level(text) or (text_level if text[:1].isspace() else "info")
    getattr(log, level)("ray.driver_output", line=text[:2000], driver_pid=pid)
    return level


# Ray's Python records: "2026-12-01 15:01:02,345\tINFO worker.py:1821 -- ...";
# its C++ records (raylet, core worker): "[2026-12-01 15:01:02,345 E 1234 1234] core_worker.cc:...".
_RAY_PY_LEVEL = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")
_RAY_CC_LEVEL = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ([DIWEF]) ")
_LEVEL_OF = {
    "DEBUG": "debug", "INFO": "debug", "WARNING": "warning", "ERROR": "error", "CRITICAL": "critical",
    "D": "debug", "I": "debug", "W": "warning", "E": "error", "F": "critical",
}


def ray_line_level(text: str) -> str | None:
    """The structlog level for a line Ray logged (its INFO is our debug), or None if it is not the start of a
    Ray record."""
    match = _RAY_PY_LEVEL.match(text) or _RAY_CC_LEVEL.match(text)
    return _LEVEL_OF[match.group(1)] if match else None


def _exited(driver: _Driver) -> None:
    on_exit, driver.on_exit = driver.on_exit, None
    if on_exit is not None:
        on_exit()


async def _end(process: Process) -> None:
    """SIGKILL the driver's group (Ray's helpers it started share it) and reap it, bounded."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    with anyio.CancelScope(shield=True), anyio.move_on_after(5.0):
        await process.wait()
    await process.aclose()


async def _lines(stream: ByteReceiveStream) -> AsyncIterator[bytes]:
    """The lines of a driver pipe until it closes or breaks, an unfinished last one included."""
    buffer = b""
    try:
        async for chunk in stream:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                yield line
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    if buffer:
        yield buffer
