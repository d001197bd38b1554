"""Actors for the log-pipeline end-to-end tests (imported by child processes)."""

from __future__ import annotations

import os
import sys

from actors import Actor


class FloodThenExit(Actor):
    """Logs ``n`` structured events, then dies by os._exit without any flush."""

    def __init__(self, n: int = 10_000) -> None:
        self.n = n

    async def run(self) -> None:
        for i in range(self.n):
            self.log.info("flood", i=i)
        os._exit(3)


class RawOutput(Actor):
    """Writes a 100 KiB line, binary junk, a traceback and a partial last line to the fds."""

    async def run(self) -> None:
        os.write(1, b"A" * (100 * 1024) + b"\n")
        os.write(1, b"junk \xff\xfe\x00 \xc3( end\n")
        os.write(2, b"Traceback (most recent call last):\n")
        os.write(2, b'  File "job.py", line 1, in <module>\n    1 / 0\n')
        os.write(2, b"ZeroDivisionError: division by zero\n")
        os.write(1, b"no newline at exit")
        sys.stdout.flush()
        os._exit(0)


class Ticker(Actor):
    """Prints ``tick N`` to stdout every 2 ms, N counting from 0, until stopped."""

    async def run(self) -> None:
        import anyio

        i = 0
        while True:
            os.write(1, b"tick %d\n" % i)
            i += 1
            await anyio.sleep(0.002)
