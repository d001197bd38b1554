"""psutil sampling of actor processes, and the ``max_rss`` / ``max_cpu`` limits.

A process is identified by ``(pid, create_time)``, as in psutil itself: a pid
that the kernel has handed to a new process is never sampled (and so never
restarted for someone else's memory). CPU % comes from ``cpu_times`` deltas
between two samples over an injected monotonic clock, so sampling never
blocks the way ``cpu_percent(interval=...)`` does.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable

import anyio
import msgspec
import psutil
import structlog

__all__ = ["LimitChecker", "ResourceSample", "ResourceSampler"]

log = structlog.get_logger("actorsup.resources")

# create_time has clock-tick resolution (10 ms on Linux); equal ticks are one process.
_IDENTITY_TOLERANCE = 1e-3
_PROC_CHILDREN = os.path.exists(f"/proc/self/task/{os.getpid()}/children")
_STAT_FAST = _PROC_CHILDREN and hasattr(os, "sysconf")  # Linux: read /proc directly
_TICKS = os.sysconf("SC_CLK_TCK") if _STAT_FAST else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if _STAT_FAST else 4096


_BOOT: list[float] = []


def _boot_time() -> float:
    if not _BOOT:  # read once (psutil reads /proc/stat on each call); create_time() adds it the same way
        _BOOT.append(psutil.boot_time())
    return _BOOT[0]


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # no io wrapper: a third of open()'s cost
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


class ResourceSample(msgspec.Struct, frozen=True, kw_only=True):
    """One observation of one process."""

    pid: int
    create_time: float
    time: float  # monotonic seconds when sampled
    cpu_time: float  # user + system seconds since the process started
    cpu_percent: float | None  # since the previous sample; None on the first one
    rss: int
    uss: int | None
    num_fds: int | None
    num_threads: int
    children: int


class ResourceSampler:
    """Sample processes with one ``oneshot()`` each; remembers CPU times between calls."""

    def __init__(self, *, now: Callable[[], float] | None = None, uss: bool = False) -> None:
        self._now = now
        self.uss = uss
        self._previous: dict[int, tuple[float, float, float]] = {}  # pid -> (ctime, t, cpu)
        self._procs: dict[tuple[int, float], psutil.Process] = {}  # built once: its init reads /proc

    def sample(self, pid: int, create_time: float, *, now: float | None = None) -> ResourceSample | None:
        """Sample ``pid``; None if it is gone, a zombie, or no longer the same process."""
        t = now if now is not None else self._clock()
        if _STAT_FAST and not self.uss:
            return self._sample_proc(pid, create_time, t)
        try:
            proc = self._procs.get((pid, create_time))
            if proc is None:
                proc = self._procs[(pid, create_time)] = psutil.Process(pid)
            with proc.oneshot():
                if abs(proc.create_time() - create_time) > _IDENTITY_TOLERANCE:
                    self.forget(pid)
                    return None
                if proc.status() == psutil.STATUS_ZOMBIE:
                    raise psutil.ZombieProcess(pid)
                times = proc.cpu_times()
                cpu = times.user + times.system
                mem = proc.memory_full_info() if self.uss else proc.memory_info()
                threads = proc.num_threads()
                fds = proc.num_fds() if hasattr(proc, "num_fds") else None
            children = _count_children(proc)
        except (psutil.NoSuchProcess, ProcessLookupError, FileNotFoundError):
            self.forget(pid)
            return None
        except psutil.AccessDenied:
            log.warning("resources.access_denied", pid=pid)
            return None
        except OSError as exc:  # EMFILE and the like: this round goes without the sample, the next one retries
            log.debug("resources.sample_failed", pid=pid, error=str(exc))
            return None

        return self._finish(pid, create_time, t, cpu, mem.rss, getattr(mem, "uss", None), fds, threads, children)

    def _sample_proc(self, pid: int, create_time: float, t: float) -> ResourceSample | None:
        """The same figures from ``/proc/PID/stat`` and ``statm``, the fds and the children: a third
        of psutil's cost, which 1,000 actors each sampled every 10 s made 20 % of the idle supervisor's."""
        try:
            fields = _read(f"/proc/{pid}/stat").rpartition(b")")[2].split()
            # Fields from 3 (state) on, as in proc(5): utime 14, stime 15, num_threads 20, starttime 22;
            # psutil derives create_time from starttime the same way.
            if fields[0] == b"Z" or abs(int(fields[19]) / _TICKS + _boot_time() - create_time) > _IDENTITY_TOLERANCE:
                self.forget(pid)
                return None
            rss = int(_read(f"/proc/{pid}/statm").split()[1]) * _PAGE  # as psutil's rss (stat's field 24 lags)
            fds = len(os.listdir(f"/proc/{pid}/fd"))
            children = _count_children_of(pid)
        except (FileNotFoundError, ProcessLookupError, IndexError, psutil.NoSuchProcess):
            self.forget(pid)
            return None
        except PermissionError:
            log.warning("resources.access_denied", pid=pid)
            return None
        except OSError as exc:  # EMFILE and the like: this round goes without the sample, the next one retries
            log.debug("resources.sample_failed", pid=pid, error=str(exc))
            return None
        cpu = (int(fields[11]) + int(fields[12])) / _TICKS
        return self._finish(pid, create_time, t, cpu, rss, None, fds, int(fields[17]), children)

    def _finish(
        self, pid: int, create_time: float, t: float, cpu: float, rss: int, uss: int | None, fds: int | None,
        threads: int, children: int,
    ) -> ResourceSample:
        percent = None
        prev = self._previous.get(pid)
        if prev is not None and prev[0] == create_time and t > prev[1]:
            percent = max(0.0, (cpu - prev[2]) / (t - prev[1]) * 100.0)
        self._previous[pid] = (create_time, t, cpu)
        return ResourceSample(
            pid=pid,
            create_time=create_time,
            time=t,
            cpu_time=cpu,
            cpu_percent=percent,
            rss=rss,
            uss=uss,
            num_fds=fds,
            num_threads=threads,
            children=children,
        )

    def forget(self, pid: int) -> None:
        """Drop what is kept about a process that has ended."""
        self._previous.pop(pid, None)
        for key in [k for k in self._procs if k[0] == pid]:
            del self._procs[key]

    def _clock(self) -> float:
        if self._now is not None:
            return self._now()
        try:  # the event loop's clock inside one (as the rest of the supervisor)
            return anyio.current_time()
        except RuntimeError:  # anyio's NoEventLoopError
            return time.monotonic()


def _count_children(proc: psutil.Process) -> int:
    # psutil's children() scans every process on the system: O(n) per actor,
    # O(n^2) per tick. Linux lists each thread's children directly.
    if not _PROC_CHILDREN:
        return len(proc.children())
    return _count_children_of(proc.pid)


def _count_children_of(pid: int) -> int:
    task_dir = f"/proc/{pid}/task"
    try:
        tids = os.listdir(task_dir)
    except FileNotFoundError:
        raise psutil.NoSuchProcess(pid) from None
    total = 0
    for tid in tids:
        try:
            total += len(_read(f"{task_dir}/{tid}/children").split())
        except FileNotFoundError:  # that thread has just exited
            continue
    return total


class LimitChecker:
    """Decide whether a process broke ``max_rss`` or ``max_cpu``; pure, no clock."""

    def __init__(self, max_rss: int | None, max_cpu: float | None, cpu_window: float = 10.0) -> None:
        if max_rss is not None and max_rss <= 0:
            raise ValueError(f"max_rss must be > 0 bytes (got {max_rss!r})")
        if max_cpu is not None and not max_cpu > 0:
            raise ValueError(f"max_cpu must be > 0 percent (got {max_cpu!r})")
        if not cpu_window > 0:
            raise ValueError(f"cpu_window must be > 0 seconds (got {cpu_window!r})")
        self.max_rss = max_rss
        self.max_cpu = max_cpu
        self.cpu_window = cpu_window
        self._history: deque[tuple[float, float]] = deque()  # (now, cpu_time)
        self._identity: tuple[int, float] | None = None

    @property
    def active(self) -> bool:
        """True when any limit is set (so samples must be taken on every beat)."""
        return self.max_rss is not None or self.max_cpu is not None

    def check(self, now: float, sample: ResourceSample) -> str | None:
        """``"rss_limit"``, ``"cpu_limit"`` or None for this sample taken at ``now``."""
        if self.max_rss is not None and sample.rss > self.max_rss:
            return "rss_limit"
        if self.max_cpu is None:
            return None
        average = self.cpu_average(now, sample)
        if average is not None and average > self.max_cpu:
            return "cpu_limit"
        return None

    def cpu_average(self, now: float, sample: ResourceSample) -> float | None:
        """Record the sample; average CPU % over the last full window, or None until one exists."""
        identity = (sample.pid, sample.create_time)
        history = self._history
        if identity != self._identity or (history and sample.cpu_time < history[-1][1]):
            history.clear()  # another process: its CPU history starts over
            self._identity = identity
        history.append((now, sample.cpu_time))
        start = now - self.cpu_window
        # Keep the newest point at or before the window start, as the baseline.
        while len(history) >= 2 and history[1][0] <= start:
            history.popleft()
        base_t, base_cpu = history[0]
        if base_t > start or now <= base_t:
            return None
        return (sample.cpu_time - base_cpu) / (now - base_t) * 100.0

    def reset(self) -> None:
        """Forget the CPU history (a restarted process starts a new window)."""
        self._history.clear()
        self._identity = None
