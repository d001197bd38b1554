"""The last reaper: kills what a dead supervisor left behind.

``python -I -S _deathwatch.py PREFIX [CGROUP]`` with the read end of a pipe on stdin.
The supervisor holds the write end; nobody writes to it. EOF means the
supervisor is gone (exited, or SIGKILLed: the kernel closes its fds either
way). This process then writes ``cgroup.kill`` of CGROUP (the supervisor's
cgroup v2 subtree, where there is one, see :mod:`._cgroup`), and SIGKILLs every process whose environment carries a
tree cookie starting with PREFIX (see :mod:`._reaper`), in rounds until a
round finds none, so that forks made while it kills are caught too. It
imports the standard library only (no site-packages), so it starts in a few
milliseconds and holds about 8 MB.

Run as a file, not as a module: importing the ``supervisor`` package would
cost the imports this process exists without.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time

ENV_KEY = b"ACTORSUP_TREE="
_ROUNDS = 200  # a fork bomb must not keep the last reaper alive for ever


def tree_tokens(environ: bytes) -> list[str]:
    """The tokens of the ``ACTORSUP_TREE`` entry of a NUL-separated environment block."""
    for entry in environ.split(b"\0"):
        if entry.startswith(ENV_KEY):
            return entry[len(ENV_KEY):].decode("ascii", "replace").split()
    return []


def carries(pid: int, prefix: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read()
    except OSError:  # gone, a zombie's is empty, or another user's
        return False
    return any(token.partition(".")[0] == prefix for token in tree_tokens(environ))


def kill_marked(prefix: str, me: int, killed: set[int]) -> int:
    """One round: SIGKILL every marked process; how many were signalled."""
    signalled = 0
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        try:
            pidfd = os.pidfd_open(pid)  # pins the process: the check and the kill see the same one
        except OSError:
            continue
        try:
            if carries(pid, prefix):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                killed.add(pid)
                signalled += 1
        except OSError:
            pass
        finally:
            os.close(pidfd)
    return signalled


def kill_cgroup(top: str) -> None:
    """``cgroup.kill`` the supervisor's cgroup, then remove its emptied leaves and itself."""
    try:
        with open(os.path.join(top, "cgroup.kill"), "w") as f:
            f.write("1")
    except OSError:
        return
    for _ in range(_ROUNDS):
        try:
            leaves = [os.path.join(top, name) for name in os.listdir(top) if name[:1] == "c" and name[1:].isdigit()]
        except OSError:
            return
        for path in [*leaves, top]:
            with contextlib.suppress(OSError):
                os.rmdir(path)
        if not os.path.isdir(top):
            return
        time.sleep(0.01)  # the killed are still exiting


def main(argv: list[str]) -> int:
    prefix, cgroup = argv[1], argv[2] if len(argv) > 2 else ""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is for the supervisor
    while os.read(0, 4096):
        pass
    if cgroup:
        kill_cgroup(cgroup)
    killed: set[int] = set()
    for _ in range(_ROUNDS):
        if not kill_marked(prefix, os.getpid(), killed):
            break
    if killed:
        event = {"event": "reaper.orphans_killed", "count": len(killed), "supervisor_prefix": prefix}
        os.write(2, json.dumps(event).encode() + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
