"""The seed plan's governance, verification and AVN loggers as thin typed functions.

Each helper fixes the subsystem and action vocabulary and shapes the payload, then calls
:meth:`AuditSink.append` — any object with the ledger's ``append`` signature (the real
:class:`~grace.ledger.Ledger`, or a fake in tests). Values such as decision outcomes or
severities are plain strings here because the ledger sits below the packages that
define those enums; their ``StrEnum`` members pass straight through.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Protocol

from grace.ledger.entry import Receipt

__all__ = [
    "AuditSink",
    "Subsystem",
    "log_anomaly_detected",
    "log_constitutional_violation",
    "log_decision",
    "log_escalation",
    "log_healing_action",
    "log_security_violation",
    "log_verification_result",
]


class AuditSink(Protocol):
    """Where audit records go: the ledger's ``append``."""

    async def append(
        self,
        *,
        subsystem: str,
        actor: str,
        action: str,
        resource: str = "",
        result: str = "",
        payload: dict[str, Any] | None = None,
    ) -> Receipt: ...


class Subsystem(StrEnum):
    """The ledger's subsystems named by the seed plan's loggers."""

    GOVERNANCE = "governance"
    VERIFICATION = "verification"
    AVN = "avn"


def _extra(details: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(details) if details else {}


async def log_decision(
    sink: AuditSink,
    *,
    actor: str,
    action: str,
    resource: str,
    decision: str,
    request_id: str,
    reasons: Sequence[str] = (),
    risk_level: str | None = None,
    trust_score: float | None = None,
    violated_policies: Sequence[str] = (),
    details: Mapping[str, Any] | None = None,
) -> Receipt:
    """A governance decision (approved / rejected / requires_approval / …)."""
    return await sink.append(
        subsystem=Subsystem.GOVERNANCE,
        actor=actor,
        action=action,
        resource=resource,
        result=str(decision),
        payload={
            "event": "decision",
            "request_id": request_id,
            "reasons": list(reasons),
            "risk_level": None if risk_level is None else str(risk_level),
            "trust_score": trust_score,
            "violated_policies": list(violated_policies),
            **_extra(details),
        },
    )


async def log_constitutional_violation(
    sink: AuditSink,
    *,
    actor: str,
    action: str,
    resource: str,
    principle: str,
    severity: str,
    policy_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> Receipt:
    """A breach of a constitutional principle."""
    return await sink.append(
        subsystem=Subsystem.GOVERNANCE,
        actor=actor,
        action=action,
        resource=resource,
        result="violation",
        payload={
            "event": "constitutional_violation",
            "principle": str(principle),
            "severity": str(severity),
            "policy_id": policy_id,
            **_extra(details),
        },
    )


async def log_verification_result(
    sink: AuditSink,
    *,
    actor: str,
    target: str,
    status: str,
    confidence: float,
    safe_to_execute: bool,
    issues: Sequence[Mapping[str, Any]] = (),
    details: Mapping[str, Any] | None = None,
) -> Receipt:
    """The verdict of verifying code (verified / refuted / inconclusive / error)."""
    return await sink.append(
        subsystem=Subsystem.VERIFICATION,
        actor=actor,
        action="verify_code",
        resource=target,
        result=str(status),
        payload={
            "event": "verification_result",
            "confidence": confidence,
            "safe_to_execute": safe_to_execute,
            "issues": [dict(i) for i in issues],
            **_extra(details),
        },
    )


async def log_security_violation(
    sink: AuditSink,
    *,
    actor: str,
    resource: str,
    violation_type: str,
    severity: str,
    details: Mapping[str, Any] | None = None,
) -> Receipt:
    """A security violation found while verifying (dangerous construct, secret, …)."""
    return await sink.append(
        subsystem=Subsystem.VERIFICATION,
        actor=actor,
        action="security_violation",
        resource=resource,
        result=str(severity),
        payload={
            "event": "security_violation",
            "violation_type": str(violation_type),
            "severity": str(severity),
            **_extra(details),
        },
    )


async def log_anomaly_detected(
    sink: AuditSink,
    *,
    component: str,
    anomaly_id: str,
    anomaly_type: str,
    severity: str,
    score: float | None = None,
    details: Mapping[str, Any] | None = None,
) -> Receipt:
    """An anomaly the immune kernel detected in a component."""
    return await sink.append(
        subsystem=Subsystem.AVN,
        actor="immune_kernel",
        action="anomaly_detected",
        resource=component,
        result=str(severity),
        payload={
            "event": "anomaly_detected",
            "anomaly_id": anomaly_id,
            "anomaly_type": str(anomaly_type),
            "severity": str(severity),
            "score": score,
            **_extra(details),
        },
    )


async def log_healing_action(
    sink: AuditSink,
    *,
    component: str,
    anomaly_id: str,
    action: str,
    outcome: str,
    details: Mapping[str, Any] | None = None,
) -> Receipt:
    """A healing step and its outcome (executed, failed, rolled_back, blocked…)."""
    return await sink.append(
        subsystem=Subsystem.AVN,
        actor="immune_kernel",
        action=str(action),
        resource=component,
        result=str(outcome),
        payload={"event": "healing_action", "anomaly_id": anomaly_id, **_extra(details)},
    )


async def log_escalation(
    sink: AuditSink,
    *,
    component: str,
    reason: str,
    severity: str,
    anomaly_id: str | None = None,
    escalated_to: str = "human",
    details: Mapping[str, Any] | None = None,
) -> Receipt:
    """A hand-over to a human (healing failed, governance blocked it, breaker open…)."""
    return await sink.append(
        subsystem=Subsystem.AVN,
        actor="immune_kernel",
        action="escalate",
        resource=component,
        result=str(severity),
        payload={
            "event": "escalation",
            "reason": reason,
            "anomaly_id": anomaly_id,
            "escalated_to": escalated_to,
            **_extra(details),
        },
    )
