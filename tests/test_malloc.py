"""keep_freed_memory: the supervisor keeps freed heap instead of faulting it in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

_PROBE = """
import sys
import supervisor.app._serve  # what `actorsup run` has loaded when it frees pieces
from supervisor.app._malloc import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
blocks = [b"\\x01" * (48 * 1024) for _ in range(160)]  # rendered pieces: 7.5 MiB
before = rss()
del blocks
print(kept, before - rss())
"""


def _probe(mode: str) -> tuple[str, int]:
    """(kept, bytes returned to the kernel when 7.5 MiB of pieces are freed)."""
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True).stdout
    kept, returned = out.split()
    return kept, int(returned)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt, /proc")
class TestKeepFreedMemory:
    def test_freed_pieces_stay_mapped(self) -> None:
        """With the raised trim threshold, freeing 7.5 MiB of pieces returns none of it; without, most of it."""
        kept, returned = _probe("keep")
        if kept != "True":
            pytest.skip("not glibc: mallopt is not available")
        assert returned < 1 << 20
        assert _probe("default")[1] > 4 << 20

    def test_pipe_sized_buffers_come_from_the_heap(self) -> None:
        """10 MiB of 256 KiB reads, freed, then 100 more: those reuse the heap instead of mapping fresh pages.

        Setting the trim threshold fixes glibc's mmap threshold; left at its
        128 KiB default, each of these buffers would be mapped and faulted in
        afresh (64 faults each) once the heap has no free chunk that fits.
        """
        probe = (
            "import resource\n"
            "from supervisor.app._malloc import keep_freed_memory\n"
            "kept = keep_freed_memory()\n"
            "faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "held = [b'\\x01' * (256 * 1024) for _ in range(40)]\n"
            "del held\n"
            "start = faults()\n"
            "for _ in range(100):\n"
            "    chunk = b'\\x01' * (256 * 1024)\n"
            "    del chunk\n"
            "print(kept, faults() - start)\n"
        )
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
        kept, faulted = out.split()
        if kept != "True":
            pytest.skip("not glibc: mallopt is not available")
        assert int(faulted) < 64, f"{faulted} page faults: the buffers were mapped afresh"
