"""Wiring for `actorsup run`: logging, supervisor, control server, signals."""

from __future__ import annotations

import gc
import signal
from pathlib import Path

import anyio
import msgspec
import structlog

from .._supervisor import Supervisor
from ..config import Config, SinkSpec
from ..control import ControlServer, socket_path_for
from ..logs import LogRouter, build_sinks, configure_supervisor_logging
from ..logs._sinks import Sink, StdoutSink
from . import _signals
from ._console import ConsoleSink, wants_console

__all__ = ["serve"]

log = structlog.get_logger()


class _Stop:
    """A stop request that may come before the supervisor exists, or while it starts."""

    def __init__(self) -> None:
        self.requested = False
        self._supervisor: Supervisor | None = None

    def request(self, signum: int) -> None:
        log.info("supervisor.signal", signal=signal.Signals(signum).name, action="graceful shutdown")
        self.requested = True
        if self._supervisor is not None:
            self._supervisor.shutdown_nowait()

    def attach(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor
        if self.requested:
            supervisor.shutdown_nowait()


async def serve(config: Config, socket_override: Path | None = None, log_format: str = "json") -> int:
    """Run a supervisor until SIGINT/SIGTERM or `actorsup shutdown`: exit status 0, or 3 once
    something critical gave up (``supervisor.give_up``)."""
    router = _router_with_sinks(config, log_format)
    stop = _Stop()
    status = 0
    try:
        async with anyio.create_task_group() as tg:
            # Signals first: from here on a SIGINT/SIGTERM is a graceful stop, whatever is starting.
            await tg.start(_handle_signals, stop, router)
            if (early := _signals.take()) is not None:
                stop.request(early)
            await tg.start(router.run)
            if not stop.requested:
                status = await _run_supervisor(tg, config, router, stop, socket_override, log_format)
            tg.cancel_scope.cancel()
    finally:
        await router.aclose()
    return status


def _console_stdout(sinks: list[Sink], log_format: str) -> list[Sink]:
    """The stdout sinks rendered for people when ``log_format`` asks for it."""
    if not wants_console(log_format):
        return sinks
    return [ConsoleSink(sink.spec) if type(sink) is StdoutSink else sink for sink in sinks]


def _router_with_sinks(config: Config, log_format: str = "json") -> LogRouter:
    """The log router, with every event of building its sinks delivered through them.

    A sink may log while it is built (a spool folder it cannot use): those events
    go through a staging router and are then replayed, so they reach the sinks as
    JSON like any other, instead of structlog's default console line on stdout.
    """
    staging = LogRouter([], ring_size=10_000)
    configure_supervisor_logging(staging)
    sinks = _console_stdout(list(build_sinks(config.logs.sinks)), log_format)
    router = LogRouter(sinks, ring_size=config.supervisor.log_buffer)
    configure_supervisor_logging(router)
    for record in staging.tail():
        event = msgspec.json.decode(record.line)
        for key in _STAMPS:  # the router stamps its own
            event.pop(key, None)
        router.emit(event)
    return router


_STAMPS = ("seq", "id", "host")


async def _run_supervisor(tg: anyio.abc.TaskGroup, config: Config, router: LogRouter, stop: _Stop,
                          socket_override: Path | None, log_format: str = "json") -> int:
    """The supervisor's run; its exit status (3: something critical gave up)."""

    def sink_builder(specs: tuple[SinkSpec, ...]) -> list[Sink]:  # a reload's new sinks
        return _console_stdout(build_sinks(specs), log_format)

    supervisor = Supervisor(config, router=router, sink_builder=sink_builder)
    stop.attach(supervisor)  # a stop from now on ends the run once it has started
    # The control socket comes first: `status` works while actors start.
    await tg.start(ControlServer(supervisor, socket_override or socket_path_for(config)).serve)
    if stop.requested:
        return 0  # nothing to stop yet
    await tg.start(supervisor.run)
    # Everything imported and built at start-up lives for the whole run: move it
    # out of the collector's reach, so a full collection never stalls the loop
    # for tens of ms (measured: a 38 ms cron lateness spike without this).
    gc.collect()
    gc.freeze()
    await supervisor.closed.wait()
    return supervisor.exit_status


async def _handle_signals(stop: _Stop, router: LogRouter, *,
                          task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    try:
        with anyio.open_signal_receiver(*_signals.STOPS, signal.SIGHUP) as signals:
            task_status.started()
            async for signum in signals:
                if signum == signal.SIGHUP:
                    log.info("supervisor.sighup", action="reopening log files")
                    router.reopen()
                    continue
                stop.request(signum)
    finally:
        # asyncio's receiver leaves the defaults behind (SIGTERM kills, SIGINT raises):
        # until the process exits, a late signal is only recorded.
        _signals.defer()
