"""Finds and kills what an actor leaves behind outside its process group.

Killing an actor's process group misses descendants that called ``setsid()``
or ``setpgid()``, and daemons that double-forked. Three pieces catch them:

- **A tree cookie.** Each child is started with ``ACTORSUP_TREE=PREFIX.N`` in
  its environment (appended, space-separated, to one it inherited), and every
  descendant inherits it, whatever session or group it moves to. ``PREFIX``
  names this supervisor, ``N`` the child: ownership is read from the process
  itself, with no tracking of forks (Jenkins finds a build's processes the
  same way).
- **A child subreaper.** With ``PR_SET_CHILD_SUBREAPER`` an orphan is
  reparented to the supervisor instead of init, so everything an actor left
  behind is found among the supervisor's own children. Soon after a child
  exits (exits within 50 ms share one), and every few seconds,
  :meth:`Reaper.sweep` reads those children; one that
  carries a cookie of a child that has exited is SIGKILLed through a pidfd
  (never a reused pid). Its own orphans are reparented here in turn and go in
  the next sweep. Adopted processes are reaped (no zombies); the supervisor's
  other children (those of a host application) are never touched.
- **The last reaper** (:mod:`._deathwatch`): a tiny process that reads a pipe
  from the supervisor. When the supervisor dies, even by SIGKILL, the pipe
  reads EOF and it kills every process carrying this supervisor's cookie.

What is guaranteed, and what is not, is in docs/GUARANTEES.md.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus

from ._cgroup import CgroupTree, open_tree
from ._deathwatch import tree_tokens

__all__ = ["ENV_KEY", "Reaper", "own_children"]

log = structlog.get_logger("actorsup.reaper")

ENV_KEY = "ACTORSUP_TREE"
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37
SWEEP_INTERVAL = 2.0  # bounds how long an exited double-forked daemon stays a zombie here
SWEEP_COALESCE = 0.05  # exits this close share one sweep (a sweep reads every child of ours: O(n^2) in /proc)
_CLOSE_TIMEOUT = 5.0
_DEATHWATCH = str(Path(__file__).with_name("_deathwatch.py"))


def _prctl(option: int, value: int | ctypes.c_int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        arg = ctypes.byref(value) if isinstance(value, ctypes.c_int) else value
        return bool(libc.prctl(option, arg, 0, 0, 0) == 0)
    except (OSError, AttributeError):  # not Linux
        return False


def own_children() -> list[int]:
    """Pids of this process's children (of every thread: orphans land on any)."""
    found: list[int] = []
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                found.extend(map(int, f.read().split()))
        except OSError:  # a thread that just ended
            continue
    return found


def cookie_of(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return tree_tokens(f.read())
    except OSError:
        return []


class Tracked(Protocol):
    """What :meth:`Reaper.track` needs of a child (a ChildProcess, a command actor's CommandProcess)."""

    @property
    def pid(self) -> int: ...

    token: str
    on_exit: Callable[[], None] | None


def zombie_session(pid: int) -> int | None:
    """The session id of ``pid`` if it is a zombie (its /proc stat outlives its environ)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
    except OSError:
        return None
    return int(fields[3]) if len(fields) > 3 and fields[0] == b"Z" else None


class _Adopted:
    __slots__ = ("killed", "pidfd", "token")

    def __init__(self, pidfd: int, token: str) -> None:
        self.pidfd = pidfd
        self.token = token
        self.killed = False


_OWNERS_KEPT = 4096  # names of exited children remembered for the log of a late orphan


class Reaper:
    """Tree cookies for this supervisor's children, and the kill of what they leave behind."""

    def __init__(self) -> None:
        self.prefix = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._serial = 0
        self._live: dict[str, int] = {}  # token -> pid of a child not yet reaped
        self._owners: dict[str, tuple[str, int]] = {}  # token -> (actor, pid), for the log
        self._adopted: dict[int, _Adopted] = {}
        self._active = False
        self._tg: TaskGroup | None = None
        self._watch: subprocess.Popen[bytes] | None = None
        self._pipe = -1
        self.cgroups: CgroupTree | None = None  # while run() runs, where cgroup v2 is writable
        self._leaves: dict[str, int] = {}  # token -> serial of its cgroup leaf
        self._emptying: set[int] = set()  # leaves killed, to remove once empty
        self._signalled: set[int] = set()  # pids SIGKILLed and logged, until reaped here
        self._wanted: anyio.Event | None = None  # while run() runs: a sweep is due soon

    # --- one child ---------------------------------------------------------------
    def new_token(self) -> str:
        self._serial += 1
        return f"{self.prefix}.{self._serial}"

    def child_env(self, env: dict[str, str], token: str) -> dict[str, str]:
        """``env`` with ``token`` appended to the cookie (a nested supervisor keeps the outer one)."""
        return {**env, ENV_KEY: " ".join(filter(None, (env.get(ENV_KEY, ""), token)))}

    def reserve(self, token: str) -> Path | None:
        """A child with ``token`` is being made elsewhere (a fork server): not adopted before :meth:`track`.

        Returns its cgroup leaf, made now, for ``clone3(CLONE_INTO_CGROUP)`` (None without cgroups).
        Undo with :meth:`exited` if it never gets tracked; its process, if any, is then killed as a leftover.
        """
        self._live[token] = 0
        if self.cgroups is None:
            return None
        leaf = self.cgroups.leaf(int(token.rpartition(".")[2]))
        try:
            leaf.mkdir(exist_ok=True)
        except OSError:
            return None
        return leaf

    def track(self, child: Tracked, token: str, actor: str, *, placed: bool = False, move: bool = True) -> None:
        """``child`` was started with ``token``; kill its leftovers once it has been reaped.

        ``placed``: it was born in its cgroup leaf (see :meth:`reserve`), so it is not moved there.
        ``move=False``: the caller moves it with :meth:`place`, off the event loop.
        """
        child.token = token
        child.on_exit = lambda: self.exited(token)
        self._live[token] = child.pid
        self._owners[token] = (actor, child.pid)
        serial = int(token.rpartition(".")[2])
        if self.cgroups is not None and (placed or (move and self.cgroups.add(serial, child.pid))):
            self._leaves[token] = serial
        if len(self._owners) > _OWNERS_KEPT + len(self._live):
            for old in list(self._owners)[: len(self._owners) // 4]:
                if old not in self._live:
                    del self._owners[old]

    async def place(self, token: str) -> None:
        """Move a tracked child into its cgroup leaf on a worker thread.

        The write to ``cgroup.procs`` waits for the kernel (10-18 ms here), which on
        the event loop held every other actor and the control socket meanwhile.
        """
        cgroups, pid = self.cgroups, self._live.get(token)
        if cgroups is None or pid is None:
            return
        serial = int(token.rpartition(".")[2])
        if await anyio.to_thread.run_sync(cgroups.add, serial, pid) and token in self._live:
            self._leaves[token] = serial

    def moved(self, token: str, pid: int) -> None:
        """The child with ``token`` is now ``pid`` (a command actor's ``MAINPID=``): its owner reaps it."""
        if token in self._live:
            self._live[token] = pid

    def owned_by(self, token: str, actor: str) -> None:
        """A warm spare's token now belongs to ``actor``."""
        if token in self._live:
            self._owners[token] = (actor, self._live[token])

    def exited(self, token: str) -> None:
        """The child with ``token`` was reaped: its orphans are here now, kill them."""
        if self._live.pop(token, None) is not None:
            serial = self._leaves.pop(token, None)
            if serial is not None and self.cgroups is not None and self._active:
                self._kill_leaf(token, serial, self.cgroups)
            self._sweep_soon()

    def _sweep_soon(self) -> None:
        """Sweep from run()'s task, not in the caller's exit path: with 1,000 children one sweep's
        read of /proc/self/task/*/children took 16 % of the loop in a restart storm."""
        if self._wanted is None:
            self.sweep()
        else:
            self._wanted.set()

    def _kill_leaf(self, token: str, serial: int, cgroups: CgroupTree) -> None:
        """``cgroup.kill`` the leaf of an exited child: also what cleared its environment."""
        left = cgroups.pids(serial)
        cgroups.kill(serial)
        self._emptying.add(serial)
        for pid in left - self._signalled:
            self._log_kill(pid, token, "owner_exited")
        self._signalled |= left

    def _log_kill(self, pid: int, token: str, reason: str) -> None:
        actor, owner_pid = self._owners.get(token, (None, None))
        log.info("reaper.killed", actor=actor, pid=pid, owner_pid=owner_pid, reason=reason)

    # --- the sweep ---------------------------------------------------------------
    def sweep(self, *, everything: bool = False) -> None:
        """Adopt marked orphans; SIGKILL those whose owner has exited (all, with ``everything``)."""
        if not self._active:
            return
        if self.cgroups is not None:
            self._emptying = {serial for serial in self._emptying if not self.cgroups.prune(serial)}
        if len(self._signalled) > _OWNERS_KEPT:  # killed in a cgroup and reaped by their own parents
            self._signalled &= self._adopted.keys()
        for pid in self._adopt_new():
            if self._tg is not None:
                self._tg.start_soon(self._reap_adopted, pid)
        for pid, adopted in self._adopted.items():
            if adopted.killed or (adopted.token in self._live and not everything):
                continue
            adopted.killed = True
            try:
                if os.waitid(os.P_PIDFD, adopted.pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    continue  # exited already: only to be reaped
                signal.pidfd_send_signal(adopted.pidfd, signal.SIGKILL)
            except OSError:
                continue
            if pid not in self._signalled:  # not already killed (and logged) with its cgroup
                self._signalled.add(pid)
                self._log_kill(pid, adopted.token, "shutdown" if everything else "owner_exited")

    def _adopt_new(self) -> list[int]:
        ours = set(self._live.values())
        if self._watch is not None:
            ours.add(self._watch.pid)
        new = []
        for pid in own_children():
            if pid in ours or pid in self._adopted:
                continue
            token = next((t for t in cookie_of(pid) if t.partition(".")[0] == self.prefix), None)
            if token is None and self.cgroups is not None:  # no cookie, but in one of our cgroups
                serial = self.cgroups.serial_of(pid)
                token = None if serial is None else f"{self.prefix}.{serial}"
            if token is None:  # a zombie has no environ left: ours if it is in a session one of ours led
                token = self._session_owner(pid)
            if token is None or self._live.get(token) == 0:
                continue  # not from our children (a host's own child), or reserved: not ours to reap
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:
                continue
            self._adopted[pid] = _Adopted(pidfd, token)
            new.append(pid)
        return new

    def _session_owner(self, pid: int) -> str | None:
        """The token of the child (a session leader) whose session dead ``pid`` was in, if any."""
        session = zombie_session(pid)
        if session is None:
            return None
        return next((token for token, (_, leader) in self._owners.items() if leader == session), None)

    async def _reap_adopted(self, pid: int) -> None:
        await anyio.wait_readable(self._adopted[pid].pidfd)  # cancelled: _close collects it
        if self._collect(pid):
            self._sweep_soon()  # its children were reparented here before it became reapable

    def _collect(self, pid: int) -> bool:
        """Reap ``pid`` if it has exited; True if it is gone."""
        adopted = self._adopted[pid]
        try:
            if os.waitid(os.P_PIDFD, adopted.pidfd, os.WEXITED | os.WNOHANG) is None:
                return False
        except ChildProcessError:  # reaped by someone else (a host's waitpid(-1))
            pass
        os.close(adopted.pidfd)
        del self._adopted[pid]
        self._signalled.discard(pid)
        return True

    # --- lifetime ----------------------------------------------------------------
    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Be the subreaper and keep the last reaper running; on cancel, kill every leftover."""
        was = ctypes.c_int(0)
        _prctl(_PR_GET_CHILD_SUBREAPER, was)
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)
        self.cgroups = open_tree(self.prefix)
        log.debug("reaper.started", prefix=self.prefix, cgroup=str(self.cgroups.top) if self.cgroups else None)
        self._active = True
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._keep_deathwatch)
                self._wanted = anyio.Event()
                task_status.started()
                while True:
                    with anyio.move_on_after(SWEEP_INTERVAL):
                        await self._wanted.wait()
                    self._wanted = anyio.Event()
                    self.sweep()
                    await anyio.sleep(SWEEP_COALESCE)
        finally:
            self._wanted = None
            self._tg = None
            with anyio.CancelScope(shield=True):
                await self._close()
            self._active = False
            _prctl(_PR_SET_CHILD_SUBREAPER, was.value)

    async def _close(self) -> None:
        """Kill every marked leftover and reap it (bounded), then stop the last reaper."""
        cgroups = self.cgroups
        with anyio.move_on_after(_CLOSE_TIMEOUT):
            while True:
                if cgroups is not None:
                    cgroups.kill()
                self.sweep(everything=True)
                for pid in list(self._adopted):
                    self._collect(pid)
                if not self._adopted and (cgroups is None or cgroups.prune()):
                    break
                await anyio.sleep(0.01)
        for adopted in self._adopted.values():
            os.close(adopted.pidfd)
        self._adopted.clear()
        self.cgroups = None
        self._leaves.clear()
        self._emptying.clear()
        self._signalled.clear()
        await self._stop_deathwatch()

    async def _keep_deathwatch(self) -> None:
        """Start the last reaper; start a new one if it dies while we run."""
        while True:
            read, self._pipe = os.pipe()  # non-inheritable: no child may hold the write end
            try:
                self._watch = subprocess.Popen(
                    [sys.executable, "-I", "-S", _DEATHWATCH, self.prefix,
                     str(self.cgroups.top) if self.cgroups else ""],
                    stdin=read, stdout=subprocess.DEVNULL, start_new_session=True,
                )
            except OSError as exc:
                os.close(self._pipe)
                self._pipe = -1
                log.warning("reaper.deathwatch_failed", error=str(exc))
                return
            finally:
                os.close(read)
            await _wait(self._watch)
            log.warning("reaper.deathwatch_died", pid=self._watch.pid, exit_code=self._watch.returncode)
            os.close(self._pipe)
            self._pipe = -1
            await anyio.sleep(1.0)

    async def _stop_deathwatch(self) -> None:
        if self._pipe >= 0:
            os.close(self._pipe)  # EOF: it sweeps once (nothing is left) and exits
            self._pipe = -1
        if self._watch is not None and self._watch.returncode is None:
            with anyio.move_on_after(_CLOSE_TIMEOUT):
                await _wait(self._watch)
            if self._watch.returncode is None:
                self._watch.kill()
                self._watch.wait()


async def _wait(process: subprocess.Popen[bytes]) -> None:
    """Await a child's exit through a pidfd, from the loop (no thread, no SIGCHLD)."""
    pidfd = os.pidfd_open(process.pid)
    try:
        while process.poll() is None:
            await anyio.wait_readable(pidfd)
    finally:
        os.close(pidfd)
