"""UnifiedDecisionEngine: every precedence rule, unavailable inputs, ledger and events."""

from __future__ import annotations

from typing import Any

import pytest

from grace.decision.engine import DecisionSettings, UnifiedDecisionEngine
from grace.decision.model import DecisionAction, Signal, TargetState, Unavailable
from grace.errors import DecisionError
from grace.governance.model import EnforcementMode, Outcome, Principal, PrincipalKind
from grace.ledger import Ledger
from grace.testing import FakeClock
from grace.verification.model import VerificationStatus
from tests.decision.conftest import Events, Immune, Trust, governance, verdict

AGENT = Principal(id="agent-7", kind=PrincipalKind.AGENT, autonomy_tier=2)
TARGET = "svc:api"


def engine(
    ledger: Any,
    *,
    trust: Trust | None = None,
    immune: Immune | None = None,
    events: Events | None = None,
    settings: DecisionSettings | None = None,
) -> UnifiedDecisionEngine:
    """An engine over a real ledger with fake trust and immune sources."""
    return UnifiedDecisionEngine(
        ledger=ledger,
        clock=FakeClock(),
        trust=trust if trust is not None else Trust(0.8),
        immune=immune if immune is not None else Immune(),
        events=events,
        settings=settings,
    )


async def test_all_clear_executes_recorded_and_announced(ledger: Ledger) -> None:
    """With every input clear the action executes; the rationale names each input."""
    events = Events()
    decision = await engine(ledger, events=events).decide(
        target=TARGET, actor=AGENT, governance=governance(), verification=verdict()
    )
    assert decision.action is DecisionAction.EXECUTE
    assert decision.allowed
    assert decision.confidence == pytest.approx(0.8)  # min(verification 0.9, trust 0.8)
    assert [c.input for c in decision.rationale] == [
        "governance",
        "verification",
        "immune",
        "trust",
    ]
    assert not any(c.decisive for c in decision.rationale)
    assert decision.receipt_seq is not None
    entry = await ledger.get(decision.receipt_seq)
    assert entry is not None
    assert (entry.action, entry.result, entry.resource) == ("unified_decision", "execute", TARGET)
    assert entry.payload["decision_id"] == decision.decision_id
    assert events.emitted == [("unified.decision_ready", decision.to_json())]


async def test_governance_veto_comes_first(ledger: Ledger) -> None:
    """A governance rejection rejects even when verification also refutes."""
    decision = await engine(ledger, trust=Trust(0.1)).decide(
        target=TARGET,
        actor=AGENT,
        governance=governance(Outcome.REJECTED, reason="destructive command"),
        verification=verdict(VerificationStatus.REFUTED),
    )
    assert decision.action is DecisionAction.REJECT
    assert decision.confidence == 1.0
    decisive = [c for c in decision.rationale if c.decisive]
    assert [c.input for c in decisive] == ["governance"]
    assert "destructive command" in decisive[0].detail


async def test_refuted_verification_rejects_before_immune_and_trust(ledger: Ledger) -> None:
    """Refuted code is rejected even when the target is quarantined and trust is low."""
    decision = await engine(
        ledger, trust=Trust(0.1), immune=Immune(TargetState(quarantined=True))
    ).decide(
        target=TARGET,
        actor=AGENT,
        governance=governance(),
        verification=verdict(VerificationStatus.REFUTED, confidence=0.95),
    )
    assert decision.action is DecisionAction.REJECT
    assert decision.confidence == 0.95
    assert decision.summary.startswith("reject (verification: refuted (GR102)")


@pytest.mark.parametrize(
    ("state", "action"),
    [
        (TargetState(active_incident_severity="critical", incident_id="inc-1"), "pause"),
        (TargetState(quarantined=True), "pause"),
        (TargetState(active_incident_severity="high", rollback_recommended=True), "rollback"),
    ],
)
async def test_critical_immune_state_comes_before_trust(
    ledger: Ledger, state: TargetState, action: str
) -> None:
    """A critical incident or quarantine pauses, a rollback request rolls back — before
    low trust is considered."""
    decision = await engine(ledger, trust=Trust(0.1), immune=Immune(state)).decide(
        target=TARGET, actor=AGENT, governance=governance(), verification=verdict()
    )
    assert decision.action == action
    assert [c.input for c in decision.rationale if c.decisive] == ["immune"]


async def test_trust_below_threshold_escalates_for_human_review(ledger: Ledger) -> None:
    """An actor below the trust threshold is escalated, not executed."""
    decision = await engine(ledger, trust=Trust(0.3)).decide(
        target=TARGET, actor=AGENT, governance=governance(), verification=verdict()
    )
    assert decision.action is DecisionAction.ESCALATE
    assert "below 0.50" in decision.summary


@pytest.mark.parametrize(
    ("status", "action"),
    [(VerificationStatus.INCONCLUSIVE, "escalate"), (VerificationStatus.ERROR, "retry")],
)
async def test_the_rest_inconclusive_escalates_and_error_retries(
    ledger: Ledger, status: VerificationStatus, action: str
) -> None:
    """An inconclusive verdict needs a human; a verifier that could not run is retried."""
    decision = await engine(ledger).decide(
        target=TARGET, actor=AGENT, governance=governance(), verification=verdict(status)
    )
    assert decision.action == action


async def test_pending_governance_approval_escalates_with_its_id(ledger: Ledger) -> None:
    """A decision awaiting approval escalates and carries the approval to wait for."""
    decision = await engine(ledger).decide(
        target=TARGET,
        actor=AGENT,
        governance=governance(Outcome.REQUIRES_APPROVAL, approval_id="apr_1"),
        verification=verdict(),
    )
    assert decision.action is DecisionAction.ESCALATE
    assert decision.approval_id == "apr_1"


async def test_high_incident_escalates_and_minor_one_lowers_confidence(ledger: Ledger) -> None:
    """A high incident escalates; a low one only lowers the confidence of execute."""
    high = await engine(ledger, immune=Immune(TargetState(active_incident_severity="high"))).decide(
        target=TARGET, actor=AGENT, governance=governance(), verification=verdict()
    )
    assert high.action is DecisionAction.ESCALATE
    low = await engine(ledger, immune=Immune(TargetState(active_incident_severity="low"))).decide(
        target=TARGET, actor=AGENT, governance=governance(), verification=verdict()
    )
    assert low.action is DecisionAction.EXECUTE
    assert low.confidence == pytest.approx(0.72)


async def test_signals_come_last_and_can_ask_for_rollback(ledger: Ledger) -> None:
    """An extra signal decides only when nothing before it objects."""
    canary = Signal(name="canary", action=DecisionAction.ROLLBACK, detail="5% errors")
    decision = await engine(ledger).decide(
        target=TARGET, actor=AGENT, governance=governance(), signals=[canary]
    )
    assert decision.action is DecisionAction.ROLLBACK
    assert decision.rationale[-1].input == "signal:canary"
    low_trust = await engine(ledger, trust=Trust(0.2)).decide(
        target=TARGET, actor=AGENT, governance=governance(), signals=[canary]
    )
    assert low_trust.action is DecisionAction.ESCALATE


async def test_no_verification_means_not_required(ledger: Ledger) -> None:
    """An action without code executes without a verdict; the rationale says so."""
    decision = await engine(ledger).decide(target=TARGET, actor="ops", governance=governance())
    assert decision.action is DecisionAction.EXECUTE
    assert decision.rationale[1].detail == "not required"


async def test_log_mode_allowance_does_not_veto(ledger: Ledger) -> None:
    """Governance in log mode lets the action run; the would-be outcome is noted."""
    logged = governance(Outcome.REJECTED, allowed=True, mode=EnforcementMode.LOG)
    decision = await engine(ledger).decide(
        target=TARGET, actor=AGENT, governance=logged, verification=verdict()
    )
    assert decision.action is DecisionAction.EXECUTE
    assert "would be rejected" in decision.rationale[0].detail


# -- unavailable inputs -----------------------------------------------------------------


def _broken_trust() -> Trust:
    return Trust(error=ConnectionError("trust store down"))


def _hanging_trust() -> Trust:
    trust = Trust()
    trust.hang = True
    return trust


@pytest.mark.parametrize(
    ("case", "input_name"),
    [
        ("governance", "governance"),
        ("verification", "verification"),
        ("trust_raises", "trust"),
        ("trust_hangs", "trust"),
        ("trust_out_of_range", "trust"),
        ("immune_raises", "immune"),
        ("immune_missing", "immune"),
        ("signal", "signal"),
    ],
)
async def test_an_unavailable_input_pauses_never_executes(
    ledger: Ledger, case: str, input_name: str
) -> None:
    """Each input, when unavailable, blocks with pause and is named as the reason."""
    kwargs: dict[str, Any] = {"governance": governance(), "verification": verdict()}
    trust: Trust | None = None
    immune: Immune | None = None
    settings = DecisionSettings(fetch_timeout_s=0.05)
    if case == "governance":
        kwargs["governance"] = Unavailable(reason="gate timed out")
    elif case == "verification":
        kwargs["verification"] = Unavailable(reason="verifier crashed")
    elif case == "trust_raises":
        trust = _broken_trust()
    elif case == "trust_hangs":
        trust = _hanging_trust()
    elif case == "trust_out_of_range":
        trust = Trust(1.7)
    elif case == "immune_raises":
        immune = Immune(error=RuntimeError("kernel unreachable"))
    elif case == "signal":
        kwargs["signals"] = [Unavailable(reason="canary metrics missing")]
    eng = engine(ledger, trust=trust, immune=immune, settings=settings)
    if case == "immune_missing":
        eng = UnifiedDecisionEngine(ledger=ledger, clock=FakeClock(), trust=Trust(0.9))
    decision = await eng.decide(target=TARGET, actor=AGENT, **kwargs)
    assert decision.action is DecisionAction.PAUSE
    assert not decision.allowed
    decisive = [c for c in decision.rationale if c.decisive]
    assert [c.input for c in decisive] == [input_name]
    assert not decisive[0].available


async def test_a_missing_input_does_not_hide_a_certain_rejection(ledger: Ledger) -> None:
    """With governance unavailable, refuted code is still rejected (not merely paused)."""
    decision = await engine(ledger).decide(
        target=TARGET,
        actor=AGENT,
        governance=Unavailable(reason="gate timed out"),
        verification=verdict(VerificationStatus.REFUTED),
    )
    assert decision.action is DecisionAction.REJECT


async def test_granted_approval_satisfies_escalations_but_not_vetoes(ledger: Ledger) -> None:
    """A consumed approval accepts low trust; it never overrides a critical incident."""
    approved = governance(Outcome.APPROVED, approval_id="apr_9")
    ok = await engine(ledger, trust=Trust(0.2)).decide(
        target=TARGET, actor=AGENT, governance=approved, verification=verdict()
    )
    assert ok.action is DecisionAction.EXECUTE
    assert "accepted by the granted approval" in ok.rationale[3].detail
    critical = Immune(TargetState(active_incident_severity="critical"))
    held = await engine(ledger, trust=Trust(0.2), immune=critical).decide(
        target=TARGET, actor=AGENT, governance=approved, verification=verdict()
    )
    assert held.action is DecisionAction.PAUSE


class FailingSink:
    """An audit sink that cannot write."""

    async def append(self, **_: Any) -> Any:
        raise OSError("disk full")


async def test_an_unrecorded_decision_never_executes() -> None:
    """If the ledger refuses the decision, execute becomes pause with the error."""
    decision = await engine(FailingSink()).decide(
        target=TARGET, actor=AGENT, governance=governance(), verification=verdict()
    )
    assert decision.action is DecisionAction.PAUSE
    assert decision.receipt_seq is None
    assert "could not be recorded" in (decision.error or "")


async def test_unusable_input_raises_decision_error(ledger: Ledger) -> None:
    """A verdict for another target, or a wrong type, is an error naming the input."""
    eng = engine(ledger)
    with pytest.raises(DecisionError, match="is for 'svc:other'"):
        await eng.decide(
            target=TARGET,
            actor=AGENT,
            governance=governance(),
            verification=verdict(target="svc:other"),
        )
    with pytest.raises(DecisionError, match="governance must be"):
        await eng.decide(target=TARGET, actor=AGENT, governance="approved")  # type: ignore[arg-type]
    with pytest.raises(DecisionError, match="trust must be"):
        await eng.decide(target=TARGET, actor=AGENT, governance=governance(), trust=True)


def test_settings_and_values_validate() -> None:
    """Thresholds, severities and signals are checked when built."""
    with pytest.raises(ValueError, match="min_trust"):
        DecisionSettings(min_trust=1.5)
    with pytest.raises(ValueError, match="escalate_at"):
        DecisionSettings(pause_at="medium", escalate_at="high")
    with pytest.raises(ValueError, match="incident severity"):
        TargetState(active_incident_severity="apocalyptic")
    with pytest.raises(ValueError, match="cannot ask to execute"):
        Signal(name="s", action=DecisionAction.EXECUTE)
