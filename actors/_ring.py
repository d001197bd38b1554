"""A byte ring in shared memory: the child's frames reach the supervisor without a syscall each.

The supervisor creates the ring (a memfd of :data:`HEADER` + capacity bytes),
passes the fd to the child, and both map it. After the Hello, every frame the
child sends goes through the ring: the child copies it in and publishes the
new write position; the supervisor copies out what is there and publishes its
read position. Once the child's logging call has returned, the event sits in
memory the supervisor maps, so it survives ``os._exit`` or SIGKILL of the
child exactly as a socket buffer would; the supervisor drains the ring after
the child's channel reaches EOF.

Waking the reader: before the supervisor waits on the channel socket it sets
``parked``; a writer that finds ``parked`` set clears it and sends a one-frame
doorbell on the socket. A flood therefore costs a syscall per drain, not per
event. Each side stores its position, then issues a full fence (a lock
round-trip, which is an atomic instruction) before reading the other side's
flag, so a doorbell cannot be lost between the check and the wait.

A full ring blocks the writer (backpressure, as a full socket buffer did): it
sets ``writer_waiting`` and sleeps on a futex on the read position, which the
reader wakes after it has made room. Without ``futex`` (not Linux) it polls.

Layout: write position (u64) at 0, read position (u64) at 8, parked (u32) at
16, writer_waiting (u32) at 20; data from :data:`HEADER`. Positions only grow;
the byte at position p lives at ``HEADER + p % capacity``.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import threading
import time
from collections.abc import Callable
from typing import ClassVar

__all__ = ["HEADER", "RingError", "SharedRing", "create_ring_fd", "ring_supported"]

HEADER = 64
_WRITE, _READ, _PARKED, _WAITING = 0, 8, 16, 20
_WAIT_SLICE = 0.1  # a futex wait is re-checked this often: no wake-up can be missed for long

_fence_lock = threading.Lock()


def _fence() -> None:
    # A lock round-trip is an atomic read-modify-write: a full memory barrier on x86
    # and arm64, which keeps our store ahead of our next load of the other side's word.
    _fence_lock.acquire()
    _fence_lock.release()


class RingError(ValueError):
    """The ring's positions make no sense (the child scribbled on its header)."""


def ring_supported() -> bool:
    return hasattr(os, "memfd_create")


def create_ring_fd(capacity: int) -> int:
    """A new memfd holding an empty ring of ``capacity`` bytes (a power of two)."""
    if capacity < 4096 or capacity & (capacity - 1):
        raise ValueError(f"ring capacity must be a power of two >= 4096 (got {capacity})")
    fd = os.memfd_create("actorsup-ring", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, HEADER + capacity)
        os.pwrite(fd, b"\x01", _PARKED)  # nobody reads yet: the first write rings (little-endian u32)
    except BaseException:
        os.close(fd)
        raise
    return fd


class _Futex:
    """FUTEX_WAIT / FUTEX_WAKE on a word of the shared mapping (Linux), else polling."""

    _NUMBERS: ClassVar[dict[str, int]] = {"x86_64": 202, "aarch64": 98, "arm64": 98}

    def __init__(self, address: int) -> None:
        self.address = ctypes.c_void_p(address)
        self._syscall = None
        number = self._NUMBERS.get(platform.machine())
        if number is not None and platform.system() == "Linux":
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                self._syscall = libc.syscall
                self._number = number
            except (OSError, AttributeError):
                self._syscall = None

    def wait(self, expected: int, timeout: float) -> None:
        if self._syscall is None:
            time.sleep(min(timeout, 0.0005))
            return
        spec = (ctypes.c_long * 2)(int(timeout), int((timeout % 1) * 1e9))
        # FUTEX_WAIT (0), not the private variant: the word is shared between processes.
        self._syscall(self._number, self.address, 0, ctypes.c_uint32(expected), spec, None, 0)

    def wake(self) -> None:
        if self._syscall is not None:
            self._syscall(self._number, self.address, 1, 1, None, None, 0)  # FUTEX_WAKE one


class SharedRing:
    """One side's view of a ring: the child writes, the supervisor reads."""

    def __init__(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        self.capacity = size - HEADER
        if self.capacity <= 0 or self.capacity & (self.capacity - 1):
            raise ValueError(f"not a ring: {size} bytes")
        self._mask = self.capacity - 1
        self._mm = mmap.mmap(fd, size)
        # The shared words, as ctypes views: each access is one aligned load or
        # store. (struct.pack_into zeroes the bytes before it writes them, so a
        # reader in the other process could see a position of 0.)
        self._w = ctypes.c_uint64.from_buffer(self._mm, _WRITE)
        self._r = ctypes.c_uint64.from_buffer(self._mm, _READ)
        self._parked = ctypes.c_uint32.from_buffer(self._mm, _PARKED)
        self._waiting = ctypes.c_uint32.from_buffer(self._mm, _WAITING)
        self._futex = _Futex(ctypes.addressof(self._r))
        self._write = self._w.value
        self._read = self._r.value

    # --- the child's side ---------------------------------------------------------
    def write(
        self, data: bytes, doorbell: Callable[[], object] | None = None,
        reader_alive: Callable[[], bool] | None = None, *, lazy: bool = False,
    ) -> bool:
        """Copy ``data`` in (blocking while the ring is full); True if the reader must be woken.

        ``lazy``: a parked reader stays parked (the next ordinary write wakes it),
        for frames the reader collects on its own schedule; only a write that
        wraps or waits for room still rings.

        When the ring is full and the reader is parked, ``doorbell()`` wakes it
        before the writer waits for room. While it waits, ``reader_alive()`` is
        asked between futex waits: once it says False the rest of ``data`` is
        dropped (nobody is left to read it). One writer at a time: the caller locks.
        """
        write = self._write
        start = write & self._mask
        end = start + len(data)
        # The common case: it fits, and not across the end of the ring.
        if end <= self.capacity and write + len(data) - self._r.value <= self.capacity:
            self._mm[HEADER + start : HEADER + end] = data
            if lazy:
                self._write = self._w.value = write + len(data)
                return False
            return self._publish(write + len(data))
        return self._write_slowly(data, doorbell, reader_alive)  # rare (a wrap, a full ring): rings as usual

    def _write_slowly(
        self, data: bytes, doorbell: Callable[[], object] | None, reader_alive: Callable[[], bool] | None
    ) -> bool:
        mm, capacity, mask, shared_read = self._mm, self.capacity, self._mask, self._r
        view = memoryview(data)
        done, total = 0, len(data)
        write = self._write
        while done < total:
            free = capacity - (write - shared_read.value)
            if free <= 0:
                if self._publish(write) and doorbell is not None:
                    doorbell()
                self._wait_for_room(write)
                if reader_alive is not None and write - shared_read.value >= capacity and not reader_alive():
                    return False
                continue
            count = min(free, total - done)
            start = write & mask
            first = min(count, capacity - start)
            mm[HEADER + start : HEADER + start + first] = view[done : done + first]
            if count > first:
                mm[HEADER : HEADER + count - first] = view[done + first : done + count]
            write += count
            done += count
        return self._publish(write)

    def _publish(self, write: int) -> bool:
        self._write = self._w.value = write
        _fence()
        if self._parked.value:
            self._parked.value = 0
            return True
        return False

    def _wait_for_room(self, write: int) -> None:
        self._waiting.value = 1
        _fence()
        read = self._r.value
        if write - read < self.capacity:
            return
        self._futex.wait(read & 0xFFFFFFFF, _WAIT_SLICE)

    # --- the supervisor's side ----------------------------------------------------
    def read(self) -> bytes:
        """Everything written since the last read (b"" if nothing); makes room for the writer."""
        mm = self._mm
        write = self._w.value
        read = self._read
        count = write - read
        if count == 0:
            return b""
        if count < 0 or count > self.capacity:
            raise RingError(f"ring positions out of range (write {write}, read {read})")
        start = read & self._mask
        first = min(count, self.capacity - start)
        data = mm[HEADER + start : HEADER + start + first]
        if count > first:
            data += mm[HEADER : HEADER + count - first]
        self._read = self._r.value = write
        _fence()
        if self._waiting.value:
            self._waiting.value = 0
            self._futex.wake()
        return data

    @property
    def pending(self) -> bool:
        """Written and not yet read."""
        return self._w.value != self._read

    def park(self) -> bool:
        """About to wait for the doorbell: True if data arrived meanwhile (do not wait then)."""
        self._parked.value = 1
        _fence()
        if self._w.value != self._read:
            self._parked.value = 0
            return True
        return False

    def close(self) -> None:
        del self._w, self._r, self._parked, self._waiting  # exported views block close()
        self._mm.close()
