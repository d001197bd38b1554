"""RayDriverBackend with a real driver process that cannot connect: each problem is one line, bounded."""

from __future__ import annotations

import sys
import time

import anyio
import pytest

from supervisor.config._schema import RaySettings
from supervisor.ray import _driverclient
from supervisor.ray._backend import RayUnavailable
from supervisor.ray._driverclient import RayDriverBackend
from tests.raycluster import driver_env, needs_ray

pytestmark = pytest.mark.anyio

LOCAL = RaySettings(address="local", namespace="test", connect_timeout=60)


async def test_refused_address_is_one_line() -> None:
    """A HOST:PORT where nothing listens fails at once with the reason, and run raises it."""
    settings = RaySettings(address="127.0.0.1:9", connect_timeout=5)
    backend = RayDriverBackend(settings, env=driver_env())
    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        with pytest.raises(RayUnavailable) as info:
            await tg.start(backend.run)
    assert str(info.value) in (
        "could not reach Ray at 127.0.0.1:9: Connection refused",
        "Ray is not installed: pip install 'actorsup[ray]'",  # without the extra: the first problem
    )
    assert time.monotonic() - started < 5 + _driverclient.INIT_MARGIN


@needs_ray
async def test_silent_address_is_bounded_by_connect_timeout() -> None:
    """A port that accepts but never speaks Ray gives one line after connect_timeout, not a hang."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as silent:
        port = silent.extra(anyio.abc.SocketAttribute.local_port)
        backend = RayDriverBackend(RaySettings(address=f"127.0.0.1:{port}", connect_timeout=3), env=driver_env())
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(silent.serve, _hold)
            with pytest.raises(RayUnavailable) as info:
                await tg.start(backend.run)
            took = time.monotonic() - started
            tg.cancel_scope.cancel()
    assert str(info.value) == f"could not reach Ray at 127.0.0.1:{port} within 3 s (connect_timeout)"
    assert 3 <= took < 3 + _driverclient.INIT_MARGIN


async def _hold(stream: anyio.abc.SocketStream) -> None:
    async with stream:
        await anyio.sleep_forever()


async def test_ray_not_installed() -> None:
    """Without Ray, the driver's first answer names the extra."""
    code = "import sys; sys.modules['ray'] = None; from supervisor.ray._driver import main; main()"
    backend = RayDriverBackend(LOCAL, command=[sys.executable, "-c", code], env=driver_env())
    async with anyio.create_task_group() as tg:
        with pytest.raises(RayUnavailable, match=r"^Ray is not installed: pip install 'actorsup\[ray\]'$"):
            await tg.start(backend.run)
