"""Escalation: handing an incident to a human, on the record.

An escalation is a ledger entry (``log_escalation``: resource, reason, severity, incident
and anomaly, the approval request governance opened if any) and an ``avn.escalated``
event for operators; an optional ``notify`` hook pages someone (a webhook, a chat
message). The ledger entry comes first and must succeed: an escalation nobody can prove
happened did not happen. The event and the page are best effort, logged when they fail.

The kernel escalates on its own (governance blocked a step, the healing budget or a
breaker stopped it, every step failed), and the ``escalate_to_human`` playbook step
escalates through the same path, under governance like any step.
"""

from __future__ import annotations

import datetime as _dt
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import structlog

from grace.ledger.audit import AuditSink, log_escalation
from grace.types import Clock

__all__ = ["ESCALATION_EVENT", "Escalation", "Escalator", "EventSink"]

log = structlog.get_logger(__name__)

ESCALATION_EVENT: Final = "avn.escalated"


class EventSink(Protocol):
    """Where the kernel's events go: its mesh :class:`~grace.mesh.Publisher` handle."""

    async def emit(
        self, event_or_type: Any, payload: Mapping[str, Any] | None = None, **kw: Any
    ) -> object:
        """Emit an event of type ``event_or_type`` with ``payload``."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Escalation:
    """A hand-over to a human."""

    escalation_id: str
    resource: str
    severity: str
    reason: str
    at: _dt.datetime
    incident_id: str | None = None
    anomaly_id: str | None = None
    approval_id: str | None = None
    receipt_seq: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view."""
        return {
            "escalation_id": self.escalation_id,
            "resource": self.resource,
            "severity": self.severity,
            "reason": self.reason,
            "at": self.at.isoformat(),
            "incident_id": self.incident_id,
            "anomaly_id": self.anomaly_id,
            "approval_id": self.approval_id,
            "receipt_seq": self.receipt_seq,
            "details": dict(self.details),
        }


Notify = Callable[[Escalation], Awaitable[None]]


class Escalator:
    """Records escalations in the ledger and announces them."""

    def __init__(
        self,
        *,
        ledger: AuditSink,
        clock: Clock,
        events: EventSink | None = None,
        notify: Notify | None = None,
    ) -> None:
        self._ledger = ledger
        self._clock = clock
        self._events = events
        self._notify = notify
        self.count = 0

    async def escalate(
        self,
        *,
        resource: str,
        severity: str,
        reason: str,
        incident_id: str | None = None,
        anomaly_id: str | None = None,
        approval_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Escalation:
        """Record and announce an escalation (raises if the ledger refuses it)."""
        escalation_id = f"esc_{secrets.token_urlsafe(9)}"
        extra = {
            "escalation_id": escalation_id,
            "incident_id": incident_id,
            "approval_id": approval_id,
            **dict(details or {}),
        }
        receipt = await log_escalation(
            self._ledger,
            component=resource,
            reason=reason,
            severity=severity,
            anomaly_id=anomaly_id,
            details=extra,
        )
        escalation = Escalation(
            escalation_id=escalation_id,
            resource=resource,
            severity=severity,
            reason=reason,
            at=self._clock.now(),
            incident_id=incident_id,
            anomaly_id=anomaly_id,
            approval_id=approval_id,
            receipt_seq=receipt.seq,
            details=dict(details or {}),
        )
        self.count += 1
        log.warning("immune_escalated", resource=resource, reason=reason, incident=incident_id)
        if self._events is not None:
            try:
                await self._events.emit(ESCALATION_EVENT, escalation.to_dict(), resource=resource)
            except Exception as e:  # noqa: BLE001 - the ledger holds the escalation
                log.warning("immune_escalation_event_failed", error=repr(e))
        if self._notify is not None:
            try:
                await self._notify(escalation)
            except Exception as e:  # noqa: BLE001 - paging is best effort; the ledger has it
                log.warning("immune_escalation_notify_failed", error=repr(e))
        return escalation
