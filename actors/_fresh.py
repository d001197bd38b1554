"""A child starts as a freshly started program would, whatever the supervisor inherited or changed.

Signals: a supervisor started in the background by a non-interactive shell (``actorsup run &`` in a
script) ignores SIGINT and SIGQUIT, one under ``nohup`` ignores SIGHUP, and a parent may leave
signals blocked. Ignored and blocked signals survive fork and exec, so a program whose
``stop_signal`` is SIGINT would ignore every graceful stop and end only by SIGKILL. systemd
resets a service's signals the same way before it execs it.

The open-files limit: the supervisor raises its own soft ``RLIMIT_NOFILE`` to the hard limit
(five descriptors per actor: 1,000 actors need far more than the usual 1,024), and a child gets
the soft limit back that the supervisor started with (``ACTORSUP_NOFILE``), as Go's runtime does
for the programs it execs: a program that uses select() must not see descriptors past 1,024.
"""

from __future__ import annotations

import os
import resource
import signal

__all__ = ["NOFILE_ENV", "reset_signals", "restore_open_files", "start_fresh"]

NOFILE_ENV = "ACTORSUP_NOFILE"  # the soft open-files limit the supervisor started with

_UNCATCHABLE = frozenset({signal.SIGKILL, signal.SIGSTOP})
# The interpreter's own choices at start-up: Python code expects BrokenPipeError and EFBIG, not death.
_PYTHON_IGNORES = frozenset({signal.SIGPIPE, signal.SIGXFSZ})


def reset_signals(*, python: bool) -> None:
    """Unblock every signal and give every ignored one its default action.

    ``python=False``: between fork and exec of a program (its own runtime sets what it wants).
    ``python=True``: at the start of a Python child, which keeps the interpreter's ignores and gets
    ``KeyboardInterrupt`` for SIGINT, as any Python program started normally would.
    """
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    for signum in signal.valid_signals():
        if signum in _UNCATCHABLE or (python and signum in _PYTHON_IGNORES):
            continue
        try:
            if signal.getsignal(signum) is signal.SIG_IGN:
                default = signal.default_int_handler if python and signum == signal.SIGINT else signal.SIG_DFL
                signal.signal(signum, default)
        except (OSError, ValueError):  # a signal the C library keeps for itself (NPTL's 32 and 33)
            continue


def restore_open_files(soft: int) -> None:
    """Set the soft open-files limit back to ``soft`` (never above the hard limit)."""
    current, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = soft if hard == resource.RLIM_INFINITY else min(soft, hard)
    if wanted != current:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def start_fresh() -> None:
    """At a Python child's start: signals as in a fresh interpreter, the supervisor's original open-files limit."""
    reset_signals(python=True)
    soft = os.environ.pop(NOFILE_ENV, "")
    if soft:
        restore_open_files(int(soft))
