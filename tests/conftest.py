"""Shared fixtures: both anyio backends, and a guard against leaked processes."""

from __future__ import annotations

import contextlib
import os

import psutil
import pytest
import structlog


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


def _descendants() -> dict[int, float]:
    me = psutil.Process(os.getpid())
    found = {}
    for proc in me.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            found[proc.pid] = proc.create_time()
    return found


@pytest.fixture(autouse=True)
def no_leaked_processes():
    """Fail the test if it leaves a child process (or grandchild) behind."""
    before = _descendants()
    yield
    leaked = {}
    for pid, created in _descendants().items():
        if before.get(pid) == created:
            continue
        try:
            proc = psutil.Process(pid)
            # A zombie still being reaped by a finished runtime is gone already.
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            leaked[pid] = " ".join(proc.cmdline())
        except psutil.NoSuchProcess:
            continue
    if leaked:
        _, alive = psutil.wait_procs([psutil.Process(p) for p in leaked if psutil.pid_exists(p)], timeout=2)
        still = {p.pid: leaked[p.pid] for p in alive}
        for proc in alive:  # end only what this test started
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        if still:
            pytest.fail(f"test leaked processes: {still}")


@pytest.fixture(autouse=True)
def reset_structlog():
    """Each test starts from structlog's default configuration."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
