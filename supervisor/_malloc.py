"""Keep freed heap memory in the supervisor process (glibc only; a no-op elsewhere).

Rendering a child's output makes pieces of ~48 KiB that live until the file
sink's writer thread has written them. glibc hands the top of the heap back
to the kernel as soon as 128 KiB of it is free, so under a flood the memory
of one chunk came back as fresh pages for the next: zeroing and faulting
them in cost about as much as rendering into them. A higher trim threshold
keeps it.

Setting the trim threshold turns off glibc's adaptive mmap threshold, so it
is raised by hand: buffers up to :data:`MMAP_THRESHOLD` come from the heap
too. At the fixed default of 128 KiB, each 256 KiB pipe read would be mapped
afresh and faulted in page by page.

Even kept, the first flood of a new supervisor would fault in its in-flight
memory (the writer's 8 MiB limit, the chunk being rendered, the pipe reads:
~2,500 page faults, 4 ms of a 2-core machine). So the heap is also grown by
a reserve of touched pages at start, which the trim threshold then keeps.
RSS starts that much higher, at the level it would reach in the first flood
anyway, and stays bounded by it. (With an 8 MiB reserve, 1 run in 3 still
faulted ~1,000 pages.)

Only ``actorsup run`` calls this: a program that embeds the supervisor keeps
its own malloc settings.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["MMAP_THRESHOLD", "RESERVE", "TRIM_THRESHOLD", "keep_freed_memory"]

TRIM_THRESHOLD = 16 << 20  # bytes of free heap top kept before any is returned
MMAP_THRESHOLD = 1 << 20  # allocations below this come from the heap (pipe reads are 256 KiB)
RESERVE = 12 << 20  # a flood holds the writer's 8 MiB limit (_cwriter.c) in flight, and a chunk or two
_BLOCK = 64 << 10  # reserve allocations: below glibc's mmap threshold, so they come from the heap
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>


def keep_freed_memory(threshold: int = TRIM_THRESHOLD, reserve: int = RESERVE) -> bool:
    """Raise glibc's trim threshold to ``threshold`` bytes (and its mmap threshold), pre-fault ``reserve`` bytes of heap.

    False (and nothing done) where glibc's ``mallopt`` is not available.
    """
    if not 0 <= reserve <= threshold:
        raise ValueError(f"need 0 <= reserve <= threshold (got reserve={reserve}, threshold={threshold})")
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt to speak of)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if not (mallopt(_M_TRIM_THRESHOLD, threshold) and mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)):
        return False
    # b"\x01" * n writes every byte (bytes(n) would calloc, and glibc skips
    # zeroing fresh heap, so its pages would never be touched).
    blocks = [b"\x01" * _BLOCK for _ in range(reserve // _BLOCK)]
    del blocks  # freed into the heap top, which the threshold now keeps
    return True
