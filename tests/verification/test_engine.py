"""VerificationEngine.verify: real snippets, real sandbox, real ledger, emitted events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from grace.errors import VerificationError
from grace.ledger import Ledger
from grace.testing import FakeClock
from grace.verification.engine import VerificationEngine
from grace.verification.model import CodeBundle, Severity, VerificationStatus
from grace.verification.sandbox import Sandbox, SandboxSettings
from tests.verification.conftest import CountingSandbox, Events

CODE = '''\
def slugify(text: str) -> str:
    """Lower-case words joined by dashes."""
    return "-".join(text.lower().split())
'''
TESTS = """\
from module import slugify


def test_words_are_joined():
    assert slugify("Hello Big World") == "hello-big-world"


def test_empty():
    assert slugify("") == ""


def test_single():
    assert slugify("Grace") == "grace"
"""


async def test_clean_code_with_passing_tests_is_verified_and_safe(
    engine: VerificationEngine, ledger: Ledger, events: Events
) -> None:
    """Clean code whose tests pass is verified, safe to execute, recorded and announced."""
    result = await engine.verify(CODE, tests=TESTS, target="svc:text", actor="agent-7")
    assert result.status is VerificationStatus.VERIFIED
    assert result.safe_to_execute
    assert result.tests is not None
    assert (result.tests.passed, result.tests.failed) == (3, 0)
    assert result.confidence == pytest.approx(0.95)
    assert result.receipt_seq is not None
    entry = await ledger.get(result.receipt_seq)
    assert entry is not None
    assert (entry.subsystem, entry.action, entry.resource, entry.result) == (
        "verification",
        "verify_code",
        "svc:text",
        "verified",
    )
    assert entry.payload["safe_to_execute"] is True
    assert entry.payload["code_sha256"] == result.code_sha256
    assert events.types == ["verification.verified"]
    assert events.emitted[0][1]["receipt_seq"] == result.receipt_seq


async def test_failing_tests_refute(engine: VerificationEngine, events: Events) -> None:
    """A failing test refutes the code, and the failure is an issue naming the test."""
    result = await engine.verify(CODE.replace('"-"', '"_"'), tests=TESTS)
    assert result.status is VerificationStatus.REFUTED
    assert not result.safe_to_execute
    failures = [i for i in result.issues if i.rule_id == "test.failure"]
    assert len(failures) == 1
    assert "test_words_are_joined" in failures[0].message
    assert events.types == ["verification.refuted"]


async def test_obfuscated_exec_is_a_security_violation_and_tests_never_run(
    engine: VerificationEngine, sandbox: CountingSandbox, ledger: Ledger, events: Events
) -> None:
    """base64-then-exec is critical: refuted, a security violation, the tests never run."""
    evil = "import base64\n\nexec(base64.b64decode('aW1wb3J0IG9z'))\n" + CODE
    result = await engine.verify(evil, tests=TESTS, target="svc:text")
    assert result.status is VerificationStatus.REFUTED
    assert result.security_violation
    assert result.tests is None
    assert sandbox.runs == 0
    assert result.tests_skipped_reason is not None
    assert "GR102" in result.tests_skipped_reason
    assert events.types == ["verification.refuted", "verification.security_violation"]
    assert events.emitted[1][1]["rules"] == ["GR102"]
    violations = await ledger.query(action="security_violation")
    assert [e.payload["violation_type"] for e in violations.entries] == ["GR102"]


async def test_forbidden_operation_in_tests_is_a_security_violation(
    engine: VerificationEngine, events: Events
) -> None:
    """Clean-looking code that phones home during its tests is stopped and refuted."""
    sneaky = (
        CODE
        + "\n\ndef report():\n    import socket\n    socket.create_connection(('10.0.0.1', 80))\n"
    )
    tests = TESTS + "\n\ndef test_report():\n    from module import report\n    report()\n"
    result = await engine.verify(sneaky, tests=tests)
    assert result.status is VerificationStatus.REFUTED
    assert result.security_violation
    denied = [i for i in result.issues if i.rule_id == "sandbox.network"]
    assert denied
    assert denied[0].severity is Severity.CRITICAL
    assert "verification.security_violation" in events.types


async def test_high_finding_refutes_even_when_tests_pass(engine: VerificationEngine) -> None:
    """A high-severity finding refutes; the tests still run (only critical blocks them)."""
    shell = "import subprocess\n\ndef ls(d):\n    return subprocess.run('ls ' + d, shell=True)\n"
    result = await engine.verify(shell + CODE, tests=TESTS)
    assert result.status is VerificationStatus.REFUTED
    assert result.tests is not None
    assert result.tests.passed == 3
    assert any(r.startswith("Run commands as argument lists") for r in result.recommendations)


async def test_code_without_tests_is_inconclusive(engine: VerificationEngine) -> None:
    """Without tests nothing shows the code works: inconclusive, not safe."""
    result = await engine.verify(CODE)
    assert result.status is VerificationStatus.INCONCLUSIVE
    assert not result.safe_to_execute
    assert result.tests_skipped_reason == "not run: the bundle has no tests"
    assert "Add pytest tests" in result.recommendations[0]


async def test_sandbox_that_cannot_start_is_an_error(ledger: Ledger) -> None:
    """When the sandbox cannot run, the verdict is error (never verified)."""
    broken = Sandbox(SandboxSettings(python="/nonexistent/python3"))
    engine = VerificationEngine(clock=FakeClock(), sandbox=broken, ledger=ledger)
    result = await engine.verify(CODE, tests=TESTS)
    assert result.status is VerificationStatus.ERROR
    assert result.error is not None
    assert "cannot start" in result.error


class FailingSink:
    """An audit sink whose disk is gone."""

    async def append(self, **_: Any) -> Any:
        raise OSError("disk full")


async def test_a_verdict_that_cannot_be_recorded_is_an_error(sandbox: CountingSandbox) -> None:
    """Nothing unrecorded may be deployed: an unrecordable verdict becomes error."""
    engine = VerificationEngine(clock=FakeClock(), sandbox=sandbox, ledger=FailingSink())
    result = await engine.verify(CODE, tests=TESTS)
    assert result.status is VerificationStatus.ERROR
    assert not result.safe_to_execute
    assert "could not be recorded" in (result.error or "")


async def test_facts_for_governance_are_deterministic(engine: VerificationEngine) -> None:
    """Verifying the same code twice gives the same facts (approvals stay bound)."""
    first = await engine.verify(CODE, tests=TESTS)
    second = await engine.verify(CODE, tests=TESTS)
    assert first.verification_id != second.verification_id
    assert first.facts() == second.facts()
    assert first.facts()["code_sha256"] == CodeBundle.of(CODE, TESTS).sha256


async def test_a_directory_is_verified_with_its_tests(
    engine: VerificationEngine, tmp_path: Path
) -> None:
    """A path is read into a bundle; tests inside it run."""
    (tmp_path / "module.py").write_text(CODE)
    (tmp_path / "test_module.py").write_text(TESTS)
    result = await engine.verify(tmp_path)
    assert result.status is VerificationStatus.VERIFIED


async def test_mixed_input_forms_are_refused(engine: VerificationEngine, tmp_path: Path) -> None:
    """Tests must come in the same form as the code; the error says which."""
    with pytest.raises(VerificationError, match="tests must be a path"):
        await engine.verify(tmp_path, tests=TESTS)
    with pytest.raises(VerificationError, match="inside the CodeBundle"):
        await engine.verify(CodeBundle.of(CODE), tests=TESTS)
