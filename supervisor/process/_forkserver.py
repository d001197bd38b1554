"""The fork-server spawner: children forked from a warm template process.

A cold child pays ~160 ms of CPU for an interpreter and its imports; a fork of
a process that already paid it costs about 1 ms, and the child shares the
template's pages (its private memory is what it touches afterwards). The
template (:mod:`actors._template`) is started once with ``python -m
actors._template``; each :meth:`ForkServerSpawner.spawn` sends it the fds of
one child over a SOCK_SEQPACKET socket (SCM_RIGHTS), and it double-forks, so
the child is reparented to this process, the child subreaper of
:class:`Reaper`: the supervisor waits for it through a pidfd, reaps it, and
signals its group, as for a spawned child.

While the template is starting, dead, or failed to import ``preload``,
spawning falls back to plain spawn (:class:`ColdSpawner`). A template that
exits, or does not answer a request within :data:`FORK_TIMEOUT`, is replaced
(``spawner.restarted``), and the requests it held are spawned cold: no actor
waits for ever. :meth:`renew` (``actorsup reload``) starts a fresh template,
so a changed preloaded module takes effect for children started afterwards.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import signal
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from anyio.abc import TaskStatus

from actors._ring import SharedRing, create_ring_fd, ring_supported
from actors._template import COOKIE_SLOT

from ._child import REAP_TIMEOUT, ChildProcess
from ._popen import PIPE_SIZE, AsyncPopen, FdReader, _budget
from ._reaper import ENV_KEY
from ._spawn import ColdSpawner, Spawner, WarmSpawner, await_hello, discard

if TYPE_CHECKING:
    from ..config import Config
    from ..core._clock import Clock

__all__ = ["FORK_TIMEOUT", "ForkServerSpawner", "ForkedProcess", "spawner_for"]

log = structlog.get_logger()

FORK_TIMEOUT = 2.0  # a fork takes ~1 ms: a template this late is hung
READY_TIMEOUT = 60.0  # imports of the runtime and of `preload`
READY_WAIT = 5.0  # how long a spawn waits for a template that is starting before it goes cold
_RETRY = (1.0, 60.0)  # a template that failed to start: first and last delay before the next try
_MESSAGE = 65536
_ORPHAN_POLLS = 1000  # 1 ms apart: a reparenting takes microseconds


class _TemplateGone(Exception):
    """The template could not fork this child (dead, hung or refused): spawn it cold."""


class ForkedProcess(AsyncPopen):
    """A child forked by the template and reparented here: waited for and reaped through its pidfd."""

    def __init__(self, pid: int, stdout: int, stderr: int) -> None:
        self.pid = pid
        self._pidfd: int | None = os.pidfd_open(pid)  # ours to reap: the Reaper leaves reserved tokens alone
        self._enlarged = _budget.take()  # the same 256 KiB stdout pipe as a spawned child's
        if self._enlarged:
            try:
                fcntl.fcntl(stdout, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                _budget.give_back()
                self._enlarged = False
        self.stdout = FdReader(stdout)
        self.stderr = FdReader(stderr)
        self._code: int | None = None
        self._lock = anyio.Lock()

    @property
    def returncode(self) -> int | None:
        return self._code

    def poll(self) -> int | None:
        if self._code is None and self._pidfd is not None:
            try:
                result = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG)
            except ChildProcessError:  # still the middle process's child, for a microsecond
                return None
            if result is not None:
                self._code = result.si_status if result.si_code == os.CLD_EXITED else -result.si_status
        return self._code

    async def wait(self) -> int:
        async with self._lock:
            while self.poll() is None:
                assert self._pidfd is not None
                await anyio.wait_readable(self._pidfd)
                for _ in range(_ORPHAN_POLLS):  # exited before its reparenting here finished
                    if self.poll() is not None:
                        break
                    await anyio.sleep(0.001)
                else:  # exited, yet not ours to reap: someone else waited for it
                    log.warning("spawner.reaped_elsewhere", pid=self.pid)
                    self._code = -signal.SIGKILL
        assert self._code is not None
        return self._code


class _Template:
    """One template process, and the requests waiting for its answers."""

    def __init__(self, child: ChildProcess) -> None:
        self.child = child
        self.sock = child.channel
        self.ready = anyio.Event()
        self.closing = False
        self.hung = False
        self.reason = "exited"
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[anyio.Event, list[dict[str, Any]]]] = {}

    async def serve(self) -> str:
        """Dispatch the template's answers until it is gone; why it went."""
        try:
            while True:
                await anyio.wait_readable(self.sock)
                try:
                    data = self.sock.recv(_MESSAGE)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    return "exited"
                message = json.loads(data)
                if "ready" in message:
                    self.ready.set()
                    log.info("spawner.template_started", pid=self.child.pid, modules=message["modules"])
                elif "error" in message and message.get("id") is None:
                    return f"failed: {message['error']}"
                else:
                    slot = self._waiting.get(message.get("id"))
                    if slot is not None:
                        slot[1].append(message)
                        slot[0].set()
        finally:
            for event, _ in self._waiting.values():
                event.set()  # nobody waits on a gone template

    async def fork(self, request: dict[str, Any], fds: Sequence[int]) -> tuple[int, bool]:
        """Ask for one child; its pid, and whether it was born in its cgroup leaf. Raises :class:`_TemplateGone`."""
        if self.closing:
            raise _TemplateGone("renewing")
        request_id = next(self._ids)
        event, answer = anyio.Event(), list[dict[str, Any]]()
        self._waiting[request_id] = (event, answer)
        try:
            # What actors/_template.py parses: the cookie last, it may hold spaces.
            data = b"%d %d %d %s" % (request_id, request["cgroup"], request["warm"], request["cookie"].encode())
            while True:
                try:
                    socket.send_fds(self.sock, [data], list(fds))
                    break
                except BlockingIOError:
                    await anyio.wait_writable(self.sock)
                except OSError as exc:
                    raise _TemplateGone(str(exc)) from None
            with anyio.move_on_after(FORK_TIMEOUT):
                await event.wait()
        finally:
            del self._waiting[request_id]
        if not answer:
            if not event.is_set():
                raise _TemplateGone("hung")
            raise _TemplateGone("gone")
        if "pid" not in answer[0]:
            raise _TemplateGone(str(answer[0].get("error")))
        return int(answer[0]["pid"]), bool(answer[0].get("placed"))


class _Forking(ColdSpawner):
    """Forks children from a warm template; spawns cold while there is none."""

    def __init__(
        self,
        *,
        preload: Sequence[str] = (),
        concurrency: int | None = None,
        **kwargs: Any,
    ) -> None:
        """``concurrency``: children being started at once (default 2 per core), so a start
        of hundreds of actors leaves the loop time for beats and the control socket."""
        super().__init__(**kwargs)
        self.preload = list(preload)
        self.limiter = anyio.CapacityLimiter(concurrency or 2 * (os.cpu_count() or 1))
        self.template: _Template | None = None
        self.restarts = 0
        self._renew = anyio.Event()
        self._starting = True  # the first template is on its way from run()
        self._settled = anyio.Event()

    def renew(self, preload: Sequence[str] | None = None) -> None:
        """Start a fresh template (``actorsup reload``): preloaded modules are imported anew."""
        if preload is not None:
            self.preload = list(preload)
        self._renew.set()

    def _hand_out(self, template: _Template) -> bool:
        return template.ready.is_set() and not template.closing

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(super().run)
            task_status.started()
            delay = _RETRY[0]
            while True:
                started = time.monotonic()
                template = await self._run_template()
                code = None if template is None else template.child.returncode
                reason = "failed" if template is None else template.reason
                emit = log.info if reason == "renewed" else log.warning  # a reload asked for it
                emit("spawner.restarted", reason=reason, exit_code=code, restarts=self.restarts)
                self.restarts += 1
                if reason.startswith("failed") or time.monotonic() - started < _RETRY[0]:
                    await anyio.sleep(delay)  # spawns are cold meanwhile
                    delay = min(delay * 2, _RETRY[1])
                else:
                    delay = _RETRY[0]

    def _expect(self) -> None:
        """A template is on its way: spawns wait for it (bounded) instead of going cold."""
        if not self._starting:
            self._starting = True
            self._settled = anyio.Event()

    def _settle(self) -> None:
        self._starting = False
        self._settled.set()

    async def _run_template(self) -> _Template | None:
        """Start a template and serve it until it exits, hangs, fails or is renewed."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        token = self.reaper.new_token()
        env = self.reaper.child_env(self.env, token)
        env[ENV_KEY] += " " * COOKIE_SLOT  # room for each child's cookie (see actors/_template.py)
        try:
            process = AsyncPopen(
                [self.python, "-m", "actors._template", str(theirs.fileno()), *self.preload],
                pass_fds=(theirs.fileno(),), env=env,
            )
        except OSError as exc:
            ours.close()
            log.warning("spawner.template_failed", error=str(exc))
            self._settle()
            return None
        finally:
            theirs.close()
        child = ChildProcess(process, ours)
        self.reaper.track(child, token, "<template>")
        template = _Template(child)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._echo, process.stderr, child.pid)
                tg.start_soon(self._echo, process.stdout, child.pid)
                tg.start_soon(self._watch_ready, template)
                tg.start_soon(self._watch_renew, template)
                self.template = template
                template.reason = await template.serve()  # until EOF: every answer has been read
                with anyio.move_on_after(REAP_TIMEOUT):
                    await child.wait()
                tg.cancel_scope.cancel()
        finally:
            if self.template is template:
                self.template = None
            if not template.ready.is_set():
                self._settle()  # it never came up: spawn cold until the next one does
            with anyio.CancelScope(shield=True):
                if child.returncode is None:
                    await discard(child)
                else:  # not killpg: a child it forked may not have left the group yet
                    await child.aclose()
        if template.reason.startswith("failed"):
            log.warning("spawner.template_failed", pid=child.pid, error=template.reason)
        template.reason = "hung" if template.hung else "renewed" if template.closing else template.reason
        return template

    async def _watch_ready(self, template: _Template) -> None:
        with anyio.move_on_after(READY_TIMEOUT):
            await template.ready.wait()
        if template.ready.is_set():
            self._settle()
        else:
            self._hung(template)

    async def _watch_renew(self, template: _Template) -> None:
        await self._renew.wait()
        self._renew = anyio.Event()
        template.closing = True
        self._expect()
        if self.template is template:
            self.template = None
        template.sock.shutdown(socket.SHUT_WR)  # it answers what it has, then exits on EOF

    def _hung(self, template: _Template) -> None:
        """A template that does not answer: kill it; run() starts the next one."""
        template.hung = True
        if self.template is template:
            self.template = None
            template.child.signal_group(signal.SIGKILL)

    async def _echo(self, reader: FdReader, pid: int) -> None:
        """The template's own output (a traceback of a failed fork): one event per line."""
        pending = b""
        while chunk := await reader.receive():
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                log.warning("spawner.template_output", pid=pid, line=line.decode(errors="replace"))

    async def spawn(self, *, actor: str, start_timeout: float) -> ChildProcess:
        async with self.limiter:
            if self._starting:
                with anyio.move_on_after(READY_WAIT):
                    await self._settled.wait()
            template = self.template
            if template is not None and self._hand_out(template):
                try:
                    return await self._fork(template, actor, start_timeout)
                except _TemplateGone as exc:
                    if str(exc) == "hung":
                        log.warning("spawner.template_hung", pid=template.child.pid, timeout=FORK_TIMEOUT)
                        self._hung(template)
            return await super().spawn(actor=actor, start_timeout=start_timeout)

    async def _fork(self, template: _Template, actor: str, start_timeout: float) -> ChildProcess:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        ring_fd = create_ring_fd(self.ring_size) if self.ring_size and ring_supported() else None
        ring: SharedRing | None = None
        token = self.reaper.new_token()
        leaf = self.reaper.reserve(token)
        cgroup = _open_dir(leaf)
        request = {
            "cookie": self.reaper.child_env(self.env, token)[ENV_KEY], "cgroup": cgroup is not None,
            "warm": actor == "<spare>",  # it has time to run a loop once before it is needed
        }
        fds = [child_end.fileno(), out_w, err_w, *([] if ring_fd is None else [ring_fd])]
        fds += [] if cgroup is None else [cgroup]
        try:
            if ring_fd is not None:
                ring = SharedRing(ring_fd)
            pid, placed = await template.fork(request, fds)
            process = ForkedProcess(pid, out_r, err_r)
        except BaseException:
            self.reaper.exited(token)
            parent_end.close()
            os.close(out_r)
            os.close(err_r)
            if ring is not None:
                ring.close()
            raise
        finally:
            child_end.close()
            os.close(out_w)
            os.close(err_w)
            if ring_fd is not None:
                os.close(ring_fd)
            if cgroup is not None:
                os.close(cgroup)
        child = ChildProcess(process, parent_end, ring)
        self.reaper.track(child, token, actor, placed=placed)
        try:
            await await_hello(child, actor, start_timeout, self.clock)
        except BaseException:
            await discard(child)
            raise
        return child


class ForkServerSpawner(WarmSpawner, _Forking):
    """The fork server, with ``spares`` children forked ahead (Hello said, waiting for Init).

    A restart then costs the actor's Init, not even a fork. Spares forked from a
    template that is being renewed are retired, so a reload's preloaded code
    reaches every child started after it.
    """

    def __init__(self, *, spares: int = 1, **kwargs: Any) -> None:
        super().__init__(spares=spares, **kwargs)
        self._spares_of: dict[int, _Template] = {}

    async def _fork(self, template: _Template, actor: str, start_timeout: float) -> ChildProcess:
        child = await super()._fork(template, actor, start_timeout)
        if actor == "<spare>":
            self._spares_of[child.pid] = template
        return child

    async def spawn(self, *, actor: str, start_timeout: float) -> ChildProcess:
        # Spares of a renewed template carry its old preloaded modules: retire them.
        for spare in list(self._pool):
            if self._spares_of.get(spare.pid, self.template) is not self.template:
                self._pool.remove(spare)
                watcher = self._watchers.pop(spare.pid, None)
                if watcher is not None:
                    watcher.cancel()
                self._spares_of.pop(spare.pid, None)
                await discard(spare)
                self._taken.set()  # refill from the new template
        child = await super().spawn(actor=actor, start_timeout=start_timeout)
        self._spares_of.pop(child.pid, None)
        return child


def _open_dir(path: Path | None) -> int | None:
    if path is None:
        return None
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None


def spawner_for(config: Config, clock: Clock) -> Spawner:
    """The spawner that ``[supervisor] spawner`` names."""
    settings = config.supervisor
    common: dict[str, Any] = {
        "pythonpath": [str(config.base_dir)], "clock": clock, "ring_size": settings.channel_ring,
        "backend": settings.backend, "child_nice": settings.child_nice,
    }
    if settings.spawner == "forkserver":
        return ForkServerSpawner(spares=settings.spare_processes, preload=settings.preload, **common)
    return WarmSpawner(spares=settings.spare_processes, **common)
