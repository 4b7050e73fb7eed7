"""The constitution engine turns analyzer findings and server facts into outcomes."""

from __future__ import annotations

from grace.governance.analyzers import analyze
from grace.governance.constitution import Constitution
from grace.governance.engine import ConstitutionEngine
from grace.governance.gate import Facts
from grace.governance.model import ActionRequest, Outcome, Principal, PrincipalKind, RiskLevel

ALICE = Principal(id="alice", kind=PrincipalKind.HUMAN, roles=frozenset({"operator"}))


def test_an_unanalyzable_request_is_rejected_with_its_reason() -> None:
    """A request nested too deep to analyze in full is rejected (fail closed), explained."""
    deep: dict[str, object] = {"x": "ok"}
    for _ in range(80):
        deep = {"nested": deep}
    request = ActionRequest(request_id="r", principal=ALICE, action="execute_task", context=deep)
    findings = analyze({"context": request.context}, root="request")
    assert "analysis_incomplete" in {str(f.kind) for f in findings}
    verdict = ConstitutionEngine(Constitution()).evaluate(
        request, Facts(risk=RiskLevel.LOW, trust=0.9, findings=tuple(findings))
    )
    assert verdict.outcome is Outcome.REJECTED
    assert verdict.reasons[0].policy_id == "beneficence-unanalyzable-request"
