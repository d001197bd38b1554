"""Health checks: count consecutive failures, and run one check safely.

:class:`HealthTracker` is pure bookkeeping (like a Kubernetes liveness probe's
``failureThreshold``): it never looks at a clock. :class:`HealthProbe` runs a
user's ``health_check`` (sync or async) so that it can never block the event
loop and never outlive its timeout; the deadline is read from an injected
clock, so tests drive it without sleeping.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ..core._clock import Clock, MonotonicClock

__all__ = ["HealthCheck", "HealthProbe", "HealthResult", "HealthTracker"]

HealthCheck = Callable[[], "bool | Awaitable[bool | None] | None"]
HealthResult = tuple[bool, "str | None"]


class HealthTracker:
    """Count consecutive health-check failures against a threshold."""

    __slots__ = ("failures", "last_error", "threshold")

    def __init__(self, threshold: int) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ValueError(f"threshold must be an integer >= 1 (got {threshold!r})")
        self.threshold = threshold
        self.failures = 0
        self.last_error: str | None = None

    def record(self, ok: bool, error: str | None = None) -> bool:
        """Count one result; True exactly when this failure reaches the threshold.

        Further failures return False until :meth:`reset` or a success, so one
        incident triggers one restart.
        """
        if ok:
            self.failures = 0
            return False
        self.failures += 1
        self.last_error = error
        return self.failures == self.threshold

    def reset(self) -> None:
        """Forget past failures (call it when the checked thing restarts)."""
        self.failures = 0
        self.last_error = None


class HealthProbe:
    """Run one health check with a timeout, keeping sync checks off the loop.

    A sync check runs in a worker thread. If it overruns its timeout the thread
    cannot be killed, so it is abandoned, and until it returns every later call
    fails fast instead of piling up more stuck threads.
    """

    def __init__(self, check: HealthCheck, timeout: float, *, clock: Clock | None = None) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 (got {timeout!r})")
        self.check = check
        self.timeout = timeout
        self._clock = clock or MonotonicClock()
        self._is_async = inspect.iscoroutinefunction(check) or inspect.iscoroutinefunction(
            type(check).__call__  # an object whose __call__ is async
        )
        self._thread_busy = False
        self.answered = False  # the last call returned or raised (no timeout, not busy)

    @property
    def busy(self) -> bool:
        """True while a sync check's thread (maybe abandoned) has not returned."""
        return self._thread_busy

    async def __call__(self) -> HealthResult:
        """Run the check once: ``(True, None)`` or ``(False, "why")``."""
        self.answered = False
        if self._thread_busy:
            return False, "previous health check is still running"
        outcome: list[HealthResult] = []
        async with anyio.create_task_group() as tg:

            async def deadline() -> None:
                await self._clock.sleep_until(self._clock.now() + self.timeout)
                outcome.append((False, f"health check timed out after {self.timeout:g}s"))
                tg.cancel_scope.cancel()

            async def run() -> None:
                result = await self._run_once()
                self.answered = not outcome  # not if the deadline won the race
                outcome.append(result)
                tg.cancel_scope.cancel()

            tg.start_soon(deadline)
            tg.start_soon(run)
        return outcome[0]

    async def _run_once(self) -> HealthResult:
        try:
            if self._is_async:
                result: Any = await self.check()  # type: ignore[misc]
            else:
                result = await self._in_thread()
            if inspect.isawaitable(result):  # a sync callable that returned a coroutine
                result = await result
        except Exception as exc:  # a crashing check is a failed check, not a crash
            return False, f"{type(exc).__name__}: {exc}"
        if result is None or bool(result):
            return True, None
        return False, "health check returned False"

    async def _in_thread(self) -> Any:
        self._thread_busy = True
        started = False

        def call() -> Any:
            nonlocal started
            started = True
            try:
                return self.check()
            finally:  # only the thread knows when an abandoned check ends
                self._thread_busy = False

        try:
            return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
        finally:
            if not started:  # cancelled while waiting for a worker thread
                self._thread_busy = False
