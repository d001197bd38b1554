"""Peer tools (supervisord, circus, APScheduler, ...) in their own venvs, and their processes.

A peer usually cannot share actorsup's venv: supervisord's import name is
``supervisor``, like ours. :func:`peer_python` creates a venv under
``benchmarks/.peers/<name>`` once, installs the pinned requirements with pip,
and reuses it on later runs as long as the requirements and the base
interpreter are unchanged (a stamp file records both). A file lock makes two
benchmarks that want the same peer at once wait for each other instead of
racing pip.

    from benchmarks._peers import peer_python, peer_bin, stop_tree

    py = peer_python("supervisord-4.3", ["supervisor>=4.3,<4.4"])
    supervisord = peer_bin("supervisord-4.3", "supervisord")

:func:`stop_tree` ends a process you started and everything below it,
signalling only processes whose (pid, create_time) identity is still the one
recorded, so a reused pid is never hit.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import psutil

from supervisor.exceptions import SupervisorError

__all__ = [
    "PEERS_DIR",
    "PeerSetupError",
    "descendants",
    "peer_bin",
    "peer_python",
    "stop_tree",
    "supervisord_head",
]

PEERS_DIR = Path(__file__).resolve().parent / ".peers"
_STAMP = "actorsup-peer.json"


class PeerSetupError(SupervisorError):
    """A peer venv could not be created or its requirements not installed."""

    def __init__(self, name: str, step: str, detail: str) -> None:
        self.name = name
        self.step = step
        self.detail = detail
        super().__init__(
            f"peer {name!r}: {step} failed: {detail.strip()[-800:]} "
            f"(delete {PEERS_DIR / name} and retry, or run the benchmark with --skip-peer)"
        )

    def __reduce__(self):  # picklable despite the custom __init__
        return (type(self), (self.name, self.step, self.detail))


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _base_python() -> str:
    # A venv made from inside a venv should still point at the real interpreter.
    return getattr(sys, "_base_executable", None) or sys.executable


def peer_python(
    name: str,
    requirements: Sequence[str],
    *,
    python: str | os.PathLike[str] | None = None,
    root: Path = PEERS_DIR,
    timeout: float = 600.0,
) -> Path:
    """Create or reuse the venv ``root/<name>`` holding ``requirements``; return its python.

    ``requirements`` are pip requirement strings (``"supervisor>=4.3,<4.4"``).
    ``python`` is the base interpreter (default: the one running this code).
    The venv is rebuilt from scratch when either differs from the last build.
    Raises :class:`PeerSetupError` when venv creation or pip fails.
    """
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"peer name must be a plain folder name (got {name!r})")
    base = str(python or _base_python())
    venv = root / name
    wanted = {"requirements": sorted(requirements), "python": base}
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if _stamp(venv) == wanted and _venv_python(venv).exists():
            return _venv_python(venv)
        shutil.rmtree(venv, ignore_errors=True)
        _run(name, "venv creation", [base, "-m", "venv", str(venv)], timeout)
        if requirements:
            _run(
                name,
                "pip install",
                [str(_venv_python(venv)), "-m", "pip", "install", "--quiet",
                 "--disable-pip-version-check", *requirements],
                timeout,
            )
        (venv / _STAMP).write_text(json.dumps(wanted, indent=2))
    return _venv_python(venv)


def peer_bin(name: str, script: str, *, root: Path = PEERS_DIR) -> Path:
    """The path of console script ``script`` in peer venv ``name`` (create it first)."""
    path = root / name / "bin" / script
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: call peer_python({name!r}, [...]) with the "
            f"requirement that provides {script!r} first"
        )
    return path


def _stamp(venv: Path) -> dict[str, object] | None:
    try:
        return json.loads((venv / _STAMP).read_text())
    except (OSError, ValueError):
        return None


def _run(name: str, step: str, argv: list[str], timeout: float) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerSetupError(name, step, str(exc)) from None
    if done.returncode != 0:
        raise PeerSetupError(name, step, done.stderr or done.stdout)


# --- processes -----------------------------------------------------------------
def descendants(pid: int) -> list[psutil.Process]:
    """Every live descendant of ``pid`` (empty if ``pid`` is gone).

    The returned objects carry the create_time psutil read now, so a later
    ``proc.kill()`` raises ``NoSuchProcess`` instead of hitting a reused pid.
    """
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def stop_tree(
    proc: subprocess.Popen[bytes] | subprocess.Popen[str],
    *,
    sig: int = signal.SIGTERM,
    timeout: float = 10.0,
    known: Iterable[psutil.Process] = (),
) -> list[str]:
    """Stop ``proc`` (which you started) gracefully, then make sure its tree is gone.

    Sends ``sig`` to ``proc``, waits up to ``timeout`` seconds for it to exit,
    then SIGKILLs it. Descendants seen before the signal, plus the ``known``
    processes (children you recorded earlier, which may have been re-parented
    since), that are still alive afterwards get SIGKILL too. Returns one line
    per process that had to be killed, so a benchmark can report a leak.
    """
    suspects = {p.pid: p for p in known}
    suspects.update((p.pid, p) for p in descendants(proc.pid))
    problems: list[str] = []
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            problems.append(f"pid {proc.pid} ignored signal {sig} for {timeout:g}s: killed")
            proc.kill()
            proc.wait()
    _, alive = psutil.wait_procs(list(suspects.values()), timeout=2)
    for child in alive:
        try:
            line = f"pid {child.pid} ({' '.join(child.cmdline())}) outlived it: killed"
            child.kill()  # psutil checks create_time first: a reused pid raises instead
        except psutil.NoSuchProcess:
            continue  # it ended on its own meanwhile
        problems.append(line)
    psutil.wait_procs(alive, timeout=2)
    return problems


def supervisord_head(*, loglevel: str = "info", extra: str = "") -> str:
    """The sections every benchmark's supervisord.conf shares, a template with ``{tmp}``
    (socket, log, pid file and child logs go there); ``extra``: more [supervisord] lines."""
    return f"""\
[unix_http_server]
file = {{tmp}}/supervisor.sock

[supervisorctl]
serverurl = unix://{{tmp}}/supervisor.sock

[supervisord]
nodaemon = true
logfile = {{tmp}}/supervisord.log
pidfile = {{tmp}}/supervisord.pid
childlogdir = {{tmp}}
loglevel = {loglevel}
{extra}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

"""
