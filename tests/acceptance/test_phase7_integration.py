"""The seed plan's phase-7 integration test, written against Grace's API: start all systems;
a low-risk request passes governance; an ``anomaly.detected`` event is processed by the
immune kernel; the ledger verifies. Plus the Guardian boot's flags and degrade path."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import nats
import nats.js.errors
import pytest

from grace import GraceSettings
from grace.boot import BootState, ChunkStatus
from grace.config import (
    GovernanceSettings,
    HealthCheckSettings,
    ImmuneSettings,
    MeshSectionSettings,
    ProcessSettings,
)
from grace.governance.model import EnforcementMode, Outcome
from grace.ledger import Ledger
from grace.runtime import Grace


async def test_phase7_request_anomaly_and_an_intact_log(tmp_path: Path) -> None:
    """All systems start; a low-risk request passes; an anomaly reaches the kernel; the
    ledger verifies."""
    grace = await Grace.start(GraceSettings(data_dir=tmp_path))
    try:
        assert grace.boot_report.state is BootState.READY
        assert grace.immune is not None
        # A low-risk request passes governance.
        result = await grace.wiring.process_request(
            grace.wiring.system, "execute_task", "task:nightly-report", {"reason": "nightly"}
        )
        assert result["allowed"] is True, result
        # An anomaly.detected event is processed by the immune kernel.
        watchdog = grace.mesh.publisher("anomaly_watchdog")
        emitted = await watchdog.try_emit(
            "anomaly.detected",
            {"type": "latency_spike", "severity": "low", "score": 0.9, "current": 480.0},
            resource="checkout",
        )
        assert emitted.routed, emitted
        for _ in range(100):
            if grace.immune.get_stats()["anomalies_detected"] > 0:
                break
            await asyncio.sleep(0.01)
        await grace.immune.wait_idle()
        stats = grace.immune.get_stats()
        assert stats["anomalies_detected"] > 0
        assert stats["active_anomalies"] >= 0
    finally:
        await grace.stop()
    # The ledger verifies, with the decision, the anomaly and the boot report in it.
    async with await Ledger.open(tmp_path, read_only=True) as ledger:
        report = await ledger.verify()
        assert report.valid, report
        actions = [e.action for e in (await ledger.query(limit=1000)).entries]
        assert "boot.report" in actions
        assert "execute_task" in actions
        assert "anomaly_detected" in actions


async def test_the_seed_flags_disable_the_gate_and_the_immune_kernel(tmp_path: Path) -> None:
    """ENABLE_GOVERNANCE_GATE=false boots the gate in mode off; ENABLE_AVN_IMMUNE=false
    boots without the kernel."""
    settings = GraceSettings(
        data_dir=tmp_path, enable_governance_gate=False, enable_avn_immune=False
    )
    grace = await Grace.start(settings)
    try:
        assert grace.gate.settings.mode is EnforcementMode.OFF
        assert grace.immune is None
        decision = await grace.wiring.check_system_change(
            "policy_update", "governance", grace.wiring.system
        )
        assert decision.allowed
        assert decision.outcome is Outcome.APPROVED
        assert (await grace.get_stats())["immune"] == {"enabled": False}
    finally:
        await grace.stop()


def test_the_seed_flags_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan's environment variables, unprefixed, are honoured."""
    monkeypatch.setenv("ENABLE_GOVERNANCE_GATE", "false")
    monkeypatch.setenv("ENABLE_AVN_IMMUNE", "0")
    settings = GraceSettings()
    assert settings.enable_governance_gate is False
    assert settings.enable_avn_immune is False


async def test_a_broken_monitor_configuration_degrades_instead_of_aborting(
    tmp_path: Path,
) -> None:
    """The monitors chunk may fail (here: a supervised process that cannot start): Grace
    boots degraded, governance still serves; a health check without a target is refused
    when the settings are read."""
    with pytest.raises(ValueError, match="needs exactly one of url or tcp"):
        HealthCheckSettings(name="nowhere")
    settings = GraceSettings(
        data_dir=tmp_path,
        immune=ImmuneSettings(
            processes=(ProcessSettings(name="ghost", argv=(str(tmp_path / "no-such-binary"),)),)
        ),
        governance=GovernanceSettings(),
    )
    grace = await Grace.start(settings)
    try:
        assert grace.boot_report.state is BootState.DEGRADED
        monitors = grace.boot_report.chunk("monitors")
        assert monitors.status is ChunkStatus.FAILED
        assert "no-such-binary" in (monitors.error or "")
        result = await grace.wiring.process_request(
            grace.wiring.system, "execute_task", "task:1", {"reason": "still governed"}
        )
        assert result["allowed"] is True
    finally:
        await grace.stop()


async def test_phase7_on_nats_jetstream(tmp_path: Path, nats_addr: tuple[str, int]) -> None:
    """The same story with the mesh on NATS JetStream (the scale-out transport): an
    anomaly emitted by a monitor reaches the kernel through the broker."""
    token = uuid.uuid4().hex
    host, port = nats_addr
    servers = f"nats://{host}:{port}"
    settings = GraceSettings(
        data_dir=tmp_path,
        mesh=MeshSectionSettings(
            transport="nats",
            nats_servers=(servers,),
            nats_stream=f"GRACE_P7_{token}",
            nats_subject_prefix=f"gp7{token}",
        ),
    )
    grace = await Grace.start(settings)
    try:
        assert grace.boot_report.state is BootState.READY
        assert grace.boot_report.chunk("mesh").status is ChunkStatus.PASSED
        assert grace.immune is not None
        watchdog = grace.mesh.publisher("anomaly_watchdog")
        emitted = await watchdog.try_emit(
            "anomaly.detected", {"type": "cpu_spike", "severity": "low"}, resource="db"
        )
        assert emitted.routed, emitted
        for _ in range(500):
            if grace.immune.get_stats()["anomalies_detected"] > 0:
                break
            await asyncio.sleep(0.01)
        assert grace.immune.get_stats()["anomalies_detected"] == 1
    finally:
        await grace.stop()
        nc = await nats.connect(servers)
        try:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await nc.jetstream().delete_stream(f"GRACE_P7_{token}")
        finally:
            await nc.close()


async def test_phase7_with_the_ledger_on_postgresql(tmp_path: Path, pg_dsn: str) -> None:
    """GRACE_DATABASE_URL puts the ledger on PostgreSQL: the boot report and a decision land
    there, and `grace audit verify --database-url` verifies the chain."""
    grace = await Grace.start(GraceSettings(data_dir=tmp_path, database_url=pg_dsn))
    try:
        assert grace.ledger.backend == "postgresql"
        result = await grace.wiring.process_request(
            grace.wiring.system, "execute_task", "task:pg", {"reason": "scale-out check"}
        )
        assert result["allowed"] is True
        seq = (await grace.ledger.query(action="execute_task", limit=1)).entries[0].seq
        assert seq >= 1
    finally:
        await grace.stop()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRACE_")}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "grace", "audit", "verify", "--database-url", pg_dsn,
         "-d", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
