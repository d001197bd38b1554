"""systemd's notify protocol (``sd_notify``), without libsystemd.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a datagram socket
path, or ``@name`` for an abstract one); with ``WatchdogSec=`` it also passes
``WATCHDOG_USEC`` and expects ``WATCHDOG=1`` more often than that. Outside
systemd every method is a no-op, so callers never need to check.

Each message opens its own datagram socket, as ``sd_notify`` does: a few
messages a minute do not justify a long-lived descriptor to close.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

import structlog

from ..core._clock import Clock, MonotonicClock

__all__ = ["SYSTEMD_ENV", "SystemdNotifier"]

log = structlog.get_logger("actorsup.systemd")

# Meant for the supervisor alone: strip them from actors' environments, or a
# child could report READY=1 or pet the watchdog on the supervisor's behalf.
SYSTEMD_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class SystemdNotifier:
    """Send READY/STOPPING/STATUS/WATCHDOG to systemd when it is listening."""

    def __init__(self, environ: Mapping[str, str] = os.environ, clock: Clock | None = None) -> None:
        path = environ.get("NOTIFY_SOCKET", "")
        if path.startswith("@"):  # abstract namespace socket
            path = "\0" + path[1:]
        self.address: str | None = path or None
        self.watchdog_usec = self._watchdog_usec(environ)
        self._clock = clock or MonotonicClock()

    @property
    def enabled(self) -> bool:
        """True when systemd gave us a socket to notify."""
        return self.address is not None

    @property
    def watchdog_period(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when off."""
        if self.address is None or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False if not sent."""
        if self.address is None:
            return False
        message = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)  # a full queue drops one ping; it never stalls the loop
                sock.sendto(message, self.address)
        except OSError as exc:
            log.warning("systemd.notify_failed", message=message.decode(), error=str(exc))
            return False
        log.debug("systemd.notify", message=message.decode())
        return True

    def ready(self, status: str | None = None) -> bool:
        """All actors have started: ``READY=1`` (with an optional STATUS line)."""
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        """A reload has begun (for ``Type=notify-reload``); send :meth:`ready` when done."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000  # the protocol wants CLOCK_MONOTONIC
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        """Set the one-line status ``systemctl status`` shows."""
        return self.notify("STATUS=" + text.replace("\n", " "))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    async def watchdog_loop(self) -> None:
        """Ping at start + k x WATCHDOG_USEC/2 until cancelled; returns at once if off."""
        period = self.watchdog_period
        if period is None:
            return
        log.info("systemd.watchdog", period=period)
        deadline = self._clock.now()
        while True:
            self.watchdog()
            # After a stall, ping once and resume the rhythm instead of bursting.
            deadline = max(deadline + period, self._clock.now())
            await self._clock.sleep_until(deadline)

    @staticmethod
    def _watchdog_usec(environ: Mapping[str, str]) -> int | None:
        raw = environ.get("WATCHDOG_USEC")
        if not raw:
            return None
        try:
            usec = int(raw)
        except ValueError:
            log.warning("systemd.watchdog_ignored", reason=f"WATCHDOG_USEC is not an integer: {raw!r}")
            return None
        if usec <= 0:
            return None
        pid = environ.get("WATCHDOG_PID")
        if pid and pid.strip() != str(os.getpid()):
            return None  # the watchdog is meant for another process
        return usec
