"""Spawners: the Hello handshake, its timeout, and the warm spare pool."""

from __future__ import annotations

import os
import signal

import anyio
import psutil
import pytest

from supervisor.exceptions import HandshakeTimeout
from supervisor.process._spawn import ColdSpawner, WarmSpawner

pytestmark = pytest.mark.anyio


async def _until(predicate, timeout: float = 15.0) -> None:
    """Poll a cheap condition, bounded; the spawner has no event for these states."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


class TestColdSpawner:
    async def test_spawn_completes_hello(self) -> None:
        """A spawned child has said Hello with its pid and runs in its own process group."""
        spawner = ColdSpawner()
        child = await spawner.spawn(actor="a", start_timeout=20)
        try:
            assert child.hello is not None and child.hello.pid == child.pid
            assert os.getpgid(child.pid) == child.pid
            assert child.is_ours()
        finally:
            child.signal_group(signal.SIGKILL)
            await child.wait()
            await child.aclose()

    async def test_silent_child_is_a_handshake_timeout(self, tmp_path) -> None:
        """A child that never says Hello is killed and reaped, and the error names the setting."""
        fake_python = tmp_path / "python"
        fake_python.write_text("#!/bin/sh\nexec sleep 3600\n")
        fake_python.chmod(0o755)
        spawner = ColdSpawner(python=str(fake_python))
        with pytest.raises(HandshakeTimeout, match=r"^actor 'a': no Hello within start_timeout=0.5s$"):
            await spawner.spawn(actor="a", start_timeout=0.5)
        assert [p for p in psutil.Process().children(recursive=True) if "sleep" in p.name()] == []


class TestWarmSpawner:
    async def test_dead_spare_is_replaced_not_handed_out(self) -> None:
        """A spare that dies in the pool is reaped and replaced; spawn() returns a live child."""
        spawner = WarmSpawner(spares=1)
        async with anyio.create_task_group() as tg:
            await tg.start(spawner.run)
            await _until(lambda: len(spawner._pool) == 1)
            first = spawner._pool[0]
            os.kill(first.pid, signal.SIGKILL)
            await _until(lambda: len(spawner._pool) == 1 and spawner._pool[0] is not first)
            child = await spawner.spawn(actor="a", start_timeout=20)
            try:
                assert child is not first and child.returncode is None and child.is_ours()
            finally:
                child.signal_group(signal.SIGKILL)
                await child.wait()
                await child.aclose()
            tg.cancel_scope.cancel()
