"""Gate.decide: risk, facts, policy, trust, modes, approvals, ledger and events."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from grace.governance.approvals import ApprovalStore
from grace.governance.gate import Facts, Gate, GateSettings, PolicyVerdict, StaticTrust
from grace.governance.model import (
    ActionRequest,
    EnforcementMode,
    Outcome,
    Principal,
    PrincipalKind,
    Reason,
    RiskLevel,
)
from grace.ledger import Ledger
from grace.testing import FakeClock

AGENT = Principal(id="agent-7", kind=PrincipalKind.AGENT, autonomy_tier=2)


class RulesEngine:
    """A small policy engine with the constitution's shape of answers."""

    def __init__(self) -> None:
        self.seen: list[Facts] = []

    def evaluate(self, request: ActionRequest, facts: Facts) -> PolicyVerdict:
        self.seen.append(facts)
        if facts.findings:
            return PolicyVerdict(
                outcome=Outcome.REJECTED,
                reasons=tuple(
                    Reason(message=str(f), policy_id="safety.content", principle="beneficence")
                    for f in facts.findings
                ),
            )
        observed = (
            (Reason(message="staged", policy_id="staged.rule"),)
            if "stage" in request.action
            else ()
        )
        if facts.risk is RiskLevel.CRITICAL and facts.approvals < 2:
            return PolicyVerdict(outcome=Outcome.REQUIRES_PARLIAMENT, observed=observed)
        if facts.risk is RiskLevel.HIGH and request.is_autonomous and not facts.approved:
            return PolicyVerdict(
                outcome=Outcome.REQUIRES_APPROVAL,
                reasons=(
                    Reason(message="high-risk autonomous action", policy_id="tiers.approval"),
                ),
                observed=observed,
            )
        return PolicyVerdict(outcome=Outcome.APPROVED, observed=observed)


def find_rm(value: Any, *, root: str) -> tuple[str, ...]:
    """Flags `rm -rf /` anywhere in the request (the real analyzers do much more)."""
    return ("destructive_command",) if "rm -rf /" in repr(value) else ()


class Events:
    """Collects emitted events."""

    def __init__(self) -> None:
        self.emitted: list[tuple[str, Mapping[str, Any]]] = []

    async def emit(self, event_type: str, payload: Mapping[str, Any] | None = None) -> object:
        self.emitted.append((event_type, dict(payload or {})))
        return True


@pytest.fixture
async def ledger(tmp_path: Path) -> Any:
    """A real ledger in a temporary data dir."""
    async with await Ledger.open(tmp_path) as led:
        yield led


def make_gate(ledger: Any, tmp_path: Path, **kw: Any) -> tuple[Gate, Events]:
    """A gate over the rules engine, the real ledger and a real approval store."""
    events = Events()
    clock = FakeClock()
    settings = kw.pop("settings", GateSettings())
    gate = Gate(
        policies=kw.pop("policies", RulesEngine()),
        analyze=find_rm,
        ledger=kw.pop("sink", ledger),
        approvals=ApprovalStore(tmp_path / "approvals.db", clock=clock),
        clock=clock,
        trust=kw.pop("trust", StaticTrust(0.8)),
        events=events,
        settings=settings,
    )
    return gate, events


def req(action: str = "execute_task", **kw: Any) -> ActionRequest:
    """An agent's request."""
    return ActionRequest(
        request_id=kw.pop("request_id", "r1"), principal=AGENT, action=action, **kw
    )


async def test_approved_decision_is_recorded_and_announced(ledger: Ledger, tmp_path: Path) -> None:
    """An approved low-risk action is allowed, in the ledger under its seq, and announced."""
    gate, events = make_gate(ledger, tmp_path)
    decision = await gate.decide(req(resource="task:1", context={"why": "nightly"}))
    assert decision.allowed
    assert decision.outcome is Outcome.APPROVED
    assert decision.risk is RiskLevel.LOW
    assert decision.receipt_seq is not None
    entry = await ledger.get(decision.receipt_seq)
    assert entry is not None
    assert (entry.subsystem, entry.actor, entry.action, entry.result) == (
        "governance",
        "agent-7",
        "execute_task",
        "approved",
    )
    assert entry.payload["decision_id"] == decision.decision_id
    assert events.emitted[0][0] == "governance.decision_made"
    assert (await ledger.verify()).valid


async def test_content_findings_reject_with_the_principle(ledger: Ledger, tmp_path: Path) -> None:
    """A destructive command anywhere in the context is rejected with its principle."""
    gate, _ = make_gate(ledger, tmp_path)
    decision = await gate.decide(
        req(context={"steps": [{"cmd": "sudo rm -rf / --no-preserve-root"}]})
    )
    assert not decision.allowed
    assert decision.outcome is Outcome.REJECTED
    assert decision.reasons[0].principle == "beneficence"
    assert decision.violated_policies == ("safety.content",)


async def test_low_trust_rejects(ledger: Ledger, tmp_path: Path) -> None:
    """Trust under the threshold rejects for human review."""
    gate, _ = make_gate(ledger, tmp_path, trust=StaticTrust(0.2))
    decision = await gate.decide(req())
    assert decision.outcome is Outcome.REJECTED
    assert "below 0.50" in decision.reasons[-1].message


@pytest.mark.parametrize("failure", ["raise", "slow", "out_of_range"])
async def test_failing_inputs_reject_but_log_mode_only_records(
    ledger: Ledger, tmp_path: Path, failure: str
) -> None:
    """A broken, slow or nonsense trust source rejects; log mode records it instead of blocking."""

    class BadTrust:
        async def score(self, subject_id: str) -> float:
            if failure == "raise":
                raise RuntimeError("trust store down")
            if failure == "slow":
                await asyncio.sleep(5)
            return 7.0

    settings = GateSettings(decision_timeout_s=0.05)
    gate, _ = make_gate(ledger, tmp_path, trust=BadTrust(), settings=settings)
    decision = await gate.decide(req())
    assert decision.outcome is Outcome.REJECTED
    assert not decision.allowed
    assert decision.error
    log_gate, _ = make_gate(
        ledger,
        tmp_path,
        trust=BadTrust(),
        settings=GateSettings(mode=EnforcementMode.LOG, decision_timeout_s=0.05),
    )
    logged = await log_gate.decide(req(request_id="r2"))
    assert logged.allowed
    assert logged.outcome is Outcome.REJECTED
    assert logged.receipt_seq is not None
    entry = await ledger.get(logged.receipt_seq)
    assert entry is not None
    assert entry.payload["error"]


async def test_high_risk_autonomous_action_waits_for_a_single_use_approval(
    ledger: Ledger, tmp_path: Path
) -> None:
    """requires_approval opens an approval; once another human approves, the same request
    passes exactly once."""
    gate, _ = make_gate(ledger, tmp_path)
    request = req("deploy_model", resource="model:fraud", is_autonomous=True, context={"v": 2})
    pending = await gate.decide(request)
    assert pending.outcome is Outcome.REQUIRES_APPROVAL
    assert not pending.allowed
    assert pending.approval_id is not None
    await gate.approvals.approve(pending.approval_id, "alice")
    retry = ActionRequest(
        request_id="r2",
        principal=AGENT,
        action="deploy_model",
        resource="model:fraud",
        is_autonomous=True,
        context={"v": 2},
        approval_id=pending.approval_id,
    )
    passed = await gate.decide(retry)
    assert passed.allowed
    assert passed.approval_id == pending.approval_id
    again = await gate.decide(retry)
    assert not again.allowed
    other = ActionRequest(
        request_id="r3",
        principal=AGENT,
        action="deploy_model",
        resource="model:other",
        is_autonomous=True,
        context={"v": 2},
        approval_id=pending.approval_id,
    )
    assert not (await gate.decide(other)).allowed


async def test_critical_actions_need_a_parliament(ledger: Ledger, tmp_path: Path) -> None:
    """requires_parliament opens an approval needing the configured quorum."""
    gate, _ = make_gate(ledger, tmp_path, settings=GateSettings(parliament_quorum=3))
    decision = await gate.decide(req("system:policy_update", resource="policies"))
    assert decision.outcome is Outcome.REQUIRES_PARLIAMENT
    assert decision.approval_id is not None
    approval = await gate.approvals.get(decision.approval_id)
    assert approval is not None
    assert approval.quorum == 3


async def test_log_mode_never_blocks_and_records_the_would_be_outcome(
    ledger: Ledger, tmp_path: Path
) -> None:
    """In log mode a rejection is allowed through, and the ledger says it was a rejection."""
    gate, _ = make_gate(ledger, tmp_path, settings=GateSettings(mode=EnforcementMode.LOG))
    decision = await gate.decide(req(context={"cmd": "rm -rf /"}))
    assert decision.allowed
    assert decision.outcome is Outcome.REJECTED
    assert decision.approval_id is None
    assert decision.receipt_seq is not None
    entry = await ledger.get(decision.receipt_seq)
    assert entry is not None
    assert entry.result == "rejected"
    assert entry.payload["mode"] == "log"
    assert entry.payload["allowed"] is True


async def test_critical_mode_enforces_only_high_risk(ledger: Ledger, tmp_path: Path) -> None:
    """critical mode logs a low-risk rejection but enforces a high-risk one."""
    gate, _ = make_gate(ledger, tmp_path, settings=GateSettings(mode=EnforcementMode.CRITICAL))
    low = await gate.decide(req(context={"cmd": "rm -rf /"}))
    assert low.allowed
    high = await gate.decide(req("deploy_code", request_id="r2", context={"cmd": "rm -rf /"}))
    assert not high.allowed


async def test_per_action_mode_overrides_and_off(ledger: Ledger, tmp_path: Path) -> None:
    """A pattern can put some actions in log mode, or switch governance off for them."""
    settings = GateSettings(
        mode_overrides=(("execute_*", EnforcementMode.LOG), ("GET:*", EnforcementMode.OFF))
    )
    gate, events = make_gate(ledger, tmp_path, settings=settings)
    logged = await gate.decide(req(context={"cmd": "rm -rf /"}))
    assert logged.allowed
    assert logged.mode is EnforcementMode.LOG
    off = await gate.decide(req("GET:/v1/items"))
    assert off.allowed
    assert off.receipt_seq is None
    assert len(events.emitted) == 1


async def test_declared_risk_raises_but_never_lowers(ledger: Ledger, tmp_path: Path) -> None:
    """A route may declare higher risk than the registry, never lower."""
    gate, _ = make_gate(ledger, tmp_path)
    raised = await gate.decide(req(declared_risk=RiskLevel.HIGH, is_autonomous=True))
    assert raised.risk is RiskLevel.HIGH
    assert raised.outcome is Outcome.REQUIRES_APPROVAL
    kept = await gate.decide(req("deploy_code", request_id="r2", declared_risk=RiskLevel.LOW))
    assert kept.risk is RiskLevel.HIGH


async def test_observed_log_rules_are_reported(ledger: Ledger, tmp_path: Path) -> None:
    """Rules staged in observe-only mode are carried on the decision and in the ledger."""
    gate, _ = make_gate(ledger, tmp_path)
    decision = await gate.decide(req("execute_stage_task"))
    assert decision.allowed
    assert [r.policy_id for r in decision.observed] == ["staged.rule"]
    assert decision.receipt_seq is not None
    entry = await ledger.get(decision.receipt_seq)
    assert entry is not None
    assert entry.payload["observed"] == ["staged.rule"]


async def test_unrecordable_decision_is_not_allowed(ledger: Ledger, tmp_path: Path) -> None:
    """If the ledger refuses, an approved action is still not allowed (fail closed)."""

    class BrokenLedger:
        async def append(self, **kwargs: Any) -> Any:
            raise OSError("disk full")

    gate, _ = make_gate(ledger, tmp_path, sink=BrokenLedger())
    decision = await gate.decide(req())
    assert decision.outcome is Outcome.APPROVED
    assert not decision.allowed
    assert decision.error is not None
    assert "could not be recorded" in decision.error
