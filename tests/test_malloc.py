"""keep_freed_memory: the supervisor keeps freed heap instead of faulting it in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

from supervisor._malloc import keep_freed_memory

_PROBE = """
import resource, sys
from supervisor._malloc import keep_freed_memory
mode = sys.argv[1]
kept = keep_freed_memory(reserve=int(sys.argv[2])) if mode == "keep" else None
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
start = faults()
blocks = [b"\\x01" * (48 * 1024) for _ in range(160)]  # rendered pieces: 7.5 MiB
faulted = faults() - start
before = rss()
del blocks
print(kept, before - rss(), faulted)
"""


def _probe(mode: str, reserve: int = 0) -> tuple[str, int, int]:
    """(kept, bytes returned to the kernel on free, page faults while allocating 7.5 MiB)."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode, str(reserve)], capture_output=True, text=True, check=True
    ).stdout
    kept, returned, faulted = out.split()
    return kept, int(returned), int(faulted)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt, /proc")
class TestKeepFreedMemory:
    def test_freed_pieces_stay_mapped(self) -> None:
        """With the raised trim threshold, freeing 7.5 MiB of pieces returns none of it; without, most of it."""
        kept, returned, _ = _probe("keep")
        if kept != "True":
            pytest.skip("not glibc: mallopt is not available")
        assert returned < 1 << 20
        assert _probe("default")[1] > 4 << 20

    def test_reserve_is_faulted_in_up_front(self) -> None:
        """With an 8 MiB reserve, the first 7.5 MiB of pieces need almost no page faults; without, ~1,900."""
        kept, _, faulted = _probe("keep", 8 << 20)
        if kept != "True":
            pytest.skip("not glibc: mallopt is not available")
        cold = _probe("keep", 0)[2]
        assert cold > 1500  # 7.5 MiB is 1,920 pages
        assert faulted < 100, f"{faulted} page faults despite the reserve (without it: {cold})"

    def test_pipe_sized_buffers_come_from_the_heap(self) -> None:
        """10 MiB of 256 KiB reads, freed, then 100 more: those reuse the heap instead of mapping fresh pages.

        Setting the trim threshold fixes glibc's mmap threshold; left at its
        128 KiB default, each of these buffers would be mapped and faulted in
        afresh (64 faults each) once the heap has no free chunk that fits.
        """
        probe = (
            "import resource\n"
            "from supervisor._malloc import keep_freed_memory\n"
            "kept = keep_freed_memory(reserve=0)\n"
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

    def test_reserve_must_fit_under_the_threshold(self) -> None:
        with pytest.raises(ValueError, match=r"need 0 <= reserve <= threshold \(got reserve=2, threshold=1\)"):
            keep_freed_memory(threshold=1, reserve=2)
