"""The quickstart's actors: see README.md, "Writing actors"."""

from __future__ import annotations

import random

import anyio

from actors import Actor, CronTask


class Fetcher(Actor):
    """A long-lived actor; its constructor takes the config's ``args``."""

    def __init__(self, url: str, every: float = 1.0) -> None:
        self.url = url
        self.every = every
        self.fetched = 0

    async def run(self) -> None:  # cancelled on stop
        while True:
            self.fetched += 1
            self.log.info("fetched", url=self.url, items=3, total=self.fetched)
            await anyio.sleep(self.every)

    async def health_check(self) -> bool:  # optional; a sync def works too
        return self.fetched > 0


class Flaky(Actor):
    """Crashes two seconds after each start, to show restarts and ``failed``."""

    async def run(self) -> None:
        self.log.info("flaky.up")
        print("print() output reaches the log pipeline as an event too")
        await anyio.sleep(2)
        raise RuntimeError("simulated bug")


class Ticker(Actor):
    """Runs as kind = "task": inside the supervisor, no process of its own."""

    async def run(self) -> None:
        while True:
            self.log.debug("tick")
            await anyio.sleep(5)


class Cleanup(CronTask):
    """One execution per ``run()``; the interval can also come from the config."""

    interval = 5.0

    async def run(self) -> None:
        self.log.info("cleaned", removed=random.randint(0, 4))
