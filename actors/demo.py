"""The embedded demo's actors: healthy, crashing, hanging, and a cron task."""

from __future__ import annotations

import os
import random
import time

import anyio

from ._base import Actor, CronTask


class Healthy(Actor):
    """Works steadily and reports progress."""

    async def run(self) -> None:
        done = 0
        while True:
            done += 1
            self.log.info("demo.work_done", items=done)
            await anyio.sleep(1.0)


class Crashy(Actor):
    """Crashes every few seconds, in a different way each time."""

    def __init__(self, every: float = 3.0) -> None:
        self.every = every

    async def run(self) -> None:
        self.log.info("demo.crashy_up", crash_in=self.every)
        print("crashy: print() output is captured as a structured event")
        await anyio.sleep(self.every)
        if random.random() < 0.5:
            raise RuntimeError("demo crash: simulated bug")
        os._exit(3)


class Hangs(Actor):
    """Blocks its event loop after a while; the supervisor notices the missing beats."""

    def __init__(self, after: float = 2.0) -> None:
        self.after = after

    async def run(self) -> None:
        await anyio.sleep(self.after)
        self.log.warning("demo.about_to_hang", seconds=3600)
        time.sleep(3600)  # blocks the loop: no more heartbeats


class Tick(CronTask):
    """A cron task: runs every 2 seconds."""

    interval = 2.0

    async def run(self) -> None:
        self.log.info("demo.tick")
