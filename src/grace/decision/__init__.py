"""Unified decision: governance, verification, trust and immune state → one action.

>>> from grace.decision import DecisionAction, UnifiedDecisionEngine
>>> # decision = await engine.decide(target=..., actor=..., governance=..., verification=...)
"""

from grace.decision.deploy import CodeDeployer, DeployFunction, DeploymentOutcome
from grace.decision.engine import DECISION_READY_EVENT, DecisionSettings, UnifiedDecisionEngine
from grace.decision.model import (
    Contribution,
    DecisionAction,
    ImmuneState,
    Signal,
    TargetState,
    Unavailable,
    UnifiedDecision,
)

__all__ = [
    "DECISION_READY_EVENT",
    "CodeDeployer",
    "Contribution",
    "DecisionAction",
    "DecisionSettings",
    "DeployFunction",
    "DeploymentOutcome",
    "ImmuneState",
    "Signal",
    "TargetState",
    "Unavailable",
    "UnifiedDecision",
    "UnifiedDecisionEngine",
]
