"""Policy test cases: YAML files of requests and the outcomes the constitution must give.

A case file is a list of mappings::

    - name: agents may not deploy without approval
      principal: {id: agent-7, kind: agent, roles: [], tier: 2}
      action: deploy_model
      resource: model:fraud
      context: {reason: "v2 passed evaluation"}
      is_autonomous: true
      trust: 0.8            # optional, default 0.75
      approvals: 0          # optional: approvals attached (approved when > 0)
      expect: requires_approval
      expect_policies: [some-policy-id]   # optional: must be among the determining policies

Facts are computed the way the gate computes them: risk from the action registry, findings
from the analyzers over action, resource and context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from grace.errors import PolicyError
from grace.governance.analyzers import analyze
from grace.governance.engine import ConstitutionEngine
from grace.governance.gate import Facts, PolicyVerdict
from grace.governance.model import ActionRequest, Outcome, Principal, PrincipalKind
from grace.governance.risk import ActionRegistry

__all__ = ["CaseResult", "PolicyCase", "explain", "load_cases", "run_cases"]


class _PrincipalSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    kind: PrincipalKind
    roles: list[str] = Field(default_factory=list)
    tier: int = Field(default=0, ge=0, le=3)


class PolicyCase(BaseModel):
    """One request and the outcome it must get."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    principal: _PrincipalSpec
    action: str = Field(min_length=1)
    resource: str = ""
    context: dict[str, Any] = Field(default_factory=dict)
    is_autonomous: bool = False
    trust: float = Field(default=0.75, ge=0, le=1)
    approvals: int = Field(default=0, ge=0)
    expect: Outcome
    expect_policies: list[str] = Field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseResult:
    """How one case went."""

    case: PolicyCase
    verdict: PolicyVerdict
    passed: bool
    problem: str = ""


def load_cases(path: Path) -> list[PolicyCase]:
    """Parse a case file; :class:`PolicyError` names the file and the case that is wrong."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise PolicyError(f"{path}: cannot read policy cases: {e}") from e
    if not isinstance(data, list) or not data:
        raise PolicyError(f"{path}: policy cases must be a non-empty list")
    cases = []
    for i, item in enumerate(data):
        try:
            cases.append(PolicyCase.model_validate(item))
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()
            )
            raise PolicyError(f"{path}: case {i + 1}: {problems}") from e
    return cases


def _request(case: PolicyCase) -> ActionRequest:
    p = case.principal
    return ActionRequest(
        request_id=f"case:{case.name}",
        principal=Principal(id=p.id, kind=p.kind, roles=frozenset(p.roles), autonomy_tier=p.tier),
        action=case.action,
        resource=case.resource,
        context=case.context,
        is_autonomous=case.is_autonomous,
        source="policy-test",
    )


def explain(
    engine: ConstitutionEngine,
    request: ActionRequest,
    *,
    trust: float = 0.75,
    approvals: int = 0,
    registry: ActionRegistry | None = None,
) -> tuple[Facts, PolicyVerdict]:
    """The facts the gate would establish, and the constitution's verdict on them."""
    info = (registry or ActionRegistry()).classify(request.action)
    findings = analyze(
        {"action": request.action, "resource": request.resource, "context": request.context},
        root="request",
    )
    facts = Facts(
        risk=info.risk,
        trust=trust,
        findings=tuple(findings),
        approved=approvals > 0,
        approvals=approvals,
        reversible=info.reversible,
    )
    return facts, engine.evaluate(request, facts)


def run_cases(engine: ConstitutionEngine, cases: Sequence[PolicyCase]) -> list[CaseResult]:
    """Evaluate every case."""
    results = []
    for case in cases:
        _, verdict = explain(engine, _request(case), trust=case.trust, approvals=case.approvals)
        ids = {r.policy_id for r in verdict.reasons if r.policy_id}
        missing = [p for p in case.expect_policies if p not in ids]
        problem = ""
        if verdict.outcome is not case.expect:
            problem = f"expected {case.expect}, got {verdict.outcome}"
        elif missing:
            problem = f"policies {missing} did not decide (got {sorted(ids)})"
        results.append(CaseResult(case=case, verdict=verdict, passed=not problem, problem=problem))
    return results
