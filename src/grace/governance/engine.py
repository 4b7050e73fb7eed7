"""The constitution as the gate's :class:`~grace.governance.gate.PolicyEngine`.

Turns an :class:`ActionRequest` and the server's :class:`Facts` into the Cedar context
contract (:data:`~grace.governance.constitution.FACTS`) and the Cedar answer back into
outcome and reasons. Caller-supplied context contributes only the declarations the
constitution asks about (a ``reason``, whether personal data is touched and consent is on
record, a disclosed confidence); risk, trust, approvals and findings are the server's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from grace.governance.constitution import (
    Constitution,
    Effect,
    PolicyMeta,
    trust_per_mille,
)
from grace.governance.gate import Facts, PolicyVerdict
from grace.governance.model import ActionRequest, Outcome, Reason

__all__ = ["ConstitutionEngine"]

LOW_CONFIDENCE: Final = 0.6
"""A declared ``confidence`` below this is low confidence (transparency_honesty)."""


def _reason(meta: PolicyMeta) -> Reason:
    return Reason(
        message=meta.description,
        policy_id=meta.id,
        principle=str(meta.principle),
        severity=str(meta.severity),
    )


def _text(context: Mapping[str, Any], *keys: str) -> bool:
    return any(isinstance(context.get(k), str) and context[k].strip() for k in keys)


class ConstitutionEngine:
    """Evaluates requests against a :class:`Constitution` (swap ``constitution`` to reload)."""

    def __init__(self, constitution: Constitution, *, quorum: int = 2) -> None:
        self.constitution = constitution
        self.quorum = quorum

    def evaluate(self, request: ActionRequest, facts: Facts) -> PolicyVerdict:
        """The constitution's verdict on one request."""
        context = request.context
        confidence = context.get("confidence")
        low_confidence = isinstance(confidence, int | float) and confidence < LOW_CONFIDENCE
        findings = frozenset(str(getattr(f, "kind", f)) for f in facts.findings)
        principal = request.principal
        result = self.constitution.evaluate(
            principal.id,
            {
                "kind": str(principal.kind),
                "roles": tuple(sorted(principal.roles)),
                "autonomy_tier": principal.autonomy_tier,
            },
            request.action,
            request.resource,
            {
                "authenticated": True,
                "is_autonomous": request.is_autonomous,
                "risk": facts.risk.rank,
                "trust": trust_per_mille(facts.trust),
                "approved": facts.approved,
                "approvals": facts.approvals,
                "quorum": self.quorum,
                "has_reason": _text(context, "reason", "why"),
                "reversible": facts.reversible,
                "low_confidence": low_confidence,
                "low_confidence_disclosed": low_confidence
                and context.get("confidence_disclosed") is True,
                "personal_data": context.get("personal_data") is True,
                "consent": context.get("consent") is True,
                "findings": findings,
            },
        )
        reasons = [_reason(m) for m in result.determining if m.effect is Effect.FORBID]
        reasons += [Reason(message=f"policy evaluation error: {e}") for e in result.errors]
        if result.outcome is Outcome.REJECTED and not reasons:
            # Cedar denies by default when no permit applies: say so, every denial explained.
            reasons.append(
                Reason(
                    message=f"no policy permits {request.action!r} for a {principal.kind} "
                    f"principal at {facts.risk} risk (default deny)",
                    principle="least_privilege",
                )
            )
        if reasons:
            reasons += [
                Reason(
                    message=f"{f.kind} at {f.path}: {f.evidence}",
                    policy_id=getattr(f, "rule", None),
                    principle=getattr(f, "principle", None),
                    severity=str(getattr(f, "severity", "")) or None,
                )
                for f in facts.findings
                if hasattr(f, "path")
            ]
        return PolicyVerdict(
            outcome=result.outcome,
            reasons=tuple(reasons),
            observed=tuple(_reason(m) for m in result.would_deny),
        )
