"""The verification vocabulary: code bundles, issues, sub-results and the verdict.

Names and values are the seed plan's (VOCABULARY.md): status ``verified``, ``refuted``,
``inconclusive``, ``error``; issue severity ``critical`` … ``info``.

Invariants:

* a :class:`CodeBundle` holds only relative, normalised POSIX paths (no ``..``, no
  absolute path, no empty segment), within the size limits, and its code and test names
  are disjoint;
* ``VerificationResult.safe_to_execute`` is true exactly when the status is ``verified``:
  static analysis found nothing high or critical *and* the tests ran in the sandbox, at
  least one passed and none failed, errored or broke a limit;
* an :class:`Issue`'s ``also`` lists the other rules that reported the same construct on
  the same line (deduplication keeps every rule id).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from grace.errors import VerificationError

__all__ = [
    "BundleLimits",
    "CodeBundle",
    "Confidence",
    "Denial",
    "Isolation",
    "Issue",
    "IssueSource",
    "Severity",
    "StaticResult",
    "TestFailure",
    "TestRun",
    "VerificationResult",
    "VerificationStatus",
    "is_test_file",
    "worst",
]


class VerificationStatus(StrEnum):
    """The verdict."""

    VERIFIED = "verified"
    """Static analysis is clean and the tests pass in the sandbox."""
    REFUTED = "refuted"
    """Evidence that the code is unsafe or does not work."""
    INCONCLUSIVE = "inconclusive"
    """No evidence either way that is strong enough (e.g. no tests)."""
    ERROR = "error"
    """The engine could not verify (the sandbox could not start, …)."""


class Severity(StrEnum):
    """How bad an issue is; ordered."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for info … 4 for critical."""
        return _SEVERITY_ORDER[self]


_SEVERITY_ORDER: Final = {s: i for i, s in enumerate(Severity)}


class Confidence(StrEnum):
    """How sure the rule is that the construct is what it reports; ordered."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        """0 for low … 2 for high."""
        return _CONFIDENCE_ORDER[self]


_CONFIDENCE_ORDER: Final = {c: i for i, c in enumerate(Confidence)}


class IssueSource(StrEnum):
    """Which stage found an issue."""

    RULES = "rules"
    """Grace's own AST rules (ids ``GR…``)."""
    BANDIT = "bandit"
    """bandit (ids ``B…``)."""
    TESTS = "tests"
    """A test failed or errored in the sandbox."""
    SANDBOX = "sandbox"
    """The sandbox denied an operation or stopped the run at a limit."""
    INPUT = "input"
    """The code could not be read or parsed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Issue:
    """One problem found, with where and how sure."""

    rule_id: str
    severity: Severity
    confidence: Confidence
    message: str
    source: IssueSource
    file: str = ""
    line: int = 0
    column: int = 0
    also: tuple[str, ...] = ()
    """Other rule ids that reported the same construct here (kept by deduplication)."""
    cwe: int | None = None

    @property
    def rule_ids(self) -> tuple[str, ...]:
        """This rule and every merged one."""
        return (self.rule_id, *self.also)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "rule_id": self.rule_id,
            "severity": str(self.severity),
            "confidence": str(self.confidence),
            "message": self.message,
            "source": str(self.source),
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "also": list(self.also),
            "cwe": self.cwe,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class StaticResult:
    """What static analysis (own rules + bandit) found."""

    files_scanned: int
    issues: tuple[Issue, ...]
    duration_s: float
    parse_errors: tuple[str, ...] = ()
    """Files that do not parse (each also an issue ``GR000``)."""
    bandit: bool = True
    """Whether bandit ran (it always does unless explicitly disabled)."""

    def worst(self) -> Severity | None:
        """The highest severity found, or None."""
        return max((i.severity for i in self.issues), key=lambda s: s.rank, default=None)

    def count(self, severity: Severity) -> int:
        """How many issues of exactly this severity."""
        return sum(1 for i in self.issues if i.severity is severity)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "files_scanned": self.files_scanned,
            "duration_s": round(self.duration_s, 6),
            "parse_errors": list(self.parse_errors),
            "bandit": self.bandit,
            "issues": [i.to_json() for i in self.issues],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Isolation:
    """Which sandbox layers were in effect for a run (reported by the sandbox itself)."""

    user_namespace: bool = False
    mount_namespace: bool = False
    network_namespace: bool = False
    pid_namespace: bool = False
    readonly_root: bool = False
    """Every mount except the sandbox directory was read-only."""
    private_proc: bool = False
    """/proc showed only the sandbox's processes."""
    nproc_enforced: bool = False
    """RLIMIT_NPROC binds (the kernel exempts uid 0 from it)."""
    audit_guard: bool = True
    hidden_paths: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def network(self) -> str:
        """How the network is blocked: ``namespace+guard``, ``guard``, or ``none``."""
        if self.network_namespace:
            return "namespace+guard" if self.audit_guard else "namespace"
        return "guard" if self.audit_guard else "none"

    @property
    def filesystem(self) -> str:
        """How writes outside the sandbox are blocked."""
        if self.readonly_root:
            return "read-only mounts+guard" if self.audit_guard else "read-only mounts"
        return "guard+permissions" if self.audit_guard else "permissions"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "user_namespace": self.user_namespace,
            "mount_namespace": self.mount_namespace,
            "network_namespace": self.network_namespace,
            "pid_namespace": self.pid_namespace,
            "readonly_root": self.readonly_root,
            "private_proc": self.private_proc,
            "nproc_enforced": self.nproc_enforced,
            "audit_guard": self.audit_guard,
            "network": self.network,
            "filesystem": self.filesystem,
            "hidden_paths": list(self.hidden_paths),
            "errors": list(self.errors),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Denial:
    """An operation the sandbox's guard refused (``kind``: filesystem, network, exec,
    processes, native, introspection)."""

    kind: str
    event: str
    target: str
    count: int = 1
    """How many times the same operation was denied."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {"kind": self.kind, "event": self.event, "target": self.target, "count": self.count}


@dataclass(frozen=True, slots=True, kw_only=True)
class TestFailure:
    """A test that failed or errored (``kind``: failure or error)."""

    __test__ = False  # not a pytest class

    name: str
    kind: str
    message: str

    def to_json(self) -> dict[str, str]:
        """A JSON-ready mapping."""
        return {"name": self.name, "kind": self.kind, "message": self.message}


@dataclass(frozen=True, slots=True, kw_only=True)
class TestRun:
    """What happened when the tests ran in the sandbox."""

    __test__ = False  # not a pytest class

    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    duration_s: float = 0.0
    """pytest's own duration, from the junit report."""
    wall_s: float = 0.0
    """Wall-clock time of the whole sandboxed run (start-up included)."""
    exit_code: int | None = None
    """pytest's exit code (0 passed, 1 failed, 2 interrupted, 3 internal, 4 usage, 5 none)."""
    signal: int | None = None
    """The signal that ended the test process, if any."""
    timed_out: bool = False
    limits_hit: tuple[str, ...] = ()
    """Resource limits that stopped or broke the run: wall_time, cpu_time, memory,
    file_size, processes, output."""
    denials: tuple[Denial, ...] = ()
    failures: tuple[TestFailure, ...] = ()
    report_found: bool = False
    output: str = ""
    """The run's output (stdout and stderr), capped."""
    output_truncated: bool = False
    isolation: Isolation = field(default_factory=Isolation)

    @property
    def total(self) -> int:
        """Tests that ran or were skipped."""
        return self.passed + self.failed + self.errors + self.skipped

    @property
    def stopped(self) -> bool:
        """The sandbox stopped the run or denied something."""
        return bool(self.limits_hit or self.denials or self.timed_out)

    @property
    def ok(self) -> bool:
        """At least one test passed, none failed or errored, nothing was stopped."""
        return (
            self.report_found
            and self.exit_code == 0
            and self.passed > 0
            and self.failed == 0
            and self.errors == 0
            and not self.stopped
            and self.signal is None
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "passed": self.passed,
            "failed": self.failed,
            "errors": self.errors,
            "skipped": self.skipped,
            "total": self.total,
            "duration_s": round(self.duration_s, 6),
            "wall_s": round(self.wall_s, 6),
            "exit_code": self.exit_code,
            "signal": self.signal,
            "timed_out": self.timed_out,
            "limits_hit": list(self.limits_hit),
            "denials": [d.to_json() for d in self.denials],
            "failures": [f.to_json() for f in self.failures],
            "report_found": self.report_found,
            "output": self.output,
            "output_truncated": self.output_truncated,
            "isolation": self.isolation.to_json(),
        }


# -- input ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleLimits:
    """How much code one verification accepts."""

    max_files: int = 500
    max_file_bytes: int = 1 << 20
    max_total_bytes: int = 8 << 20
    max_path_chars: int = 255

    def __post_init__(self) -> None:
        if min(self.max_files, self.max_file_bytes, self.max_total_bytes) < 1:
            raise ValueError("bundle limits must be positive")


_TEST_PREFIX: Final = "test_"
_TEST_SUFFIX: Final = "_test.py"


def is_test_file(name: str) -> bool:
    """pytest's default test file pattern (``test_*.py``, ``*_test.py``) or a conftest."""
    base = posixpath.basename(name)
    return base.endswith(".py") and (
        base.startswith(_TEST_PREFIX) or base.endswith(_TEST_SUFFIX) or base == "conftest.py"
    )


def _check_name(name: str, limits: BundleLimits) -> str:
    if not name or len(name) > limits.max_path_chars:
        raise VerificationError(f"file name {name[:80]!r} is empty or too long")
    if "\\" in name or "\0" in name:
        raise VerificationError(f"file name {name!r} must be a POSIX path without NUL")
    normal = posixpath.normpath(name)
    if (
        posixpath.isabs(name)
        or normal != name
        or normal.startswith("../")
        or normal in (".", "..")
        or any(part.startswith(".") for part in normal.split("/"))
    ):
        raise VerificationError(
            f"file name {name!r} must be a relative, normalised path without '..' or hidden parts"
        )
    return name


def _bytes(name: str, source: str | bytes) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, str):
        try:
            return source.encode("utf-8")
        except UnicodeEncodeError as e:
            raise VerificationError(f"{name}: source is not encodable as UTF-8: {e}") from e
    raise VerificationError(f"{name}: source must be str or bytes, not {type(source).__name__}")


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeBundle:
    """Python code to verify: code files and test files, by relative path.

    Build with :meth:`of` (mappings, or one source string) or :meth:`from_path` (a file
    or a directory); both validate names and sizes and raise :class:`VerificationError`
    naming the problem.
    """

    files: Mapping[str, bytes]
    tests: Mapping[str, bytes] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        code: str | bytes | Mapping[str, str | bytes],
        tests: str | bytes | Mapping[str, str | bytes] | None = None,
        *,
        limits: BundleLimits | None = None,
    ) -> CodeBundle:
        """A bundle from a source string (``module.py``) or ``{name: source}``; a test
        string becomes ``test_module.py``."""
        limits = limits or BundleLimits()
        files = {"module.py": code} if isinstance(code, (str, bytes)) else dict(code)
        test_map: dict[str, str | bytes] = (
            {}
            if tests is None
            else {"test_module.py": tests}
            if isinstance(tests, (str, bytes))
            else dict(tests)
        )
        return cls._build(files, test_map, limits)

    @classmethod
    def from_path(
        cls, code: Path, tests: Path | None = None, *, limits: BundleLimits | None = None
    ) -> CodeBundle:
        """A bundle from a ``.py`` file or a directory of them (hidden directories and
        ``__pycache__`` skipped). Test files inside a code directory count as tests;
        ``tests`` adds a file or directory of tests."""
        limits = limits or BundleLimits()
        found = _read_tree(code, limits)
        files = {n: s for n, s in found.items() if not is_test_file(n)}
        test_map: dict[str, str | bytes] = {n: s for n, s in found.items() if is_test_file(n)}
        if tests is not None:
            for name, source in _read_tree(tests, limits).items():
                if name in test_map or name in files:
                    raise VerificationError(f"test file {name!r} clashes with a code file name")
                test_map[name] = source
        return cls._build(dict(files), test_map, limits)

    @classmethod
    def _build(
        cls,
        files: Mapping[str, str | bytes],
        tests: Mapping[str, str | bytes],
        limits: BundleLimits,
    ) -> CodeBundle:
        if not files and not tests:
            raise VerificationError("there is no code to verify")
        clash = set(files) & set(tests)
        if clash:
            raise VerificationError(f"names used for both code and tests: {sorted(clash)}")
        if len(files) + len(tests) > limits.max_files:
            raise VerificationError(f"more than {limits.max_files} files")
        total = 0
        out: list[dict[str, bytes]] = [{}, {}]
        for kind, mapping in enumerate((files, tests)):
            for name, source in mapping.items():
                _check_name(name, limits)
                if not name.endswith(".py"):
                    raise VerificationError(f"{name!r}: only Python files (.py) are verified")
                data = _bytes(name, source)
                if len(data) > limits.max_file_bytes:
                    raise VerificationError(
                        f"{name}: {len(data)} bytes, over the limit of {limits.max_file_bytes}"
                    )
                total += len(data)
                out[kind][name] = data
        if total > limits.max_total_bytes:
            raise VerificationError(
                f"{total} bytes of code, over the limit of {limits.max_total_bytes}"
            )
        prefixes = {n.rsplit("/", 1)[0] for n in (*out[0], *out[1]) if "/" in n}
        for name in (*out[0], *out[1]):
            if name in prefixes:
                raise VerificationError(f"{name!r} is both a file and a directory")
        return cls(files=MappingProxyType(out[0]), tests=MappingProxyType(out[1]))

    @property
    def all_files(self) -> dict[str, bytes]:
        """Code and tests together (names are disjoint)."""
        return {**self.files, **self.tests}

    @property
    def sha256(self) -> str:
        """Digest of every name and content, in name order: what was verified."""
        digest = hashlib.sha256()
        for name, data in sorted(self.all_files.items()):
            digest.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
        return digest.hexdigest()


def _read_tree(path: Path, limits: BundleLimits) -> dict[str, str | bytes]:
    try:
        if path.is_file():
            return {path.name: path.read_bytes()}
        if not path.is_dir():
            raise VerificationError(f"{path} is neither a file nor a directory")
        found: dict[str, str | bytes] = {}
        for file in sorted(path.rglob("*.py")):
            rel = file.relative_to(path)
            if any(p.startswith(".") or p == "__pycache__" for p in rel.parts):
                continue
            if file.is_symlink() or not file.is_file():
                continue  # never follow a link out of the tree
            if len(found) >= limits.max_files:
                raise VerificationError(f"{path}: more than {limits.max_files} Python files")
            found[rel.as_posix()] = file.read_bytes()
    except OSError as e:
        raise VerificationError(f"cannot read {path}: {e}") from e
    if not found:
        raise VerificationError(f"{path}: no Python files")
    return found


# -- the verdict ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationResult:
    """The verdict on a code bundle, with the evidence."""

    verification_id: str
    status: VerificationStatus
    confidence: float
    """How sure the engine is of ``status`` (0..1; see ``grace.verification.engine``)."""
    safe_to_execute: bool
    issues: tuple[Issue, ...]
    recommendations: tuple[str, ...]
    static: StaticResult | None
    tests: TestRun | None
    tests_skipped_reason: str | None
    code_sha256: str
    target: str
    actor: str
    started_at: _dt.datetime
    finished_at: _dt.datetime
    receipt_seq: int | None = None
    """The ledger entry recording this verdict."""
    error: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be within [0, 1], got {self.confidence}")
        if self.safe_to_execute != (self.status is VerificationStatus.VERIFIED):
            raise ValueError("safe_to_execute must be true exactly for a verified result")

    @property
    def security_violation(self) -> bool:
        """A critical finding, or the sandbox denied an operation."""
        critical = any(i.severity is Severity.CRITICAL for i in self.issues)
        return critical or bool(self.tests is not None and self.tests.denials)

    def facts(self) -> dict[str, Any]:
        """The verdict as governance sees it: deterministic for the same code and outcome
        (no times, no ids), so an approval bound to it stays valid on a re-run."""
        severities = dict.fromkeys(Severity, 0)
        for issue in self.issues:
            severities[issue.severity] += 1
        return {
            "status": str(self.status),
            "safe_to_execute": self.safe_to_execute,
            "code_sha256": self.code_sha256,
            "issues": {str(s): n for s, n in severities.items() if n},
            "rules": sorted({i.rule_id for i in self.issues if i.severity.rank >= 2}),
            "tests_passed": self.tests.passed if self.tests else 0,
            "tests_failed": (self.tests.failed + self.tests.errors) if self.tests else 0,
        }

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping (the HTTP API's body)."""
        return {
            "verification_id": self.verification_id,
            "status": str(self.status),
            "confidence": self.confidence,
            "safe_to_execute": self.safe_to_execute,
            "security_violation": self.security_violation,
            "issues": [i.to_json() for i in self.issues],
            "recommendations": list(self.recommendations),
            "static": None if self.static is None else self.static.to_json(),
            "tests": None if self.tests is None else self.tests.to_json(),
            "tests_skipped_reason": self.tests_skipped_reason,
            "code_sha256": self.code_sha256,
            "target": self.target,
            "actor": self.actor,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "receipt_seq": self.receipt_seq,
            "error": self.error,
        }


def worst(issues: Iterable[Issue]) -> Severity | None:
    """The highest severity among ``issues``."""
    return max((i.severity for i in issues), key=lambda s: s.rank, default=None)
