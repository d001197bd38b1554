"""The fork server's template: a warm interpreter that forks each new child.

``python -m actors._template SOCKFD [MODULE ...]``: SOCKFD is a SOCK_SEQPACKET
Unix socket to the supervisor. The template imports the child runtime and its
dependencies, configures the children's logging (each child swaps in its channel),
then imports the MODULEs of ``[supervisor] preload``, freezes the heap
for the garbage collector (so children do not copy the pages it would touch),
says ``{"ready": ...}`` and serves requests. It never starts a thread or an
event loop: ``fork()`` copies only the calling thread, and a loop's selector
and wakeup fds would be shared with every child.

A request is a JSON message with the fds of one child (its channel end, its
stdout and stderr write ends, optionally its ring and its cgroup leaf). The
template makes the child with clone3(CLONE_PARENT), so that it is born the
supervisor's child (and in its cgroup leaf), and reports its pid; the
supervisor owns, waits for and reaps it. Where clone3 is refused, the template
forks a process that forks the child and exits at once, so the child is
reparented to the supervisor (a child subreaper); that middle process reports
the pid. The child then, before anything else,
starts its own session and process group, and:

- waits until its parent is the supervisor, then sets PR_SET_PDEATHSIG to
  SIGKILL (set earlier, the middle process's exit would fire it);
- carries its own tree cookie in its environment block from birth: the
  template writes it into its own block just before the fork and restores its
  own after (``/proc/PID/environ`` shows the block as exec left it, and fork
  copies it; the template's block has a padded slot), see supervisor/process/_reaper.py;
- puts its fds at 0-4 and closes every other fd (the template's socket, and
  anything a preloaded module opened);
- runs :func:`actors._runtime.main` as ``python -m actors._runtime 3 [4]`` would.
"""

from __future__ import annotations

import ctypes
import fcntl
import gc
import importlib
import json
import os
import signal
import socket
import sys
import threading
import traceback
from typing import Any, NoReturn

__all__ = ["COOKIE_SLOT", "main"]

COOKIE_SLOT = 64  # spaces after the template's cookie: room for one child's token
_ENV_KEY = b"ACTORSUP_TREE="
_MAX_FDS = 5  # channel, stdout, stderr, ring, cgroup leaf
_MESSAGE = 4096  # a request: a few numbers and the cookie
_PR_SET_PDEATHSIG = 1
_REPARENT_SPINS = 20_000  # 10 ms apiece at most: the middle process exits right after its fork


def _warm(preload: list[str]) -> None:
    """Import what every child needs, then the preloaded modules."""
    from . import _runtime

    _runtime._preload()
    import msgspec  # noqa: F401

    from . import _base, _channel, _protocol, _ring  # noqa: F401
    from ._logging import configure_child_logging

    # As a cold child does before it imports the actor: configured once here, the
    # structlog and logging objects are shared pages, and a child only swaps in its
    # channel (~1 MB less private memory, and 0.6-0.9 ms, per child).
    configure_child_logging(_template_log)
    for name in preload:
        importlib.import_module(name)
    if threading.active_count() != 1:
        names = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
        raise RuntimeError(f"a preloaded module started threads {names}; fork would lose them")


def _template_log(level: int, body: bytes) -> None:
    """The template's own log events (a preloaded module's): to stderr, which the supervisor echoes."""
    os.write(2, body + b"\n")


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.send(json.dumps(message).encode())


def _parse(data: bytes) -> dict[str, Any]:
    """``ID CGROUP WARM COOKIE`` (the cookie last: it may hold spaces), as ``_forkserver`` sends it."""
    request_id, cgroup, warm, cookie = data.split(b" ", 3)
    return {"id": int(request_id), "cgroup": cgroup == b"1", "warm": warm == b"1", "cookie": cookie.decode()}


def _reply(sock: socket.socket, request: dict[str, Any], pid: int, placed: bool) -> None:
    sock.send(b'{"id":%d,"pid":%d,"placed":%s}' % (request["id"], pid, b"true" if placed else b"false"))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv if argv is None else argv
    from ._fresh import start_fresh
    from ._runtime import _die_with_parent

    _die_with_parent()
    start_fresh()  # once here: every child forked below inherits it
    sock = socket.socket(fileno=int(argv[1]))
    try:
        _find_cookie_slot()
        _warm(argv[2:])
    except BaseException as exc:
        _send(sock, {"error": "".join(traceback.format_exception_only(exc)).strip()})
        os._exit(1)
    gc.collect()
    gc.freeze()  # children share these objects' pages instead of copying them at their first collection
    _send(sock, {"ready": os.getpid(), "modules": len(sys.modules)})
    supervisor = os.getppid()
    while True:
        # Lean from here on: every page this loop writes after a fork stays with that
        # child as private memory (its copy of the page), so no json, file objects or
        # ctypes set-up per request (0.55 -> 0.06 MB per child, measured on a fork).
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, _MESSAGE, _MAX_FDS)
        except InterruptedError:
            continue
        if not data:
            os._exit(0)  # the supervisor closed its end (or died): no more children
        request: dict[str, Any] = {}
        try:
            request = _parse(data)
            _fork_child(sock, request, fds, supervisor)
        except Exception as exc:  # one bad request must not end the server
            _send(sock, {"id": request.get("id"), "error": repr(exc)})
        finally:
            for fd in fds:
                os.close(fd)


class _CloneArgs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size", "tls",
        "set_tid", "set_tid_size", "cgroup",
    )]


_SYS_CLONE3 = 435  # the same number on every architecture (a syscall added after the table was unified)
_CLONE_PARENT = 0x8000
_CLONE_INTO_CGROUP = 0x200000000
# ACTORSUP_FORK=double: the fallback for kernels that refuse clone3 (tests exercise it).
_clone3_works = os.environ.get("ACTORSUP_FORK") != "double"


def _clone_parent(cgroup: int | None) -> int | None:
    """clone3(CLONE_PARENT[, CLONE_INTO_CGROUP]): a fork that is born the supervisor's child, in its cgroup leaf.

    One fork instead of two, and no migration into the leaf afterwards (a
    cgroup.procs write waits for an RCU grace period: ~10 ms here). Python's
    own fork hooks run around it, as ``os.fork()`` runs them. None if the
    kernel refuses (before Linux 5.7, or a seccomp filter): fork twice instead.
    """
    global _clone3_works
    if not _clone3_works:
        return None
    flags = _CLONE_PARENT | (_CLONE_INTO_CGROUP if cgroup is not None else 0)
    # No exit_signal: with CLONE_PARENT the child signals its exit as the template does (SIGCHLD).
    args = _CloneArgs(flags=flags, cgroup=cgroup or 0)
    libc = _libc()
    ctypes.pythonapi.PyOS_BeforeFork()
    pid = libc.syscall(ctypes.c_long(_SYS_CLONE3), ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args)))
    if pid == 0:
        ctypes.pythonapi.PyOS_AfterFork_Child()
        return 0
    ctypes.pythonapi.PyOS_AfterFork_Parent()
    if pid < 0:
        _clone3_works = False
        return None
    return int(pid)


def _libc() -> Any:
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.PyDLL(None, use_errno=True)  # PyDLL: the GIL stays held across the clone, as in os.fork
        _LIBC.syscall.restype = ctypes.c_long
    return _LIBC


_LIBC: Any = None


def _fork_child(sock: socket.socket, request: dict[str, Any], fds: list[int], supervisor: int) -> None:
    cgroup = fds.pop() if request.get("cgroup") else None
    # The child is born with its own cookie: the supervisor's reaper, reading
    # /proc/PID/environ at any instant, never takes it for the template's orphan.
    _write_cookie(request["cookie"].encode())
    try:
        _fork_with_cookie(sock, request, fds, supervisor, cgroup)
    finally:
        _write_cookie(None)


def _fork_with_cookie(
    sock: socket.socket, request: dict[str, Any], fds: list[int], supervisor: int, cgroup: int | None
) -> None:
    pid = _clone_parent(cgroup)
    if pid == 0:
        _child_main(request, fds, supervisor)
    if pid is not None:
        _reply(sock, request, pid, cgroup is not None)
        if cgroup is not None:
            os.close(cgroup)
        return
    if cgroup is not None:
        os.close(cgroup)
    middle = os.fork()
    if middle:
        os.waitpid(middle, 0)  # exits right after its own fork
        return
    try:
        pid = os.fork()
        if pid:
            _reply(sock, request, pid, False)
            os._exit(0)
    except BaseException:
        traceback.print_exc()
        os._exit(70)
    _child_main(request, fds, supervisor)


def _child_main(request: dict[str, Any], fds: list[int], supervisor: int) -> NoReturn:
    try:
        _become_child(request, fds, supervisor)
    except BaseException:
        traceback.print_exc()
    os._exit(70)


def _become_child(request: dict[str, Any], fds: list[int], supervisor: int) -> None:
    os.setsid()  # first: the template's group may be killed once the template is gone
    from ._logging import _ForkStdout

    if isinstance(sys.stdout, _ForkStdout):  # the logging's fork hook took us for a grandchild: we are not
        sys.stdout = sys.stdout._original
    for _ in range(_REPARENT_SPINS):
        if os.getppid() == supervisor:
            break
        os.sched_yield()
    else:
        os._exit(70)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != supervisor:
        os._exit(70)  # the supervisor died before prctl took effect
    os.environ["ACTORSUP_TREE"] = request["cookie"]  # what exec'd grandchildren inherit
    # stdin from /dev/null; stdout, stderr, channel[, ring] -> 1, 2, 3[, 4]
    channel, out, err, *ring = fds
    null = os.open(os.devnull, os.O_RDONLY)
    # Copies above 0-4 first, so that placing one never overwrites another.
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, 16) for fd in (null, out, err, channel, *ring)]
    for target, fd in enumerate(moved):
        os.dup2(fd, target)
    os.closerange(len(moved), os.sysconf("SC_OPEN_MAX"))  # close_range(2): one syscall
    from . import _runtime

    if request.get("warm"):
        _warm_up()
    sys.argv = ["actors._runtime", "3", *(["4"] if ring else [])]
    _runtime.main(sys.argv)


def _warm_up() -> None:
    """A spare runs one empty event loop before its Hello: the pages and lazy set-up a loop
    touches are its own by the time it gets its Init, so the actor's start skips those faults."""
    import anyio

    async def nothing() -> None:
        await anyio.sleep(0)

    backend = os.environ.get("ACTORSUP_BACKEND", "trio")
    anyio.run(nothing, backend=backend)


_slot: tuple[int, bytes] | None = None  # (address, the template's own padded cookie) in its environment block


def _find_cookie_slot() -> None:
    """Where this process's cookie sits in its environment block (once: /proc reads are not lean)."""
    global _slot
    with open("/proc/self/environ", "rb") as f:
        block = f.read()
    if block.startswith(_ENV_KEY):
        at = 0
    else:
        at = block.find(b"\0" + _ENV_KEY) + 1
        if at == 0:
            raise RuntimeError("the template was started without a tree cookie")
    start = at + len(_ENV_KEY)
    end = block.index(b"\0", start)
    with open("/proc/self/stat", "rb") as f:
        env_start = int(f.read().rpartition(b")")[2].split()[47])
    _slot = (env_start + start, block[start:end])


def _write_cookie(cookie: bytes | None) -> None:
    """Put ``cookie`` into this process's environment block (its padded slot); None: the template's own."""
    assert _slot is not None
    address, own = _slot
    value = own if cookie is None else cookie.ljust(len(own))
    if len(value) > len(own):
        raise RuntimeError("the tree cookie does not fit the template's slot")
    ctypes.memmove(address, value, len(value))


if __name__ == "__main__":
    main()
