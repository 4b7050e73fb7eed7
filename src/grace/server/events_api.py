"""Publishing events over HTTP: the caller's verified identity is the event's source.

``POST /v1/events`` emits through a mesh publisher handle bound to the authenticated
principal — whatever ``source`` the body might claim does not exist in its schema. The
principal must be listed as a publisher of the event type in the routing config, like any
component. A principal whose id is already a component's identity (``governance_gate``,
``immune_kernel``…) is refused: principals cannot take over components' identities.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from grace.errors import EventError, MeshError
from grace.governance.model import Principal
from grace.mesh import Publisher, TriggerEvent, TriggerMesh, validate_pattern
from grace.server._roles import READ_ROLES, requires

__all__ = ["STREAM_ROLES", "router"]

STREAM_ROLES: Final = READ_ROLES
"""Who may watch the live event stream (events can say a lot about the system)."""
_STREAM_BUFFER: Final = 1000
_KEEPALIVE_S: Final = 15.0

router = APIRouter(prefix="/v1", tags=["events"])


class EventBody(BaseModel):
    """An event to emit."""

    model_config = ConfigDict(extra="forbid")

    event_type: str = Field(min_length=1, max_length=256)
    payload: dict[str, Any] = Field(default_factory=dict)
    resource: str = Field(default="", max_length=1024)


def _publisher(request: Request) -> Publisher:
    services = getattr(request.app.state, "governance", None)
    mesh = getattr(services, "mesh", None)
    principal = getattr(request.state, "principal", None)
    if not isinstance(mesh, TriggerMesh) or not isinstance(principal, Principal):
        raise HTTPException(503, "event publishing is not available")
    handles: dict[str, Publisher] = request.app.state.http_publishers
    handle = handles.get(principal.id)
    if handle is None:
        try:
            handle = mesh.publisher(principal.id)
        except MeshError as e:
            raise HTTPException(409, f"principal {principal.id!r} cannot publish: {e}") from e
        handles[principal.id] = handle
    return handle


@router.post("/events")
async def emit_event(
    body: EventBody, publisher: Annotated[Publisher, Depends(_publisher)]
) -> dict[str, Any]:
    """Emit an event as the calling principal; 403 if the mesh blocks it."""
    try:
        result = await publisher.try_emit(body.event_type, body.payload, resource=body.resource)
    except EventError as e:
        raise HTTPException(422, str(e)) from e
    answer = {
        "event_id": result.event.event_id,
        "source": result.event.source,
        "routed": result.routed,
        "reason": str(result.reason) if result.reason else None,
        "detail": result.detail,
    }
    if not result.routed:
        status = 503 if result.reason in ("queue_full", "stopped") else 403
        raise HTTPException(status, answer)
    return answer


@router.get("/events/stream")
async def stream_events(
    request: Request,
    pattern: Annotated[str, Query(max_length=256, description="Subject pattern")] = ">",
) -> StreamingResponse:
    """Server-sent events: every routed event matching ``pattern``, as CloudEvents JSON.

    Needs one of the roles in :data:`STREAM_ROLES`. A slow reader loses the oldest events
    (a ``dropped`` event says how many), never the server's memory.
    """
    services = getattr(request.app.state, "governance", None)
    mesh = getattr(services, "mesh", None)
    principal = getattr(request.state, "principal", None)
    if not isinstance(mesh, TriggerMesh) or not isinstance(principal, Principal):
        raise HTTPException(503, "the event stream is not available")
    requires(STREAM_ROLES)(request)
    try:
        validate_pattern(pattern)
    except MeshError as e:
        raise HTTPException(422, str(e)) from e
    queue: asyncio.Queue[TriggerEvent] = asyncio.Queue(_STREAM_BUFFER)
    dropped = 0

    async def handler(event: TriggerEvent) -> None:
        nonlocal dropped
        if queue.full():
            queue.get_nowait()
            dropped += 1
        queue.put_nowait(event)

    subscription = mesh.subscribe(
        pattern, handler, name=f"sse-{principal.id}-{secrets.token_hex(4)}"
    )

    async def body() -> AsyncIterator[bytes]:
        nonlocal dropped
        try:
            yield b": grace event stream\nretry: 2000\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), _KEEPALIVE_S)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if dropped:
                    yield f"event: dropped\ndata: {dropped}\n\n".encode()
                    dropped = 0
                yield (
                    b"id: "
                    + event.event_id.encode()
                    + b"\nevent: grace\ndata: "
                    + event.to_json()
                    + b"\n\n"
                )
        finally:
            with contextlib.suppress(Exception):
                subscription.cancel()

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )
