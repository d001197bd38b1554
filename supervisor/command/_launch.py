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

import ctypes
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence

import anyio
import psutil

from ..app._sdnotify import SYSTEMD_ENV
from ..process._child import signal_own_group, still_ours
from ..process._popen import FdReader
from ._argv import exec_failure_reason, resolve_program
from ._errors import ProgramError
from ._privileges import Credentials

__all__ = ["CommandProcess", "child_env", "launch"]

_PR_SET_PDEATHSIG = 1
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
    def preexec() -> None:
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


class CommandProcess:
    """A running program: identity, group signals, exit through a pidfd, its output pipes."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        assert popen.stdout is not None and popen.stderr is not None
        self._popen = popen
        self.pid = popen.pid
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
        self.token = ""  # its tree cookie, set by Reaper.track (see supervisor/process/_reaper.py)
        self.on_exit: Callable[[], None] | None = None  # once, when it has been reaped

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def poll(self) -> int | None:
        """Reap the program if it has exited (without blocking)."""
        return self._popen.poll()

    def is_ours(self) -> bool:
        """True while the pid still names the process we started."""
        return still_ours(self.pid, self.create_time, self._popen.returncode)

    def signal_group(self, sig: int) -> bool:
        """Signal the program's process group; never a reused pid."""
        return signal_own_group(self.pid, self.create_time, self._popen.returncode, sig)

    async def wait(self) -> int:
        async with self._lock:
            while self._popen.poll() is None:
                if self._pidfd is not None:
                    await anyio.wait_readable(self._pidfd)
                else:
                    await anyio.sleep(0.02)
        assert self._popen.returncode is not None
        self._exited()  # what it left outside its group goes now, not after the pipes drain
        return self._popen.returncode

    def _exited(self) -> None:
        on_exit, self.on_exit = self.on_exit, None
        if on_exit is not None:
            on_exit()

    async def aclose(self) -> None:
        """Close the pipes and the pidfd (the program is reaped by :meth:`wait`)."""
        if self._popen.poll() is not None:
            self._exited()
        self.stdout.close()
        self.stderr.close()
        if self._pidfd is not None:
            fd, self._pidfd = self._pidfd, None
            anyio.notify_closing(fd)
            os.close(fd)
