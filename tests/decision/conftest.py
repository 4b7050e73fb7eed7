"""Fixtures and fakes for the unified decision tests (fakes implement the real protocols)."""

from __future__ import annotations

import asyncio
import datetime as _dt
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from grace.decision.model import TargetState
from grace.governance.model import Decision, EnforcementMode, Outcome, Reason, RiskLevel
from grace.ledger import Ledger
from grace.verification.model import (
    Confidence,
    Issue,
    IssueSource,
    Severity,
    TestRun,
    VerificationResult,
    VerificationStatus,
)

NOW = _dt.datetime(2026, 1, 1, tzinfo=_dt.UTC)


class Trust:
    """A TrustSource with a fixed answer, an error, or no answer at all."""

    def __init__(self, score: float = 0.8, *, error: Exception | None = None) -> None:
        self.value = score
        self.error = error
        self.hang = False

    async def score(self, subject_id: str) -> float:
        if self.hang:
            await asyncio.Event().wait()
        if self.error is not None:
            raise self.error
        return self.value


class Immune:
    """An ImmuneState with a fixed target state, or an error."""

    def __init__(self, state: TargetState | None = None, *, error: Exception | None = None) -> None:
        self.state = state or TargetState()
        self.error = error
        self.asked: list[str] = []

    async def target_state(self, target: str) -> TargetState:
        self.asked.append(target)
        if self.error is not None:
            raise self.error
        return self.state


class Events:
    """Collects emitted events."""

    def __init__(self) -> None:
        self.emitted: list[tuple[str, dict[str, Any]]] = []

    async def emit(self, event_type: str, payload: Mapping[str, Any] | None = None) -> object:
        self.emitted.append((event_type, dict(payload or {})))
        return True


def governance(
    outcome: Outcome = Outcome.APPROVED,
    *,
    allowed: bool | None = None,
    approval_id: str | None = None,
    mode: EnforcementMode = EnforcementMode.ENFORCE,
    reason: str = "",
) -> Decision:
    """A gate decision as the gate returns it."""
    return Decision(
        decision_id="dec_test",
        request_id="req_test",
        outcome=outcome,
        allowed=outcome is Outcome.APPROVED if allowed is None else allowed,
        mode=mode,
        risk=RiskLevel.HIGH,
        reasons=(Reason(message=reason, policy_id="p.test"),) if reason else (),
        approval_id=approval_id,
        receipt_seq=1,
    )


def verdict(
    status: VerificationStatus = VerificationStatus.VERIFIED,
    *,
    confidence: float = 0.9,
    target: str = "svc:api",
) -> VerificationResult:
    """A verification verdict with the evidence a real one carries."""
    issues: tuple[Issue, ...] = ()
    if status is VerificationStatus.REFUTED:
        issues = (
            Issue(
                rule_id="GR102",
                severity=Severity.CRITICAL,
                confidence=Confidence.HIGH,
                message="exec() runs code decoded by base64.b64decode()",
                source=IssueSource.RULES,
                file="module.py",
                line=3,
            ),
        )
    return VerificationResult(
        verification_id="ver_test",
        status=status,
        confidence=confidence,
        safe_to_execute=status is VerificationStatus.VERIFIED,
        issues=issues,
        recommendations=(),
        static=None,
        tests=TestRun(passed=3, report_found=True, exit_code=0)
        if status is VerificationStatus.VERIFIED
        else None,
        tests_skipped_reason=None if status is VerificationStatus.VERIFIED else "not run",
        code_sha256="0" * 64,
        target=target,
        actor="agent-7",
        started_at=NOW,
        finished_at=NOW,
        error="sandbox unavailable" if status is VerificationStatus.ERROR else None,
    )


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    """A real ledger in a temporary data directory."""
    async with await Ledger.open(tmp_path / "data") as opened:
        yield opened
