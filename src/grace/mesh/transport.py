"""How routed events travel from ``emit`` to the handlers: the transport seam.

The mesh decides (validation, identity, audit, priority); a transport only carries. It
calls back :data:`Deliver` for each event it hands to this instance:

* ``subscriber=None``: deliver to every local handler of the event (in-memory transport);
* ``subscriber="<name>"``: deliver to that one local subscriber (a component id or a
  subscription name) — a broker transport keeps one consumer per subscriber, so an event
  is handled once per subscriber across all instances;
* ``final``: whether the transport will not deliver this event again. The mesh retries a
  failing handler a bounded number of times either way; only a final failure becomes a
  dead letter (otherwise the transport redelivers, e.g. JetStream after a NAK).

Deliver returns True when every handler succeeded: the transport may then acknowledge.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from grace.mesh.event import TriggerEvent
from grace.mesh.queue import EventQueue, QueueClosed

__all__ = ["Deliver", "MemoryTransport", "Transport"]

Deliver = Callable[[TriggerEvent, str | None, bool], Awaitable[bool]]
"""``await deliver(event, subscriber, final)`` → True if every handler succeeded."""


class Transport(Protocol):
    """Carries routed events to the instances that subscribe to them."""

    async def start(self, deliver: Deliver) -> None:
        """Begin handing events to ``deliver``."""
        ...

    async def send(self, event: TriggerEvent, *, priority: bool, wait: bool) -> bool:
        """Hand over a routed event; with ``wait=False`` return False instead of waiting
        for room. Raises :class:`~grace.mesh.queue.QueueClosed` once stopping."""
        ...

    async def attach(self, subscriber: str, subjects: Sequence[str], *, shared: bool) -> None:
        """Start consuming ``subjects`` for a local subscriber; ``shared`` subscribers are
        one consumer across all instances (handled once), others one per instance."""
        ...

    async def detach(self, subscriber: str) -> None:
        """Stop consuming for a local subscriber."""
        ...

    async def stop(self) -> None:
        """Refuse new events, deliver what was handed over, stop."""
        ...

    def depth(self) -> int:
        """Events handed over and not yet delivered (as far as this instance knows)."""
        ...


class MemoryTransport:
    """The embedded default: a bounded two-lane queue and a few worker tasks.

    Subscribers need no consumers here (``attach``/``detach`` do nothing): each event is
    delivered once to all local handlers, and a failure is final.
    """

    def __init__(self, *, capacity: int = 10_000, workers: int = 4) -> None:
        if workers < 1:
            raise ValueError(f"the memory transport needs at least 1 worker, got {workers}")
        self._queue: EventQueue[TriggerEvent] = EventQueue(capacity)
        self._worker_count = workers
        self._workers: list[asyncio.Task[None]] = []

    async def start(self, deliver: Deliver) -> None:
        """Start the workers (owned by this transport until :meth:`stop`)."""
        if self._workers:
            return
        self._workers = [
            asyncio.create_task(self._work(deliver), name=f"grace-mesh-worker-{i}")
            for i in range(self._worker_count)
        ]

    async def _work(self, deliver: Deliver) -> None:
        while True:
            try:
                event = await self._queue.get()
            except QueueClosed:
                return
            await deliver(event, None, True)

    async def send(self, event: TriggerEvent, *, priority: bool, wait: bool) -> bool:
        """Queue the event (waiting for room unless ``wait`` is False)."""
        if wait:
            await self._queue.put(event, priority=priority)
            return True
        if self._queue.closed:
            raise QueueClosed("the event queue is closed")
        return self._queue.put_nowait(event, priority=priority)

    async def attach(self, subscriber: str, subjects: Sequence[str], *, shared: bool) -> None:
        """Nothing to do: every local handler is reached through the mesh's routes."""

    async def detach(self, subscriber: str) -> None:
        """Nothing to do."""

    async def stop(self) -> None:
        """Close the queue and let the workers drain it."""
        self._queue.close()
        if self._workers:
            await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    def depth(self) -> int:
        """Events queued and not yet taken by a worker."""
        return len(self._queue)
