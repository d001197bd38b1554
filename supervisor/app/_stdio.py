"""Standard descriptors 0, 1 and 2 that the process started without (``actorsup run >&-``, a bare launcher).

A closed fd 1 makes Python's ``sys.stdout`` None (a traceback on the first write), and the
next socket or pipe the supervisor opens would take the free number: the stdout sink would
then write its JSON into the control socket or a child's pipe. So, first thing, each missing
one becomes /dev/null, as a daemon's start-up does; output to a closed stdout is discarded,
as the user asked.
"""

from __future__ import annotations

import os
import sys

__all__ = ["ensure_standard_fds"]


def ensure_standard_fds() -> None:
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:  # closed: the lowest free number is this one (the lower ones are open by now)
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stdin is None:
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - lives as long as the process
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
