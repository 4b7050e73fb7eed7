"""Code verification: AST rules and bandit, sandboxed pytest, a verdict in the ledger.

>>> from grace.verification import CodeBundle, VerificationEngine
>>> # result = await engine.verify(CodeBundle.of(source, tests)); result.safe_to_execute
"""

from grace.verification.engine import (
    REFUTED_EVENT,
    SECURITY_VIOLATION_EVENT,
    VERIFIED_EVENT,
    VerificationEngine,
    VerificationSettings,
)
from grace.verification.model import (
    BundleLimits,
    CodeBundle,
    Confidence,
    Denial,
    Isolation,
    Issue,
    IssueSource,
    Severity,
    StaticResult,
    TestFailure,
    TestRun,
    VerificationResult,
    VerificationStatus,
)
from grace.verification.rules import RULES, Rule
from grace.verification.sandbox import Sandbox, SandboxLimits, SandboxSettings
from grace.verification.static import StaticAnalyzer

__all__ = [
    "REFUTED_EVENT",
    "RULES",
    "SECURITY_VIOLATION_EVENT",
    "VERIFIED_EVENT",
    "BundleLimits",
    "CodeBundle",
    "Confidence",
    "Denial",
    "Isolation",
    "Issue",
    "IssueSource",
    "Rule",
    "Sandbox",
    "SandboxLimits",
    "SandboxSettings",
    "Severity",
    "StaticAnalyzer",
    "StaticResult",
    "TestFailure",
    "TestRun",
    "VerificationEngine",
    "VerificationResult",
    "VerificationSettings",
    "VerificationStatus",
]
