"""The immune kernel over HTTP: stats, incidents with their healing timeline, controls.

Reading needs one of the roles operator, auditor, admin or approver; closing an incident
or resetting a resource's breaker needs operator or admin (recorded in the ledger by the
kernel with the caller as actor). An incident's timeline is read from the ledger (the
``avn`` entries naming it), so it is the record, not a cache.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from grace.errors import ImmuneError
from grace.governance.model import Principal
from grace.immune import ImmuneKernel, IngressControls
from grace.ledger import Ledger
from grace.server._roles import READ_ROLES, WRITE_ROLES, requires

__all__ = ["router"]

router = APIRouter(prefix="/v1/immune", tags=["immune"])

_TIMELINE_SCAN: Final = 2000
"""How many recent ``avn`` ledger entries the timelines are read from."""
_INCIDENT_FIELDS: Final = (
    "incident_id",
    "resource",
    "anomaly_type",
    "severity",
    "state",
    "opened_at",
    "last_seen_at",
    "first_anomaly_id",
    "anomaly_count",
    "held_count",
    "healing_runs",
    "playbook",
    "resolved_at",
    "reason",
    "approval_id",
)
"""What an incident record holds (``Incident.to_dict``), as the kernel writes it."""


def _runtime(request: Request) -> Any:
    return getattr(request.app.state, "governance", None)


def _kernel(request: Request) -> ImmuneKernel:
    kernel = getattr(_runtime(request), "immune", None)
    if not isinstance(kernel, ImmuneKernel):
        raise HTTPException(503, "the immune kernel is not running (ENABLE_AVN_IMMUNE?)")
    return kernel


_reader = requires(READ_ROLES)
_writer = requires(WRITE_ROLES)


Kernel = Annotated[ImmuneKernel, Depends(_kernel)]
Reader = Annotated[Principal, Depends(_reader)]
Writer = Annotated[Principal, Depends(_writer)]


class ActionBody(BaseModel):
    """Why an operator closes an incident or resets a breaker."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000)


@router.get("/stats")
async def stats(kernel: Kernel, _: Reader) -> dict[str, Any]:
    """The kernel's figures (the seed's keys plus governance blocks and recovery time)."""
    return kernel.get_stats()


@router.get("/incidents")
async def incidents(
    request: Request,
    kernel: Kernel,
    _: Reader,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Active incidents first, then the most recent closed ones, each with its timeline
    (the ledger's ``avn`` entries for it, oldest first).

    The ledger is the record, and in a scaled-out deployment it is shared: incidents opened
    by other instances are read from their latest ledger entry, this instance's own from
    the kernel (which knows them first-hand).
    """
    own = kernel.incidents.active()
    seen = {i.incident_id for i in own}
    own += [i for i in kernel.incidents.history(limit) if i.incident_id not in seen]
    records, timelines = await _from_ledger(getattr(_runtime(request), "ledger", None))
    merged = {i.incident_id: i.to_dict() for i in own}
    for incident_id, record in records.items():
        merged.setdefault(incident_id, record)
    # Active (unresolved) first, newest first within each group.
    active = [r for r in merged.values() if r.get("resolved_at") is None]
    closed = [r for r in merged.values() if r.get("resolved_at") is not None]
    active.sort(key=lambda r: str(r.get("opened_at", "")), reverse=True)
    closed.sort(key=lambda r: str(r.get("resolved_at", "")), reverse=True)
    shown = (active + closed)[:limit]
    return {
        "incidents": [
            {**record, "timeline": timelines.get(str(record["incident_id"]), [])}
            for record in shown
        ]
    }


async def _from_ledger(
    ledger: object,
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Each incident's latest recorded state and its timeline, from recent ``avn`` entries."""
    if not isinstance(ledger, Ledger):
        return {}, {}
    page = await ledger.query(subsystem="avn", limit=_TIMELINE_SCAN, newest_first=True)
    records: dict[str, dict[str, Any]] = {}
    timelines: dict[str, list[dict[str, Any]]] = {}
    for entry in reversed(page.entries):  # oldest first: later states overwrite earlier ones
        incident_id = entry.payload.get("incident_id")
        if not isinstance(incident_id, str):
            continue
        if "state" in entry.payload and "opened_at" in entry.payload:
            records[incident_id] = {k: entry.payload.get(k) for k in _INCIDENT_FIELDS}
        timelines.setdefault(incident_id, []).append(
            {
                "seq": entry.seq,
                "at": entry.timestamp.isoformat(),
                "action": entry.action,
                "result": entry.result,
                "actor": entry.actor,
                "detail": {
                    k: v
                    for k, v in entry.payload.items()
                    if k in ("reason", "step", "executor", "decision_seq", "detail", "error")
                },
            }
        )
    return records, timelines


@router.post("/incidents/{incident_id}/close")
async def close_incident(
    incident_id: str, body: ActionBody, kernel: Kernel, caller: Writer
) -> dict[str, Any]:
    """Close an incident by hand (e.g. after a human fixed it)."""
    try:
        incident = await kernel.close_incident(incident_id, actor=caller.id, reason=body.reason)
    except ImmuneError as e:
        status = 404 if kernel.incidents.get(incident_id) is None else 409
        raise HTTPException(status, str(e)) from e
    return incident.to_dict()


@router.post("/breakers/{resource}/reset")
async def reset_breaker(
    resource: str, body: ActionBody, kernel: Kernel, caller: Writer
) -> dict[str, Any]:
    """Reset a resource's healing circuit breaker so the kernel may heal it again."""
    reset = await kernel.reset_breaker(resource, actor=caller.id, reason=body.reason)
    return {"resource": resource, "reset": reset}


@router.get("/controls")
async def controls(request: Request, _: Reader) -> dict[str, Any]:
    """Ingress controls in force: quarantines, open circuit breakers, rate limits."""
    held = getattr(_runtime(request), "controls", None)
    if not isinstance(held, IngressControls):
        raise HTTPException(503, "ingress controls are not available")
    return {
        "controls": [
            {
                "kind": str(c.kind),
                "pattern": c.pattern,
                "reason": c.reason,
                "actor": c.actor,
                "set_at": c.set_at.isoformat(),
                "rate_per_s": c.rate_per_s,
                "burst": c.burst,
                "until": c.until.isoformat() if c.until else None,
            }
            for c in held.active()
        ]
    }
