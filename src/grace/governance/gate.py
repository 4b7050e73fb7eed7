"""The decision point: ``Gate.decide(ActionRequest) -> Decision``, the one path every
enforcement point uses.

Steps (each failure, timeout or missing input ends in ``rejected`` with the error as the
reason — except in ``log`` mode, which records the error and lets the action run):

1. **risk** from the server-side :class:`~grace.governance.risk.ActionRegistry`; a
   ``declared_risk`` may raise it, never lower it;
2. **facts**: content analyzers over action, resource and the whole context; the
   principal's trust through the :class:`TrustSource`; whether a presented approval is
   valid for this exact request;
3. **policy** evaluation (the Cedar constitution, through :class:`PolicyEngine`);
4. **outcome**: approved / rejected / requires_approval / requires_parliament with the
   reasons; trust below the risk level's threshold rejects;
5. **enforcement mode** (``off``/``log``/``critical``/``enforce``, globally or per action
   pattern) turns the outcome into ``allowed``; an enforced approval requirement opens an
   approval request bound to the request;
6. **ledger**: every decision is appended; the decision carries the receipt's seq (an
   unrecordable decision is not allowed, except in log mode);
7. **event** ``governance.decision_made`` through the :class:`EventPublisher`
   (best effort: the ledger is the record).
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol

import orjson
import structlog

from grace.governance.approvals import ApprovalState, ApprovalStore
from grace.governance.decisions import DecisionIndex
from grace.governance.model import (
    ActionRequest,
    Decision,
    EnforcementMode,
    EventPublisher,
    Outcome,
    Reason,
    RiskLevel,
    TrustSource,
)
from grace.governance.risk import ActionRegistry
from grace.ledger.audit import AuditSink, log_decision
from grace.types import Clock

__all__ = [
    "DECISION_EVENT",
    "Facts",
    "Gate",
    "GateSettings",
    "PolicyEngine",
    "PolicyVerdict",
    "StaticTrust",
]

log = structlog.get_logger(__name__)

DECISION_EVENT: Final = "governance.decision_made"
_FINDINGS_CACHE_SIZE: Final = 4096
_FINDINGS_KEY_MAX_BYTES: Final = 4096
"""Only requests up to this size (as JSON) have their findings kept."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Facts:
    """What the server established about a request before policies are evaluated."""

    risk: RiskLevel
    trust: float
    findings: tuple[Any, ...] = ()
    """Content-analyzer findings (``kind``, ``principle``, ``severity``, ``rule``…)."""
    approved: bool = False
    approvals: int = 0
    reversible: bool = True
    """From the action registry: can the action be undone?"""


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyVerdict:
    """What the policies say, with reasons; ``observed`` are log-mode rules that would deny."""

    outcome: Outcome
    reasons: tuple[Reason, ...] = ()
    observed: tuple[Reason, ...] = ()


class PolicyEngine(Protocol):
    """The constitution, as the gate uses it."""

    def evaluate(self, request: ActionRequest, facts: Facts) -> PolicyVerdict:
        """Evaluate every policy for the request and the server's facts."""
        ...


Analyzer = Any
"""``analyze(value, *, root) -> tuple[Finding, ...]`` (see ``grace.governance.analyzers``)."""


class StaticTrust:
    """A :class:`TrustSource` with fixed scores, until the trust store is wired in."""

    def __init__(self, default: float = 0.75, scores: Mapping[str, float] | None = None) -> None:
        self.default = default
        self.scores = dict(scores or {})

    async def score(self, subject_id: str) -> float:
        """The configured score, or the default."""
        return self.scores.get(subject_id, self.default)


@dataclass(frozen=True, slots=True, kw_only=True)
class GateSettings:
    """How the gate enforces (built from ``GraceSettings`` at boot)."""

    mode: EnforcementMode = EnforcementMode.ENFORCE
    mode_overrides: tuple[tuple[str, EnforcementMode], ...] = ()
    """``(action pattern, mode)``, first match wins over ``mode`` (shell-style patterns)."""
    trust_thresholds: Mapping[RiskLevel, float] = field(
        default_factory=lambda: dict.fromkeys(RiskLevel, 0.5)
    )
    """Below this trust for the request's risk, the outcome is ``rejected``."""
    parliament_quorum: int = 2
    decision_timeout_s: float = 2.0
    approval_ttl_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.parliament_quorum < 2:
            raise ValueError("a parliament needs a quorum of at least 2 approvers")
        if self.decision_timeout_s <= 0:
            raise ValueError("decision_timeout_s must be positive")
        for risk, value in self.trust_thresholds.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"trust threshold for {risk} must be within [0, 1]")


class Gate:
    """Decides, records and announces every governed action."""

    def __init__(
        self,
        *,
        policies: PolicyEngine,
        analyze: Analyzer,
        ledger: AuditSink,
        approvals: ApprovalStore,
        clock: Clock,
        trust: TrustSource | None = None,
        events: EventPublisher | None = None,
        registry: ActionRegistry | None = None,
        settings: GateSettings | None = None,
        index: DecisionIndex | None = None,
    ) -> None:
        self.policies = policies
        self.settings = settings or GateSettings()
        self.approvals = approvals
        self._analyze = analyze
        self._ledger = ledger
        self._clock = clock
        self._trust = trust or StaticTrust()
        self._events = events
        self._index = index
        self._registry = registry or ActionRegistry()
        self._findings_seen: dict[bytes, tuple[Any, ...]] = {}
        self._overrides = tuple(
            (re.compile(fnmatch.translate(pattern)), mode)
            for pattern, mode in self.settings.mode_overrides
        )

    def mode_for(self, action: str) -> EnforcementMode:
        """The enforcement mode in force for ``action``."""
        for regex, mode in self._overrides:
            if regex.match(action):
                return mode
        return self.settings.mode

    async def decide(self, request: ActionRequest) -> Decision:
        """Decide, record and announce; never raises for a denial."""
        decision_id = f"dec_{secrets.token_urlsafe(12)}"
        now = self._clock.now()
        mode = self.mode_for(request.action)
        if mode is EnforcementMode.OFF:
            return Decision(
                decision_id=decision_id,
                request_id=request.request_id,
                outcome=Outcome.APPROVED,
                allowed=True,
                mode=mode,
                risk=RiskLevel.LOW,
                reasons=(Reason(message="governance is off for this action"),),
                decided_at=now,
            )
        risk, critical, reversible = self._registry.classify(request.action)
        if request.declared_risk is not None:
            risk = risk.at_least(request.declared_risk)
        trust: float | None = None
        error: str | None = None
        approval_id: str | None = None
        observed: tuple[Reason, ...] = ()
        try:
            async with asyncio.timeout(self.settings.decision_timeout_s):
                outcome, reasons, observed, trust, approval_id = await self._judge(
                    request, risk, reversible
                )
        except Exception as e:  # noqa: BLE001 - could not decide ⇒ rejected (fail closed)
            error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            outcome = Outcome.REJECTED
            reasons = (Reason(message=f"the gate could not decide: {error}"),)
            log.warning("governance_undecidable", action=request.action, error=error)
        enforced = mode is EnforcementMode.ENFORCE or (
            mode is EnforcementMode.CRITICAL and (critical or risk.rank >= RiskLevel.HIGH.rank)
        )
        allowed = outcome is Outcome.APPROVED or not enforced
        if (
            enforced
            and outcome in (Outcome.REQUIRES_APPROVAL, Outcome.REQUIRES_PARLIAMENT)
            and approval_id is None
        ):
            try:
                approval_id = await self._open_approval(request, outcome, risk, reasons)
            except Exception as e:  # noqa: BLE001 - no approval request ⇒ plain rejection
                error = f"could not open an approval request: {e!r}"
                outcome = Outcome.REJECTED
        decision = Decision(
            decision_id=decision_id,
            request_id=request.request_id,
            outcome=outcome,
            allowed=allowed,
            mode=mode,
            risk=risk,
            reasons=reasons,
            trust_score=trust,
            approval_id=approval_id,
            observed=observed,
            error=error,
            decided_at=now,
        )
        return await self._record(request, decision)

    async def _judge(
        self, request: ActionRequest, risk: RiskLevel, reversible: bool
    ) -> tuple[Outcome, tuple[Reason, ...], tuple[Reason, ...], float, str | None]:
        findings = self._findings(request)
        trust = float(await self._trust.score(request.principal.id))
        if not 0.0 <= trust <= 1.0:
            raise ValueError(f"trust source returned {trust}, outside [0, 1]")
        approved, approvals, approval_id = False, 0, None
        if request.approval_id is not None:
            approval = await self.approvals.get(request.approval_id)
            if approval is not None and approval.state is ApprovalState.APPROVED:
                approved, approvals, approval_id = True, len(approval.approvers), approval.id
        facts = Facts(
            risk=risk,
            trust=trust,
            findings=findings,
            approved=approved,
            approvals=approvals,
            reversible=reversible,
        )
        verdict = self.policies.evaluate(request, facts)
        outcome, reasons = verdict.outcome, verdict.reasons
        threshold = self.settings.trust_thresholds.get(risk, 0.5)
        if trust < threshold and outcome is not Outcome.REJECTED:
            outcome = Outcome.REJECTED
            reasons = (
                *reasons,
                Reason(
                    message=f"trust {trust:.2f} is below {threshold:.2f} for {risk} risk "
                    "(human review)"
                ),
            )
        # A presented approval is used up by the decision it enabled, once.
        if (
            outcome is Outcome.APPROVED
            and approval_id is not None
            and not await self.approvals.consume(approval_id, request)
        ):
            outcome = Outcome.REJECTED
            reasons = (
                *reasons,
                Reason(message=f"approval {approval_id} was already used or does not match"),
            )
        return outcome, reasons, verdict.observed, trust, approval_id

    def _findings(self, request: ActionRequest) -> tuple[Any, ...]:
        """The analyzers' findings, kept for small requests seen before (the analyzers are
        pure functions of the request's content, keyed here by its exact JSON bytes)."""
        value = {"action": request.action, "resource": request.resource, "context": request.context}
        try:
            key: bytes | None = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            key = None  # not plain JSON: analyze it uncached
        if key is not None and len(key) <= _FINDINGS_KEY_MAX_BYTES:
            found = self._findings_seen.get(key)
            if found is None:
                found = tuple(self._analyze(value, root="request"))
                self._findings_seen[key] = found
                if len(self._findings_seen) > _FINDINGS_CACHE_SIZE:
                    del self._findings_seen[next(iter(self._findings_seen))]
            return found
        return tuple(self._analyze(value, root="request"))

    async def _open_approval(
        self, request: ActionRequest, outcome: Outcome, risk: RiskLevel, reasons: Iterable[Reason]
    ) -> str:
        quorum = self.settings.parliament_quorum if outcome is Outcome.REQUIRES_PARLIAMENT else 1
        approval = await self.approvals.create(
            request,
            quorum=quorum,
            summary={
                "outcome": str(outcome),
                "risk": str(risk),
                "reasons": [r.message for r in reasons],
                "is_autonomous": request.is_autonomous,
            },
        )
        return approval.id

    async def _record(self, request: ActionRequest, decision: Decision) -> Decision:
        try:
            receipt = await log_decision(
                self._ledger,
                actor=request.principal.id,
                action=request.action,
                resource=request.resource,
                decision=decision.outcome,
                request_id=request.request_id,
                reasons=[r.message for r in decision.reasons],
                risk_level=decision.risk,
                trust_score=decision.trust_score,
                violated_policies=decision.violated_policies,
                details={
                    "decision_id": decision.decision_id,
                    "allowed": decision.allowed,
                    "mode": str(decision.mode),
                    "approval_id": decision.approval_id,
                    "observed": [r.policy_id or r.message for r in decision.observed],
                    "error": decision.error,
                    "is_autonomous": request.is_autonomous,
                    "source": request.source,
                },
            )
        except Exception as e:  # an unrecorded decision must not allow
            log.exception("governance_unrecorded", decision=decision.decision_id)
            keep = decision.mode is EnforcementMode.LOG
            return replace(
                decision,
                allowed=decision.allowed and keep,
                error=f"the decision could not be recorded: {e!r}",
            )
        decision = replace(decision, receipt_seq=receipt.seq)
        if self._index is not None:
            try:
                await self._index.record(decision, request)
            except Exception as e:  # noqa: BLE001 - the ledger holds the decision regardless
                log.warning("governance_index_failed", decision=decision.decision_id, error=repr(e))
        if self._events is not None:
            try:
                await self._events.emit(
                    DECISION_EVENT,
                    {
                        "decision_id": decision.decision_id,
                        "request_id": decision.request_id,
                        "outcome": str(decision.outcome),
                        "allowed": decision.allowed,
                        "action": request.action,
                        "resource": request.resource,
                        "principal": request.principal.id,
                        "receipt_seq": decision.receipt_seq,
                    },
                )
            except Exception as e:  # noqa: BLE001 - the ledger is the record; events are news
                log.warning("governance_event_failed", decision=decision.decision_id, error=repr(e))
        return decision
