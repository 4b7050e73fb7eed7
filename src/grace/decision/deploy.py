"""``deploy_code``: proposed code → verification → governance → unified decision → deploy.

The deploy callable runs only when the unified decision is ``execute``, and it receives
exactly the bytes that were verified (the same immutable :class:`CodeBundle`). Every
step lands in the ledger: the verdict, the governance decision, the unified decision.

``escalate`` opens an approval request bound to this exact deployment (actor, target and
the verification facts, which include the code's SHA-256) unless governance already
opened one. Once a human approves it, calling :meth:`CodeDeployer.deploy_code` again with
``approval_id`` presents it to the gate; a granted approval satisfies the escalations
(trust, an inconclusive verdict, a high incident) but never a veto (a refuted verdict, a
governance rejection, a critical incident).

Governance sees the verdict as :meth:`VerificationResult.facts` (status, safe_to_execute,
code digest, issue counts, refuting rules), deterministic for the same code, so the
approval still matches when the code is verified again on resume.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from grace.decision.engine import UnifiedDecisionEngine
from grace.decision.model import DecisionAction, Signal, Unavailable, UnifiedDecision
from grace.governance.approvals import ApprovalStore
from grace.governance.model import ActionRequest, Decision, Principal
from grace.governance.wiring import GovernanceWiring
from grace.verification.engine import VerificationEngine, bundle_of
from grace.verification.model import CodeBundle, VerificationResult

__all__ = ["CodeDeployer", "DeployFunction", "DeploymentOutcome"]

log = structlog.get_logger(__name__)

DeployFunction = Callable[[CodeBundle, str], Awaitable[object]]
"""``await deploy(code, target)``: really deploys, or raises."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeploymentOutcome:
    """What happened to one proposed deployment."""

    decision: UnifiedDecision
    verification: VerificationResult
    governance: Decision | Unavailable
    deployed: bool
    result: object = None
    """What the deploy callable returned (only when ``deployed``)."""
    approval_id: str | None = None
    """The approval to wait for when the decision is ``escalate``."""

    @property
    def action(self) -> DecisionAction:
        """The unified decision's action."""
        return self.decision.action


class CodeDeployer:
    """Runs the governed deployment flow for generated code."""

    def __init__(
        self,
        *,
        verifier: VerificationEngine,
        wiring: GovernanceWiring,
        decisions: UnifiedDecisionEngine,
        approvals: ApprovalStore | None = None,
    ) -> None:
        self.verifier = verifier
        self.wiring = wiring
        self.decisions = decisions
        self.approvals = approvals or wiring.gate.approvals

    async def deploy_code(
        self,
        code: CodeBundle | str | Mapping[str, str | bytes],
        *,
        target: str,
        actor: Principal,
        deploy: DeployFunction,
        tests: str | Mapping[str, str | bytes] | None = None,
        reason: str = "",
        signals: Sequence[Signal | Unavailable] = (),
        approval_id: str | None = None,
    ) -> DeploymentOutcome:
        """Verify ``code``, ask governance, decide, and deploy only on ``execute``.

        ``approval_id`` presents a granted approval from an earlier ``escalate``. An
        exception from ``deploy`` propagates (the ``execute`` decision stays recorded).
        """
        bundle = await bundle_of(code, tests)
        verification = await self.verifier.verify(bundle, target=target, actor=actor.id)
        facts = verification.facts()
        governance = await self._govern(target, actor, facts, reason, approval_id)
        decision = await self.decisions.decide(
            target=target,
            actor=actor,
            governance=governance,
            verification=verification,
            signals=signals,
        )
        if decision.action is DecisionAction.EXECUTE:
            result = await deploy(bundle, target)
            log.info("code_deployed", target=target, decision=decision.decision_id)
            return DeploymentOutcome(
                decision=decision,
                verification=verification,
                governance=governance,
                deployed=True,
                result=result,
            )
        pending: str | None = None
        if decision.action is DecisionAction.ESCALATE:
            pending = await self._approval_for(decision, governance, target, actor, facts, reason)
        return DeploymentOutcome(
            decision=decision,
            verification=verification,
            governance=governance,
            deployed=False,
            approval_id=pending,
        )

    async def _govern(
        self,
        target: str,
        actor: Principal,
        facts: Mapping[str, Any],
        reason: str,
        approval_id: str | None,
    ) -> Decision | Unavailable:
        try:
            if approval_id is None:
                return await self.wiring.check_code_deployment(
                    target, actor, verification=facts, reason=reason
                )
            return await self.wiring.gate.decide(
                _deployment_request(target, actor, facts, reason, approval_id)
            )
        except Exception as e:  # noqa: BLE001 - governance could not decide: it blocks
            log.warning("deploy_governance_failed", target=target, error=repr(e))
            return Unavailable(reason=f"governance failed: {type(e).__name__}: {e}")

    async def _approval_for(
        self,
        decision: UnifiedDecision,
        governance: Decision | Unavailable,
        target: str,
        actor: Principal,
        facts: Mapping[str, Any],
        reason: str,
    ) -> str:
        if isinstance(governance, Decision) and governance.approval_id and not governance.allowed:
            return governance.approval_id  # the gate already opened one for this request
        approval = await self.approvals.create(
            _deployment_request(target, actor, facts, reason, None),
            quorum=1,
            summary={
                "outcome": "escalated",
                "unified_decision_id": decision.decision_id,
                "reasons": [f"{c.input}: {c.detail}" for c in decision.rationale if c.action],
                "is_autonomous": actor.kind != "human",
            },
        )
        return approval.id


def _deployment_request(
    target: str,
    actor: Principal,
    facts: Mapping[str, Any],
    reason: str,
    approval_id: str | None,
) -> ActionRequest:
    """The request ``GovernanceWiring.check_code_deployment`` builds (same action,
    resource and context, so an approval bound to one matches the other), with an
    approval presented."""
    return ActionRequest(
        request_id=f"req_{secrets.token_urlsafe(12)}",
        principal=actor,
        action="deploy_code",
        resource=target,
        context={"verification": dict(facts), "reason": reason},
        is_autonomous=actor.kind != "human",
        source="deployment",
        approval_id=approval_id,
    )
