"""The unified decision vocabulary: actions, inputs, what each input contributed.

Names are the seed plan's (VOCABULARY.md): actions ``execute``, ``pause``, ``reject``,
``escalate``, ``retry``, ``rollback``.

The inputs the engine needs from packages that are built elsewhere are named here as
small protocols: :class:`ImmuneState` (the immune kernel's view of a target) and, from
governance, ``TrustSource``. An input that could not be obtained is an
:class:`Unavailable` value: it blocks, it never approves.

Invariants: a :class:`UnifiedDecision` is ``allowed`` exactly when its action is
``execute``; its rationale names every input, in precedence order.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol

__all__ = [
    "INCIDENT_SEVERITIES",
    "Contribution",
    "DecisionAction",
    "ImmuneState",
    "Signal",
    "TargetState",
    "Unavailable",
    "UnifiedDecision",
]

INCIDENT_SEVERITIES: Final = ("info", "low", "medium", "high", "critical")
"""The immune kernel's severities, lowest first."""


class DecisionAction(StrEnum):
    """What to do with the proposed action."""

    EXECUTE = "execute"
    PAUSE = "pause"
    """Hold it; decide again when the blocking condition (a missing input, an incident, a
    quarantine) has passed."""
    REJECT = "reject"
    ESCALATE = "escalate"
    """A human decides (an approval request)."""
    RETRY = "retry"
    """An input failed transiently (e.g. verification could not run): try again."""
    ROLLBACK = "rollback"
    """Undo the target's last change instead (the immune kernel asked for it)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Unavailable:
    """An input that could not be obtained (error, timeout, not configured). Blocks."""

    reason: str

    def __post_init__(self) -> None:
        if not self.reason:
            raise ValueError("an unavailable input needs a reason")


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetState:
    """The immune kernel's view of a target (a component, a service)."""

    active_incident_severity: str | None = None
    """Severity of the worst open incident on the target (info … critical), or None."""
    quarantined: bool = False
    rollback_recommended: bool = False
    """The open incident follows a change the kernel wants rolled back."""
    incident_id: str | None = None

    def __post_init__(self) -> None:
        severity = self.active_incident_severity
        if severity is not None and severity not in INCIDENT_SEVERITIES:
            raise ValueError(
                f"incident severity must be one of {INCIDENT_SEVERITIES}, got {severity!r}"
            )


class ImmuneState(Protocol):
    """Where the immune state of targets comes from (the immune kernel implements it)."""

    async def target_state(self, target: str) -> TargetState:
        """The current state of ``target``; raise when it cannot be known."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Signal:
    """An extra input: a named observation and the action it calls for (None: no
    objection). E.g. a canary's error rate asking for ``rollback``."""

    name: str
    action: DecisionAction | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a signal needs a name")
        if self.action is DecisionAction.EXECUTE:
            raise ValueError("a signal can object (or not); it cannot ask to execute")


@dataclass(frozen=True, slots=True, kw_only=True)
class Contribution:
    """What one input said."""

    input: str
    """``governance``, ``verification``, ``immune``, ``trust`` or ``signal:<name>``."""
    available: bool
    action: DecisionAction | None
    """The action this input calls for; None when it does not object."""
    detail: str
    decisive: bool = False
    """This contribution decided the action."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "input": self.input,
            "available": self.available,
            "action": None if self.action is None else str(self.action),
            "detail": self.detail,
            "decisive": self.decisive,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class UnifiedDecision:
    """The engine's answer, with every input's contribution."""

    decision_id: str
    action: DecisionAction
    confidence: float
    rationale: tuple[Contribution, ...]
    target: str
    actor: str
    decided_at: _dt.datetime
    governance_decision_id: str | None = None
    verification_id: str | None = None
    approval_id: str | None = None
    """The approval to wait for (escalate), or the one that was granted and used."""
    receipt_seq: int | None = None
    """The ledger entry recording this decision."""
    error: str | None = None
    """Set when the decision could not be recorded (the action is then at most pause)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be within [0, 1], got {self.confidence}")

    def __bool__(self) -> bool:
        return self.allowed

    @property
    def allowed(self) -> bool:
        """Whether the action may run now."""
        return self.action is DecisionAction.EXECUTE

    @property
    def summary(self) -> str:
        """One line: the action and what decided it."""
        decisive = next((c for c in self.rationale if c.decisive), None)
        why = f"{decisive.input}: {decisive.detail}" if decisive else "no input objected"
        return f"{self.action} ({why})"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping (also the ``unified.decision_ready`` payload)."""
        return {
            "decision_id": self.decision_id,
            "action": str(self.action),
            "allowed": self.allowed,
            "confidence": self.confidence,
            "summary": self.summary,
            "rationale": [c.to_json() for c in self.rationale],
            "target": self.target,
            "actor": self.actor,
            "governance_decision_id": self.governance_decision_id,
            "verification_id": self.verification_id,
            "approval_id": self.approval_id,
            "receipt_seq": self.receipt_seq,
            "error": self.error,
            "decided_at": self.decided_at.isoformat(),
        }
