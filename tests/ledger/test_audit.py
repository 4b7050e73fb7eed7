"""The seed's governance/verification/AVN loggers write the expected entries."""

from __future__ import annotations

from pathlib import Path

from grace.ledger import (
    Ledger,
    log_anomaly_detected,
    log_constitutional_violation,
    log_decision,
    log_escalation,
    log_healing_action,
    log_security_violation,
    log_verification_result,
)


async def test_each_logger_records_its_vocabulary(tmp_path: Path) -> None:
    """Each helper fixes subsystem, action and result and keeps the caller's details."""
    async with await Ledger.open(tmp_path) as ledger:
        receipts = [
            await log_decision(
                ledger,
                actor="alice",
                action="deploy",
                resource="svc:a",
                decision="rejected",
                request_id="r1",
                reasons=["trust too low"],
                risk_level="high",
                trust_score=0.2,
                violated_policies=["safety.no_destructive_commands"],
            ),
            await log_constitutional_violation(
                ledger,
                actor="bot",
                action="exec",
                resource="host",
                principle="beneficence",
                severity="critical",
                policy_id="p1",
            ),
            await log_verification_result(
                ledger,
                actor="ci",
                target="pkg/app.py",
                status="refuted",
                confidence=0.9,
                safe_to_execute=False,
                issues=[{"rule": "G001", "line": 3}],
            ),
            await log_security_violation(
                ledger,
                actor="ci",
                resource="pkg/app.py",
                violation_type="eval",
                severity="high",
            ),
            await log_anomaly_detected(
                ledger,
                component="svc:a",
                anomaly_id="an1",
                anomaly_type="latency_spike",
                severity="high",
                score=0.97,
            ),
            await log_healing_action(
                ledger,
                component="svc:a",
                anomaly_id="an1",
                action="restart_service",
                outcome="executed",
            ),
            await log_escalation(
                ledger,
                component="svc:a",
                reason="healing failed twice",
                severity="high",
                anomaly_id="an1",
            ),
        ]
        entries = [await ledger.get(r.seq) for r in receipts]
    got = [(e.subsystem, e.action, e.result, e.payload["event"]) for e in entries if e]
    assert got == [
        ("governance", "deploy", "rejected", "decision"),
        ("governance", "exec", "violation", "constitutional_violation"),
        ("verification", "verify_code", "refuted", "verification_result"),
        ("verification", "security_violation", "high", "security_violation"),
        ("avn", "anomaly_detected", "high", "anomaly_detected"),
        ("avn", "restart_service", "executed", "healing_action"),
        ("avn", "escalate", "high", "escalation"),
    ]
    first = entries[0]
    assert first is not None
    assert first.payload["violated_policies"] == ["safety.no_destructive_commands"]
    assert first.payload["trust_score"] == 0.2
