"""``UnifiedDecisionEngine.decide(...) -> UnifiedDecision``: governance, verification, the
target's immune state, the actor's trust and extra signals, combined into one action.

Each input contributes what it calls for (in this precedence order):

============ ============================================================================
governance   rejected → ``reject``; approval pending → ``escalate`` (with its approval id);
             allowed → no objection. A granted approval satisfies the escalations below.
verification refuted → ``reject``; error → ``retry``; inconclusive → ``escalate``;
             verified → no objection; not given → not required.
immune       rollback recommended → ``rollback``; quarantined or a critical incident →
             ``pause``; a high incident → ``escalate``; lower → noted.
trust        below ``min_trust`` → ``escalate`` (human review).
signals      whatever each calls for.
============ ============================================================================

Combination (first rule that applies):

1. any input calling for ``reject`` → **reject** (the first such in precedence order): a
   rejection is certain whatever a missing input would have said;
2. any input **unavailable** (an :class:`Unavailable`, a protocol that raised or timed
   out, a source that is not configured) → **pause**: a missing input never approves;
3. the first other objection in precedence order (``rollback``, ``pause``, ``escalate``,
   ``retry``) → that action;
4. otherwise **execute**.

Confidence: ``reject`` by governance 1.0, by verification the verdict's confidence, by a
signal 0.9; ``pause`` for a missing input 0.5; immune ``pause``/``rollback`` 0.9;
``escalate`` 0.7; ``retry`` 0.6; ``execute`` the lowest of the verification's confidence
and the actor's trust (0.9 of that with a minor incident open).

Every decision is recorded in the ledger (``log_decision``, action ``unified_decision``);
one that cannot be recorded is downgraded to ``pause``. Then ``unified.decision_ready``
is emitted (best effort).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, replace
from typing import Final, TypeVar

import structlog

from grace.decision.model import (
    INCIDENT_SEVERITIES,
    Contribution,
    DecisionAction,
    ImmuneState,
    Signal,
    TargetState,
    Unavailable,
    UnifiedDecision,
)
from grace.errors import DecisionError
from grace.governance.model import Decision, EventPublisher, Outcome, Principal, TrustSource
from grace.ledger.audit import AuditSink, log_decision
from grace.types import Clock
from grace.verification.model import VerificationResult, VerificationStatus

__all__ = ["DECISION_READY_EVENT", "DecisionSettings", "UnifiedDecisionEngine"]

log = structlog.get_logger(__name__)

DECISION_READY_EVENT: Final = "unified.decision_ready"

_T = TypeVar("_T")
_A = DecisionAction


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionSettings:
    """Thresholds of the unified decision."""

    min_trust: float = 0.5
    """Below this trust the actor's action is escalated for human review."""
    fetch_timeout_s: float = 2.0
    """How long trust and immune state may take before they count as unavailable."""
    pause_at: str = "critical"
    """An open incident at or above this severity pauses actions on the target."""
    escalate_at: str = "high"
    """An open incident at or above this severity (and below ``pause_at``) escalates."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_trust <= 1.0:
            raise ValueError("min_trust must be within [0, 1]")
        if self.fetch_timeout_s <= 0:
            raise ValueError("fetch_timeout_s must be positive")
        for name in (self.pause_at, self.escalate_at):
            if name not in INCIDENT_SEVERITIES:
                raise ValueError(f"incident severity must be one of {INCIDENT_SEVERITIES}")
        if _rank(self.escalate_at) > _rank(self.pause_at):
            raise ValueError("escalate_at must not be above pause_at")


def _rank(severity: str) -> int:
    return INCIDENT_SEVERITIES.index(severity)


class UnifiedDecisionEngine:
    """Combines every input into one recorded, announced action."""

    def __init__(
        self,
        *,
        ledger: AuditSink,
        clock: Clock,
        trust: TrustSource | None = None,
        immune: ImmuneState | None = None,
        events: EventPublisher | None = None,
        settings: DecisionSettings | None = None,
    ) -> None:
        self.settings = settings or DecisionSettings()
        self._ledger = ledger
        self._clock = clock
        self._trust = trust
        self._immune = immune
        self._events = events

    async def decide(
        self,
        *,
        target: str,
        actor: Principal | str,
        governance: Decision | Unavailable,
        verification: VerificationResult | Unavailable | None = None,
        trust: float | Unavailable | None = None,
        immune: TargetState | Unavailable | None = None,
        signals: Sequence[Signal | Unavailable] = (),
    ) -> UnifiedDecision:
        """Decide what to do with ``actor``'s action on ``target``.

        ``trust`` and ``immune`` are fetched from the configured sources when not given.
        ``verification=None`` means the action involves no code. Raises
        :class:`DecisionError` only for input that is unusable (wrong types, a verdict for
        another target); everything else is a decision.
        """
        actor_id = actor.id if isinstance(actor, Principal) else actor
        if not target or not actor_id:
            raise DecisionError("a unified decision needs a target and an actor")
        self._check_types(governance, verification, trust, immune, signals)
        trust = float(trust) if isinstance(trust, (int, float)) else trust
        if (
            isinstance(verification, VerificationResult)
            and verification.target
            and verification.target != target
        ):
            raise DecisionError(
                f"verification {verification.verification_id} is for {verification.target!r},"
                f" not {target!r}"
            )
        if trust is None:
            trust = await self._fetch_trust(actor_id)
        if immune is None:
            immune = await self._fetch_immune(target)
        approved = (
            isinstance(governance, Decision)
            and governance.allowed
            and governance.outcome is Outcome.APPROVED
            and governance.approval_id is not None
        )
        contributions = [
            self._governance(governance),
            self._verification(verification, approved),
            self._immune_state(immune, approved),
            self._trust_level(trust, approved),
            *(self._signal(s) for s in signals),
        ]
        action, decisive, confidence = self._combine(contributions, verification, trust, immune)
        rationale = tuple(
            replace(c, decisive=True) if i == decisive else c for i, c in enumerate(contributions)
        )
        decision = UnifiedDecision(
            decision_id=f"udc_{secrets.token_urlsafe(12)}",
            action=action,
            confidence=round(confidence, 4),
            rationale=rationale,
            target=target,
            actor=actor_id,
            decided_at=self._clock.now(),
            governance_decision_id=(
                governance.decision_id if isinstance(governance, Decision) else None
            ),
            verification_id=(
                verification.verification_id
                if isinstance(verification, VerificationResult)
                else None
            ),
            approval_id=governance.approval_id if isinstance(governance, Decision) else None,
        )
        decision = await self._record(decision, trust)
        await self._announce(decision)
        return decision

    # -- inputs ---------------------------------------------------------------------------

    @staticmethod
    def _check_types(
        governance: object,
        verification: object,
        trust: object,
        immune: object,
        signals: Sequence[object],
    ) -> None:
        if not isinstance(governance, (Decision, Unavailable)):
            raise DecisionError(f"governance must be a Decision or Unavailable, not {governance!r}")
        if verification is not None and not isinstance(
            verification, (VerificationResult, Unavailable)
        ):
            raise DecisionError("verification must be a VerificationResult, Unavailable or None")
        if trust is not None and (
            isinstance(trust, bool) or not isinstance(trust, (int, float, Unavailable))
        ):
            raise DecisionError(f"trust must be a number, Unavailable or None, not {trust!r}")
        if immune is not None and not isinstance(immune, (TargetState, Unavailable)):
            raise DecisionError("immune must be a TargetState, Unavailable or None")
        for s in signals:
            if not isinstance(s, (Signal, Unavailable)):
                raise DecisionError(f"signals must be Signal or Unavailable values, not {s!r}")

    async def _fetch(self, what: str, call: Awaitable[_T]) -> _T | Unavailable:
        try:
            async with asyncio.timeout(self.settings.fetch_timeout_s):
                return await call
        except TimeoutError:
            return Unavailable(reason=f"{what} timed out after {self.settings.fetch_timeout_s}s")
        except Exception as e:  # noqa: BLE001 - an input that failed is unavailable: it blocks
            return Unavailable(reason=f"{what} failed: {type(e).__name__}: {e}")

    async def _fetch_trust(self, actor_id: str) -> float | Unavailable:
        if self._trust is None:
            return Unavailable(reason="no trust source is configured")
        found = await self._fetch("the trust source", self._trust.score(actor_id))
        if isinstance(found, Unavailable):
            return found
        if isinstance(found, bool) or not isinstance(found, (int, float)):
            return Unavailable(reason=f"the trust source returned {found!r}, not a number")
        return float(found)

    async def _fetch_immune(self, target: str) -> TargetState | Unavailable:
        if self._immune is None:
            return Unavailable(reason="no immune state source is configured")
        found: object = await self._fetch("the immune state", self._immune.target_state(target))
        if not isinstance(found, (TargetState, Unavailable)):
            return Unavailable(reason=f"the immune state source returned {found!r}")
        return found

    # -- contributions --------------------------------------------------------------------

    @staticmethod
    def _governance(governance: Decision | Unavailable) -> Contribution:
        name = "governance"
        if isinstance(governance, Unavailable):
            return Contribution(
                input=name, available=False, action=_A.PAUSE, detail=governance.reason
            )
        reasons = "; ".join(r.message for r in governance.reasons)
        ref = f"decision {governance.decision_id}"
        if governance.receipt_seq is not None:
            ref += f", ledger seq {governance.receipt_seq}"
        if governance.allowed:
            note = (
                "approved"
                if governance.outcome is Outcome.APPROVED
                else (f"allowed in {governance.mode} mode (would be {governance.outcome})")
            )
            if governance.approval_id is not None and governance.outcome is Outcome.APPROVED:
                note += f" with approval {governance.approval_id}"
            return Contribution(input=name, available=True, action=None, detail=f"{note} ({ref})")
        if (
            governance.outcome in (Outcome.REQUIRES_APPROVAL, Outcome.REQUIRES_PARLIAMENT)
            and governance.approval_id is not None
        ):
            return Contribution(
                input=name,
                available=True,
                action=_A.ESCALATE,
                detail=f"{governance.outcome}: approval {governance.approval_id} pending ({ref})",
            )
        why = governance.error or reasons or str(governance.outcome)
        return Contribution(
            input=name,
            available=True,
            action=_A.REJECT,
            detail=f"{governance.outcome}: {why} ({ref})",
        )

    @staticmethod
    def _verification(
        verification: VerificationResult | Unavailable | None, approved: bool
    ) -> Contribution:
        name = "verification"
        if verification is None:
            return Contribution(input=name, available=True, action=None, detail="not required")
        if isinstance(verification, Unavailable):
            return Contribution(
                input=name, available=False, action=_A.PAUSE, detail=verification.reason
            )
        v = verification
        ref = f"{v.verification_id}, confidence {v.confidence:.2f}"
        if v.status is VerificationStatus.REFUTED:
            worst = sorted({i.rule_id for i in v.issues if i.severity.rank >= 3})
            what = f" ({', '.join(worst[:5])})" if worst else ""
            return Contribution(
                input=name, available=True, action=_A.REJECT, detail=f"refuted{what} ({ref})"
            )
        if v.status is VerificationStatus.ERROR:
            return Contribution(
                input=name,
                available=True,
                action=_A.RETRY,
                detail=f"could not verify: {v.error} ({ref})",
            )
        if v.status is VerificationStatus.INCONCLUSIVE:
            if approved:
                return Contribution(
                    input=name, available=True, action=None,
                    detail=f"inconclusive, accepted by the granted approval ({ref})",
                )  # fmt: skip
            why = v.tests_skipped_reason or "no decisive evidence"
            return Contribution(
                input=name,
                available=True,
                action=_A.ESCALATE,
                detail=f"inconclusive: {why} ({ref})",
            )
        passed = v.tests.passed if v.tests is not None else 0
        return Contribution(
            input=name,
            available=True,
            action=None,
            detail=f"verified, {passed} tests passed ({ref})",
        )

    def _immune_state(self, state: TargetState | Unavailable, approved: bool) -> Contribution:
        name = "immune"
        if isinstance(state, Unavailable):
            return Contribution(input=name, available=False, action=_A.PAUSE, detail=state.reason)
        incident = f" (incident {state.incident_id})" if state.incident_id else ""
        severity = state.active_incident_severity
        if state.rollback_recommended:
            return Contribution(
                input=name, available=True, action=_A.ROLLBACK,
                detail=f"the immune kernel recommends rolling the target back{incident}",
            )  # fmt: skip
        if state.quarantined:
            return Contribution(
                input=name,
                available=True,
                action=_A.PAUSE,
                detail=f"the target is quarantined{incident}",
            )
        if severity is None:
            return Contribution(input=name, available=True, action=None, detail="no open incident")
        if _rank(severity) >= _rank(self.settings.pause_at):
            return Contribution(
                input=name,
                available=True,
                action=_A.PAUSE,
                detail=f"{severity} incident open{incident}",
            )
        if _rank(severity) >= _rank(self.settings.escalate_at):
            if approved:
                return Contribution(
                    input=name, available=True, action=None,
                    detail=f"{severity} incident open{incident}, accepted by the granted approval",
                )  # fmt: skip
            return Contribution(
                input=name,
                available=True,
                action=_A.ESCALATE,
                detail=f"{severity} incident open{incident}",
            )
        return Contribution(
            input=name,
            available=True,
            action=None,
            detail=f"minor ({severity}) incident open{incident}",
        )

    def _trust_level(self, trust: float | Unavailable, approved: bool) -> Contribution:
        name = "trust"
        if isinstance(trust, Unavailable):
            return Contribution(input=name, available=False, action=_A.PAUSE, detail=trust.reason)
        if not 0.0 <= trust <= 1.0:
            return Contribution(
                input=name,
                available=False,
                action=_A.PAUSE,
                detail=f"trust {trust} is outside [0, 1]",
            )
        floor = self.settings.min_trust
        if trust < floor:
            if approved:
                return Contribution(
                    input=name, available=True, action=None,
                    detail=f"trust {trust:.2f} below {floor:.2f}, accepted by the granted approval",
                )  # fmt: skip
            return Contribution(
                input=name, available=True, action=_A.ESCALATE,
                detail=f"trust {trust:.2f} is below {floor:.2f} (human review)",
            )  # fmt: skip
        return Contribution(input=name, available=True, action=None, detail=f"trust {trust:.2f}")

    @staticmethod
    def _signal(signal: Signal | Unavailable) -> Contribution:
        if isinstance(signal, Unavailable):
            return Contribution(
                input="signal", available=False, action=_A.PAUSE, detail=signal.reason
            )
        return Contribution(
            input=f"signal:{signal.name}",
            available=True,
            action=signal.action,
            detail=signal.detail
            or ("no objection" if signal.action is None else str(signal.action)),
        )

    # -- combination ----------------------------------------------------------------------

    @staticmethod
    def _combine(
        contributions: Sequence[Contribution],
        verification: VerificationResult | Unavailable | None,
        trust: float | Unavailable,
        immune: TargetState | Unavailable,
    ) -> tuple[DecisionAction, int | None, float]:
        for i, c in enumerate(contributions):
            if c.available and c.action is _A.REJECT:
                if c.input == "governance":
                    return _A.REJECT, i, 1.0
                if c.input == "verification" and isinstance(verification, VerificationResult):
                    return _A.REJECT, i, verification.confidence
                return _A.REJECT, i, 0.9
        for i, c in enumerate(contributions):
            if not c.available:
                return _A.PAUSE, i, 0.5
        for i, c in enumerate(contributions):
            if c.action is not None:
                confidence = {_A.ESCALATE: 0.7, _A.RETRY: 0.6}.get(c.action, 0.9)
                return c.action, i, confidence
        confidence = 1.0
        if isinstance(verification, VerificationResult):
            confidence = min(confidence, verification.confidence)
        if isinstance(trust, float):
            confidence = min(confidence, trust)
        if isinstance(immune, TargetState) and immune.active_incident_severity is not None:
            confidence *= 0.9
        return _A.EXECUTE, None, confidence

    # -- record and announce --------------------------------------------------------------

    async def _record(
        self, decision: UnifiedDecision, trust: float | Unavailable
    ) -> UnifiedDecision:
        try:
            receipt = await log_decision(
                self._ledger,
                actor=decision.actor,
                action="unified_decision",
                resource=decision.target,
                decision=decision.action,
                request_id=decision.decision_id,
                reasons=[f"{c.input}: {c.detail}" for c in decision.rationale],
                trust_score=trust if isinstance(trust, float) else None,
                details={
                    "decision_id": decision.decision_id,
                    "confidence": decision.confidence,
                    "governance_decision_id": decision.governance_decision_id,
                    "verification_id": decision.verification_id,
                    "approval_id": decision.approval_id,
                    "contributions": [c.to_json() for c in decision.rationale],
                },
            )
        except Exception as e:  # an unrecorded decision must not execute
            log.exception("unified_decision_unrecorded", decision=decision.decision_id)
            action = _A.PAUSE if decision.action is _A.EXECUTE else decision.action
            return replace(
                decision, action=action, error=f"the decision could not be recorded: {e!r}"
            )
        return replace(decision, receipt_seq=receipt.seq)

    async def _announce(self, decision: UnifiedDecision) -> None:
        if self._events is None:
            return
        try:
            await self._events.emit(DECISION_READY_EVENT, decision.to_json())
        except Exception as e:  # noqa: BLE001 - the ledger is the record; events are news
            log.warning(
                "unified_decision_event_failed", decision=decision.decision_id, error=repr(e)
            )
