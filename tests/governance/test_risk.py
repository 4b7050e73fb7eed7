"""Risk comes from the server-side registry, with safe defaults for the unknown."""

from __future__ import annotations

import pytest

from grace.governance.model import RiskLevel
from grace.governance.risk import ActionRegistry, RiskRule


@pytest.mark.parametrize(
    ("action", "risk", "critical"),
    [
        ("execute_task", RiskLevel.LOW, False),
        ("deploy_code", RiskLevel.HIGH, False),
        ("avn:restart_service", RiskLevel.MEDIUM, False),
        ("avn:scale_up", RiskLevel.MEDIUM, False),
        ("system:policy_update", RiskLevel.CRITICAL, True),
        ("system:anything_else", RiskLevel.HIGH, True),
        ("GET:/v1/items/{id}", RiskLevel.LOW, False),
        ("POST:/v1/items", RiskLevel.MEDIUM, False),
        ("DELETE:/v1/items/{id}", RiskLevel.HIGH, False),
        ("POST:/v1/approvals/{id}/approve", RiskLevel.HIGH, True),
        ("something_new", RiskLevel.MEDIUM, False),
        ("BREW:/coffee", RiskLevel.MEDIUM, False),
    ],
)
def test_default_registry_classifies(action: str, risk: RiskLevel, critical: bool) -> None:
    """Known actions get their rule, HTTP falls back by method, the unknown is medium."""
    assert ActionRegistry().classify(action)[:2] == (risk, critical)


def test_first_matching_rule_wins_and_results_are_cached() -> None:
    """Rules are ordered; a repeated lookup returns the cached answer."""
    registry = ActionRegistry(
        [
            RiskRule(pattern="POST:/v1/pay*", risk=RiskLevel.CRITICAL, critical=True),
            RiskRule(pattern="POST:*", risk=RiskLevel.LOW),
        ]
    )
    assert registry.classify("POST:/v1/payments") == (RiskLevel.CRITICAL, True, True)
    assert registry.classify("POST:/v1/notes") == (RiskLevel.LOW, False, True)
    assert registry.classify("POST:/v1/notes") == (RiskLevel.LOW, False, True)
    assert ActionRegistry().classify("DELETE:/v1/items/{id}").reversible is False


def test_risk_levels_are_ordered() -> None:
    """at_least keeps the higher risk, so a caller can raise but never lower it."""
    assert RiskLevel.LOW.at_least(RiskLevel.HIGH) is RiskLevel.HIGH
    assert RiskLevel.CRITICAL.at_least(RiskLevel.LOW) is RiskLevel.CRITICAL
    with pytest.raises(ValueError, match="non-empty"):
        RiskRule(pattern=" ", risk=RiskLevel.LOW)
