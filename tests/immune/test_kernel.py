"""ImmuneKernel with a real gate (the default constitution), a real ledger and fake time:
incidents, governed steps, verification, rollback, escalation, budget and bad input."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from grace.errors import ImmuneError
from grace.governance.analyzers import analyze
from grace.governance.approvals import ApprovalStore
from grace.governance.constitution import Constitution
from grace.governance.engine import ConstitutionEngine
from grace.governance.gate import Gate, StaticTrust
from grace.governance.model import Principal, PrincipalKind
from grace.governance.wiring import GovernanceWiring
from grace.immune.budget import BudgetSettings
from grace.immune.controls import IngressControls
from grace.immune.escalation import Escalator
from grace.immune.executors import (
    ActionContext,
    CircuitBreakerExecutor,
    EscalateExecutor,
    ExecutorRegistry,
    PythonCallableExecutor,
    RateLimitExecutor,
)
from grace.immune.intake import anomaly_from_event
from grace.immune.kernel import ImmuneKernel, KernelSettings
from grace.immune.leases import LeaseStore
from grace.immune.playbooks import parse_playbooks
from grace.immune.taxonomy import Anomaly, AnomalyType, IncidentState, Severity
from grace.immune.verify import Verifier
from grace.ledger import Entry, Ledger
from grace.mesh.event import TriggerEvent
from grace.testing import FakeClock

GRACE = Principal(
    id="grace", kind=PrincipalKind.SYSTEM, roles=frozenset({"system"}), autonomy_tier=3
)

RESTART_THEN_ESCALATE = """
version: 1
playbooks:
  - name: fix
    match: {types: [service_down, latency_spike], min_severity: low}
    cooldown_s: 0
    steps:
      - action: restart_service
        executor: python_callable
        params: {callable: restart, target: "{resource}"}
        verify: {kind: health, timeout_s: 5, interval_s: 1, consecutive: 2}
      - action: escalate_to_human
        params: {reason: "restart did not fix {resource}"}
"""


class Events:
    """An EventSink that remembers what was emitted."""

    def __init__(self) -> None:
        self.emitted: list[tuple[str, dict[str, Any]]] = []

    async def emit(
        self, event_or_type: Any, payload: Mapping[str, Any] | None = None, **kw: Any
    ) -> object:
        self.emitted.append((str(event_or_type), dict(payload or {})))
        return True

    def types(self) -> list[str]:
        """The emitted event types in order."""
        return [t for t, _ in self.emitted]


class FakeHealth:
    """A HealthProber answering from a script per target (then a default)."""

    def __init__(self) -> None:
        self.script: dict[str, list[bool]] = {}
        self.default = True
        self.probes: list[str] = []
        self.probed = asyncio.Event()
        self.gate: asyncio.Event | None = None

    async def is_healthy(self, name: str) -> bool:
        self.probes.append(name)
        self.probed.set()
        if self.gate is not None:
            await self.gate.wait()
        queue = self.script.get(name)
        return queue.pop(0) if queue else self.default


@dataclass
class Harness:
    """A kernel and everything around it."""

    kernel: ImmuneKernel
    ledger: Ledger
    clock: FakeClock
    events: Events
    health: FakeHealth
    controls: IngressControls
    approvals: ApprovalStore
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def entries(self) -> list[Entry]:
        """Every ledger entry, in order."""
        return list((await self.ledger.query(limit=10_000)).entries)

    async def avn(self, action: str) -> list[Entry]:
        """Ledger entries of the kernel with ``action``."""
        return [e for e in await self.entries() if e.subsystem == "avn" and e.action == action]


def anomaly(
    n: int = 1,
    *,
    resource: str = "checkout",
    kind: AnomalyType = AnomalyType.SERVICE_DOWN,
    severity: Severity = Severity.MEDIUM,
    clock: FakeClock | None = None,
) -> Anomaly:
    """An anomaly report."""
    return Anomaly(
        anomaly_id=f"an-{n}",
        anomaly_type=kind,
        severity=severity,
        resource=resource,
        detected_at=(clock or FakeClock()).now(),
        source="metrics_monitor",
        score=0.9,
    )


Callables = Mapping[str, Callable[[ActionContext], Awaitable[Mapping[str, Any] | None]]]


@contextlib.asynccontextmanager
async def harness(
    tmp_path: Path,
    playbooks: str = RESTART_THEN_ESCALATE,
    *,
    trust: float = 0.9,
    settings: KernelSettings | None = None,
    callables: Callables | None = None,
    leases: LeaseStore | None = None,
    holder: str | None = None,
    clock: FakeClock | None = None,
) -> AsyncIterator[Harness]:
    """A kernel over a real gate and ledger, fake time and fake health."""
    clock = clock or FakeClock()
    async with await Ledger.open(tmp_path / "ledger", clock=clock) as ledger:
        approvals = ApprovalStore(tmp_path / "approvals.db", clock=clock, audit=ledger)
        gate = Gate(
            policies=ConstitutionEngine(Constitution()),
            analyze=analyze,
            ledger=ledger,
            approvals=approvals,
            clock=clock,
            trust=StaticTrust(trust),
        )
        events = Events()
        health = FakeHealth()
        controls = IngressControls(clock=clock)
        escalator = Escalator(ledger=ledger, clock=clock, events=events)
        calls: list[tuple[str, dict[str, Any]]] = []

        async def restart(ctx: ActionContext) -> dict[str, Any]:
            calls.append(("restart", dict(ctx.params)))
            return {"restarted": ctx.resource}

        async def sleep(seconds: float) -> None:
            clock.advance(seconds)
            await asyncio.sleep(0)

        registry = ExecutorRegistry(
            [
                PythonCallableExecutor({"restart": restart, **(callables or {})}),
                EscalateExecutor(escalator),
                CircuitBreakerExecutor(controls),
                RateLimitExecutor(controls),
            ]
        )
        kernel = ImmuneKernel(
            governance=GovernanceWiring(gate, system=GRACE),
            ledger=ledger,
            clock=clock,
            playbooks=parse_playbooks(playbooks, source="test.yaml"),
            executors=registry,
            verifier=Verifier(clock=clock, health=health, controls=controls, sleep=sleep),
            escalator=escalator,
            events=events,
            settings=settings,
            leases=leases,
            holder=holder,
        )
        try:
            yield Harness(kernel, ledger, clock, events, health, controls, approvals, calls)
        finally:
            await kernel.stop()
            approvals.close()


async def test_healed_incident_is_recorded_in_order_with_the_decision_seq(tmp_path: Path) -> None:
    """anomaly → decision → executed (citing the decision's seq) → verify → resolved, in order."""
    async with harness(tmp_path) as h:
        incident = await h.kernel.report(anomaly(clock=h.clock))
        await h.kernel.wait_idle()
        assert incident is not None
        assert h.calls == [("restart", {"callable": "restart", "target": "checkout"})]
        done = h.kernel.incidents.get(incident.incident_id)
        assert done is not None
        assert done.state is IncidentState.RESOLVED
        entries = await h.entries()
        chain = [
            (e.subsystem, e.action, e.result)
            for e in entries
            if e.subsystem in ("avn", "governance")
        ]
        assert chain == [
            ("avn", "anomaly_detected", "medium"),
            ("governance", "avn:restart_service", "approved"),
            ("avn", "restart_service", "executed"),
            ("avn", "verify", "passed"),
            ("avn", "incident_resolved", "resolved"),
        ]
        decision = next(e for e in entries if e.action == "avn:restart_service")
        executed = next(e for e in entries if e.action == "restart_service")
        assert executed.payload["decision_seq"] == decision.seq
        assert executed.payload["incident_id"] == incident.incident_id
        assert h.events.types() == [
            "avn.anomaly_detected",
            "avn.healing_action",
            "avn.healing_executed",
        ]
        stats = h.kernel.get_stats()
        assert stats["healing_attempts"] == stats["healing_successes"] == 1
        assert stats["success_rate"] == 1.0
        assert stats["active_anomalies"] == 0
        assert stats["mean_time_to_recovery_s"] is not None


async def test_alerts_of_one_resource_and_type_merge_into_one_incident(tmp_path: Path) -> None:
    """Two alerts of the same resource and type within the window are one incident; a
    different type is another."""
    async with harness(tmp_path) as h:
        h.health.gate = asyncio.Event()  # hold verification so the first run stays open
        first = await h.kernel.report(anomaly(1, clock=h.clock))
        await asyncio.sleep(0)
        second = await h.kernel.report(anomaly(2, clock=h.clock))
        other = await h.kernel.report(anomaly(3, kind=AnomalyType.LATENCY_SPIKE, clock=h.clock))
        assert first is not None
        assert second is not None
        assert other is not None
        assert second.incident_id == first.incident_id
        assert other.incident_id != first.incident_id
        h.health.gate.set()
        await h.kernel.wait_idle()
        assert len(await h.avn("anomaly_detected")) == 2
        stats = h.kernel.get_stats()
        assert stats["anomalies_detected"] == 3
        assert stats["alerts_deduplicated"] + stats["alerts_held"] == 1


async def test_alerts_arriving_while_healing_are_held(tmp_path: Path) -> None:
    """While an incident is being healed, a new alert for it is held, not acted upon."""
    async with harness(tmp_path) as h:
        h.health.gate = asyncio.Event()
        incident = await h.kernel.report(anomaly(1, clock=h.clock))
        assert incident is not None
        await h.health.probed.wait()  # the run reached verification
        held = await h.kernel.report(anomaly(2, clock=h.clock))
        assert held is not None
        assert held.state is IncidentState.HEALING
        assert held.held_count == 1
        h.health.gate.set()
        await h.kernel.wait_idle()
        assert len(h.calls) == 1
        assert h.kernel.get_stats()["alerts_held"] == 1


async def test_governance_rejection_means_no_action_and_an_escalation(tmp_path: Path) -> None:
    """With the kernel's trust below the gate's threshold the step is rejected: nothing
    runs, and the escalation says why."""
    async with harness(tmp_path, trust=0.2) as h:
        incident = await h.kernel.report(anomaly(clock=h.clock))
        await h.kernel.wait_idle()
        assert incident is not None
        assert h.calls == []
        blocked = await h.avn("restart_service")
        assert [e.result for e in blocked] == ["blocked"]
        assert blocked[0].payload["decision"] == "rejected"
        [escalation] = await h.avn("escalate")
        assert "governance did not allow restart_service" in escalation.payload["reason"]
        assert "trust 0.20 is below" in escalation.payload["reason"]
        current = h.kernel.incidents.get(incident.incident_id)
        assert current is not None
        assert current.state is IncidentState.ESCALATED
        stats = h.kernel.get_stats()
        assert stats["blocked_by_governance"] == 1
        assert stats["healing_attempts"] == 0
        assert stats["escalations"] == 1
        assert "avn.escalated" in h.events.types()


async def test_high_severity_waits_for_approval_and_escalates_with_its_id(tmp_path: Path) -> None:
    """A high-severity incident makes the step high risk: the constitution asks a human,
    the kernel does not act and escalates with the approval request's id."""
    async with harness(tmp_path) as h:
        await h.kernel.report(anomaly(severity=Severity.HIGH, clock=h.clock))
        await h.kernel.wait_idle()
        assert h.calls == []
        [step] = await h.avn("restart_service")
        assert step.result == "pending_approval"
        [escalation] = await h.avn("escalate")
        approval_id = escalation.payload["approval_id"]
        assert approval_id
        approval = await h.approvals.get(approval_id)
        assert approval is not None
        assert approval.action == "avn:restart_service"


ROLLBACK = """
version: 1
playbooks:
  - name: fix
    match: {types: [service_down]}
    steps:
      - action: restart_service
        executor: python_callable
        params: {callable: restart}
        verify: {kind: health, timeout_s: 3, interval_s: 1}
        on_failure: rollback
        rollback:
          action: ROLLBACK_ACTION
          executor: python_callable
          params: {callable: restore}
          verify: {kind: health, timeout_s: 3, interval_s: 1, consecutive: 1}
"""


async def test_failed_verification_runs_the_rollback_step(tmp_path: Path) -> None:
    """A step whose verification fails announces the rollback and runs it under governance;
    a verified rollback heals the incident."""
    restored: list[str] = []

    async def restore(ctx: ActionContext) -> None:
        restored.append(ctx.resource)

    playbooks = ROLLBACK.replace("ROLLBACK_ACTION", "restart_service")
    async with harness(tmp_path, playbooks, callables={"restore": restore}) as h:
        h.health.script["checkout"] = [False, False, False, False, True]
        await h.kernel.report(anomaly(clock=h.clock))
        await h.kernel.wait_idle()
        assert restored == ["checkout"]
        assert [e.result for e in await h.avn("verify")] == ["failed", "passed"]
        assert "avn.rollback_required" in h.events.types()
        assert len(await h.avn("incident_resolved")) == 1
        assert h.kernel.get_stats()["rollbacks"] == 1


async def test_rollback_of_high_risk_waits_for_approval_and_escalates(tmp_path: Path) -> None:
    """A 'rollback' action is high risk: under the constitution it needs a human, so the
    kernel escalates with the approval request instead of rolling back on its own."""
    restored: list[str] = []

    async def restore(ctx: ActionContext) -> None:
        restored.append(ctx.resource)

    playbooks = ROLLBACK.replace("ROLLBACK_ACTION", "rollback")
    async with harness(tmp_path, playbooks, callables={"restore": restore}) as h:
        h.health.default = False
        await h.kernel.report(anomaly(clock=h.clock))
        await h.kernel.wait_idle()
        assert restored == []
        assert [e.result for e in await h.avn("rollback")] == ["pending_approval"]
        [escalation] = await h.avn("escalate")
        assert escalation.payload["approval_id"]
        assert "rollback" in escalation.payload["reason"]


async def test_unverified_restart_falls_through_to_escalation(tmp_path: Path) -> None:
    """A restart that does not make the target healthy moves on to the escalation step,
    and the incident ends escalated with a healing failure."""
    async with harness(tmp_path) as h:
        h.health.default = False
        incident = await h.kernel.report(anomaly(clock=h.clock))
        await h.kernel.wait_idle()
        assert incident is not None
        assert len(h.calls) == 1
        assert [e.result for e in await h.avn("verify")] == ["failed", "not_verified"]
        [escalation] = await h.avn("escalate")
        assert escalation.payload["reason"] == "restart did not fix checkout"
        current = h.kernel.incidents.get(incident.incident_id)
        assert current is not None
        assert current.state is IncidentState.ESCALATED
        assert "avn.healing_failed" in h.events.types()
        stats = h.kernel.get_stats()
        assert (stats["healing_attempts"], stats["healing_successes"]) == (1, 0)
        assert stats["escalations"] == 1


async def test_executor_failure_is_recorded_and_the_next_step_runs(tmp_path: Path) -> None:
    """An executor that raises is a failed step (recorded with the error), not a crash."""

    async def broken(ctx: ActionContext) -> None:
        raise RuntimeError("disk on fire")

    playbooks = RESTART_THEN_ESCALATE.replace("callable: restart,", "callable: broken,")
    async with harness(tmp_path, playbooks, callables={"broken": broken}) as h:
        await h.kernel.report(anomaly(clock=h.clock))
        await h.kernel.wait_idle()
        [failed] = await h.avn("restart_service")
        assert failed.result == "failed"
        assert "disk on fire" in failed.payload["error"]
        assert len(await h.avn("escalate")) == 1
        assert h.kernel.get_stats()["steps_failed"] == 1


async def test_low_severity_never_runs_a_disruptive_step(tmp_path: Path) -> None:
    """A restart is too disruptive for a low-severity incident: skipped, recorded, and the
    harmless escalation runs instead."""
    async with harness(tmp_path) as h:
        await h.kernel.report(anomaly(severity=Severity.LOW, clock=h.clock))
        await h.kernel.wait_idle()
        assert h.calls == []
        [skipped] = await h.avn("restart_service")
        assert skipped.result == "skipped"
        assert "disruption 3 exceeds the allowance 1" in skipped.payload["reason"]
        assert len(await h.avn("escalate")) == 1


async def test_flapping_resource_exhausts_its_budget_and_opens_the_breaker(tmp_path: Path) -> None:
    """After max_runs healings within the window the next incident opens the breaker and is
    escalated; later alerts merge into it; while the breaker is open nothing runs; a human
    reset restores healing."""
    settings = KernelSettings(budget=BudgetSettings(max_runs=2, window_s=3600, cooldown_s=600))
    async with harness(tmp_path, settings=settings) as h:
        for n in range(4):
            await h.kernel.report(anomaly(n, clock=h.clock))
            await h.kernel.wait_idle()
            h.clock.advance(10)
        assert len(h.calls) == 2
        [escalation] = await h.avn("escalate")
        assert "healing budget of checkout exhausted" in escalation.payload["reason"]
        [escalated] = h.kernel.incidents.active()
        assert escalated.state is IncidentState.ESCALATED
        assert escalated.anomaly_count == 2
        await h.kernel.close_incident(escalated.incident_id, actor="alice", reason="looked")
        await h.kernel.report(anomaly(7, clock=h.clock))
        await h.kernel.wait_idle()
        assert len(h.calls) == 2
        second = (await h.avn("escalate"))[-1]
        assert "circuit breaker of checkout is open" in second.payload["reason"]
        stats = h.kernel.get_stats()
        assert stats["open_breakers"] == ["checkout"]
        assert stats["budget_refusals"] == 2
        for incident in h.kernel.incidents.active():
            await h.kernel.close_incident(incident.incident_id, actor="alice", reason="looked")
        assert await h.kernel.reset_breaker("checkout", actor="alice", reason="fixed the disk")
        await h.kernel.report(anomaly(9, clock=h.clock))
        await h.kernel.wait_idle()
        assert len(h.calls) == 3


async def test_half_open_breaker_allows_one_trial_after_the_cooldown(tmp_path: Path) -> None:
    """After the breaker's cooldown one trial run is allowed; its success closes it."""
    settings = KernelSettings(budget=BudgetSettings(max_runs=1, window_s=3600, cooldown_s=60))
    async with harness(tmp_path, settings=settings) as h:
        for n in range(2):
            await h.kernel.report(anomaly(n, clock=h.clock))
            await h.kernel.wait_idle()
        assert len(h.calls) == 1
        for incident in h.kernel.incidents.active():
            await h.kernel.close_incident(incident.incident_id, actor="alice", reason="seen")
        h.clock.advance(61)
        await h.kernel.report(anomaly(5, clock=h.clock))
        await h.kernel.wait_idle()
        assert len(h.calls) == 2
        assert h.kernel.get_stats()["open_breakers"] == []


async def test_recurrence_within_the_playbook_cooldown_is_escalated(tmp_path: Path) -> None:
    """A problem that returns within the playbook's cooldown is escalated, not healed again."""
    playbooks = RESTART_THEN_ESCALATE.replace("cooldown_s: 0", "cooldown_s: 120")
    async with harness(tmp_path, playbooks) as h:
        await h.kernel.report(anomaly(1, clock=h.clock))
        await h.kernel.wait_idle()
        h.clock.advance(30)
        await h.kernel.report(anomaly(2, clock=h.clock))
        await h.kernel.wait_idle()
        assert len(h.calls) == 1
        [escalation] = await h.avn("escalate")
        assert "within the 120 s cooldown" in escalation.payload["reason"]


async def test_circuit_breaker_step_is_verified_by_reading_the_control_back(tmp_path: Path) -> None:
    """A circuit_breaker step sets an ingress control that the ingress then enforces."""
    playbooks = """
version: 1
playbooks:
  - name: shed
    match: {types: [cascade_failure]}
    steps:
      - action: circuit_breaker
        params: {key: "component:{resource}", duration_s: 300}
"""
    async with harness(tmp_path, playbooks) as h:
        await h.kernel.report(anomaly(kind=AnomalyType.CASCADE_FAILURE, clock=h.clock))
        await h.kernel.wait_idle()
        denied = h.controls.check("component:checkout")
        assert denied is not None
        assert denied.status_code == 503
        assert [e.result for e in await h.avn("verify")] == ["passed"]
        h.clock.advance(301)
        assert h.controls.check("component:checkout") is None


async def test_anomaly_without_a_playbook_stays_open_and_is_recorded(tmp_path: Path) -> None:
    """No playbook matches: the incident is recorded as unhandled and nothing runs."""
    async with harness(tmp_path) as h:
        await h.kernel.report(anomaly(kind=AnomalyType.DISK_FULL, clock=h.clock))
        await h.kernel.wait_idle()
        assert h.calls == []
        assert len(await h.avn("incident_unhandled")) == 1
        assert h.kernel.get_stats()["unhandled_incidents"] == 1


def event(event_type: str, payload: dict[str, Any], resource: str = "checkout") -> TriggerEvent:
    """A mesh event from the metrics monitor."""
    return TriggerEvent.create(
        event_type,
        source="metrics_monitor",
        actor="metrics_monitor",
        resource=resource,
        payload=payload,
        clock=FakeClock(),
    )


@pytest.mark.parametrize(
    ("event_type", "payload", "resource"),
    [
        ("anomaly.detected", {"type": "service_degraded"}, "checkout"),
        ("anomaly.detected", {"severity": "high"}, "checkout"),
        ("anomaly.detected", {"type": "latency_spike", "severity": "urgent"}, "checkout"),
        ("anomaly.detected", {"type": "latency_spike", "score": 7}, "checkout"),
        ("anomaly.detected", {"type": "latency_spike"}, ""),
        ("anomaly.detected", {"type": "latency_spike"}, "rm -rf /"),
        ("anomaly.detected", {"type": "latency_spike"}, "--force"),
        ("security.event", {"type": "latency_spike"}, "checkout"),
        ("system.health_check", {"check": "x"}, "checkout"),
    ],
)
async def test_malformed_events_are_counted_rejections(
    tmp_path: Path, event_type: str, payload: dict[str, Any], resource: str
) -> None:
    """Unknown types, bad severities or scores, missing or unsafe resources: counted, no
    incident, no exception out of the handler."""
    async with harness(tmp_path) as h:
        await h.kernel.handle_event(event(event_type, payload, resource))
        stats = h.kernel.get_stats()
        assert stats["events_rejected"] == 1
        assert stats["events_rejected_by_reason"] == {"invalid_event": 1}
        assert stats["anomalies_detected"] == 0


def test_unknown_type_rejection_names_the_known_types() -> None:
    """The seed's 'service_degraded' is not in the taxonomy; the error lists what is."""
    bad = event("anomaly.detected", {"type": "service_degraded"})
    with pytest.raises(ImmuneError, match="unknown anomaly type 'service_degraded'") as info:
        anomaly_from_event(bad)
    assert "latency_spike" in str(info.value)


async def test_events_the_kernel_does_not_handle_are_ignored(tmp_path: Path) -> None:
    """Other subscribed events (task.failed …) are counted as ignored."""
    async with harness(tmp_path) as h:
        await h.kernel.handle_event(event("task.failed", {"task": "t"}))
        assert h.kernel.get_stats()["events_ignored"] == 1


async def test_anomaly_event_becomes_an_incident_with_the_publisher_as_source(
    tmp_path: Path,
) -> None:
    """anomaly.detected (the seed's payload shape) is admitted; the source is the event's."""
    async with harness(tmp_path) as h:
        await h.kernel.handle_event(
            event(
                "anomaly.detected",
                {"type": "latency_spike", "severity": "medium", "baseline": 100, "current": 400},
            )
        )
        await h.kernel.wait_idle()
        [recorded] = await h.avn("anomaly_detected")
        assert recorded.payload["anomaly_type"] == "latency_spike"
        assert recorded.payload["source"] == "metrics_monitor"
        assert recorded.payload["details"] == {"baseline": 100, "current": 400}


async def test_security_event_defaults_to_high_severity(tmp_path: Path) -> None:
    """A security.event carrying a security type is an anomaly of high severity."""
    async with harness(tmp_path) as h:
        await h.kernel.handle_event(event("security.event", {"type": "injection_attempt"}))
        await h.kernel.wait_idle()
        [recorded] = await h.avn("anomaly_detected")
        assert recorded.result == "high"


async def test_healthy_report_resolves_an_escalated_incident(tmp_path: Path) -> None:
    """A system.health_check saying the resource is healthy again resolves its escalated
    incident (recovered without healing)."""
    async with harness(tmp_path, trust=0.2) as h:
        incident = await h.kernel.report(anomaly(clock=h.clock))
        await h.kernel.wait_idle()
        assert incident is not None
        await h.kernel.handle_event(event("system.health_check", {"status": "healthy"}))
        done = h.kernel.incidents.get(incident.incident_id)
        assert done is not None
        assert done.state is IncidentState.RESOLVED
        assert h.kernel.get_stats()["recovered_without_healing"] == 1


async def test_stats_carry_the_seed_keys(tmp_path: Path) -> None:
    """get_stats has the seed's keys plus blocked_by_governance and mean recovery time."""
    async with harness(tmp_path) as h:
        stats = h.kernel.get_stats()
        for key in (
            "anomalies_detected",
            "healing_attempts",
            "healing_successes",
            "success_rate",
            "escalations",
            "active_anomalies",
            "blocked_by_governance",
            "mean_time_to_recovery_s",
        ):
            assert key in stats
        assert stats["mean_time_to_recovery_s"] is None


async def test_playbook_naming_an_unregistered_executor_is_refused_at_start(
    tmp_path: Path,
) -> None:
    """The kernel checks every step's executor when it is built, not mid-incident."""
    from grace.errors import PlaybookError

    playbooks = RESTART_THEN_ESCALATE.replace("executor: python_callable", "executor: ssh")
    with pytest.raises(PlaybookError, match="'ssh' is not registered"):
        async with harness(tmp_path, playbooks):
            pass


async def test_anomaly_that_cannot_be_recorded_is_not_healed(tmp_path: Path) -> None:
    """If the ledger refuses the anomaly record, nothing is healed and no incident lingers."""
    async with harness(tmp_path) as h:
        await h.ledger.close()
        assert await h.kernel.report(anomaly(clock=h.clock)) is None
        await h.kernel.wait_idle()
        assert h.calls == []
        stats = h.kernel.get_stats()
        assert stats["events_rejected_by_reason"] == {"unrecorded": 1}
        assert stats["active_anomalies"] == 0
