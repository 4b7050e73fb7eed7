"""Reading anomalies out of mesh events: the kernel's untrusted boundary.

Payloads are validated with pydantic; anything wrong raises :class:`ImmuneError` with a
message naming the event and the field, which the kernel counts as a rejection (it never
crashes the kernel, and it is never retried into a dead letter).

``anomaly.detected`` payload (the seed's shape)::

    {"type": "latency_spike", "severity": "high", "score": 0.93,
     "baseline": 120.0, "current": 480.0, ...}            # extra keys become details

``type`` may also be spelt ``anomaly_type``. The resource is the event's ``resource``, or
the payload's ``resource``/``component``. ``security.event`` payloads carry one of the
security types and default to ``high`` severity. Who reported the anomaly is the event's
``source`` — the mesh stamps the publisher's identity there.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from grace.errors import ImmuneError
from grace.immune.taxonomy import SECURITY_TYPES, Anomaly, AnomalyType, Severity, check_resource
from grace.mesh.event import TriggerEvent

__all__ = ["MAX_DETAIL_BYTES", "anomaly_from_event", "security_anomaly_from_event"]

MAX_DETAIL_BYTES: Final = 8 * 1024
"""Details beyond this are dropped (the ledger keeps a note that they were)."""


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    anomaly_type: AnomalyType = Field(alias="type")
    severity: Severity | None = None
    score: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    resource: str | None = Field(default=None, max_length=200)
    component: str | None = Field(default=None, max_length=200)


def _payload(event: TriggerEvent) -> _Payload:
    data = dict(event.payload)
    if "type" not in data and "anomaly_type" in data:
        data["type"] = data.pop("anomaly_type")
    try:
        return _Payload.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        if where == "type" and first["type"] == "enum":
            message = (
                f"unknown anomaly type {data.get('type')!r} "
                f"(known: {', '.join(t.value for t in AnomalyType)})"
            )
        else:
            message = first["msg"]
        raise ImmuneError(f"{event.event_type} {event.event_id}: {where}: {message}") from e


def _details(payload: _Payload, event: TriggerEvent) -> dict[str, Any]:
    extra = dict(payload.model_extra or {})
    try:
        size = len(orjson.dumps(extra))
    except (TypeError, orjson.JSONEncodeError):
        size = MAX_DETAIL_BYTES + 1
    if size > MAX_DETAIL_BYTES:
        return {"details_dropped": f"{size} bytes exceed {MAX_DETAIL_BYTES}"}
    return extra


def _resource(payload: _Payload, event: TriggerEvent) -> str:
    resource = event.resource or payload.resource or payload.component
    if not resource:
        raise ImmuneError(
            f"{event.event_type} {event.event_id}: no resource (set the event's resource "
            "or the payload's 'resource')"
        )
    try:
        return check_resource(resource)
    except ValueError as e:
        raise ImmuneError(f"{event.event_type} {event.event_id}: {e}") from e


def _build(event: TriggerEvent, payload: _Payload, default_severity: Severity) -> Anomaly:
    return Anomaly(
        anomaly_id=event.event_id,
        anomaly_type=payload.anomaly_type,
        severity=payload.severity or default_severity,
        resource=_resource(payload, event),
        detected_at=event.timestamp,
        source=event.source,
        score=payload.score,
        details=_details(payload, event),
        event_id=event.event_id,
    )


def anomaly_from_event(event: TriggerEvent) -> Anomaly:
    """The anomaly an ``anomaly.detected`` event reports (medium severity by default)."""
    return _build(event, _payload(event), Severity.MEDIUM)


def security_anomaly_from_event(event: TriggerEvent) -> Anomaly:
    """The anomaly a ``security.event`` reports: a security type, high severity by default."""
    payload = _payload(event)
    if payload.anomaly_type not in SECURITY_TYPES:
        raise ImmuneError(
            f"{event.event_type} {event.event_id}: type {payload.anomaly_type} is not a "
            f"security anomaly type ({', '.join(sorted(SECURITY_TYPES))})"
        )
    return _build(event, payload, Severity.HIGH)
