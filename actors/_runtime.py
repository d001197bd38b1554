"""What runs inside a child actor process.

``python -m actors._runtime FD [RINGFD]``: FD is the inherited channel socket,
RINGFD the shared-memory frame ring (:mod:`actors._ring`). The runtime says
Hello, receives Init, builds the actor, says Ready, then runs the actor's body
next to a heartbeat task, a health-check task and a channel reader. A
blocked event loop stops the beats, which is how the supervisor detects a
hang. EOF on the channel (the supervisor is gone) ends the process.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import TaskStatus

from ._base import Actor, CronTask
from ._channel import ChildChannel
from ._protocol import Beat, Exiting, Health, Init, Ready, RunDone, RunNow, Stop
from ._ring import SharedRing

__all__ = ["beat_delay", "main"]

_PR_SET_PDEATHSIG = 1


def beat_delay(now: float, interval: float) -> float:
    """Seconds from ``now`` to the next beat: the next multiple of ``interval``.

    ``now`` is CLOCK_MONOTONIC, which every process on the machine shares, so
    all children beat at the same instants and the supervisor handles a whole
    round of beats in one wake-up instead of one per actor (the idea behind
    systemd's timer coalescing). The delay never exceeds ``interval``, so the
    gap between two beats never does either.
    """
    return interval - (now % interval)


def _kill_own_group() -> None:
    """The supervisor is gone: take the whole process group (grandchildren too) down."""
    try:
        os.killpg(0, signal.SIGKILL)
    finally:
        os._exit(70)


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL us when the supervisor dies, even by SIGKILL.

    The kernel's own SIGKILL, not a signal with a Python handler: a handler
    runs only between bytecodes, so an actor inside one long C call
    (``sum(range(10**13))``, a regex, ``hashlib``) would outlive the
    supervisor. Grandchildren are not ours to chase here: every descendant
    carries the supervisor's tree cookie, and its reaper process kills them
    (see docs/GUARANTEES.md). A graceful stop is SIGTERM or a Stop frame.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: channel EOF still ends us
        return
    expected = os.environ.get("ACTORSUP_PARENT_PID")
    if expected and os.getppid() != int(expected):
        os._exit(70)  # the parent died before prctl took effect


def _load(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _preload() -> None:
    """Import what every actor needs while waiting for Init: a warm spare then
    starts an actor without paying for these imports inside its heartbeat window."""
    backend = os.environ.get("ACTORSUP_BACKEND")  # the supervisor's; Init may still pick the other
    if backend != "trio":
        import anyio._backends._asyncio
    if backend != "asyncio":
        import anyio._backends._trio  # noqa: F401
        import trio  # noqa: F401

    _import_structlog_without_rich()
    from . import _logging  # noqa: F401


def _import_structlog_without_rich() -> None:
    """Import structlog as if rich were not installed, then let actors import rich freely.

    structlog.dev and structlog.tracebacks import rich when it is there (the CLI's
    tables need it): 70 ms of a child's start-up, for console rendering a child
    never does (it sends JSON to the supervisor).
    """
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # makes `import rich` fail
    try:
        import structlog
        import structlog.processors  # noqa: F401
    finally:
        del sys.modules["rich"]


def _attach_ring(fd_text: str | None) -> SharedRing | None:
    """Map the ring the supervisor passed (its fd is closed: grandchildren must not get it)."""
    if fd_text is None:
        return None
    fd = int(fd_text)
    try:
        return SharedRing(fd)
    except (OSError, ValueError):
        return None  # the Hello says so, and the supervisor reads the socket instead
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv if argv is None else argv
    _die_with_parent()
    nice = os.environ.pop("ACTORSUP_NICE", "")
    if nice:  # below the supervisor, so a restart storm cannot starve its beats and control socket
        os.nice(int(nice))
    channel = ChildChannel(socket.socket(fileno=int(argv[1])), _attach_ring(argv[2] if len(argv) > 2 else None))
    channel.hello(os.getpid())
    _preload()
    from ._logging import actor_logger, configure_child_logging

    configure_child_logging(channel.send_log)  # before Init: a warm spare has it done when Init comes (~0.8 ms)
    init = channel.receive_blocking()  # a warm spare waits here; EOF retires it
    if not isinstance(init, Init):
        os._exit(0)  # supervisor gone, or a spare retired from the warm pool
    os.environ.update(init.env)
    if init.cwd:
        os.chdir(init.cwd)
    log = actor_logger(init.name)
    try:
        actor = _load(init.target)(**init.args)
        actor._bind(init.name, log, init.instance)
    except BaseException as exc:
        error = "".join(traceback.format_exception(exc))
        log.error("actor.init_failed", target=init.target, error=error)
        channel.send(Exiting(reason="error", error=error))
        os._exit(1)
    channel.send(Ready(has_health_check=_checks_health(actor)))
    code = anyio.run(_Runtime(channel, init, actor).main, backend=init.backend)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _checks_health(actor: Actor) -> bool:
    """It overrides health_check(): the runtime runs it and sends Health frames."""
    return type(actor).health_check is not Actor.health_check


class _Runtime:
    def __init__(self, channel: ChildChannel, init: Init, actor: Actor) -> None:
        self.channel = channel
        self.init = init
        self.actor = actor
        self.log = actor.log
        self.exit_code = 0

    async def main(self) -> int:
        async with anyio.create_task_group() as tg:
            self.tg = tg
            tg.start_soon(self._beat)
            tg.start_soon(self._read_channel)
            # The handlers are in place before run() starts, so an actor that sets
            # its own SIGTERM disposition in run() is not overridden afterwards.
            await tg.start(self._on_signals)
            if _checks_health(self.actor):
                tg.start_soon(self._health_loop)
            if self.init.mode == "actor":
                tg.start_soon(self._run_actor)
        return self.exit_code

    async def _beat(self) -> None:
        seq = 0
        lazy = self.init.lazy_beats
        while True:
            self.channel.send_beat(Beat(seq=seq, at=time.monotonic()), lazy=lazy)
            seq += 1
            await anyio.sleep(beat_delay(time.monotonic(), self.init.heartbeat_interval))

    async def _run_actor(self) -> None:
        try:
            await self.actor.run()
        except Exception as exc:
            error = "".join(traceback.format_exception(exc))
            self.log.error("actor.run_failed", error=error)
            self.channel.send(Exiting(reason="error", error=error))
            self.exit_code = 1
        else:
            self.channel.send(Exiting(reason="completed"))
        self.tg.cancel_scope.cancel()

    async def _read_channel(self) -> None:
        while True:
            frame = await self.channel.receive()
            if frame is None:  # EOF: the supervisor is gone; take grandchildren down too
                _kill_own_group()
            if isinstance(frame, Stop):
                self.tg.cancel_scope.cancel()
                return
            if isinstance(frame, RunNow):
                self.tg.start_soon(self._run_once, frame)

    async def _on_signals(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for _ in signals:
                self.tg.cancel_scope.cancel()  # graceful: run() sees cancellation
                return

    async def _run_once(self, request: RunNow) -> None:
        """One cron execution, reported back as a RunDone frame."""
        assert isinstance(self.actor, CronTask)
        started = time.monotonic()
        outcome, error = "ok", None
        try:
            with anyio.fail_after(request.timeout) if request.timeout else _nullscope():
                await self.actor._execute()
        except TimeoutError:
            outcome = "timeout"
        except Exception as exc:
            outcome = "error"
            error = "".join(traceback.format_exception(exc))
            self.log.error("cron.run.error", run_id=request.run_id, error=error)
        self.channel.send(
            RunDone(run_id=request.run_id, outcome=outcome, duration=time.monotonic() - started, error=error)
        )

    async def _health_loop(self) -> None:
        check: Callable[[], Any] = self.actor.health_check  # sync or async: a user's override
        while True:
            await anyio.sleep(self.init.health_interval)
            ok, error = True, None
            try:
                with anyio.fail_after(self.init.health_timeout):
                    if _is_async(check):
                        result = await check()
                    else:  # a sync check must never block the beat
                        result = await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
                ok = result is not False
                if not ok:
                    error = "health_check returned False"
            except TimeoutError:
                ok, error = False, f"health_check timed out after health_timeout={self.init.health_timeout:g}s"
            except Exception as exc:
                ok, error = False, f"{type(exc).__name__}: {exc}"
            self.channel.send(Health(ok=ok, error=error))


def _is_async(fn: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(fn)


class _nullscope:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    from ._fresh import start_fresh

    start_fresh()  # a forked child has this from its template (actors._template.main)
    main()
