"""In-process event bus: every state change is published here.

Subscribers get their own bounded memory stream. A subscriber that falls
behind loses events, and the count is reported on its next event as
``missed`` so that nothing is lost silently.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream
from anyio.streams.memory import MemoryObjectSendStream

__all__ = ["EventBus"]

Event = dict[str, Any]


class _Subscriber:
    __slots__ = ("missed", "send")

    def __init__(self, send: MemoryObjectSendStream[Event]) -> None:
        self.send = send
        self.missed = 0


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[_Subscriber] = []
        self._callbacks: list[Callable[[Event], None]] = []

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to every subscriber without ever blocking."""
        for callback in self._callbacks:
            callback(event)
        for sub in self._subscribers:
            item = event if not sub.missed else {**event, "missed": sub.missed}
            try:
                sub.send.send_nowait(item)
                sub.missed = 0
            except anyio.WouldBlock:
                sub.missed += 1
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

    def add_callback(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback(event)`` synchronously for each event; returns the remover."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback)

    @asynccontextmanager
    async def subscribe(self, buffer: int = 1000) -> AsyncIterator[ObjectReceiveStream[Event]]:
        send, receive = anyio.create_memory_object_stream[Event](buffer)
        sub = _Subscriber(send)
        self._subscribers.append(sub)
        try:
            async with send, receive:
                yield receive
        finally:
            self._subscribers.remove(sub)
