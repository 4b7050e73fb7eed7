"""The governance vocabulary: requests, decisions, outcomes, risk, enforcement modes.

Names and values are the seed plan's (VOCABULARY.md): outcomes ``approved``,
``rejected``, ``requires_approval``, ``requires_parliament``; risk ``low`` … ``critical``;
enforcement ``off``, ``log``, ``critical``, ``enforce``.

Invariants: an :class:`ActionRequest` never carries a caller-chosen risk level that is
*lower* than the server's (``declared_risk`` can only raise it); a :class:`Decision` is
``allowed`` exactly when its enforced outcome lets the action run now.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

__all__ = [
    "ActionRequest",
    "Decision",
    "EnforcementMode",
    "EventPublisher",
    "Outcome",
    "Principal",
    "PrincipalKind",
    "Reason",
    "RiskLevel",
    "TrustSource",
]


class Outcome(StrEnum):
    """What the constitution says about an action."""

    APPROVED = "approved"
    REJECTED = "rejected"
    REQUIRES_APPROVAL = "requires_approval"
    REQUIRES_PARLIAMENT = "requires_parliament"
    """Approval by a quorum of distinct approvers."""


class RiskLevel(StrEnum):
    """How much harm an action can do; ordered."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for low … 3 for critical."""
        return _RISK_ORDER.index(self)

    def at_least(self, other: RiskLevel) -> RiskLevel:
        """The higher of the two."""
        return self if self.rank >= other.rank else other


_RISK_ORDER = (RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH, RiskLevel.CRITICAL)


class EnforcementMode(StrEnum):
    """How a decision is applied (the rollout: log → critical → enforce)."""

    OFF = "off"
    """No decisions are made."""
    LOG = "log"
    """Decide and record, never block: the would-be outcome is in the ledger."""
    CRITICAL = "critical"
    """Enforce high/critical risk and listed critical actions; log the rest."""
    ENFORCE = "enforce"


class PrincipalKind(StrEnum):
    """Who acts."""

    HUMAN = "human"
    AGENT = "agent"
    SERVICE = "service"
    SYSTEM = "system"


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """A verified identity (from credentials, never from a header the caller chose)."""

    id: str
    kind: PrincipalKind
    roles: frozenset[str] = frozenset()
    autonomy_tier: int = 0
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("a principal needs an id")
        if not 0 <= self.autonomy_tier <= 3:
            raise ValueError(f"autonomy tier must be 0..3, got {self.autonomy_tier}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionRequest:
    """Something a principal wants to do, as the gate sees it."""

    request_id: str
    principal: Principal
    action: str
    resource: str = ""
    context: Mapping[str, Any] = field(default_factory=dict)
    is_autonomous: bool = False
    declared_risk: RiskLevel | None = None
    """A risk the enforcement point asserts (e.g. a route's decorator); it can raise the
    registry's risk, never lower it."""
    source: str = "api"
    approval_id: str | None = None
    """An approval the caller presents for this exact request."""

    def __post_init__(self) -> None:
        if not self.request_id or not self.action:
            raise ValueError("an action request needs a request_id and an action")


@dataclass(frozen=True, slots=True, kw_only=True)
class Reason:
    """Why: a policy, the principle it protects, and words for a human."""

    message: str
    policy_id: str | None = None
    principle: str | None = None
    severity: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The gate's answer. A denial is a value, not an exception."""

    decision_id: str
    request_id: str
    outcome: Outcome
    """What the constitution decided."""
    allowed: bool
    """Whether the action may run now (after the enforcement mode)."""
    mode: EnforcementMode
    risk: RiskLevel
    reasons: tuple[Reason, ...] = ()
    trust_score: float | None = None
    approval_id: str | None = None
    """The approval request to wait for, or the approval that was consumed."""
    receipt_seq: int | None = None
    """The ledger entry recording this decision."""
    observed: tuple[Reason, ...] = ()
    """Log-mode rules that would have denied (they did not affect the outcome)."""
    error: str | None = None
    """Set when the gate could not decide (the outcome is then ``rejected``)."""
    decided_at: _dt.datetime | None = None

    def __bool__(self) -> bool:
        return self.allowed

    @property
    def violated_policies(self) -> tuple[str, ...]:
        """Policy ids among the reasons (the seed's ``violated_policies``)."""
        return tuple(r.policy_id for r in self.reasons if r.policy_id)

    @property
    def requires_human_approval(self) -> bool:
        """The seed's flag: the outcome asks for approval (single or quorum)."""
        return self.outcome in (Outcome.REQUIRES_APPROVAL, Outcome.REQUIRES_PARLIAMENT)


class TrustSource(Protocol):
    """Where principal/component trust comes from (the trust store implements it)."""

    async def score(self, subject_id: str) -> float:
        """Composite trust in [0, 1]."""
        ...


class EventPublisher(Protocol):
    """Where decisions are announced (the mesh's publisher handle implements it)."""

    async def emit(self, event_type: str, payload: Mapping[str, Any] | None = None, /) -> object:
        """Emit an event of ``event_type``."""
        ...
