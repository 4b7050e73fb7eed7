"""The constitution: Grace's Cedar policies, loaded once, validated, evaluated per request.

A :class:`Constitution` is built from a policy directory (every ``*.cedar`` file plus one
schema, ``*.cedarschema`` or ``*.cedarschema.json``) or from the packaged default in
``grace/governance/policies/``. Request shape (see ``schema.cedarschema``):

* principal ``Principal::"<id>"`` with ``kind``, ``roles``, ``autonomy_tier``;
* action ``Action::"<name>"``, the name verbatim (``deploy_code``, ``POST:/v1/items/{id}``);
  names the schema declares join its action groups (autonomy tiers, ``prohibited``), any
  other name is a valid action in no group;
* resource ``Resource::"<id>"``;
* context: the server-side facts in :data:`FACTS` (risk 0..3, trust in per-mille, …).

Invariants:

* A ``Constitution`` exists only for a policy set that parsed, validated against its schema
  and annotates every policy completely (``@id`` unique, a known ``@principle``,
  ``@severity``, ``@description``; ``@outcome``/``@mode`` only where they mean
  something). Anything else raises :class:`~grace.errors.PolicyError` naming the file,
  the policy and the problem, and nothing is loaded: :meth:`Constitution.reload` returns a
  new instance or raises, so the caller keeps the last good one.
* Policy text and schema are parsed once, at construction, into cedarpy handles;
  :meth:`Constitution.evaluate` never parses them. Per call it only checks the facts and
  builds the request; a principal's entity is built once per distinct set of attributes
  and cached.
* Fail closed: Cedar's default is deny; a policy that errors during evaluation turns the
  outcome into ``rejected`` (Cedar would skip an erroring forbid — for a constitution that
  would be an open gate); malformed facts raise :class:`~grace.errors.GovernanceError`.

Outcome semantics (ADR 0005):

* A forbid annotated ``@outcome("requires_approval")`` or ``("requires_parliament")``
  escalates instead of rejecting — only when no plain forbid applies and a permit would
  allow the request once the escalating rules are set aside (otherwise ``rejected``). The
  stronger escalation wins: parliament over approval.
* ``@mode("log")`` forbids are staged: they live in a separate policy set, evaluated only
  when one exists, never affect the outcome, and are reported as ``would_deny``.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import re
from collections import OrderedDict
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib.resources.abc import Traversable
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeVar

import cedarpy

from grace.errors import GovernanceError, PolicyError
from grace.governance.model import Outcome, PrincipalKind

__all__ = [
    "FACTS",
    "CedarDecision",
    "CedarResult",
    "Constitution",
    "Effect",
    "Finding",
    "PolicyMeta",
    "Principle",
    "PrincipleCategory",
    "RuleMode",
    "RuleOutcome",
    "Severity",
    "trust_per_mille",
]


class PrincipleCategory(StrEnum):
    """The three kinds of constitutional principle."""

    FOUNDATIONAL = "foundational"
    OPERATIONAL = "operational"
    SAFETY = "safety"


class Principle(StrEnum):
    """A constitutional principle (VOCABULARY.md); every policy names one in ``@principle``."""

    BENEFICENCE = "beneficence"
    TRANSPARENCY_HONESTY = "transparency_honesty"
    ACCOUNTABILITY = "accountability"
    RESPECT_LAW_ETHICS = "respect_law_ethics"
    FOLLOW_WHY = "follow_why"
    LEAST_PRIVILEGE = "least_privilege"
    REVERSIBILITY = "reversibility"
    GRADUAL_ESCALATION = "gradual_escalation"
    PRIVACY_RESPECT = "privacy_respect"
    EXPLAINABILITY = "explainability"
    NO_DESTRUCTIVE_COMMANDS = "no_destructive_commands"
    NO_SENSITIVE_DATA_EXPOSURE = "no_sensitive_data_exposure"
    NO_PRIVILEGE_ESCALATION = "no_privilege_escalation"
    NO_CODE_OBFUSCATION = "no_code_obfuscation"
    NO_SELF_MODIFICATION_WITHOUT_APPROVAL = "no_self_modification_without_approval"
    NO_UNAUTHORIZED_NETWORK_ACCESS = "no_unauthorized_network_access"
    NO_DATA_EXFILTRATION = "no_data_exfiltration"
    NO_MALWARE_GENERATION = "no_malware_generation"

    @property
    def category(self) -> PrincipleCategory:
        """Foundational, operational or safety."""
        return _CATEGORY[self]


_CATEGORY: Final = MappingProxyType(
    {
        **dict.fromkeys(list(Principle)[:5], PrincipleCategory.FOUNDATIONAL),
        **dict.fromkeys(list(Principle)[5:10], PrincipleCategory.OPERATIONAL),
        **dict.fromkeys(list(Principle)[10:], PrincipleCategory.SAFETY),
    }
)


class Severity(StrEnum):
    """How grave a rule's violation is (``@severity``)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Effect(StrEnum):
    """Cedar's two policy effects."""

    PERMIT = "permit"
    FORBID = "forbid"


class RuleMode(StrEnum):
    """Whether a rule takes part in the outcome (``@mode``)."""

    ENFORCE = "enforce"
    LOG = "log"
    """Staged: evaluated and reported as ``would_deny``, never affects the outcome."""


class RuleOutcome(StrEnum):
    """What a matching forbid means (``@outcome``)."""

    DENY = "deny"
    REQUIRES_APPROVAL = "requires_approval"
    REQUIRES_PARLIAMENT = "requires_parliament"

    @property
    def outcome(self) -> Outcome:
        """The decision outcome this rule asks for."""
        return _RULE_TO_OUTCOME[self]


_RULE_TO_OUTCOME: Final = MappingProxyType(
    {
        RuleOutcome.DENY: Outcome.REJECTED,
        RuleOutcome.REQUIRES_APPROVAL: Outcome.REQUIRES_APPROVAL,
        RuleOutcome.REQUIRES_PARLIAMENT: Outcome.REQUIRES_PARLIAMENT,
    }
)

# Combining outcomes: the strictest wins.
_STRICTNESS: Final = MappingProxyType(
    {
        Outcome.APPROVED: 0,
        Outcome.REQUIRES_APPROVAL: 1,
        Outcome.REQUIRES_PARLIAMENT: 2,
        Outcome.REJECTED: 3,
    }
)


class CedarDecision(StrEnum):
    """Cedar's own answer for the enforcing rules (``NoDecision`` counts as deny)."""

    ALLOW = "allow"
    DENY = "deny"


class Finding(StrEnum):
    """Names allowed in ``context.findings``: what the analyzers found in the request."""

    DESTRUCTIVE_COMMAND = "destructive_command"
    SECRET_EXPOSURE = "secret_exposure"  # noqa: S105 - a finding's name, not a secret
    PRIVILEGE_ESCALATION = "privilege_escalation"
    CODE_OBFUSCATION = "code_obfuscation"
    DATA_EXFILTRATION = "data_exfiltration"
    UNAUTHORIZED_NETWORK = "unauthorized_network"
    MALWARE = "malware"
    HARMFUL_CONTENT = "harmful_content"
    SELF_MODIFICATION = "self_modification"
    """The action changes governance, policies, the ledger or verification."""
    DISABLES_AUDIT = "disables_audit"
    """The action disables, truncates or bypasses the audit ledger."""
    ANALYSIS_INCOMPLETE = "analysis_incomplete"
    """The analyzers could not read the whole request (too large, deep or odd to scan)."""


FACTS: Final[Mapping[str, type]] = MappingProxyType(
    {
        "authenticated": bool,
        "is_autonomous": bool,
        "risk": int,
        "trust": int,
        "approved": bool,
        "approvals": int,
        "quorum": int,
        "has_reason": bool,
        "reversible": bool,
        "low_confidence": bool,
        "low_confidence_disclosed": bool,
        "personal_data": bool,
        "consent": bool,
        "findings": frozenset,
    }
)
"""The context contract: exactly these keys, these types (``findings``: any collection of
:class:`Finding` names). ``risk`` 0 low … 3 critical; ``trust`` 0..1000 per-mille (see
:func:`trust_per_mille`); ``approvals`` ≥ 0; ``quorum`` ≥ 1. Must match ``Facts`` in the
schema."""

_FACT_NAMES: Final = frozenset(FACTS)
_BOOL_FACTS: Final = tuple(name for name, kind in FACTS.items() if kind is bool)
_FINDING_NAMES: Final = frozenset(Finding)
_INT_RANGES: Final = (
    ("risk", 0, 3),
    ("trust", 0, 1000),
    ("approvals", 0, None),
    ("quorum", 1, None),
)

_ANNOTATIONS: Final = frozenset({"id", "principle", "severity", "description", "mode", "outcome"})
_POLICY_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
_PER_ACTION: Final = re.compile(r' for Action::"(?:[^"\\]|\\.)*"')
_SCHEMA_SUFFIXES: Final = (".cedarschema", ".cedarschema.json")
_PRINCIPAL_CACHE_SIZE: Final = 4096
_RESULT_CACHE_SIZE: Final = 8192
"""Answers kept per constitution: Cedar is deterministic, so the same principal entities,
action, resource and facts always get the same answer from the same policy set."""


def trust_per_mille(score: float) -> int:
    """A composite trust score in [0, 1] as the ``trust`` fact (rounded, so 0.57 is 570)."""
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"trust score must be within [0, 1], got {score}")
    return round(score * 1000)


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyMeta:
    """One policy's annotations: who it protects, how grave, and what it does when it matches."""

    id: str
    effect: Effect
    principle: Principle
    severity: Severity
    description: str
    mode: RuleMode = RuleMode.ENFORCE
    outcome: RuleOutcome | None = None
    """For a forbid: deny (default), requires_approval or requires_parliament; None for a
    permit."""
    source: str = ""
    """The file the policy came from."""

    def __post_init__(self) -> None:
        if self.effect is Effect.PERMIT and (
            self.outcome is not None or self.mode is not RuleMode.ENFORCE
        ):
            raise ValueError("a permit has no @outcome and cannot be staged with @mode")
        if self.effect is Effect.FORBID and self.outcome is None:
            raise ValueError("a forbid has an outcome")

    @property
    def escalates(self) -> bool:
        """A forbid that asks for approval rather than rejecting."""
        return self.outcome not in (None, RuleOutcome.DENY)

    @property
    def asks_for(self) -> Outcome:
        """The outcome this rule asks for when it matches (``approved`` for a permit)."""
        return Outcome.APPROVED if self.outcome is None else self.outcome.outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class CedarResult:
    """What the constitution says about one request, and which rules said it."""

    decision: CedarDecision
    """The yes/no form: allow exactly when ``outcome`` is approved (an escalation is a Cedar
    deny until the approval is attached)."""
    outcome: Outcome
    determining: tuple[PolicyMeta, ...] = ()
    """The permits that allowed, or the forbids that matched (empty: no permit applies)."""
    would_deny: tuple[PolicyMeta, ...] = ()
    """Staged ``@mode("log")`` rules that matched; they did not affect ``outcome``."""
    errors: tuple[str, ...] = ()
    """Evaluation errors of enforcing rules; any makes the outcome ``rejected``."""
    log_errors: tuple[str, ...] = ()
    """Evaluation errors of staged rules (reported, never decisive)."""

    def __post_init__(self) -> None:
        if (self.outcome is Outcome.APPROVED) != (self.decision is CedarDecision.ALLOW):
            raise ValueError("only a Cedar allow approves, and every Cedar allow approves")
        if self.errors and self.outcome is not Outcome.REJECTED:
            raise ValueError("an evaluation error rejects")

    @property
    def allowed(self) -> bool:
        """The enforcing rules approve the request as it stands."""
        return self.outcome is Outcome.APPROVED

    @property
    def would_outcome(self) -> Outcome:
        """The outcome if the staged rules enforced too (the strictest of both)."""
        if not self.would_deny or self.outcome is Outcome.REJECTED:
            return self.outcome
        return _strictest(self.outcome, *(m.asks_for for m in self.would_deny))


def _strictest(*outcomes: Outcome) -> Outcome:
    return max(outcomes, key=_STRICTNESS.__getitem__)


_E = TypeVar("_E", bound=StrEnum)
_SEVERITY_RANK: Final = MappingProxyType({s: rank for rank, s in enumerate(Severity)})
_PRINCIPAL_KINDS: Final = frozenset(PrincipalKind)
_CONTEXT: Final = {"Var": "context"}
_FINDINGS: Final = {".": {"left": _CONTEXT, "attr": "findings"}}


def _parse_policy_set(est_json: str) -> cedarpy.PolicySet:
    """The one place policies become a cedarpy handle (tests count the calls)."""
    return cedarpy.PolicySet.from_json_str(est_json)


@dataclass(frozen=True, slots=True)
class _Source:
    name: str
    """Shown in errors: the file's path."""
    text: str


class Constitution:
    """The policy set in force: parsed once, validated, and evaluated per request.

    ``Constitution()`` loads the packaged default; ``Constitution(path)`` a policy
    directory. Either raises :class:`~grace.errors.PolicyError` and loads nothing.
    """

    __slots__ = (
        "_base",
        "_enforce",
        "_log",
        "_metas",
        "_path",
        "_principals",
        "_results",
        "_schema",
        "_unescalated",
        "digest",
    )

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._path = Path(path) if path is not None else None
        root: Traversable = (
            self._path
            if self._path is not None
            else importlib.resources.files("grace.governance").joinpath("policies")
        )
        sources, schema_source = _read_sources(root)
        self.digest = _digest(sources, schema_source)
        """SHA-256 (hex) over the file names and texts: which constitution decided."""
        self._schema = _parse_schema(schema_source)
        metas, bodies = _compile(sources, self._schema)
        self._metas: Mapping[str, PolicyMeta] = MappingProxyType(metas)
        enforcing = {
            pid: body for pid, body in bodies.items() if metas[pid].mode is RuleMode.ENFORCE
        }
        staged = {pid: body for pid, body in bodies.items() if metas[pid].mode is RuleMode.LOG}
        # Three handles, each parsed here once: the enforcing rules; the same without the
        # escalating forbids (asked only when every matching forbid escalates: would a
        # permit allow it?); the staged rules (None: no second call per request).
        self._enforce = _policy_set(enforcing)
        self._unescalated = _policy_set(
            {pid: body for pid, body in enforcing.items() if not metas[pid].escalates}
        )
        self._log = _policy_set(staged) if staged else None
        # The schema's action entities (with their groups: tiers, prohibited), built once;
        # a principal is added to a clone of this base, once per distinct attribute set.
        try:
            self._base = cedarpy.Entities.from_json_str("[]", self._schema)
        except ValueError as e:
            raise PolicyError(f"{schema_source.name}: action entities: {e}") from e
        self._principals: OrderedDict[tuple[Any, ...], cedarpy.Entities] = OrderedDict()
        self._results: dict[tuple[Any, ...], CedarResult] = {}
        try:
            self._principal_entities(
                "grace.schema-probe", {"kind": "system", "roles": (), "autonomy_tier": 0}
            )
        except GovernanceError as e:
            raise PolicyError(
                f"{schema_source.name}: the schema must declare `entity Principal` with "
                f"kind: String, roles: Set<String>, autonomy_tier: Long ({e})"
            ) from e
        self._principals.clear()

    @property
    def path(self) -> Path | None:
        """The policy directory, or None for the packaged default."""
        return self._path

    @property
    def policies(self) -> Mapping[str, PolicyMeta]:
        """Every policy by id, enforcing and staged."""
        return self._metas

    def reload(self, path: str | os.PathLike[str] | None = None) -> Constitution:
        """A new constitution from ``path`` (default: where this one came from).

        Raises :class:`~grace.errors.PolicyError` for an invalid set; ``self`` is untouched,
        so the caller keeps the last good constitution.
        """
        return Constitution(path if path is not None else self._path)

    def evaluate(
        self,
        principal_uid: str,
        principal_attrs: Mapping[str, Any],
        action: str,
        resource: str,
        context: Mapping[str, Any],
    ) -> CedarResult:
        """Evaluate every policy for one request; the facts must follow :data:`FACTS`.

        Cost per call: the facts check (a few µs), a dict lookup for the principal's entities
        (the first sight of a principal with these attributes pays one delta parse, ~50 µs
        here, then cached), one Cedar call — plus one when every matching forbid escalates,
        and one when staged rules exist. A request seen before (same principal attributes,
        action, resource and facts) is answered from a bounded per-constitution cache: a
        reload builds a new constitution, so a cached answer never outlives its policies.
        Raises :class:`~grace.errors.GovernanceError` for malformed facts or a principal
        the schema refuses (could not decide: the caller rejects).
        """
        try:
            key: tuple[Any, ...] | None = (
                self._principal_key(principal_uid, principal_attrs),
                action,
                resource,
                frozenset(context.items()),
            )
        except TypeError:
            key = None  # unhashable facts: evaluate (and fail there) uncached
        if key is not None:
            cached = self._results.get(key)
            if cached is not None:
                return cached
        answer = self._evaluate(principal_uid, principal_attrs, action, resource, context)
        if key is not None:
            self._results[key] = answer
            if len(self._results) > _RESULT_CACHE_SIZE:
                # Drop the oldest entry (dicts keep insertion order): a hit costs no
                # bookkeeping, and a hot key that falls out is simply computed again.
                del self._results[next(iter(self._results))]
        return answer

    def _evaluate(
        self,
        principal_uid: str,
        principal_attrs: Mapping[str, Any],
        action: str,
        resource: str,
        context: Mapping[str, Any],
    ) -> CedarResult:
        facts = _encode_context(context)
        entities = self._principal_entities(principal_uid, principal_attrs)
        request = {
            "principal": {"type": "Principal", "id": principal_uid},
            "action": {"type": "Action", "id": action},
            "resource": {"type": "Resource", "id": resource},
            "context": facts,
        }
        answer = cedarpy.is_authorized(request, self._enforce, entities)
        decision = answer.decision  # a property that looks the enum up on every access
        errors = tuple(str(e) for e in answer.diagnostics.errors)
        matched = self._sorted_metas(answer.diagnostics.reasons)
        would_deny: tuple[PolicyMeta, ...] = ()
        log_errors: tuple[str, ...] = ()
        if self._log is not None:
            staged = cedarpy.is_authorized(request, self._log, entities)
            would_deny = self._sorted_metas(staged.diagnostics.reasons)
            log_errors = tuple(str(e) for e in staged.diagnostics.errors)

        def result(
            outcome: Outcome, determining: tuple[PolicyMeta, ...], errors: tuple[str, ...] = ()
        ) -> CedarResult:
            return CedarResult(
                decision=CedarDecision.ALLOW if outcome is Outcome.APPROVED else CedarDecision.DENY,
                outcome=outcome,
                determining=determining,
                would_deny=would_deny,
                errors=errors,
                log_errors=log_errors,
            )

        if errors or decision is cedarpy.Decision.NoDecision:
            # Cedar skips a policy that errors; a skipped forbid must not open the gate.
            return result(Outcome.REJECTED, matched, errors)
        if decision is cedarpy.Decision.Allow:
            return result(Outcome.APPROVED, matched)
        if not matched or not all(m.escalates for m in matched):
            # Default deny (no permit applies), or a plain forbid: no approval can help.
            return result(Outcome.REJECTED, matched)
        # Every matching forbid escalates: ask for approval only if a permit would then
        # allow the request — approving something the constitution rejects anyway is moot.
        permitted = cedarpy.is_authorized(request, self._unescalated, entities)
        if permitted.diagnostics.errors:
            return result(
                Outcome.REJECTED, matched, tuple(str(e) for e in permitted.diagnostics.errors)
            )
        if permitted.decision is not cedarpy.Decision.Allow:
            return result(Outcome.REJECTED, ())
        return result(_strictest(*(m.asks_for for m in matched)), matched)

    def _sorted_metas(self, ids: Collection[str]) -> tuple[PolicyMeta, ...]:
        # Rejecting rules first, then the most severe: the first reason is the one to show.
        metas = [self._metas[pid] for pid in ids]
        if len(metas) > 1:
            metas.sort(key=lambda m: (m.escalates, -_SEVERITY_RANK[m.severity], m.id))
        return tuple(metas)

    @staticmethod
    def _principal_key(uid: str, attrs: Mapping[str, Any]) -> tuple[Any, ...]:
        try:
            # Fast path: hashable attribute values (str, int, frozenset roles) key directly.
            return (uid, frozenset(attrs.items()))
        except TypeError:
            try:
                return (uid, *((name, _frozen(value)) for name, value in sorted(attrs.items())))
            except TypeError as e:
                raise GovernanceError(
                    f"principal {uid!r}: attributes must be scalars or sets of scalars: {e}"
                ) from e

    def _principal_entities(self, uid: str, attrs: Mapping[str, Any]) -> cedarpy.Entities:
        key = self._principal_key(uid, attrs)
        entities = self._principals.get(key)
        if entities is not None:
            self._principals.move_to_end(key)
            return entities
        entities = self._build_principal(uid, attrs)
        self._principals[key] = entities
        if len(self._principals) > _PRINCIPAL_CACHE_SIZE:
            self._principals.popitem(last=False)
        return entities

    def _build_principal(self, uid: str, attrs: Mapping[str, Any]) -> cedarpy.Entities:
        if not isinstance(uid, str) or not uid:
            raise GovernanceError("a principal needs a non-empty string id")
        if attrs.get("kind") not in _PRINCIPAL_KINDS:
            raise GovernanceError(
                f"principal {uid!r}: kind must be one of {sorted(_PRINCIPAL_KINDS)}, "
                f"got {attrs.get('kind')!r}"
            )
        entity = {
            "uid": {"type": "Principal", "id": uid},
            "attrs": {
                name: sorted(value) if _is_set(value) else value for name, value in attrs.items()
            },
            "parents": [],
        }
        try:
            # Validated against the schema (types, required attributes) once per principal.
            return self._base.with_added_json_str(json.dumps([entity]), self._schema)
        except (ValueError, TypeError) as e:
            raise GovernanceError(f"principal {uid!r} does not match the schema: {e}") from e

    def __repr__(self) -> str:
        staged = sum(m.mode is RuleMode.LOG for m in self._metas.values())
        where = str(self._path) if self._path is not None else "packaged default"
        return (
            f"<Constitution {where}: {len(self._metas)} policies ({staged} staged), "
            f"digest {self.digest[:12]}>"
        )


def _is_set(value: object) -> bool:
    return isinstance(value, set | frozenset | list | tuple)


def _frozen(value: object) -> object:
    return tuple(sorted(value)) if _is_set(value) else value  # type: ignore[call-overload]


def _encode_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """Check the facts against :data:`FACTS` and return them as Cedar JSON wants them."""
    if context.keys() != _FACT_NAMES:
        missing = sorted(_FACT_NAMES - context.keys())
        unexpected = sorted(str(k) for k in context.keys() - _FACT_NAMES)
        raise GovernanceError(f"facts: missing {missing}, unexpected {unexpected}")
    for name in _BOOL_FACTS:
        if type(context[name]) is not bool:
            raise GovernanceError(f"fact {name!r} must be a bool, got {context[name]!r}")
    for name, low, high in _INT_RANGES:
        value = context[name]
        # bool is an int subclass; a True risk is a bug, not "1".
        if type(value) is not int or value < low or (high is not None and value > high):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            raise GovernanceError(f"fact {name!r} must be an int {bound}, got {value!r}")
    findings = context["findings"]
    if isinstance(findings, str) or not isinstance(findings, Collection):
        raise GovernanceError(f"fact 'findings' must be a collection of names, got {findings!r}")
    encoded = dict(context)
    if findings:
        unknown = [f for f in findings if not isinstance(f, str) or f not in _FINDING_NAMES]
        if unknown:
            raise GovernanceError(f"unknown findings {unknown!r} (known: {sorted(_FINDING_NAMES)})")
        encoded["findings"] = sorted(findings)
    else:
        encoded["findings"] = []
    return encoded


def _read_sources(root: Traversable) -> tuple[list[_Source], _Source]:
    """Every ``*.cedar`` file and the one schema in ``root``."""
    try:
        if not root.is_dir():
            raise PolicyError(f"{root}: not a policy directory")
        files = sorted((f for f in root.iterdir() if f.is_file()), key=lambda f: f.name)
        policies = [
            _Source(str(f), f.read_text("utf-8")) for f in files if f.name.endswith(".cedar")
        ]
        schemas = [
            _Source(str(f), f.read_text("utf-8"))
            for f in files
            if f.name.endswith(_SCHEMA_SUFFIXES)
        ]
    except (OSError, UnicodeDecodeError) as e:
        raise PolicyError(f"{root}: cannot read the policy directory: {e}") from e
    if not policies:
        raise PolicyError(f"{root}: no *.cedar policy files")
    if len(schemas) != 1:
        found = [s.name for s in schemas] or "none"
        raise PolicyError(
            f"{root}: needs exactly one schema (*.cedarschema or *.cedarschema.json), found {found}"
        )
    return policies, schemas[0]


def _digest(sources: list[_Source], schema: _Source) -> str:
    h = hashlib.sha256()
    for source in (*sources, schema):
        # Names without their directory: the same files decide the same wherever they live.
        for part in (os.path.basename(source.name), source.text):
            data = part.encode()
            h.update(len(data).to_bytes(8, "big"))
            h.update(data)
    return h.hexdigest()


def _parse_schema(source: _Source) -> cedarpy.Schema:
    try:
        if source.name.endswith(".json"):
            return cedarpy.Schema.from_json_str(source.text)
        return cedarpy.Schema.from_str(source.text)
    except ValueError as e:
        raise PolicyError(f"{source.name}: invalid schema: {e}") from e


def _compile(
    sources: list[_Source], schema: cedarpy.Schema
) -> tuple[dict[str, PolicyMeta], dict[str, dict[str, Any]]]:
    """Parse, annotate-check and schema-validate every file; all problems at once."""
    problems: list[str] = []
    metas: dict[str, PolicyMeta] = {}
    bodies: dict[str, dict[str, Any]] = {}
    for source in sources:
        try:
            est = json.loads(cedarpy.policies_to_json_str(source.text))
        except ValueError as e:
            problems.append(f"{source.name}: syntax error: {e}")
            continue
        if est.get("templates"):
            problems.append(
                f"{source.name}: templates (policies with ?principal/?resource slots) are not "
                "supported in a constitution"
            )
        for cedar_id, body in est.get("staticPolicies", {}).items():
            meta = _meta(source.name, cedar_id, body, problems)
            label = repr(meta.id) if meta is not None else _label(cedar_id, body)
            problems.extend(f"{source.name}: policy {label}: {p}" for p in _context_problems(body))
            if meta is None:
                continue
            if meta.id in metas:
                first = metas[meta.id].source
                problems.append(f"{source.name}: policy {label}: duplicate @id (also in {first})")
                continue
            metas[meta.id] = meta
            bodies[meta.id] = body
        validation = cedarpy.validate_policies(source.text, schema)
        seen: set[str] = set()
        for error in validation.errors:
            name = validation.id_annotations_by_policy_id.get(error.policy_id) or error.policy_id
            # Cedar repeats a type error once per action the policy may apply to.
            text = _PER_ACTION.sub("", error.error.replace(f"`{error.policy_id}`", f"`{name}`"))
            if text not in seen:
                seen.add(text)
                problems.append(f"{source.name}: policy {name!r}: {text}")
    if problems:
        raise PolicyError("invalid policy set:\n  " + "\n  ".join(problems))
    return metas, bodies


def _meta(
    source: str, cedar_id: str, body: Mapping[str, Any], problems: list[str]
) -> PolicyMeta | None:
    """The policy's annotations as a :class:`PolicyMeta`, or None with the problems recorded."""
    annotations: Mapping[str, str | None] = body.get("annotations") or {}
    policy_id = annotations.get("id")
    label = _label(cedar_id, body)
    found: list[str] = []
    unknown = sorted(set(annotations) - _ANNOTATIONS)
    if unknown:
        found.append(f"unknown annotation(s) {', '.join('@' + a for a in unknown)}")
    if not policy_id:
        found.append("missing @id")
    elif not _POLICY_ID.fullmatch(policy_id):
        found.append("@id must be 1-128 of A-Z a-z 0-9 . _ : / - (starting with a letter or digit)")
    effect = Effect(body["effect"])
    principle = _choice(annotations, "principle", Principle, found)
    severity = _choice(annotations, "severity", Severity, found)
    description = annotations.get("description")
    if not description:
        found.append("missing @description")
    mode = _choice(annotations, "mode", RuleMode, found, required=False) or RuleMode.ENFORCE
    outcome = _choice(annotations, "outcome", RuleOutcome, found, required=False)
    if effect is Effect.PERMIT:
        if "outcome" in annotations:
            found.append("@outcome is for forbid rules (a permit allows)")
        if mode is RuleMode.LOG:
            found.append('@mode("log") stages a forbid; a permit cannot be staged')
    elif outcome is None:
        outcome = RuleOutcome.DENY
    if found or principle is None or severity is None or not policy_id:
        problems.extend(f"{source}: policy {label}: {p}" for p in found)
        return None
    return PolicyMeta(
        id=policy_id,
        effect=effect,
        principle=principle,
        severity=severity,
        description=str(description),
        mode=mode,
        outcome=outcome if effect is Effect.FORBID else None,
        source=source,
    )


def _label(cedar_id: str, body: Mapping[str, Any]) -> str:
    """How errors name a policy: its @id, else its position in the file."""
    policy_id = (body.get("annotations") or {}).get("id")
    if policy_id:
        return repr(policy_id)
    # Cedar numbers the policies of one parse policy0, policy1, … in source order.
    return f"#{int(cedar_id.removeprefix('policy')) + 1} in the file"


def _choice(
    annotations: Mapping[str, str | None],
    name: str,
    enum: type[_E],
    found: list[str],
    *,
    required: bool = True,
) -> _E | None:
    """The annotation's value as ``enum``; None (and a problem if required) when absent."""
    if name not in annotations and not required:
        return None
    value = annotations.get(name)
    if value is None:
        found.append(f"missing @{name}")
        return None
    try:
        return enum(value)
    except ValueError:
        found.append(f"unknown @{name}({value!r}); one of {', '.join(e.value for e in enum)}")
        return None


def _context_problems(body: Mapping[str, Any]) -> Iterator[str]:
    """Context attributes and finding names a policy uses that Grace never supplies."""
    for node in _walk(body.get("conditions", [])):
        for op in (".", "has"):
            ref = node.get(op)
            if (
                isinstance(ref, dict)
                and ref.get("left") == _CONTEXT
                and ref.get("attr") not in FACTS
            ):
                yield f"context.{ref.get('attr')} is not a fact Grace supplies (see FACTS)"
        for op in ("contains", "containsAll", "containsAny"):
            call = node.get(op)
            if isinstance(call, dict) and call.get("left") == _FINDINGS:
                right = call.get("right", {})
                literals = right.get("Set", [right]) if isinstance(right, dict) else []
                for literal in literals:
                    name = literal.get("Value") if isinstance(literal, dict) else None
                    if isinstance(name, str) and name not in _FINDING_NAMES:
                        known = ", ".join(sorted(_FINDING_NAMES))
                        yield f"unknown finding {name!r} (known: {known})"


def _walk(node: object) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for child in node.values():
            yield from _walk(child)
    elif isinstance(node, list):
        for child in node:
            yield from _walk(child)


def _policy_set(bodies: Mapping[str, Any]) -> cedarpy.PolicySet:
    # Keyed by @id: Cedar then names our ids (not positional ``policyN``) in its reasons.
    est = {"staticPolicies": dict(bodies), "templates": {}, "templateLinks": []}
    try:
        return _parse_policy_set(json.dumps(est))
    except ValueError as e:
        raise PolicyError(f"the validated policies could not be combined: {e}") from e
