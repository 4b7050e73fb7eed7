"""deploy_code end to end: real verification sandbox, real gate, ledger and approvals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from grace.decision.deploy import CodeDeployer
from grace.decision.engine import UnifiedDecisionEngine
from grace.decision.model import DecisionAction, TargetState
from grace.governance.approvals import ApprovalState, ApprovalStore
from grace.governance.gate import Gate, StaticTrust
from grace.governance.model import Decision, Outcome, Principal, PrincipalKind
from grace.governance.wiring import GovernanceWiring
from grace.ledger import Ledger
from grace.testing import FakeClock
from grace.verification.engine import VerificationEngine
from grace.verification.model import CodeBundle, VerificationStatus
from grace.verification.sandbox import Sandbox, SandboxLimits, SandboxSettings
from tests.decision.conftest import Immune, Trust
from tests.governance.test_gate import RulesEngine, find_rm

OPERATOR = Principal(id="alice", kind=PrincipalKind.HUMAN, roles=frozenset({"operator"}))
AGENT = Principal(id="agent-7", kind=PrincipalKind.AGENT, autonomy_tier=2)
AVN = Principal(id="immune_kernel", kind=PrincipalKind.SYSTEM, autonomy_tier=2)
APPROVER = "bob"
TARGET = "svc:text"

CODE = 'def shout(text: str) -> str:\n    return text.upper() + "!"\n'
TESTS = "from module import shout\n\n\ndef test_shout():\n    assert shout('hi') == 'HI!'\n"


@dataclass
class World:
    """The object graph of one test."""

    deployer: CodeDeployer
    ledger: Ledger
    approvals: ApprovalStore
    trust: Trust
    immune: Immune
    deployed: list[tuple[CodeBundle, str]]

    async def deploy(self, code: CodeBundle, target: str) -> str:
        """The deploy callable: records what it was given."""
        self.deployed.append((code, target))
        return f"deployed {code.sha256[:12]} to {target}"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """Verification, gate, unified decision and approvals over one real ledger."""
    async with await Ledger.open(tmp_path / "data") as ledger:
        clock = FakeClock()
        approvals = ApprovalStore(tmp_path / "approvals.db", clock=clock, audit=ledger)
        gate = Gate(
            policies=RulesEngine(),
            analyze=find_rm,
            ledger=ledger,
            approvals=approvals,
            clock=clock,
            trust=StaticTrust(0.8),
        )
        limits = SandboxLimits(wall_s=20.0, cpu_s=3, memory_bytes=512 << 20, processes=8)
        verifier = VerificationEngine(
            clock=clock, sandbox=Sandbox(SandboxSettings(limits=limits)), ledger=ledger
        )
        trust, immune = Trust(0.8), Immune()
        decisions = UnifiedDecisionEngine(ledger=ledger, clock=clock, trust=trust, immune=immune)
        deployer = CodeDeployer(
            verifier=verifier, wiring=GovernanceWiring(gate, system=AVN), decisions=decisions
        )
        yield World(deployer, ledger, approvals, trust, immune, [])
        approvals.close()


async def test_verified_code_by_an_operator_is_deployed(world: World) -> None:
    """Clean code with passing tests, approved by governance, runs the deploy callable with
    exactly the verified bytes; every step is in the ledger."""
    outcome = await world.deployer.deploy_code(
        CODE, tests=TESTS, target=TARGET, actor=OPERATOR, deploy=world.deploy, reason="release"
    )
    assert outcome.action is DecisionAction.EXECUTE
    assert outcome.deployed
    assert outcome.verification.status is VerificationStatus.VERIFIED
    assert len(world.deployed) == 1
    code, target = world.deployed[0]
    assert (code.sha256, target) == (outcome.verification.code_sha256, TARGET)
    assert outcome.result == f"deployed {code.sha256[:12]} to {TARGET}"
    page = await world.ledger.query()
    assert [(e.action, e.result) for e in page.entries] == [
        ("verify_code", "verified"),
        ("deploy_code", "approved"),
        ("unified_decision", "execute"),
    ]


async def test_refuted_code_is_rejected_and_never_deployed(world: World) -> None:
    """Code with a failing test is refuted; the unified decision rejects; nothing deploys."""
    outcome = await world.deployer.deploy_code(
        CODE.replace('"!"', '"?"'), tests=TESTS, target=TARGET, actor=OPERATOR, deploy=world.deploy
    )
    assert outcome.action is DecisionAction.REJECT
    assert not outcome.deployed
    assert world.deployed == []


async def test_obfuscated_code_is_rejected_without_running_anything(world: World) -> None:
    """base64-then-exec never reaches the sandbox, the gate's approval or the deployer."""
    evil = "import base64\nexec(base64.b64decode('cHJpbnQoMSk='))\n" + CODE
    outcome = await world.deployer.deploy_code(
        evil, tests=TESTS, target=TARGET, actor=AGENT, deploy=world.deploy
    )
    assert outcome.action is DecisionAction.REJECT
    assert outcome.verification.tests is None
    assert world.deployed == []


async def test_autonomous_deploy_escalates_then_runs_once_approved(world: World) -> None:
    """An agent's deployment needs approval: escalate with the gate's approval; after a
    human approves, presenting it deploys; the approval cannot be used twice."""
    first = await world.deployer.deploy_code(
        CODE, tests=TESTS, target=TARGET, actor=AGENT, deploy=world.deploy
    )
    assert first.action is DecisionAction.ESCALATE
    assert first.approval_id is not None
    assert isinstance(first.governance, Decision)
    assert first.governance.outcome is Outcome.REQUIRES_APPROVAL
    assert world.deployed == []
    await world.approvals.approve(first.approval_id, APPROVER)
    second = await world.deployer.deploy_code(
        CODE, tests=TESTS, target=TARGET, actor=AGENT, deploy=world.deploy,
        approval_id=first.approval_id,
    )  # fmt: skip
    assert second.action is DecisionAction.EXECUTE
    assert len(world.deployed) == 1
    approval = await world.approvals.get(first.approval_id)
    assert approval is not None
    assert approval.state is ApprovalState.CONSUMED
    third = await world.deployer.deploy_code(
        CODE, tests=TESTS, target=TARGET, actor=AGENT, deploy=world.deploy,
        approval_id=first.approval_id,
    )  # fmt: skip
    assert third.action is not DecisionAction.EXECUTE
    assert len(world.deployed) == 1


async def test_an_approval_is_bound_to_the_code_it_was_granted_for(world: World) -> None:
    """Approval granted for one code cannot deploy different code."""
    first = await world.deployer.deploy_code(
        CODE, tests=TESTS, target=TARGET, actor=AGENT, deploy=world.deploy
    )
    assert first.approval_id is not None
    await world.approvals.approve(first.approval_id, APPROVER)
    other = CODE + "\n\nVERSION = 2\n"
    swapped = await world.deployer.deploy_code(
        other, tests=TESTS, target=TARGET, actor=AGENT, deploy=world.deploy,
        approval_id=first.approval_id,
    )  # fmt: skip
    assert swapped.action is not DecisionAction.EXECUTE
    assert world.deployed == []


async def test_low_trust_escalation_creates_an_approval(world: World) -> None:
    """When the unified engine escalates on its own (low trust), the flow opens an
    approval bound to the deployment; granting it lets the deployment run."""
    world.trust.value = 0.3
    first = await world.deployer.deploy_code(
        CODE, tests=TESTS, target=TARGET, actor=OPERATOR, deploy=world.deploy
    )
    assert first.action is DecisionAction.ESCALATE
    assert first.approval_id is not None
    pending = await world.approvals.get(first.approval_id)
    assert pending is not None
    assert pending.state is ApprovalState.PENDING
    assert pending.summary["unified_decision_id"] == first.decision.decision_id
    await world.approvals.approve(first.approval_id, APPROVER)
    second = await world.deployer.deploy_code(
        CODE, tests=TESTS, target=TARGET, actor=OPERATOR, deploy=world.deploy,
        approval_id=first.approval_id,
    )  # fmt: skip
    assert second.action is DecisionAction.EXECUTE
    assert len(world.deployed) == 1


async def test_critical_incident_on_the_target_pauses_the_deployment(world: World) -> None:
    """The immune state of the target holds a verified, approved deployment."""
    world.immune.state = TargetState(active_incident_severity="critical", incident_id="inc-7")
    outcome = await world.deployer.deploy_code(
        CODE, tests=TESTS, target=TARGET, actor=OPERATOR, deploy=world.deploy
    )
    assert outcome.action is DecisionAction.PAUSE
    assert "inc-7" in outcome.decision.summary
    assert world.deployed == []
