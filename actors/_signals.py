"""A child starts with the signal state a freshly started program expects, whatever the supervisor inherited.

A supervisor started in the background by a non-interactive shell (``actorsup run &`` in a
script) ignores SIGINT and SIGQUIT, one under ``nohup`` ignores SIGHUP, and a parent may leave
signals blocked. Ignored and blocked signals survive fork and exec, so a program whose
``stop_signal`` is SIGINT would ignore every graceful stop and end only by SIGKILL. systemd
resets a service's signals the same way before it execs it.
"""

from __future__ import annotations

import signal

__all__ = ["reset_signals"]

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
