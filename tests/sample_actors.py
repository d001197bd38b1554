"""Actors used by the real-process tests."""

from __future__ import annotations

import ctypes
import logging
import os
import subprocess
import sys
import time

import anyio

from actors import Actor, CronTask


class Steady(Actor):
    async def run(self) -> None:
        self.log.info("steady.up")
        await anyio.sleep_forever()


class CrashOnce(Actor):
    """Raises on the first life (marker file absent), then runs steadily."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    async def run(self) -> None:
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            raise RuntimeError("boom on first life")
        self.log.info("crashonce.second_life")
        await anyio.sleep_forever()


class BlockLoop(Actor):
    """Blocks its event loop after a short delay, on the first life only."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    async def run(self) -> None:
        if os.path.exists(self.marker):
            self.log.info("blockloop.second_life")
            await anyio.sleep_forever()
        open(self.marker, "w").close()
        await anyio.sleep(0.3)
        self.log.info("blockloop.blocking")
        time.sleep(3600)


class LinesThenExit(Actor):
    """Writes N lines through every path, then dies by os._exit."""

    def __init__(self, n: int) -> None:
        self.n = n

    async def run(self) -> None:
        std = logging.getLogger("thirdparty")
        for i in range(self.n):
            self.log.info("line", i=i)
        print("printed line")
        std.warning("stdlib line")
        os.write(1, b"raw fd1 line\n")
        os.write(2, b"raw fd2 line\n")
        os._exit(7)


class Grandparent(Actor):
    """Starts a grandchild that would live forever, and reports its pid."""

    async def run(self) -> None:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        self.log.info("grandchild.started", grandchild=child.pid)
        await anyio.sleep_forever()


class GarbageWriter(Actor):
    """Writes bytes that are not a frame onto the channel fd."""

    async def run(self) -> None:
        await anyio.sleep(0.2)
        os.write(int(sys.argv[1]), b"\xff\xff\xff\xffGARBAGE")
        await anyio.sleep_forever()


class LogsThenGarbage(Actor):
    """Logs one event, then at once writes bytes that are not a frame onto the channel fd."""

    async def run(self) -> None:
        await anyio.sleep(0.05)
        self.log.info("garbage.next", pid=os.getpid())
        os.write(int(sys.argv[1]), b"\xff\xff\xff\xffGARBAGE")
        await anyio.sleep_forever()


class IgnoresSigterm(Actor):
    async def run(self) -> None:
        import signal

        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.log.info("ignores.up")
        while True:
            time.sleep(0.05)  # keeps the loop busy too, but beats stop: a hard case
            await anyio.sleep(0)


class Segfault(Actor):
    async def run(self) -> None:
        ctypes.string_at(0)


class Completes(Actor):
    async def run(self) -> None:
        self.log.info("completes.done")


class SlowInit(Actor):
    """Takes longer to construct than its start_timeout allows."""

    def __init__(self, seconds: float) -> None:
        time.sleep(seconds)

    async def run(self) -> None:
        await anyio.sleep_forever()


class CronRaisesOnce(CronTask):
    """Raises on its first run, succeeds afterwards."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    async def run(self) -> None:
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            raise ValueError("first run fails")
        self.log.info("cron.sample.ok")


class CronDies(CronTask):
    """Kills its own interpreter: os._exit or a segfault through ctypes."""

    def __init__(self, how: str) -> None:
        self.how = how

    async def run(self) -> None:
        if self.how == "exit":
            os._exit(9)
        ctypes.string_at(0)


class CronSlow(CronTask):
    async def run(self) -> None:
        self.log.info("cron.slow.begin")
        await anyio.sleep(3600)


class CronFinally(CronTask):
    """A long run whose ``finally`` logs, to show that a stop cancelled it gracefully."""

    async def run(self) -> None:
        self.log.info("cron.finally.begin")
        try:
            await anyio.sleep(3600)
        finally:
            self.log.info("cron.finally.ran")


class CronOk(CronTask):
    async def run(self) -> None:
        self.log.info("cron.sample.ok")


class Allocates(Actor):
    """Grows its memory by 20 MiB a beat until something stops it."""

    async def run(self) -> None:
        hoard = []
        self.log.info("allocates.up")
        while True:
            hoard.append(bytearray(20 * 1024 * 1024))
            await anyio.sleep(0.1)


class Flooder(Actor):
    """Logs debug events as fast as it can; an info mark every ``mark`` events."""

    def __init__(self, mark: int = 50_000) -> None:
        self.mark = mark

    async def run(self) -> None:
        log = self.log
        i = 0
        while True:
            i += 1
            log.debug("flood", i=i)
            if not i % self.mark:
                log.info("flood.mark", i=i)
            if not i % 2000:
                await anyio.sleep(0)  # its own beats run; the supervisor must keep up


class ForkLogs(Actor):
    """Forks (no exec); the forked process logs once and exits. Then the actor logs too."""

    async def run(self) -> None:
        pid = os.fork()
        if pid == 0:
            self.log.info("fork.child_logged", child=os.getpid())
            os._exit(0)
        os.waitpid(pid, 0)
        self.log.info("fork.parent_logged", child=pid)
        await anyio.sleep_forever()


class BusyInC(Actor):
    """Says so, then spends hours in one C call: no bytecode boundary, so no Python signal handler runs."""

    async def run(self) -> None:
        self.log.info("busy.computing")
        sum(range(10**13))


_DAEMON = """
import os, sys, time
if os.fork():
    os._exit(0)
os.setsid()
if os.fork():
    os._exit(0)
os.write(1, b"%d\\n" % os.getpid())
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
time.sleep(3600)
"""


class Escapees(Actor):
    """Leaves its process group two ways: a setsid child, and a double-forked setsid daemon."""

    async def run(self) -> None:
        sleeper = [sys.executable, "-c", "import time; time.sleep(3600)"]
        session_child = subprocess.Popen(sleeper, start_new_session=True)
        starter = subprocess.Popen([sys.executable, "-c", _DAEMON], stdout=subprocess.PIPE)
        assert starter.stdout is not None
        daemon = int(starter.stdout.readline())
        starter.wait()
        self.log.info("escapees.started", session_child=session_child.pid, daemon=daemon)
        await anyio.sleep_forever()


class HugeLog(Actor):
    """Logs one event of ``mib`` MiB (over the 32 MiB frame limit), then a small one, then runs on."""

    def __init__(self, mib: int = 40) -> None:
        self.mib = mib

    async def run(self) -> None:
        self.log.info("huge.event", blob="x" * (self.mib << 20), small=1)
        logging.getLogger("thirdparty").warning("huge stdlib %s", "y" * (self.mib << 20))
        self.log.info("huge.after")
        await anyio.sleep_forever()


class HugeError(Actor):
    """Raises an exception whose message alone is ``mib`` MiB."""

    def __init__(self, mib: int = 40) -> None:
        self.mib = mib

    async def run(self) -> None:
        raise ValueError("z" * (self.mib << 20))


class ForkLogsPid(Actor):
    """Forks twice deep (no exec); each fork logs through structlog and stdlib logging."""

    async def run(self) -> None:
        pid = os.fork()
        if pid == 0:
            grandchild = os.fork()
            if grandchild == 0:
                self.log.info("fork.grandchild_logged", me=os.getpid())
                os._exit(0)
            os.waitpid(grandchild, 0)
            self.log.info("fork.child_logged", me=os.getpid())
            print("fork.child_printed")
            logging.getLogger("thirdparty").warning("fork.child_stdlib")
            os._exit(0)
        os.waitpid(pid, 0)
        self.log.info("fork.parent_logged", me=os.getpid())
        print("fork.parent_printed")
        await anyio.sleep_forever()


class Instance(Actor):
    """Logs its instance index (instances = N), then runs steadily."""

    async def run(self) -> None:
        self.log.info("instance.up", instance=self.instance)
        await anyio.sleep_forever()


class ExitsAtOnce(Actor):
    """Fails as soon as it runs: exit status 3 from run()."""

    async def run(self) -> None:
        raise SystemExit(3)


class SlowStop(Actor):
    """Takes a second to clean up after a graceful stop."""

    async def run(self) -> None:
        try:
            self.log.info("slowstop.up")
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(1.0)


class CleanEnvDaemon(Actor):
    """A double-forked setsid daemon that execs with an empty environment: it carries no tree cookie."""

    async def run(self) -> None:
        sleep = '[sys.executable, "-c", "import time; time.sleep(3600)"]'
        code = _DAEMON.replace("time.sleep(3600)", f"os.execve(sys.executable, {sleep}, {{}})")
        starter = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        assert starter.stdout is not None
        daemon = int(starter.stdout.readline())
        starter.wait()
        self.log.info("cleanenv.started", daemon=daemon)
        await anyio.sleep_forever()


class HealthChecked(Actor):
    """Defines health_check(); with a long health_interval its first result comes much later."""

    async def run(self) -> None:
        await anyio.sleep_forever()

    async def health_check(self) -> bool:
        return True


class SyncHealthSlow(Actor):
    """A plain-def health_check() that blocks for 0.4 s and fails: it must run off the loop, beats go on."""

    async def run(self) -> None:
        await anyio.sleep_forever()

    def health_check(self) -> bool:
        time.sleep(0.4)  # blocking on purpose: a thread must carry it, never the event loop
        return False


class SignalState(Actor):
    """Logs the signal mask and the ignored signals it started with, from /proc/self/status."""

    async def run(self) -> None:
        with open("/proc/self/status") as status:
            fields = dict(line.split(":\t", 1) for line in status if line.startswith(("SigBlk", "SigIgn")))
        self.log.info("signals", blocked=int(fields["SigBlk"], 16), ignored=int(fields["SigIgn"], 16))
        await anyio.sleep_forever()


class OpenFilesLimit(Actor):
    """Logs the soft and hard open-files limits it started with."""

    async def run(self) -> None:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.log.info("open_files", soft=soft, hard=hard)
        await anyio.sleep_forever()
