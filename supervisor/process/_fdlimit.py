"""The supervisor's own open-files limit: raised to the hard limit, so that 1,000 actors fit.

Each process actor holds five descriptors in the supervisor (its channel, two pipes, a
pidfd, its ring), so the usual soft limit of 1,024 ends at about 200 actors with EMFILE.
Raising the soft limit up to the hard one needs no privilege. Children get the original
soft limit back (``actors._fresh``), as Go's runtime does for the programs it execs.
"""

from __future__ import annotations

import resource

__all__ = ["fds_needed", "original_open_files", "raise_open_files"]

PER_ACTOR = 6  # five held per process actor, and one to spare for a restart's overlap
BASE = 64  # the supervisor's own: sockets, log files, the template, the reaper, epoll

_original: list[int] = []  # the soft limit before the first raise (empty: never raised)


def raise_open_files() -> int:
    """Raise the soft limit to the hard one (the kernel's ``fs.nr_open`` if unlimited); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _nr_open() if hard == resource.RLIM_INFINITY else hard
    if target <= soft:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):  # a sandbox that refuses: keep what we have
        return soft
    if not _original:
        _original.append(soft)
    return target


def original_open_files() -> int | None:
    """The soft limit the supervisor started with, if :func:`raise_open_files` changed it."""
    return _original[0] if _original else None


def fds_needed(actors: int) -> int:
    """Descriptors the supervisor needs for ``actors`` process actors, with room to spare."""
    return BASE + PER_ACTOR * actors


def _nr_open() -> int:
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20  # Linux's default fs.nr_open
