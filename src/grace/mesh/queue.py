"""A bounded two-lane event queue: priority events overtake, both lanes push back.

Invariants: at most ``capacity`` normal and ``capacity`` priority items are held (memory
is bounded whatever the producers do); ``get`` always returns a priority item when one is
queued; within a lane, order is FIFO. ``put`` waits for room in its lane (back-pressure),
``put_nowait`` returns False instead. ``close`` wakes every waiter; ``get`` then drains
what is left and raises :class:`QueueClosed` once empty.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

__all__ = ["EventQueue", "QueueClosed"]

T = TypeVar("T")


class QueueClosed(Exception):
    """The queue is closed (and, for ``get``, empty)."""


class EventQueue(Generic[T]):
    """Two bounded FIFO lanes; the priority lane is always served first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"queue capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._lanes: tuple[deque[T], deque[T]] = (deque(), deque())  # (normal, priority)
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (
            deque(),
            deque(),
        )  # waiting for room in the (normal, priority) lane
        self._closed = False

    def __len__(self) -> int:
        return len(self._lanes[0]) + len(self._lanes[1])

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def put_nowait(self, item: T, *, priority: bool = False) -> bool:
        """Queue ``item`` if its lane has room; False when full or closed."""
        lane = self._lanes[priority]
        if self._closed or len(lane) >= self.capacity:
            return False
        lane.append(item)
        _wake_one(self._getters)
        return True

    async def put(self, item: T, *, priority: bool = False) -> None:
        """Queue ``item``, waiting while its lane is full; :class:`QueueClosed` if closed."""
        lane = self._lanes[priority]
        while True:
            if self._closed:
                raise QueueClosed("the event queue is closed")
            if len(lane) < self.capacity:
                lane.append(item)
                _wake_one(self._getters)
                return
            await _wait(self._putters[priority])

    async def get(self) -> T:
        """The next item, priority lane first; waits while both lanes are empty."""
        while True:
            which = 1 if self._lanes[1] else 0
            lane = self._lanes[which]
            if lane:
                item = lane.popleft()
                _wake_one(self._putters[which])  # one slot freed in this lane
                return item
            if self._closed:
                raise QueueClosed("the event queue is closed and empty")
            await _wait(self._getters)

    def close(self) -> None:
        """Refuse new items and wake every waiter; queued items can still be taken."""
        self._closed = True
        _wake_all(self._getters)
        _wake_all(self._putters[0])
        _wake_all(self._putters[1])


async def _wait(waiters: deque[asyncio.Future[None]]) -> None:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiters.append(future)
    try:
        await future
    except asyncio.CancelledError:
        if future.done() and not future.cancelled():
            _wake_one(waiters)  # woken, then cancelled: hand the wake-up on
        elif future in waiters:
            waiters.remove(future)
        raise


def _wake_one(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        future = waiters.popleft()
        if not future.done():
            future.set_result(None)
            return


def _wake_all(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        future = waiters.popleft()
        if not future.done():
            future.set_result(None)
