"""Wiring helpers, the decorator and process_request all go through Gate.decide."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from grace.errors import GovernanceDenied
from grace.governance.approvals import ApprovalStore
from grace.governance.gate import Gate, StaticTrust
from grace.governance.model import Outcome, Principal, PrincipalKind, RiskLevel
from grace.governance.wiring import GovernanceWiring, governed, require_governance
from grace.ledger import Ledger
from grace.testing import FakeClock
from tests.governance.test_gate import RulesEngine, find_rm

AVN = Principal(id="immune_kernel", kind=PrincipalKind.SYSTEM, autonomy_tier=2)
ALICE = Principal(id="alice", kind=PrincipalKind.HUMAN, roles=frozenset({"operator"}))


@pytest.fixture
async def wiring(tmp_path: Path) -> AsyncIterator[GovernanceWiring]:
    """Wiring over a gate with the rules engine and a real ledger."""
    async with await Ledger.open(tmp_path / "data") as ledger:
        clock = FakeClock()
        gate = Gate(
            policies=RulesEngine(),
            analyze=find_rm,
            ledger=ledger,
            approvals=ApprovalStore(tmp_path / "approvals.db", clock=clock),
            clock=clock,
            trust=StaticTrust(0.8),
        )
        yield GovernanceWiring(gate, system=AVN)


async def test_avn_action_severity_sets_the_floor_of_risk(wiring: GovernanceWiring) -> None:
    """A healing step on a critical anomaly is at least critical risk and needs a quorum."""
    routine = await wiring.check_avn_action("clear_cache", "svc:api", "an-1", "low")
    assert routine
    assert routine.risk is RiskLevel.LOW
    grave = await wiring.check_avn_action("restart_service", "svc:api", "an-2", "critical")
    assert not grave
    assert grave.outcome is Outcome.REQUIRES_PARLIAMENT
    assert grave.risk is RiskLevel.CRITICAL


async def test_business_system_and_deployment_checks(wiring: GovernanceWiring) -> None:
    """Each helper maps onto an action the registry knows, and the decision is truthy only
    when allowed."""
    assert await wiring.check_business_operation("execute_task", ALICE, "invoice:7", {"why": "x"})
    change = await wiring.check_system_change("policy_update", "policies", ALICE, {"file": "a"})
    assert change.risk is RiskLevel.CRITICAL
    assert not change
    deploy = await wiring.check_code_deployment(
        "svc:api", AVN, verification={"status": "verified", "safe_to_execute": True}
    )
    assert deploy.outcome is Outcome.REQUIRES_APPROVAL


async def test_process_request_has_the_seed_shape(wiring: GovernanceWiring) -> None:
    """process_request returns allowed/status_code/response; a violation is a 403."""
    ok = await wiring.process_request(ALICE, "execute_task", "task:1")
    assert (ok["allowed"], ok["status_code"]) == (True, 200)
    bad = await wiring.process_request(ALICE, "execute_task", "task:2", {"cmd": "rm -rf /"})
    assert (bad["allowed"], bad["status_code"]) == (False, 403)
    assert bad["response"]["decision"] == "rejected"
    pending = await wiring.process_request(AVN, "execute_task", "t", risk_level="critical")
    assert (pending["allowed"], pending["status_code"]) == (False, 202)
    assert pending["response"]["requires_human_approval"] is True
    assert pending["response"]["approval_id"]


async def test_decorator_runs_the_function_only_when_allowed(wiring: GovernanceWiring) -> None:
    """The body runs under an allowing decision; otherwise GovernanceDenied, body untouched."""
    calls: list[str] = []

    @require_governance(action="execute_task")
    async def run_task(name: str) -> str:
        calls.append(name)
        return name.upper()

    @require_governance(action="deploy_code", is_autonomous=True)
    async def deploy(target: str) -> None:
        calls.append(target)

    with pytest.raises(GovernanceDenied, match="no governance context"):
        await run_task("a")
    with governed(wiring.gate, AVN):
        assert await run_task("b") == "B"
        with pytest.raises(GovernanceDenied, match="requires_approval") as denied:
            await deploy("svc:api")
    assert calls == ["b"]
    decision: Any = denied.value.decision
    assert decision.approval_id is not None


async def test_decorator_context_is_per_task(wiring: GovernanceWiring) -> None:
    """Concurrent tasks keep their own governance context."""

    @require_governance(action="execute_task")
    async def whoami() -> str:
        return "ok"

    async def inside() -> str:
        with governed(wiring.gate, ALICE):
            await asyncio.sleep(0)
            return await whoami()

    async def outside() -> str:
        await asyncio.sleep(0)
        try:
            return await whoami()
        except GovernanceDenied:
            return "denied"

    assert list(await asyncio.gather(inside(), outside())) == ["ok", "denied"]
