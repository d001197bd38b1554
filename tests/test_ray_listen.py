"""Where the Ray hosts dial back to when ``[ray] listen`` is not set."""

from __future__ import annotations

import pytest

from supervisor.config._schema import RaySettings
from supervisor.ray._spawner import listen_address


def test_listen_wins() -> None:
    """An explicit listen is used as given, its port too."""
    assert listen_address(RaySettings(address="10.0.0.5:6379", listen="127.0.0.2:7300")) == ("127.0.0.2", 7300)
    assert listen_address(RaySettings(address="auto", listen="127.0.0.3")) == ("127.0.0.3", 0)


def test_local_ray_listens_on_loopback() -> None:
    """A private Ray runs on this machine: loopback, any port."""
    assert listen_address(RaySettings(address="local")) == ("127.0.0.1", 0)


def test_joined_cluster_uses_the_address_that_reaches_its_head() -> None:
    """HOST:PORT: the local address the kernel routes to that head from (loopback for a loopback head)."""
    assert listen_address(RaySettings(address="127.0.0.1:6379")) == ("127.0.0.1", 0)


def test_auto_uses_the_head_in_ray_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """"auto": the head named by RAY_ADDRESS decides, as it does for the driver, not this machine's outward IP."""
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert listen_address(RaySettings(address="auto")) == ("127.0.0.1", 0)
