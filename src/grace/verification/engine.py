"""``VerificationEngine.verify(code) -> VerificationResult``: static stage, sandboxed tests,
verdict, ledger, events.

Steps:

1. **static**: Grace's AST rules and bandit on every file, code and tests
   (:class:`~grace.verification.static.StaticAnalyzer`, on a worker thread);
2. **tests**, only when no finding is at or above ``block_tests_at`` (critical): pytest
   on the bundle's tests in the :class:`~grace.verification.sandbox.Sandbox`;
3. **verdict** (first that applies):

   * ``refuted`` — a static finding at or above ``refute_at`` (high) with at least medium
     confidence; tests kept from running by a critical finding; the sandbox stopped the
     run or denied an operation; a test failed or errored;
   * ``error`` — the sandbox could not run (and nothing above refuted);
   * ``inconclusive`` — no tests, none collected or all skipped, or no report;
   * ``verified`` — otherwise: tests ran, at least one passed, none failed.

   ``safe_to_execute`` is ``status == verified``. Confidence is the engine's confidence in
   the status: refuted by a high-confidence finding or the sandbox 0.95 (medium-confidence
   finding 0.8, failing tests 0.9); verified 0.9, +0.05 with three or more passing tests,
   minus 0.05 per medium and 0.02 per low finding (at most 0.3), at least 0.5; inconclusive
   0.5 (0.4 without a report); error 0.
4. **ledger**: the verdict (``log_verification_result``) and, for a security violation, a
   ``log_security_violation`` entry. A verdict that cannot be recorded becomes ``error``
   (fail closed: nothing unrecorded may be deployed).
5. **events** (best effort): ``verification.verified`` or ``verification.refuted``, and
   ``verification.security_violation`` for a critical finding or a sandbox denial.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, Protocol

import structlog

from grace.errors import SandboxError, VerificationError
from grace.ledger.audit import AuditSink, log_security_violation, log_verification_result
from grace.types import Clock
from grace.verification.model import (
    CodeBundle,
    Confidence,
    Issue,
    IssueSource,
    Severity,
    StaticResult,
    TestRun,
    VerificationResult,
    VerificationStatus,
)
from grace.verification.rules import category_of
from grace.verification.sandbox import Sandbox
from grace.verification.static import StaticAnalyzer

__all__ = [
    "REFUTED_EVENT",
    "SECURITY_VIOLATION_EVENT",
    "VERIFIED_EVENT",
    "EventPublisher",
    "VerificationEngine",
    "VerificationSettings",
    "bundle_of",
]

log = structlog.get_logger(__name__)

VERIFIED_EVENT: Final = "verification.verified"
REFUTED_EVENT: Final = "verification.refuted"
SECURITY_VIOLATION_EVENT: Final = "verification.security_violation"

_ADVICE: Final = {
    "dynamic-code": "Replace eval/exec/compile with explicit code (ast.literal_eval for data).",
    "dynamic-import": "Import modules by name with import statements, not computed names.",
    "shell": "Run commands as argument lists without a shell (shell=False).",
    "deserialization": "Deserialise untrusted data with json or yaml.safe_load, never pickle.",
    "file-deletion": "Delete only files the code created, inside its working directory.",
    "file-write": "Write inside the working directory; take paths from configuration.",
    "network": "Keep network access out of generated code, or declare and review it.",
    "process": "Avoid forking, replacing or signalling processes from generated code.",
    "native": "Do not load native code through ctypes/cffi in generated code.",
    "tampering": "Do not reach into the interpreter (gc, __subclasses__, builtins, hooks).",
    "input": "Make every file valid Python that the analysers can read.",
}
_LIMIT_ADVICE: Final = {
    "wall_time": "The tests ran past the wall-clock limit: look for hangs or unbounded loops.",
    "cpu_time": "The tests used up the CPU limit: look for unbounded loops.",
    "memory": "The tests exhausted the memory limit: look for unbounded growth.",
    "file_size": "The tests wrote a file past the size limit.",
    "processes": "The tests created processes past the limit (fork bomb?).",
    "output": "The tests printed past the output limit.",
    "killed": "The test process was killed by the kernel (a hard limit).",
}


class EventPublisher(Protocol):
    """Where verdicts are announced (the mesh's publisher handle implements it)."""

    async def emit(self, event_type: str, payload: Mapping[str, Any] | None = None, /) -> object:
        """Emit an event of ``event_type``."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationSettings:
    """Where the verdict's lines are drawn."""

    refute_at: Severity = Severity.HIGH
    """Static findings at or above this (with at least medium confidence) refute."""
    block_tests_at: Severity = Severity.CRITICAL
    """Static findings at or above this keep the tests from running at all."""
    max_recorded_issues: int = 100
    """Issues written into the ledger entry (all are counted)."""

    def __post_init__(self) -> None:
        if self.block_tests_at.rank < self.refute_at.rank:
            raise ValueError("block_tests_at must not be below refute_at")
        if self.max_recorded_issues < 0:
            raise ValueError("max_recorded_issues must be >= 0")


class VerificationEngine:
    """Verifies code bundles; records and announces every verdict."""

    def __init__(
        self,
        *,
        clock: Clock,
        analyzer: StaticAnalyzer | None = None,
        sandbox: Sandbox | None = None,
        ledger: AuditSink | None = None,
        events: EventPublisher | None = None,
        settings: VerificationSettings | None = None,
    ) -> None:
        self.settings = settings or VerificationSettings()
        self.analyzer = analyzer or StaticAnalyzer()
        self.sandbox = sandbox or Sandbox()
        self._clock = clock
        self._ledger = ledger
        self._events = events

    async def verify(
        self,
        code: CodeBundle | str | Path | Mapping[str, str | bytes],
        *,
        tests: str | Path | Mapping[str, str | bytes] | None = None,
        target: str = "",
        actor: str = "verification_engine",
    ) -> VerificationResult:
        """Verify ``code`` (a bundle, a source string, ``{name: source}`` or a path) with
        optional ``tests``. Bad input raises :class:`VerificationError`; everything else is
        a verdict."""
        bundle = await bundle_of(code, tests)
        started = self._clock.now()
        verification_id = f"ver_{secrets.token_urlsafe(12)}"
        static = await asyncio.to_thread(
            self.analyzer.analyze, bundle.all_files, tests=frozenset(bundle.tests)
        )
        blocking = [
            i for i in static.issues if i.severity.rank >= self.settings.block_tests_at.rank
        ]
        run: TestRun | None = None
        skipped: str | None = None
        error: str | None = None
        if blocking:
            rules = ", ".join(sorted({i.rule_id for i in blocking}))
            skipped = (
                f"not run: {len(blocking)} {self.settings.block_tests_at} finding(s) ({rules})"
            )
        elif not bundle.tests:
            skipped = "not run: the bundle has no tests"
        else:
            try:
                run = await self.sandbox.run(bundle.all_files, sorted(bundle.tests))
            except SandboxError as e:
                error = f"the sandbox could not run the tests: {e}"
                skipped = f"not run: {e}"
                log.warning(
                    "verification_sandbox_failed", verification=verification_id, error=str(e)
                )
        status, confidence = self._verdict(static, run, bool(blocking), error)
        issues = (*static.issues, *_run_issues(run))
        result = VerificationResult(
            verification_id=verification_id,
            status=status,
            confidence=confidence,
            safe_to_execute=status is VerificationStatus.VERIFIED,
            issues=issues,
            recommendations=_recommendations(issues, run, bundle, skipped),
            static=static,
            tests=run,
            tests_skipped_reason=skipped,
            code_sha256=bundle.sha256,
            target=target,
            actor=actor,
            started_at=started,
            finished_at=self._clock.now(),
            error=error,
        )
        result = await self._record(result, bundle)
        await self._announce(result)
        return result

    # -- verdict --------------------------------------------------------------------------

    def _verdict(
        self, static: StaticResult, run: TestRun | None, blocked: bool, error: str | None
    ) -> tuple[VerificationStatus, float]:
        refuting = [
            i
            for i in static.issues
            if i.severity.rank >= self.settings.refute_at.rank
            and i.confidence.rank >= Confidence.MEDIUM.rank
        ]
        if refuting or blocked:
            sure = any(i.confidence is Confidence.HIGH for i in refuting) or blocked
            return VerificationStatus.REFUTED, 0.95 if sure else 0.8
        if error is not None:
            return VerificationStatus.ERROR, 0.0
        if run is None:
            return VerificationStatus.INCONCLUSIVE, 0.5
        if run.stopped or run.signal is not None:
            return VerificationStatus.REFUTED, 0.95
        if run.failed or run.errors:
            return VerificationStatus.REFUTED, 0.9
        if not run.ok:
            return VerificationStatus.INCONCLUSIVE, 0.5 if run.report_found else 0.4
        penalty = 0.05 * static.count(Severity.MEDIUM) + 0.02 * static.count(Severity.LOW)
        bonus = 0.05 if run.passed >= 3 else 0.0
        return VerificationStatus.VERIFIED, round(max(0.5, 0.9 + bonus - min(penalty, 0.3)), 4)

    # -- ledger and events ----------------------------------------------------------------

    async def _record(self, result: VerificationResult, bundle: CodeBundle) -> VerificationResult:
        if self._ledger is None:
            return result
        recorded = [i.to_json() for i in result.issues[: self.settings.max_recorded_issues]]
        details: dict[str, Any] = {
            "verification_id": result.verification_id,
            "code_sha256": result.code_sha256,
            "files": sorted(bundle.files),
            "tests": sorted(bundle.tests),
            "issues_total": len(result.issues),
            "tests_skipped_reason": result.tests_skipped_reason,
            "error": result.error,
        }
        if result.tests is not None:
            t = result.tests
            details["test_run"] = {
                "passed": t.passed,
                "failed": t.failed,
                "errors": t.errors,
                "skipped": t.skipped,
                "duration_s": round(t.duration_s, 6),
                "limits_hit": list(t.limits_hit),
                "denials": [d.to_json() for d in t.denials[:20]],
                "isolation": {"network": t.isolation.network, "filesystem": t.isolation.filesystem},
            }
        try:
            if result.security_violation:
                await self._record_violation(result)
            receipt = await log_verification_result(
                self._ledger,
                actor=result.actor,
                target=result.target,
                status=result.status,
                confidence=result.confidence,
                safe_to_execute=result.safe_to_execute,
                issues=recorded,
                details=details,
            )
        except Exception as e:
            log.exception("verification_unrecorded", verification=result.verification_id)
            return replace(
                result,
                status=VerificationStatus.ERROR,
                confidence=0.0,
                safe_to_execute=False,
                error=f"the verdict could not be recorded: {e!r}",
            )
        return replace(result, receipt_seq=receipt.seq)

    async def _record_violation(self, result: VerificationResult) -> None:
        if self._ledger is None:  # pragma: no cover - the caller checks
            return
        critical = [i for i in result.issues if i.severity is Severity.CRITICAL]
        denials = result.tests.denials if result.tests is not None else ()
        kind = critical[0].rule_id if critical else f"sandbox.{denials[0].kind}"
        await log_security_violation(
            self._ledger,
            actor=result.actor,
            resource=result.target,
            violation_type=kind,
            severity=Severity.CRITICAL,
            details={
                "verification_id": result.verification_id,
                "code_sha256": result.code_sha256,
                "findings": [
                    {"rule_id": i.rule_id, "file": i.file, "line": i.line, "message": i.message}
                    for i in critical[:20]
                ],
                "denials": [d.to_json() for d in denials[:20]],
                "tests_run": result.tests is not None,
            },
        )

    async def _announce(self, result: VerificationResult) -> None:
        if self._events is None:
            return
        payload = {
            "verification_id": result.verification_id,
            "status": str(result.status),
            "safe_to_execute": result.safe_to_execute,
            "confidence": result.confidence,
            "target": result.target,
            "actor": result.actor,
            "code_sha256": result.code_sha256,
            "issues": len(result.issues),
            "receipt_seq": result.receipt_seq,
        }
        kinds: list[str] = []
        if result.status is VerificationStatus.VERIFIED:
            kinds.append(VERIFIED_EVENT)
        elif result.status is VerificationStatus.REFUTED:
            kinds.append(REFUTED_EVENT)
        if result.security_violation:
            kinds.append(SECURITY_VIOLATION_EVENT)
        for kind in kinds:
            body = dict(payload)
            if kind == SECURITY_VIOLATION_EVENT:
                body["rules"] = sorted(
                    {i.rule_id for i in result.issues if i.severity is Severity.CRITICAL}
                )
                body["tests_run"] = result.tests is not None
            try:
                await self._events.emit(kind, body)
            except Exception as e:  # noqa: BLE001 - the ledger is the record; events are news
                log.warning("verification_event_failed", event=kind, error=repr(e))


async def bundle_of(
    code: CodeBundle | str | Path | Mapping[str, str | bytes],
    tests: str | Path | Mapping[str, str | bytes] | None = None,
) -> CodeBundle:
    """``code`` (and ``tests``) as a :class:`CodeBundle`; paths are read on a worker thread."""
    if isinstance(code, CodeBundle):
        if tests is not None:
            raise VerificationError("pass tests inside the CodeBundle, not separately")
        return code
    if isinstance(code, Path):
        if tests is not None and not isinstance(tests, Path):
            raise VerificationError("with a code path, tests must be a path too")
        return await asyncio.to_thread(CodeBundle.from_path, code, tests)
    if isinstance(tests, Path):
        raise VerificationError("with code given as source, tests must be source too")
    return CodeBundle.of(code, tests)


def _run_issues(run: TestRun | None) -> list[Issue]:
    if run is None:
        return []
    issues = [
        Issue(
            rule_id=f"sandbox.{d.kind}",
            severity=Severity.HIGH if d.kind == "processes" else Severity.CRITICAL,
            confidence=Confidence.HIGH,
            message=f"the sandbox denied {d.event} on {d.target}"
            + (f" ({d.count} times)" if d.count > 1 else ""),
            source=IssueSource.SANDBOX,
        )
        for d in run.denials
    ]
    issues += [
        Issue(
            rule_id=f"limit.{name}",
            severity=Severity.HIGH,
            confidence=Confidence.HIGH,
            message=f"the test run hit the sandbox's {name.replace('_', ' ')} limit",
            source=IssueSource.SANDBOX,
        )
        for name in run.limits_hit
    ]
    issues += [
        Issue(
            rule_id=f"test.{f.kind}",
            severity=Severity.HIGH,
            confidence=Confidence.HIGH,
            message=f"{f.name}: {f.message}" if f.message else f.name,
            source=IssueSource.TESTS,
        )
        for f in run.failures
    ]
    return issues


def _recommendations(
    issues: tuple[Issue, ...], run: TestRun | None, bundle: CodeBundle, skipped: str | None
) -> tuple[str, ...]:
    advice: list[str] = []
    for issue in issues:
        category = category_of(issue.rule_id)
        if issue.severity.rank >= Severity.MEDIUM.rank and category in _ADVICE:
            advice.append(_ADVICE[category])
    if run is not None:
        advice += [_LIMIT_ADVICE[n] for n in run.limits_hit if n in _LIMIT_ADVICE]
        if run.denials:
            kinds = ", ".join(sorted({d.kind for d in run.denials}))
            advice.append(f"The tests attempted operations the sandbox forbids ({kinds}).")
        if run.failed or run.errors:
            advice.append("Fix the failing tests (see the issues for each failure).")
        if run.report_found and run.passed == 0 and not (run.failed or run.errors):
            advice.append("No test passed: add tests that exercise the code.")
    elif not bundle.tests:
        advice.append("Add pytest tests: without them the code cannot be verified.")
    elif skipped and "finding" in skipped:
        advice.append("Remove the critical findings; the tests run only after that.")
    return tuple(dict.fromkeys(advice))
