"""Running one playbook for one incident: governed, executed, verified, recorded.

For each step, in order:

1. **disruption**: a step more disruptive than the incident's severity allows is skipped
   (recorded), and the next step is tried (rollback steps are exempt: they undo);
2. ``avn.healing_action`` announces the proposal, then **governance** decides
   (``check_avn_action``; an error counts as a rejection). Rejected or pending approval ⇒
   nothing runs; the run stops and escalates with the decision's reasons and approval id;
3. the **executor** acts within the step's timeout (an exception or timeout is a failed
   step); the ledger records what it did, with the decision's id and ledger seq;
4. **verification** (health / metric / control / none), recorded in the ledger;
5. verified and ``on_success: stop`` ⇒ healed. Not verified (kind none) ⇒ next step.
   Failed or not verified ⇒ ``on_failure``: ``next``; ``rollback`` (announce
   ``avn.rollback_required``, run the rollback step through the same path — if its own
   verification passes the incident is healed — then go on); ``escalate`` (stop).

A run that ends without a verified step is a failure; the kernel escalates it unless an
``escalate_to_human`` step already did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol

import structlog

from grace.errors import ExecutorError
from grace.governance.model import Decision, Outcome
from grace.immune.escalation import EventSink
from grace.immune.executors import ActionContext, ExecutionResult, ExecutorRegistry
from grace.immune.playbooks import OnFailure, OnSuccess, Playbook, PlaybookStep, VerifyKind, render
from grace.immune.taxonomy import HealingAction, Incident, Severity
from grace.immune.verify import VerificationResult, Verifier
from grace.ledger.audit import AuditSink, log_healing_action
from grace.trust import Evidence

__all__ = ["AvnGovernance", "RunOutcome", "Runner", "StepStatus", "TrustRecorder"]

log = structlog.get_logger(__name__)

ACTOR: Final = "immune_kernel"

# Event types the runner emits (declared in the mesh's default routing config).
HEALING_ACTION_EVENT: Final = "avn.healing_action"
HEALING_EXECUTED_EVENT: Final = "avn.healing_executed"
HEALING_FAILED_EVENT: Final = "avn.healing_failed"
ROLLBACK_EVENT: Final = "avn.rollback_required"


class AvnGovernance(Protocol):
    """The gate's AVN helper (``grace.governance.GovernanceWiring.check_avn_action``)."""

    async def check_avn_action(
        self,
        action: str,
        component: str,
        anomaly_id: str,
        severity: str,
        *,
        details: Mapping[str, Any] | None = None,
    ) -> Decision:
        """May the kernel perform ``action`` on ``component``?"""
        ...


class TrustRecorder(Protocol):
    """Where outcomes feed per-component trust (``grace.trust.TrustStore.record``)."""

    async def record(
        self, subject_id: str, evidence: Evidence, *, weight: float = 1.0, reason: str = ""
    ) -> object:
        """Record one piece of evidence about ``subject_id``."""
        ...


class StepStatus(StrEnum):
    """What became of one step."""

    VERIFIED = "verified"
    UNVERIFIED = "unverified"
    """Executed; its verification kind is ``none``."""
    NOT_VERIFIED = "not_verified"
    """Executed; verification failed."""
    FAILED = "failed"
    """The executor raised or timed out."""
    BLOCKED = "blocked"
    """Governance rejected it."""
    PENDING = "pending_approval"
    """Governance wants a human approval first."""
    SKIPPED = "skipped"
    """Too disruptive for the incident's severity."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StepResult:
    status: StepStatus
    decision: Decision | None = None
    verification: VerificationResult | None = None
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOutcome:
    """How a playbook run ended."""

    healed: bool
    reason: str
    escalated: bool = False
    """An ``escalate_to_human`` step already escalated (the kernel need not again)."""
    blocked: bool = False
    approval_id: str | None = None


@dataclass(slots=True)
class RunStats:
    """Counters the runner keeps for the kernel's stats."""

    attempts: int = 0
    successes: int = 0
    blocked: int = 0
    skipped: int = 0
    failed: int = 0
    rollbacks: int = 0
    escalation_steps: int = 0
    by_action: dict[str, int] = field(default_factory=dict)


class Runner:
    """Runs playbook steps under governance."""

    def __init__(
        self,
        *,
        governance: AvnGovernance,
        executors: ExecutorRegistry,
        verifier: Verifier,
        ledger: AuditSink,
        events: EventSink | None,
        trust: TrustRecorder | None,
        allowance: Mapping[Severity, int],
    ) -> None:
        self._governance = governance
        self._executors = executors
        self._verifier = verifier
        self._ledger = ledger
        self._events = events
        self._trust = trust
        self._allowance = allowance
        self.stats = RunStats()

    async def run(self, incident: Incident, playbook: Playbook) -> RunOutcome:
        """Run ``playbook`` for ``incident`` (see the module docstring)."""
        escalated = False
        for index, step in enumerate(playbook.steps):
            result = await self._step(incident, playbook, f"steps[{index}]", step)
            status = result.status
            if status is StepStatus.VERIFIED:
                if step.action is HealingAction.ESCALATE_TO_HUMAN:
                    escalated = True
                if step.on_success is OnSuccess.STOP:
                    return RunOutcome(
                        healed=True,
                        escalated=escalated,
                        reason=f"{step.action} verified: {_detail(result)}",
                    )
                continue
            if status is StepStatus.UNVERIFIED:
                escalated = escalated or step.action is HealingAction.ESCALATE_TO_HUMAN
                continue
            if status in (StepStatus.BLOCKED, StepStatus.PENDING):
                decision = result.decision
                reasons = (
                    "; ".join(r.message for r in decision.reasons) if decision is not None else ""
                )
                return RunOutcome(
                    healed=False,
                    escalated=escalated,
                    blocked=True,
                    approval_id=decision.approval_id if decision is not None else None,
                    reason=f"governance did not allow {step.action} ({status}): "
                    f"{reasons or result.error or 'no reason given'}",
                )
            if status is StepStatus.SKIPPED:
                continue
            if step.on_failure is OnFailure.ESCALATE:
                return RunOutcome(
                    healed=False,
                    escalated=escalated,
                    reason=f"{step.action} {status}: {_detail(result)}",
                )
            if step.on_failure is OnFailure.ROLLBACK and step.rollback is not None:
                healed = await self._rollback(incident, playbook, index, step, result)
                if healed is not None:
                    return healed
        return RunOutcome(
            healed=False,
            escalated=escalated,
            reason=f"no step of playbook {playbook.name!r} healed {incident.resource}",
        )

    async def _rollback(
        self,
        incident: Incident,
        playbook: Playbook,
        index: int,
        step: PlaybookStep,
        failed: StepResult,
    ) -> RunOutcome | None:
        rollback = step.rollback
        if rollback is None:  # pragma: no cover - guarded by the caller
            return None
        self.stats.rollbacks += 1
        await self.emit(
            ROLLBACK_EVENT,
            incident,
            {
                "playbook": playbook.name,
                "step": index,
                "action": str(step.action),
                "rollback_action": str(rollback.action),
                "because": f"{failed.status}: {_detail(failed)}",
            },
        )
        result = await self._step(
            incident, playbook, f"steps[{index}].rollback", rollback, rollback=True
        )
        if result.status is StepStatus.VERIFIED and rollback.verify.kind in (
            VerifyKind.HEALTH,
            VerifyKind.METRIC,
        ):
            return RunOutcome(
                healed=True, reason=f"rollback {rollback.action} verified: {_detail(result)}"
            )
        if result.status in (StepStatus.BLOCKED, StepStatus.PENDING):
            decision = result.decision
            return RunOutcome(
                healed=False,
                blocked=True,
                approval_id=decision.approval_id if decision is not None else None,
                reason=f"governance did not allow rollback {rollback.action} ({result.status})",
            )
        return None

    # -- one step ------------------------------------------------------------------------

    async def _step(
        self,
        incident: Incident,
        playbook: Playbook,
        where: str,
        step: PlaybookStep,
        *,
        rollback: bool = False,
    ) -> StepResult:
        variables = {
            "resource": incident.resource,
            "anomaly_type": str(incident.anomaly_type),
            "severity": str(incident.severity),
            "incident_id": incident.incident_id,
        }
        params = render(dict(step.params), variables)
        base = {
            "incident_id": incident.incident_id,
            "playbook": playbook.name,
            "step": where,
            "executor": step.executor,
        }
        allowance = self._allowance.get(incident.severity, 0)
        # A rollback undoes the kernel's own change: governed, but never skipped as too
        # disruptive (refusing to undo would leave the disruption in place).
        if not rollback and step.disruption > allowance:
            self.stats.skipped += 1
            reason = (
                f"disruption {step.disruption} exceeds the allowance {allowance} "
                f"of a {incident.severity} incident"
            )
            await self._record(incident, step, "skipped", {**base, "reason": reason})
            return StepResult(status=StepStatus.SKIPPED, error=reason)

        await self.emit(HEALING_ACTION_EVENT, incident, {**base, "action": str(step.action)})
        decision = await self._decide(incident, step, {**base, "params": params})
        # A Decision is falsy when not allowed: compare with None, never test its truth.
        decision_facts = {
            "decision_id": decision.decision_id if decision is not None else None,
            "decision_seq": decision.receipt_seq if decision is not None else None,
            "decision": str(decision.outcome) if decision is not None else "error",
        }
        if decision is None or not decision.allowed:
            pending = decision is not None and decision.outcome in (
                Outcome.REQUIRES_APPROVAL,
                Outcome.REQUIRES_PARLIAMENT,
            )
            status = StepStatus.PENDING if pending else StepStatus.BLOCKED
            self.stats.blocked += 1
            reasons = (
                [r.message for r in decision.reasons] if decision is not None else ["gate error"]
            )
            approval_id = decision.approval_id if decision is not None else None
            await self._record(
                incident,
                step,
                str(status),
                {**base, **decision_facts, "reasons": reasons, "approval_id": approval_id},
            )
            await self.emit(
                HEALING_FAILED_EVENT,
                incident,
                {
                    **base,
                    **decision_facts,
                    "action": str(step.action),
                    "status": str(status),
                    "reasons": reasons,
                    "approval_id": approval_id,
                },
            )
            return StepResult(status=status, decision=decision)

        ctx = ActionContext(
            action=step.action,
            resource=incident.resource,
            params=params,
            incident_id=incident.incident_id,
            anomaly_id=incident.first_anomaly_id,
            anomaly_type=incident.anomaly_type,
            severity=incident.severity,
            timeout_s=step.timeout_s,
            reason=f"{incident.severity} {incident.anomaly_type} on {incident.resource} "
            f"(incident {incident.incident_id}, playbook {playbook.name})",
        )
        counted = step.action is not HealingAction.ESCALATE_TO_HUMAN
        if counted:
            self.stats.attempts += 1
            key = str(step.action)
            self.stats.by_action[key] = self.stats.by_action.get(key, 0) + 1
        else:
            self.stats.escalation_steps += 1
        try:
            execution = await self._execute(step, ctx)
        except ExecutorError as e:
            self.stats.failed += 1
            error = str(e)
            await self._record(incident, step, "failed", {**base, **decision_facts, "error": error})
            await self.emit(
                HEALING_FAILED_EVENT,
                incident,
                {**base, **decision_facts, "action": str(step.action), "error": error},
            )
            return StepResult(status=StepStatus.FAILED, decision=decision, error=error)
        await self._record(
            incident,
            step,
            "executed",
            {**base, **decision_facts, "params": params, "result": dict(execution.detail)},
        )
        target = str(render(step.verify.target, variables))
        verification = await self._verifier.verify(
            step.verify, target=target, execution=execution, anomaly_type=incident.anomaly_type
        )
        await self._record_verification(incident, step, base, verification)
        if verification.verified is True:
            if counted:
                self.stats.successes += 1
            await self.record_trust(
                incident.resource, Evidence.VERIFICATION_PASS, verification.detail
            )
            status = StepStatus.VERIFIED
        elif verification.verified is None:
            status = StepStatus.UNVERIFIED
        else:
            await self.record_trust(
                incident.resource, Evidence.VERIFICATION_FAIL, verification.detail
            )
            status = StepStatus.NOT_VERIFIED
        event = (
            HEALING_FAILED_EVENT if status is StepStatus.NOT_VERIFIED else HEALING_EXECUTED_EVENT
        )
        await self.emit(
            event,
            incident,
            {
                **base,
                **decision_facts,
                "action": str(step.action),
                "status": str(status),
                "verification": verification.detail,
                "verified": verification.verified,
            },
        )
        return StepResult(status=status, decision=decision, verification=verification)

    async def _decide(
        self, incident: Incident, step: PlaybookStep, details: Mapping[str, Any]
    ) -> Decision | None:
        try:
            return await self._governance.check_avn_action(
                str(step.action),
                incident.resource,
                incident.first_anomaly_id,
                str(incident.severity),
                details=details,
            )
        except Exception as e:  # noqa: BLE001 - no decision ⇒ no action (fail closed)
            log.warning("immune_governance_error", incident=incident.incident_id, error=repr(e))
            return None

    async def _execute(self, step: PlaybookStep, ctx: ActionContext) -> ExecutionResult:
        executor = self._executors.get(step.executor)
        try:
            async with asyncio.timeout(step.timeout_s):
                return await executor.execute(ctx)
        except TimeoutError:
            raise ExecutorError(
                f"{step.executor} did not finish within {step.timeout_s} s"
            ) from None
        except ExecutorError:
            raise
        except Exception as e:
            raise ExecutorError(f"{step.executor} raised {e!r}") from e

    # -- records -------------------------------------------------------------------------

    async def _record(
        self, incident: Incident, step: PlaybookStep, outcome: str, details: Mapping[str, Any]
    ) -> None:
        await log_healing_action(
            self._ledger,
            component=incident.resource,
            anomaly_id=incident.first_anomaly_id,
            action=str(step.action),
            outcome=outcome,
            details=details,
        )

    async def _record_verification(
        self,
        incident: Incident,
        step: PlaybookStep,
        base: Mapping[str, Any],
        verification: VerificationResult,
    ) -> None:
        result = {True: "passed", False: "failed", None: "not_verified"}[verification.verified]
        await self._ledger.append(
            subsystem="avn",
            actor=ACTOR,
            action="verify",
            resource=incident.resource,
            result=result,
            payload={
                "event": "verification",
                "anomaly_id": incident.first_anomaly_id,
                **base,
                "healing_action": str(step.action),
                "kind": str(verification.kind),
                "target": verification.target,
                "detail": verification.detail,
                "checks": verification.checks,
                "elapsed_s": round(verification.elapsed_s, 3),
            },
        )

    async def emit(self, event_type: str, incident: Incident, payload: Mapping[str, Any]) -> None:
        """Announce ``event_type`` about ``incident`` (best effort: the ledger is the record)."""
        if self._events is None:
            return
        try:
            await self._events.emit(
                event_type,
                {
                    "incident_id": incident.incident_id,
                    "anomaly_id": incident.first_anomaly_id,
                    "resource": incident.resource,
                    "anomaly_type": str(incident.anomaly_type),
                    "severity": str(incident.severity),
                    **payload,
                },
                resource=incident.resource,
            )
        except Exception as e:  # noqa: BLE001 - events are news; the ledger is the record
            log.warning("immune_event_failed", event_type=event_type, error=repr(e))

    async def record_trust(self, subject: str, evidence: Evidence, reason: str) -> None:
        """Feed ``evidence`` about ``subject`` to the trust store (advisory: never fatal)."""
        if self._trust is None:
            return
        try:
            await self._trust.record(subject, evidence, reason=reason[:200])
        except Exception as e:  # noqa: BLE001 - trust is advisory here; healing goes on
            log.warning("immune_trust_failed", subject=subject, error=repr(e))


def _detail(result: StepResult) -> str:
    if result.verification is not None:
        return result.verification.detail
    return result.error or str(result.status)
