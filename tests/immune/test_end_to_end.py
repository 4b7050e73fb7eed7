"""Acceptance: a real HTTP service in a subprocess breaks; the health monitor sees it, the
kernel asks governance (the default constitution), restarts it for real through the
process supervisor, verifies it, and the ledger holds the chain in order.

Everything is real except time-independent knobs set small (probe intervals of 50 ms):
ledger, mesh (default routing config), gate, approvals, trust store, supervisor, service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from grace.cli import demo_service
from grace.governance.analyzers import analyze
from grace.governance.approvals import ApprovalStore
from grace.governance.constitution import Constitution
from grace.governance.engine import ConstitutionEngine
from grace.governance.gate import Gate, StaticTrust
from grace.governance.wiring import GovernanceWiring
from grace.immune.budget import BudgetSettings
from grace.immune.controls import IngressControls
from grace.immune.escalation import Escalator
from grace.immune.executors import (
    ActionContext,
    EscalateExecutor,
    ExecutorRegistry,
    PythonCallableExecutor,
    QuarantineExecutor,
    RestartProcessExecutor,
)
from grace.immune.kernel import ImmuneKernel, KernelSettings
from grace.immune.playbooks import parse_playbooks
from grace.immune.supervisor import ProcessSpec, ProcessSupervisor
from grace.immune.taxonomy import Anomaly, AnomalyType, Severity
from grace.immune.verify import Verifier
from grace.ledger import Entry, Ledger
from grace.mesh import MeshSettings, TriggerEvent, TriggerMesh, load_mesh_config
from grace.monitoring import HealthCheck, HealthMonitor, HttpProbe
from grace.trust import Evidence, TrustStore
from grace.types import SystemClock
from tests.immune.test_kernel import GRACE

SERVICE = Path(demo_service.__file__)

PLAYBOOK = """
version: 1
playbooks:
  - name: restart-demo
    match: {types: [service_down], resource: demo}
    cooldown_s: 0
    steps:
      - action: restart_service
        params: {process: "{resource}"}
        timeout_s: 20
        verify: {kind: health, timeout_s: TIMEOUT, interval_s: 0.05, consecutive: 2}
        on_failure: ON_FAILURE
        ROLLBACK
      - action: escalate_to_human
        params: {reason: "restarting {resource} did not help"}
"""

ROLLBACK_STEP = """rollback:
          action: restart_service
          executor: python_callable
          params: {callable: restore_config}
          verify: {kind: health, timeout_s: 10, interval_s: 0.05, consecutive: 2}"""


def playbook(*, timeout_s: float = 10, rollback: bool = False) -> str:
    """The demo's restart playbook, optionally with a rollback of the config file."""
    return (
        PLAYBOOK.replace("TIMEOUT", str(timeout_s))
        .replace("ON_FAILURE", "rollback" if rollback else "next")
        .replace("ROLLBACK", ROLLBACK_STEP if rollback else "")
    )


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Heard:
    """Mesh events of one type seen by a test subscriber (a real mesh subscription)."""

    def __init__(self, mesh: TriggerMesh, pattern: str) -> None:
        self.events: list[TriggerEvent] = []
        self._changed = asyncio.Event()
        mesh.subscribe(pattern, self._handle, name=f"test:{pattern}")

    async def _handle(self, event: TriggerEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(
        self, match: Callable[[TriggerEvent], bool] = lambda e: True, timeout_s: float = 30
    ) -> TriggerEvent:
        """The first event (seen or to come) that ``match``es; fail after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while True:
                found = next((e for e in self.events if match(e)), None)
                if found is not None:
                    return found
                self._changed.clear()
                await self._changed.wait()


@dataclass
class World:
    """Grace around one demo service."""

    ledger: Ledger
    mesh: TriggerMesh
    kernel: ImmuneKernel
    monitor: HealthMonitor
    supervisor: ProcessSupervisor
    trust: TrustStore
    client: httpx.AsyncClient
    base: str
    state_file: Path
    restored: list[str]
    anomalies: Heard
    escalations: Heard

    async def entries(self) -> list[Entry]:
        """Every ledger entry, in order."""
        return list((await self.ledger.query(limit=10_000)).entries)

    async def break_service(self) -> None:
        """Make the running service fail (in memory: a restart clears it)."""
        (await self.client.post(f"{self.base}/admin/fail")).raise_for_status()

    async def pid(self) -> int:
        """The pid answering on the service's port."""
        answer = (await self.client.get(f"{self.base}/admin/info")).json()
        return int(answer["pid"])

    async def healthy(self) -> bool:
        """Whether the service answers /health with 200 now."""
        try:
            return (await self.client.get(f"{self.base}/health")).status_code == 200
        except httpx.HTTPError:
            return False


@contextlib.asynccontextmanager
async def world(
    tmp_path: Path,
    playbooks: str,
    *,
    fail_after: int | None = None,
    budget: BudgetSettings | None = None,
    quarantine_grace: bool = False,
) -> AsyncIterator[World]:
    """Start the demo service under the supervisor and Grace around it."""
    clock = SystemClock()
    port = free_port()
    state_file = tmp_path / "faults.json"
    state_file.write_text(json.dumps({"fail": False}))
    argv = [sys.executable, str(SERVICE), "--port", str(port), "--state-file", str(state_file)]
    if fail_after is not None:
        argv += ["--fail-after", str(fail_after)]
    supervisor = ProcessSupervisor(clock=clock, log_dir=tmp_path / "logs")
    supervisor.register(ProcessSpec(name="demo", argv=tuple(argv), stop_timeout_s=3))
    ledger = await Ledger.open(tmp_path / "ledger", clock=clock)
    trust = await TrustStore.open(tmp_path / "trust.db", clock=clock, audit=ledger)
    approvals = ApprovalStore(tmp_path / "governance.db", clock=clock, audit=ledger)
    mesh = TriggerMesh(
        load_mesh_config(), clock=clock, audit=ledger, settings=MeshSettings(backoff_s=0.0)
    )
    async with httpx.AsyncClient() as client:
        try:
            mesh.set_trust_scorer(StaticTrust(1.0).score)

            async def constitutional(event: TriggerEvent) -> bool:
                return True  # the runtime wires the real validator; routing is not under test

            mesh.set_governance_validator(constitutional)
            for _ in range(3):  # Grace's own principal has a record of compliant decisions
                await trust.record(GRACE.id, Evidence.GOVERNANCE_COMPLIANT, reason="history")
            if quarantine_grace:
                await trust.quarantine(GRACE.id, reason="test: distrust the kernel", actor="alice")
            gate = Gate(
                policies=ConstitutionEngine(Constitution()),
                analyze=analyze,
                ledger=ledger,
                approvals=approvals,
                clock=clock,
                trust=trust,
                events=mesh.publisher("governance_gate"),
            )
            controls = IngressControls(clock=clock)
            kernel_events = mesh.publisher("immune_kernel")
            escalator = Escalator(ledger=ledger, clock=clock, events=kernel_events)
            monitor = HealthMonitor(clock=clock, events=mesh.publisher("health_monitor"))
            monitor.add(
                HealthCheck(
                    name="demo",
                    probe=HttpProbe(
                        f"http://127.0.0.1:{port}/health",
                        client=client,
                        timeout_s=2,
                        degraded_latency_s=None,
                    ),
                    interval_s=0.05,
                    fail_after=1,
                    recover_after=1,
                )
            )
            restored: list[str] = []

            async def restore_config(ctx: ActionContext) -> dict[str, Any]:
                # Roll the service's configuration back to the last known good one.
                state_file.write_text(json.dumps({"fail": False}))
                restored.append(ctx.resource)
                return {"restored": str(state_file)}

            executors = ExecutorRegistry(
                [
                    RestartProcessExecutor(supervisor),
                    EscalateExecutor(escalator),
                    QuarantineExecutor(controls, trust),
                    PythonCallableExecutor({"restore_config": restore_config}),
                ]
            )
            kernel = ImmuneKernel(
                governance=GovernanceWiring(gate, system=GRACE),
                ledger=ledger,
                clock=clock,
                playbooks=parse_playbooks(playbooks, source="e2e.yaml"),
                executors=executors,
                verifier=Verifier(clock=clock, health=monitor, controls=controls, trust=trust),
                escalator=escalator,
                events=kernel_events,
                trust=trust,
                settings=KernelSettings(budget=budget or BudgetSettings()),
            )
            kernel.attach(mesh)
            w = World(
                ledger, mesh, kernel, monitor, supervisor, trust, client,
                f"http://127.0.0.1:{port}", state_file, restored,
                Heard(mesh, "avn.anomaly_detected"), Heard(mesh, "avn.escalated"),
            )  # fmt: skip
            await mesh.start()
            await supervisor.start("demo")
            for _ in range(400):  # the subprocess needs a moment to listen
                if await w.healthy():
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the demo service did not come up")
            yield w
        finally:
            with contextlib.suppress(NameError):
                await kernel.stop()
            await mesh.stop()
            await supervisor.stop_all()
            approvals.close()
            await trust.close()
            await ledger.close()


def chain(entries: list[Entry]) -> list[tuple[str, str, str]]:
    """The kernel's and the gate's entries as (subsystem, action, result)."""
    return [
        (e.subsystem, e.action, e.result) for e in entries if e.subsystem in ("avn", "governance")
    ]


async def test_broken_service_is_restarted_for_real_and_verified(tmp_path: Path) -> None:
    """Monitor → anomaly → governance approves → real restart (new pid) → healthy twice →
    incident resolved, every link in the ledger in order, and the ledger verifies."""
    async with world(tmp_path, playbook()) as w:
        old_pid = await w.pid()
        await w.break_service()
        await w.monitor.check("demo")
        await w.anomalies.wait_for()
        await w.kernel.wait_idle()
        assert await w.healthy()
        new_pid = await w.pid()
        assert new_pid != old_pid
        assert w.supervisor.status("demo").restarts == 1
        entries = await w.entries()
        assert chain(entries) == [
            ("avn", "anomaly_detected", "medium"),
            ("governance", "avn:restart_service", "approved"),
            ("avn", "restart_service", "executed"),
            ("avn", "verify", "passed"),
            ("avn", "incident_resolved", "resolved"),
        ]
        decision = next(e for e in entries if e.action == "avn:restart_service")
        executed = next(e for e in entries if e.action == "restart_service")
        assert executed.payload["decision_seq"] == decision.seq
        assert executed.payload["result"]["old_pid"] == old_pid
        assert executed.payload["result"]["new_pid"] == new_pid
        mesh_records = {e.action for e in entries if e.subsystem == "mesh"}
        assert {
            "avn.anomaly_detected",
            "avn.healing_action",
            "avn.healing_executed",
        } <= mesh_records
        stats = w.kernel.get_stats()
        assert (stats["healing_attempts"], stats["healing_successes"]) == (1, 1)
        assert stats["mean_time_to_recovery_s"] is not None
        assert (await w.trust.get_trust_score("demo")).evidence_count > 0
        report = await w.ledger.verify()
        assert report.valid


async def test_governance_rejection_means_no_restart_and_an_escalation(tmp_path: Path) -> None:
    """With Grace's own principal quarantined in the trust store, the gate rejects the
    restart: the old process keeps running, and the escalation is in the ledger."""
    async with world(tmp_path, playbook(), quarantine_grace=True) as w:
        old_pid = await w.pid()
        await w.break_service()
        await w.monitor.check("demo")
        await w.anomalies.wait_for()
        await w.kernel.wait_idle()
        assert await w.pid() == old_pid
        assert w.supervisor.status("demo").restarts == 0
        assert not await w.healthy()
        entries = await w.entries()
        assert chain(entries) == [
            ("avn", "anomaly_detected", "medium"),
            ("governance", "avn:restart_service", "rejected"),
            ("avn", "restart_service", "blocked"),
            ("avn", "escalate", "medium"),
        ]
        escalation = next(e for e in entries if e.action == "escalate")
        assert "trust 0.00" in escalation.payload["reason"]
        assert w.kernel.get_stats()["blocked_by_governance"] == 1


async def test_restart_that_does_not_help_is_rolled_back(tmp_path: Path) -> None:
    """A bad configuration survives restarts: the restart's verification fails, the
    rollback restores the configuration (under governance) and is verified."""
    async with world(tmp_path, playbook(timeout_s=1.5, rollback=True)) as w:
        w.state_file.write_text(json.dumps({"fail": True}))
        await w.monitor.check("demo")
        await w.anomalies.wait_for()
        await w.kernel.wait_idle()
        assert w.restored == ["demo"]
        assert w.supervisor.status("demo").restarts == 1
        assert await w.healthy()
        entries = await w.entries()
        assert chain(entries) == [
            ("avn", "anomaly_detected", "medium"),
            ("governance", "avn:restart_service", "approved"),
            ("avn", "restart_service", "executed"),
            ("avn", "verify", "failed"),
            ("governance", "avn:restart_service", "approved"),
            ("avn", "restart_service", "executed"),
            ("avn", "verify", "passed"),
            ("avn", "incident_resolved", "resolved"),
        ]
        assert any(e.action == "avn.rollback_required" for e in entries)


async def test_restart_that_does_not_help_is_escalated(tmp_path: Path) -> None:
    """Without a rollback, a restart that does not help falls through to the escalation."""
    async with world(tmp_path, playbook(timeout_s=1.5)) as w:
        w.state_file.write_text(json.dumps({"fail": True}))
        await w.monitor.check("demo")
        await w.anomalies.wait_for()
        await w.kernel.wait_idle()
        assert w.supervisor.status("demo").restarts == 1
        assert not await w.healthy()
        entries = await w.entries()
        assert chain(entries) == [
            ("avn", "anomaly_detected", "medium"),
            ("governance", "avn:restart_service", "approved"),
            ("avn", "restart_service", "executed"),
            ("avn", "verify", "failed"),
            ("governance", "avn:escalate_to_human", "approved"),
            ("avn", "escalate", "medium"),
            ("avn", "escalate_to_human", "executed"),
            ("avn", "verify", "not_verified"),
            ("avn", "incident_escalated", "escalated"),
        ]
        escalations = [e for e in entries if e.action == "escalate"]
        assert [e.payload["reason"] for e in escalations] == ["restarting demo did not help"]
        assert w.kernel.get_stats()["escalations"] == 1


async def test_flapping_service_hits_the_budget_and_the_breaker(tmp_path: Path) -> None:
    """A service that breaks again after every restart is restarted max_runs times; then
    the budget opens the breaker and the kernel escalates instead; no further restarts."""
    budget = BudgetSettings(max_runs=2, window_s=3600, cooldown_s=3600)
    async with world(tmp_path, playbook(), fail_after=12, budget=budget) as w:
        runner = asyncio.create_task(w.monitor.run())
        try:
            await w.escalations.wait_for(lambda e: "budget" in e.payload["reason"], 60)
            await w.kernel.wait_idle()
            assert w.supervisor.status("demo").restarts == 2
            escalations = [e for e in await w.entries() if e.action == "escalate"]
            assert "healing budget of demo exhausted" in escalations[-1].payload["reason"]
            assert w.kernel.get_stats()["open_breakers"] == ["demo"]
            # A new incident while the breaker is open: escalated, never restarted.
            for incident in w.kernel.incidents.active():
                await w.kernel.close_incident(incident.incident_id, actor="alice", reason="ack")
            await w.kernel.report(
                Anomaly(
                    anomaly_id="an-manual",
                    anomaly_type=AnomalyType.SERVICE_DOWN,
                    severity=Severity.MEDIUM,
                    resource="demo",
                    detected_at=SystemClock().now(),
                    source="operator",
                )
            )
            await w.kernel.wait_idle()
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        assert w.supervisor.status("demo").restarts == 2
        last = [e for e in await w.entries() if e.action == "escalate"][-1]
        assert "circuit breaker of demo is open" in last.payload["reason"]
