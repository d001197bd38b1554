"""keep_freed_memory: the supervisor keeps freed heap instead of faulting it in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

_PROBE = """
import sys
from supervisor._malloc import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
blocks = [b"\\x01" * (48 * 1024) for _ in range(200)]  # rendered pieces: 9.4 MiB
before = rss()
del blocks
print(kept, before - rss())
"""


def _returned(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True).stdout
    kept, returned = out.split()
    return kept, int(returned)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt, /proc")
class TestKeepFreedMemory:
    def test_freed_pieces_stay_mapped(self) -> None:
        """With the raised trim threshold, freeing 9 MiB of pieces returns none of it; without, most of it."""
        kept, returned = _returned("keep")
        if kept != "True":
            pytest.skip("not glibc: mallopt is not available")
        assert returned < 1 << 20
        assert _returned("default")[1] > 4 << 20
