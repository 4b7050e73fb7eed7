"""Immune system benchmarks: detector observations/s, and anomaly-event-to-executor latency.

Run from the repository root::

    .venv/bin/python bench/immune.py            # full run
    .venv/bin/python bench/immune.py --quick    # smoke run, a few seconds

1. Detector throughput: ``measure_detectors`` from bench/detectors.py — every algorithm
   over the same generated operational series, against a bare Welford running
   mean/variance update over the same samples (the floor). Goal: >= 50,000 observations/s.
2. Anomaly-event-to-executor latency, in process, through the real pieces: the metrics
   monitor's publisher handle emits ``anomaly.detected`` into a ``TriggerMesh`` on the
   default routing config (audit sink = the ledger); the ``ImmuneKernel`` receives it as
   the ``immune_kernel`` component, validates it, opens an incident, appends
   ``anomaly_detected`` to the ledger, announces ``avn.anomaly_detected`` (an audit event:
   another ledger append), selects the playbook, announces ``avn.healing_action``
   (audited, constitutionally validated by an approving validator), asks the real gate
   (the packaged Cedar constitution, the content analyzers, the ledger append of the
   decision) and calls the executor — a ``python_callable`` that takes the time. The
   ledger is a real SQLite ledger (``synchronous=FULL``) in a temporary directory.
   Latency = executor entry - just before ``emit``. Every event names a new resource, so
   each is a new incident. Two runs: *sequential* (one event at a time: the latency of a
   single incident, the goal row) and *paced* (``--rate`` events/s from one emitter: with
   the ledger's group commit under concurrent incidents, info). Goal: p99 <= 20 ms.
   Baseline (info): the same mesh, emit → a plain subscriber of ``anomaly.detected``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from _report import Row, percentile, print_table, verdict
from detectors import measure_detectors
from grace.governance.analyzers import analyze
from grace.governance.approvals import ApprovalStore
from grace.governance.constitution import Constitution
from grace.governance.engine import ConstitutionEngine
from grace.governance.gate import Gate, StaticTrust
from grace.governance.model import Principal, PrincipalKind
from grace.governance.wiring import GovernanceWiring
from grace.immune.detectors.synthetic import operational_corpus
from grace.immune.escalation import Escalator
from grace.immune.executors import ActionContext, ExecutorRegistry, PythonCallableExecutor
from grace.immune.kernel import ImmuneKernel, KernelSettings
from grace.immune.playbooks import parse_playbooks
from grace.immune.verify import Verifier
from grace.ledger import Ledger, LedgerConfig
from grace.mesh import MeshSettings, TriggerEvent, TriggerMesh, load_mesh_config
from grace.types import SystemClock

LATENCY_GOAL_MS = 20.0
PLAYBOOK = """
version: 1
playbooks:
  - name: bench
    match: {types: [latency_spike]}
    cooldown_s: 0
    steps:
      - action: restart_service
        executor: python_callable
        params: {callable: mark}
        verify: {kind: health, timeout_s: 5, interval_s: 0.01, consecutive: 1}
"""


class Healthy:
    """Every target is healthy (the verification after the measured point)."""

    async def is_healthy(self, name: str) -> bool:
        return True


async def latency_run(n: int, rate: float | None) -> tuple[list[float], list[float]]:
    """(kernel latencies, bare-subscriber latencies) in ms for ``n`` events."""
    clock = SystemClock()
    with tempfile.TemporaryDirectory(prefix="grace-bench-immune-") as tmp:
        data = Path(tmp)
        ledger = await Ledger.open(
            data / "ledger", config=LedgerConfig(checkpoint_interval_s=0), clock=clock
        )
        approvals = ApprovalStore(data / "governance.db", clock=clock, audit=ledger)
        mesh = TriggerMesh(load_mesh_config(), clock=clock, audit=ledger, settings=MeshSettings())
        try:
            mesh.set_trust_scorer(StaticTrust(1.0).score)

            async def approve(event: TriggerEvent) -> bool:
                return True

            mesh.set_governance_validator(approve)
            gate = Gate(
                policies=ConstitutionEngine(Constitution()),
                analyze=analyze,
                ledger=ledger,
                approvals=approvals,
                clock=clock,
                trust=StaticTrust(0.9),
                events=mesh.publisher("governance_gate"),
            )
            started: dict[str, float] = {}
            kernel_ms: list[float] = []
            bare_ms: list[float] = []
            arrived: dict[str, asyncio.Event] = {}

            async def mark(ctx: ActionContext) -> Mapping[str, Any]:
                kernel_ms.append((time.perf_counter() - started[ctx.resource]) * 1000)
                arrived[ctx.resource].set()
                return {}

            async def bare(event: TriggerEvent) -> None:
                bare_ms.append((time.perf_counter() - started[event.resource]) * 1000)

            kernel_events = mesh.publisher("immune_kernel")
            escalator = Escalator(ledger=ledger, clock=clock, events=kernel_events)
            kernel = ImmuneKernel(
                governance=GovernanceWiring(
                    gate, system=Principal(id="grace", kind=PrincipalKind.SYSTEM, autonomy_tier=3)
                ),
                ledger=ledger,
                clock=clock,
                playbooks=parse_playbooks(PLAYBOOK, source="bench"),
                executors=ExecutorRegistry([PythonCallableExecutor({"mark": mark})]),
                verifier=Verifier(clock=clock, health=Healthy()),
                escalator=escalator,
                events=kernel_events,
                settings=KernelSettings(max_active_incidents=max(10_000, n + 10)),
            )
            kernel.attach(mesh)
            mesh.subscribe("anomaly.detected", bare, name="bench-bare")
            await mesh.start()
            monitor = mesh.publisher("metrics_monitor")
            payload = {"type": "latency_spike", "severity": "medium", "score": 0.99}
            for i in range(n):
                resource = f"svc-{i}"
                arrived[resource] = asyncio.Event()
                started[resource] = time.perf_counter()
                await monitor.emit("anomaly.detected", payload, resource=resource)
                if rate is None:
                    await arrived[resource].wait()
                    await kernel.wait_idle()
                else:
                    await asyncio.sleep(1 / rate)
            await kernel.wait_idle()
            await kernel.stop()
        finally:
            await mesh.stop()
            approvals.close()
            await ledger.close()
    if len(kernel_ms) != n:
        raise SystemExit(f"only {len(kernel_ms)} of {n} anomalies reached the executor")
    return kernel_ms, bare_ms


def latency_rows(n: int, rate: float) -> list[Row]:
    """The sequential (goal) and paced (info) latency rows."""
    rows = []
    for label, pace in (("sequential", None), (f"paced {rate:g}/s", rate)):
        kernel_ms, bare_ms = asyncio.run(latency_run(n, pace))
        p50, p99 = percentile(kernel_ms, 50), percentile(kernel_ms, 99)
        b50, b99 = percentile(bare_ms, 50), percentile(bare_ms, 99)
        rows.append(
            Row(
                name=f"anomaly event -> executor, {label} (n={n})",
                goal=f"p99 <= {LATENCY_GOAL_MS:g} ms" if pace is None else "",
                measured=f"p50 {p50:.2f} ms, p99 {p99:.2f} ms",
                baseline=f"emit -> subscriber p50 {b50:.2f}, p99 {b99:.2f} ms",
                ratio=f"mean {statistics.fmean(kernel_ms):.2f} ms",
                status=verdict(p99 <= LATENCY_GOAL_MS) if pace is None else "info",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small runs (smoke test)")
    parser.add_argument("--length", type=int, default=200_000, help="samples for throughput")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--events", type=int, default=1000, help="anomalies for latency")
    parser.add_argument("--rate", type=float, default=200.0, help="paced events/s")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    length = 20_000 if args.quick else args.length
    events = 100 if args.quick else args.events

    base = operational_corpus(seed=11, count=1, length=min(length, 40_320))[0]
    values = (base.values * (length // len(base.values) + 1))[:length]
    series = [(1.4e9 + 300.0 * i, v) for i, v in enumerate(values)]
    rows = measure_detectors(series, 2 if args.quick else args.repeats)
    rows += latency_rows(events, args.rate)
    print_table(rows)


if __name__ == "__main__":
    main()
