"""Start a command actor's program: its own session, PDEATHSIG, nice, env, cwd, user; pipes for its output.

:func:`launch` resolves the program first (a clear :class:`ProgramError` for
``actor.exited`` instead of a traceback) and then spawns it from the calling
thread, which must be the event loop's: PDEATHSIG fires when the *thread*
that forked the child exits (see :mod:`supervisor.process._popen`). The
signal is set in the child after its uid and gid changed (a credential
change clears it), and a child whose supervisor died before that exits.

:class:`CommandProcess` has what :func:`supervisor.process._child.stop_process`
needs (``pid``, ``returncode``, ``signal_group``, ``wait``), the
(pid, create_time) identity (signals never reach a reused pid), and the
``token``/``on_exit`` pair :meth:`supervisor.process._reaper.Reaper.track`
sets, so what the program leaves outside its group is killed after it exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence

import anyio
import psutil

from actors._fresh import reset_signals, restore_open_files

from ..app._sdnotify import SYSTEMD_ENV
from ..process._child import signal_own_group, still_ours
from ..process._fdlimit import original_open_files
from ..process._popen import FdReader
from ._argv import exec_failure_reason, resolve_program
from ._errors import ProgramError
from ._privileges import Credentials

__all__ = ["CommandProcess", "child_env", "launch"]

_PR_SET_PDEATHSIG = 1
_REAP_TIMEOUT = 2.0  # bound on reaping a program SIGKILLed after its main process exited
_prctl: Callable[..., int] | None = None


def child_env(
    base: Mapping[str, str],
    *,
    env: Mapping[str, str] | None = None,
    credentials: Credentials | None = None,
    notify: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The program's environment: ``base`` without systemd's variables, then the user's
    USER/LOGNAME/HOME, then the actor's ``env``, then its own ``NOTIFY_SOCKET``/``WATCHDOG_USEC``."""
    result = {k: v for k, v in base.items() if k not in SYSTEMD_ENV}  # systemd talks to the supervisor only
    if credentials is not None:
        result.update(credentials.env())
    result.update(env or {})
    result.update(notify or {})
    return result


def _libc_prctl() -> Callable[..., int] | None:
    """prctl(2), looked up in the parent: the child between fork and exec only calls it."""
    global _prctl
    if _prctl is None:
        try:
            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):  # not Linux
            return None
    return _prctl


def _preexec(parent: int, prctl: Callable[..., int] | None, nice: int) -> Callable[[], None]:
    open_files = original_open_files()

    def preexec() -> None:
        reset_signals(python=False)  # nothing ignored or blocked that the supervisor inherited
        if open_files is not None:
            restore_open_files(open_files)  # the limit the supervisor started with, not its raised one
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the supervisor died before prctl took effect
            os._exit(70)
        if nice:  # below the supervisor, as process actors (actors._runtime): raising it needs no privilege
            os.nice(nice)

    return preexec


def launch(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | os.PathLike[str] | None = None,
    credentials: Credentials | None = None,
    nice: int = 0,
) -> CommandProcess:
    """Spawn ``argv`` as a command actor's process, or raise :class:`ProgramError` with the reason.

    ``env`` is the whole environment (see :func:`child_env`); a relative
    ``argv[0]`` and ``PATH`` are resolved as the child would, in ``cwd``.
    ``nice``: steps below the supervisor's priority (``[supervisor] child_nice``).
    """
    where = os.fspath(cwd) if cwd is not None else None
    if where is not None and not os.path.isdir(where):
        raise ProgramError(argv[0], f"working directory not found: {where}")
    uid = credentials.uid if credentials is not None else None
    gids = credentials.all_gids if credentials is not None else None
    path = resolve_program(argv[0], env=env, cwd=where, uid=uid, gids=gids)
    try:
        popen = subprocess.Popen(
            list(argv),
            executable=path,
            env=dict(env),
            cwd=where,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: killpg reaches its grandchildren
            preexec_fn=_preexec(os.getpid(), _libc_prctl(), nice),
            **(credentials.popen_kwargs() if credentials is not None else {}),
        )
    except subprocess.SubprocessError as exc:  # the preexec step failed in the child
        raise ProgramError(argv[0], f"cannot start {path}: {exc}") from None
    except OSError as exc:
        if where is not None and exc.filename == where:
            raise ProgramError(argv[0], f"working directory not usable: {where} ({exc.strerror})") from None
        raise ProgramError(argv[0], exec_failure_reason(exc, path)) from None
    return CommandProcess(popen)


class _Main:
    """The process a program named with ``MAINPID=``: a descendant, watched through a pidfd."""

    __slots__ = ("create_time", "pid", "pidfd", "returncode")

    def __init__(self, pid: int, create_time: float, pidfd: int) -> None:
        self.pid = pid
        self.create_time = create_time
        self.pidfd = pidfd
        self.returncode: int | None = None

    def close(self) -> None:
        if self.pidfd >= 0:
            fd, self.pidfd = self.pidfd, -1
            anyio.notify_closing(fd)
            os.close(fd)


class CommandProcess:
    """A running program: identity, group signals, exit through a pidfd, its output pipes.

    After :meth:`follow` (``MAINPID=`` from sd_notify) the *main process* is
    that descendant, as in systemd: ``pid``, ``returncode`` and :meth:`wait`
    are its, the program itself may exit meanwhile, and signals reach both
    process groups.
    """

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        assert popen.stdout is not None and popen.stderr is not None
        self._popen = popen
        self.leader = popen.pid  # the program's own pid: its session and process group
        self.pid = popen.pid  # the main process (MAINPID's, once followed)
        self.stdout = FdReader(os.dup(popen.stdout.fileno()))
        self.stderr = FdReader(os.dup(popen.stderr.fileno()))
        popen.stdout.close()
        popen.stderr.close()
        try:
            self.create_time: float | None = psutil.Process(self.pid).create_time()
        except psutil.NoSuchProcess:
            self.create_time = None
        try:
            self._pidfd: int | None = os.pidfd_open(self.pid)
        except OSError:  # kernel < 5.3: wait() polls
            self._pidfd = None
        self._lock = anyio.Lock()
        self._leader_create_time = self.create_time
        self._main: _Main | None = None
        self._followed = anyio.Event()  # set (and replaced) by each follow(): a wait moves to the new main
        self.token = ""  # its tree cookie, set by Reaper.track (see supervisor/process/_reaper.py)
        self.on_exit: Callable[[], None] | None = None  # once, when the main process has been reaped
        self.on_follow: Callable[[int], None] | None = None  # the main process moved (the reaper's note)
        self.before_reap: Callable[[], None] | None = None  # the program has exited, not yet reaped

    @property
    def returncode(self) -> int | None:
        """The main process's exit status, once it has been reaped."""
        return self._main.returncode if self._main is not None else self._popen.returncode

    def poll(self) -> int | None:
        """Reap the program if it has exited (without blocking)."""
        return self._popen.poll()

    def is_ours(self) -> bool:
        """True while the pid still names the main process."""
        return still_ours(self.pid, self.create_time, self.returncode)

    def follow(self, pid: int, create_time: float) -> bool:
        """``MAINPID=pid`` (a verified descendant): from now on the run lasts as long as that process."""
        if self.returncode is not None:
            return False
        main: _Main | None = None
        if pid != self.leader:
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:  # gone already (or a kernel without pidfds: the program stays the main process)
                return False
            if not still_ours(pid, create_time, None):  # checked once the pidfd holds it: not a reused pid
                os.close(pidfd)
                return False
            main = _Main(pid, create_time, pidfd)
        elif self._popen.returncode is not None:
            return False
        if self._main is not None:
            self._main.close()  # wakes a wait on it: the wait moves to the new one
        self._main = main
        self.pid, self.create_time = (pid, create_time) if main is not None else (self.leader, self._leader_create_time)
        self._followed.set()
        self._followed = anyio.Event()
        if self.on_follow is not None:
            self.on_follow(self.pid)
        return True

    def signal_group(self, sig: int) -> bool:
        """Signal the program's process group, and the main process's; never a reused pid."""
        sent = signal_own_group(self.leader, self._leader_create_time, self._popen.returncode, sig)
        main = self._main
        if main is not None and main.returncode is None:
            try:
                if os.getpgid(main.pid) == main.pid:  # it leads a group of its own (a daemon's setsid)
                    sent |= signal_own_group(main.pid, main.create_time, None, sig)
                else:
                    signal.pidfd_send_signal(main.pidfd, sig)
                    sent = True
            except OSError:  # exited meanwhile
                pass
        return sent

    async def wait(self) -> int:
        """Wait for the main process to exit, reap it, and return its status.

        The main process is the program until ``MAINPID=`` names another (:meth:`follow`); then
        that one's exit ends the wait, whether the program still runs or has exited already.
        """
        async with self._lock:
            while self.returncode is None:
                main = self._main
                if main is None:
                    await self._wait_program()
                else:
                    with contextlib.suppress(anyio.ClosedResourceError):  # replaced by a later MAINPID=
                        await self._wait_main(main)
        returncode = self.returncode
        assert returncode is not None
        self._exited()  # what it left outside its group goes now, not after the pipes drain
        return returncode

    async def _wait_program(self) -> None:
        """Until the program has exited and been reaped, or :meth:`follow` named a main process."""
        followed = self._followed
        async with anyio.create_task_group() as tg:

            async def until(wait: Callable[[], Awaitable[object]]) -> None:
                await wait()
                tg.cancel_scope.cancel()

            tg.start_soon(until, self._reap_program)
            tg.start_soon(until, followed.wait)

    async def _reap_program(self) -> None:
        while self._popen.returncode is None:
            if self._pidfd is None:
                await anyio.sleep(0.02)
                self._popen.poll()
                continue
            await anyio.wait_readable(self._pidfd)
            try:
                exited = os.waitid(os.P_PID, self.leader, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
            except ChildProcessError:  # reaped by someone else: poll() says so
                exited = True
            if exited and self.before_reap is not None:
                self.before_reap()  # a MAINPID= it sent is read while its session still exists
            self._popen.poll()

    async def _wait_main(self, main: _Main) -> None:
        while main.returncode is None:
            await anyio.wait_readable(main.pidfd)
            try:
                result = os.waitid(os.P_PIDFD, main.pidfd, os.WEXITED | os.WNOHANG)
            except ChildProcessError:
                if self._popen.returncode is None:
                    # Still the program's child: the program goes (as systemd stops what is left of a
                    # unit whose main process exited), and its zombie comes to us, the subreaper.
                    await self._end_program()
                    if self._popen.poll() is not None:  # reaped by _end_program
                        continue
                main.returncode = 0  # not ours to reap (no subreaper, or its parent reaped it): unknown
                break
            if result is not None:
                main.returncode = _status(result)
        main.close()

    async def _end_program(self) -> None:
        signal_own_group(self.leader, self._leader_create_time, self._popen.returncode, signal.SIGKILL)
        with anyio.move_on_after(_REAP_TIMEOUT):
            await self._reap_program()

    def _exited(self) -> None:
        on_exit, self.on_exit = self.on_exit, None
        if on_exit is not None:
            on_exit()

    async def aclose(self) -> None:
        """Close the pipes and the pidfds (the program is reaped by :meth:`wait`)."""
        if self.returncode is not None and self._popen.poll() is None:
            await self._end_program()  # MAINPID's process ended while the program ran: it goes too
        if self._popen.poll() is not None and self.returncode is not None:
            self._exited()
        if self._main is not None:
            self._main.close()
        self.stdout.close()
        self.stderr.close()
        if self._pidfd is not None:
            fd, self._pidfd = self._pidfd, None
            anyio.notify_closing(fd)
            os.close(fd)


def _status(result: os.waitid_result) -> int:
    """A waitid result as a returncode (negative: killed by that signal), as subprocess has it."""
    if result.si_code == os.CLD_EXITED:
        return result.si_status
    return -result.si_status
