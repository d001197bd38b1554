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

A new supervisor still faults its in-flight memory in once, during its
first flood (the writer's 8 MiB limit, and a chunk or two); a heap reserve
faulted in at start would save those few milliseconds of one flood for 12
MiB of RSS held from the start, so there is none: the benchmark warms both
supervisors up instead.

Only ``actorsup run`` calls this: a program that embeds the supervisor keeps
its own malloc settings.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_memory"]

TRIM_THRESHOLD = 16 << 20  # bytes of free heap top kept before any is returned
MMAP_THRESHOLD = 1 << 20  # allocations below this come from the heap (pipe reads are 256 KiB)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>


def keep_freed_memory(threshold: int = TRIM_THRESHOLD) -> bool:
    """Raise glibc's trim threshold to ``threshold`` bytes, and its mmap threshold; False where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt to speak of)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_TRIM_THRESHOLD, threshold) and mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
