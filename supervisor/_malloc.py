"""Keep freed heap memory in the supervisor process (glibc only; a no-op elsewhere).

Rendering a child's output makes pieces of ~48 KiB that live until the file
sink's writer thread has written them. glibc hands the top of the heap back
to the kernel as soon as 128 KiB of it is free, so under a flood the memory
of one chunk came back as fresh pages for the next: zeroing and faulting
them in cost about as much as rendering into them. A higher trim threshold
keeps it. Peak RSS does not change (what is allocated is bounded by the
writer's limit); RSS after a flood stays at its high-water mark.

Only ``actorsup run`` calls this: a program that embeds the supervisor keeps
its own malloc settings.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["keep_freed_memory"]

TRIM_THRESHOLD = 16 << 20  # bytes of free heap top kept before any is returned
_M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>


def keep_freed_memory(threshold: int = TRIM_THRESHOLD) -> bool:
    """Raise glibc's trim threshold to ``threshold`` bytes; False where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt to speak of)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_TRIM_THRESHOLD, threshold))
