"""systemd notify datagrams, checked on a real datagram socket in tmp_path."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from fakeclock import FakeClock
from structlog.testing import capture_logs

from supervisor.app._sdnotify import SystemdNotifier


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    assert len(path) < 100, "AF_UNIX paths are limited to 108 bytes"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.setblocking(False)
        yield sock, path


def _received(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            return out


class TestSystemdNotifier:
    @pytest.mark.anyio
    async def test_noop_without_notify_socket(self) -> None:
        """Without NOTIFY_SOCKET nothing is sent and the watchdog loop returns at once."""
        notifier = SystemdNotifier(environ={"WATCHDOG_USEC": "1000000"})
        assert not notifier.enabled
        assert notifier.ready() is False
        assert notifier.watchdog_period is None
        with anyio.fail_after(1):
            await notifier.watchdog_loop()

    def test_ready_stopping_status(self, notify_socket: tuple[socket.socket, str]) -> None:
        """ready, status and stopping send the exact protocol datagrams."""
        sock, path = notify_socket
        notifier = SystemdNotifier(environ={"NOTIFY_SOCKET": path})
        assert notifier.ready("3 actors running") is True
        assert notifier.status("reloading\nconfig") is True
        assert notifier.stopping() is True
        assert _received(sock) == [
            b"READY=1\nSTATUS=3 actors running",
            b"STATUS=reloading config",
            b"STOPPING=1",
        ]

    def test_reloading_carries_monotonic_time(self, notify_socket: tuple[socket.socket, str]) -> None:
        """RELOADING=1 comes with MONOTONIC_USEC, as Type=notify-reload requires."""
        sock, path = notify_socket
        SystemdNotifier(environ={"NOTIFY_SOCKET": path}).reloading()
        (datagram,) = _received(sock)
        first, second = datagram.split(b"\n")
        assert first == b"RELOADING=1"
        assert second.startswith(b"MONOTONIC_USEC=") and int(second.split(b"=")[1]) > 0

    def test_abstract_socket(self) -> None:
        """An '@name' NOTIFY_SOCKET addresses the abstract namespace."""
        name = f"actorsup-test-{uuid.uuid4().hex}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind("\0" + name)
            sock.setblocking(False)
            assert SystemdNotifier(environ={"NOTIFY_SOCKET": "@" + name}).ready() is True
            assert _received(sock) == [b"READY=1"]

    def test_missing_socket_is_logged_not_raised(self, tmp_path: Path) -> None:
        """A vanished socket makes notify return False and log systemd.notify_failed."""
        notifier = SystemdNotifier(environ={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
        with capture_logs() as logs:
            assert notifier.ready() is False
        assert [e["event"] for e in logs] == ["systemd.notify_failed"]

    @pytest.mark.anyio
    async def test_watchdog_pings_at_half_the_period(self, notify_socket: tuple[socket.socket, str]) -> None:
        """WATCHDOG=1 goes out at once, then every WATCHDOG_USEC/2 on the clock."""
        sock, path = notify_socket
        clock = FakeClock()
        notifier = SystemdNotifier(environ={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"}, clock=clock)
        assert notifier.watchdog_period == 5.0
        async with anyio.create_task_group() as tg:
            tg.start_soon(notifier.watchdog_loop)
            await anyio.wait_all_tasks_blocked()
            assert _received(sock) == [b"WATCHDOG=1"]
            await clock.advance(4.999)
            assert _received(sock) == []
            await clock.advance(0.001)
            assert _received(sock) == [b"WATCHDOG=1"]
            await clock.advance(10)
            assert _received(sock) == [b"WATCHDOG=1", b"WATCHDOG=1"]
            assert clock.next_deadline == 1020.0
            tg.cancel_scope.cancel()

    @pytest.mark.parametrize(("watchdog_pid", "period"), [("ours", 1.5), ("1", None), ("", 1.5)])
    def test_watchdog_pid(self, watchdog_pid: str, period: float | None) -> None:
        """The watchdog is ours only when WATCHDOG_PID is unset or names this process."""
        watchdog_pid = str(os.getpid()) if watchdog_pid == "ours" else watchdog_pid  # ids stable across processes
        env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": watchdog_pid}
        assert SystemdNotifier(environ=env).watchdog_period == period

    @pytest.mark.parametrize("usec", ["0", "soon", ""])
    def test_bad_watchdog_usec_disables(self, usec: str) -> None:
        """A zero or non-numeric WATCHDOG_USEC turns the watchdog off instead of failing."""
        env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": usec}
        assert SystemdNotifier(environ=env).watchdog_period is None
