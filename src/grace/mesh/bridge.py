"""The legacy event bus, delegating to the mesh (seed plan phase 6, option A).

Code written against the old ``EventBus.publish(event_type, payload)`` /
``subscribe(event_type, handler)`` keeps working, but its events now pass the mesh's
pipeline under one verified identity, ``legacy_bus``: they are routed only where the
config lists that publisher, validated and audited like any other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from grace.mesh.event import TriggerEvent
from grace.mesh.mesh import EmitResult, Publisher, Subscription, TriggerMesh

__all__ = ["LEGACY_COMPONENT", "EventBus"]

LEGACY_COMPONENT: Final = "legacy_bus"

LegacyHandler = Callable[[Mapping[str, Any]], Awaitable[None]]


class EventBus:
    """``publish``/``subscribe`` by event type, as the seed's event bus offered."""

    def __init__(self, mesh: TriggerMesh, publisher: Publisher | None = None) -> None:
        self._mesh = mesh
        self._publisher = publisher or mesh.publisher(LEGACY_COMPONENT)
        self._subscriptions: list[Subscription] = []

    async def publish(
        self, event_type: str, payload: Mapping[str, Any] | None = None
    ) -> EmitResult:
        """Emit through the mesh as ``legacy_bus``."""
        return await self._publisher.emit(event_type, payload)

    def subscribe(self, event_type: str, handler: LegacyHandler) -> Subscription:
        """Call ``handler(payload_dict)`` for each routed event of the type (or pattern)."""

        async def deliver(event: TriggerEvent) -> None:
            await handler(
                {
                    **event.payload,
                    "_event_type": event.event_type,
                    "_source": event.source,
                    "_event_id": event.event_id,
                }
            )

        sub = self._mesh.subscribe(event_type, deliver, name=f"legacy:{event_type}")
        self._subscriptions.append(sub)
        return sub

    def close(self) -> None:
        """Cancel every subscription made through this bus."""
        for sub in self._subscriptions:
            sub.cancel()
        self._subscriptions.clear()
