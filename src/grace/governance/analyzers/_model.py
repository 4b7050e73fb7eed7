"""The analyzers' vocabulary: finding kinds and the principles they violate, findings, limits.

Part of :mod:`grace.governance.analyzers` (its docstring states the invariants).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from grace.governance.constitution import Principle, Severity


class FindingKind(StrEnum):
    """What was found; the value is the name the constitution tests in ``context.findings``."""

    DESTRUCTIVE_COMMAND = "destructive_command"
    SECRET_EXPOSURE = "secret_exposure"  # noqa: S105 - a finding's name, not a secret
    PRIVILEGE_ESCALATION = "privilege_escalation"
    CODE_OBFUSCATION = "code_obfuscation"
    DATA_EXFILTRATION = "data_exfiltration"
    UNAUTHORIZED_NETWORK = "unauthorized_network"
    SELF_MODIFICATION = "self_modification"
    """Changes governance, policies, the ledger or verification."""
    DISABLES_AUDIT = "disables_audit"
    """Disables, deletes or bypasses the audit ledger."""
    MALWARE = "malware"
    ANALYSIS_INCOMPLETE = "analysis_incomplete"
    """Part of the request was not inspected (a limit, an unknown type): deny."""


PRINCIPLES: Final[Mapping[FindingKind, Principle]] = MappingProxyType(
    {
        FindingKind.DESTRUCTIVE_COMMAND: Principle.NO_DESTRUCTIVE_COMMANDS,
        FindingKind.SECRET_EXPOSURE: Principle.NO_SENSITIVE_DATA_EXPOSURE,
        FindingKind.PRIVILEGE_ESCALATION: Principle.NO_PRIVILEGE_ESCALATION,
        FindingKind.CODE_OBFUSCATION: Principle.NO_CODE_OBFUSCATION,
        FindingKind.DATA_EXFILTRATION: Principle.NO_DATA_EXFILTRATION,
        FindingKind.UNAUTHORIZED_NETWORK: Principle.NO_UNAUTHORIZED_NETWORK_ACCESS,
        FindingKind.SELF_MODIFICATION: Principle.NO_SELF_MODIFICATION_WITHOUT_APPROVAL,
        FindingKind.DISABLES_AUDIT: Principle.ACCOUNTABILITY,
        FindingKind.MALWARE: Principle.NO_MALWARE_GENERATION,
        # No safety principle says "uninspected"; what was not inspected is not shown
        # harmless, so it answers to "do no harm".
        FindingKind.ANALYSIS_INCOMPLETE: Principle.BENEFICENCE,
    }
)
"""The constitutional principle each kind of finding violates."""

_MAX_EVIDENCE = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One thing found in a request: what, where and why, never the secret itself."""

    kind: FindingKind
    principle: Principle
    severity: Severity
    path: str
    """JSON path of the string, e.g. ``request.context.steps[2].cmd``; ``#key``: the key."""
    evidence: str
    """A short, redacted excerpt."""
    rule: str
    """Stable rule id, e.g. ``destructive.rm_recursive_root`` (see :data:`RULE_IDS`)."""

    def __post_init__(self) -> None:
        if not isinstance(self.kind, FindingKind) or not isinstance(self.severity, Severity):
            raise TypeError("kind and severity must be FindingKind and Severity members")
        if self.principle is not PRINCIPLES[self.kind]:
            raise ValueError(f"a {self.kind} finding protects {PRINCIPLES[self.kind]}")
        if not self.path or not self.rule or len(self.evidence) > _MAX_EVIDENCE:
            raise ValueError("a finding needs a path, a rule id and evidence of ≤ 200 chars")


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalyzerLimits:
    """Bounds of one analysis; content beyond them is reported, never silently skipped."""

    max_chars: int = 1 << 20
    """Characters of strings (keys included) scanned per request: 1 MiB."""
    max_depth: int = 64
    """Nesting of containers inspected."""
    max_values: int = 100_000
    """Values (keys, strings, numbers, containers) visited."""
    max_decoded_chars: int = 4096
    """Characters of one encoded payload decoded and scanned again."""
    max_decodes: int = 64
    """Encoded payloads decoded per request."""

    def __post_init__(self) -> None:
        for name in ("max_chars", "max_depth", "max_values", "max_decoded_chars", "max_decodes"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"AnalyzerLimits.{name} must be a positive int, got {value!r}")


DEFAULT_LIMITS: Final = AnalyzerLimits()
