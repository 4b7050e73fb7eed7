"""The Cedar constitution: the default policies, outcome semantics, staging, and loading."""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cedarpy
import pytest

from grace.errors import GovernanceError, PolicyError
from grace.governance import constitution as constitution_module
from grace.governance.constitution import (
    FACTS,
    CedarDecision,
    Constitution,
    Effect,
    Finding,
    Principle,
    PrincipleCategory,
    RuleMode,
    RuleOutcome,
    trust_per_mille,
)
from grace.governance.model import Outcome

HUMAN = {"kind": "human", "roles": frozenset(), "autonomy_tier": 0}
OPERATOR = {"kind": "service", "roles": frozenset({"operator"}), "autonomy_tier": 0}
SERVICE = {"kind": "service", "roles": frozenset(), "autonomy_tier": 0}
GRACE = {"kind": "system", "roles": frozenset(), "autonomy_tier": 0}


def agent(tier: int) -> dict[str, Any]:
    """An agent principal of the given autonomy tier."""
    return {"kind": "agent", "roles": frozenset(), "autonomy_tier": tier}


def facts(**overrides: Any) -> dict[str, Any]:
    """A complete, harmless context for an authenticated low-risk request."""
    base: dict[str, Any] = {
        "authenticated": True,
        "is_autonomous": False,
        "risk": 0,
        "trust": 750,
        "approved": False,
        "approvals": 0,
        "quorum": 2,
        "has_reason": True,
        "reversible": True,
        "low_confidence": False,
        "low_confidence_disclosed": False,
        "personal_data": False,
        "consent": False,
        "findings": frozenset(),
    }
    base.update(overrides)
    return base


@pytest.fixture(scope="module")
def constitution() -> Constitution:
    """The packaged default constitution, loaded once for the module."""
    return Constitution()


def ids(metas: tuple[Any, ...]) -> list[str]:
    """The policy ids of some metadata, in order."""
    return [m.id for m in metas]


def write_policy_dir(
    path: Path, extra: Mapping[str, str] | None = None, *, default: bool = True
) -> Path:
    """A policy directory: the packaged schema (and policies, unless not ``default``)."""
    path.mkdir(parents=True, exist_ok=True)
    packaged = importlib.resources.files("grace.governance").joinpath("policies")
    names = ["schema.cedarschema", "constitution.cedar"] if default else ["schema.cedarschema"]
    for name in names:
        (path / name).write_text(packaged.joinpath(name).read_text("utf-8"), "utf-8")
    for name, text in (extra or {}).items():
        (path / name).write_text(text, "utf-8")
    return path


PERMIT_ALL = """
@id("permit-all")
@principle("least_privilege")
@severity("low")
@description("everything is allowed in this test")
permit (principal, action, resource);
"""


def forbid_rule(policy_id: str, condition: str, *, annotations: str = "") -> str:
    """A well-annotated forbid with ``condition``, plus any extra annotations."""
    return f"""
@id("{policy_id}")
@principle("beneficence")
@severity("high")
@description("test rule {policy_id}")
{annotations}
forbid (principal, action, resource) when {{ {condition} }};
"""


# --- the default constitution ----------------------------------------------------------


def test_default_constitution_loads_validated_with_complete_metadata(
    constitution: Constitution,
) -> None:
    """The packaged policies validate against the schema and every one is fully annotated."""
    metas = constitution.policies
    assert len(metas) >= 20
    assert constitution.path is None
    assert len(constitution.digest) == 64
    for policy_id, meta in metas.items():
        assert meta.id == policy_id
        assert meta.description
        assert meta.mode is RuleMode.ENFORCE
        assert (meta.outcome is None) == (meta.effect is Effect.PERMIT)
    covered = {m.principle.category for m in metas.values()}
    assert covered == set(PrincipleCategory)
    safety = {p for p in Principle if p.category is PrincipleCategory.SAFETY}
    assert safety <= {m.principle for m in metas.values() if m.effect is Effect.FORBID}


def test_packaged_schema_context_matches_the_facts_contract() -> None:
    """Cedar's own request validation accepts exactly the facts FACTS describes."""
    schema_text = (
        importlib.resources.files("grace.governance")
        .joinpath("policies/schema.cedarschema")
        .read_text("utf-8")
    )
    schema = cedarpy.Schema.from_str(schema_text)
    entities = cedarpy.Entities.from_json_str(
        json.dumps(
            [
                {
                    "uid": {"type": "Principal", "id": "a"},
                    "attrs": {"kind": "agent", "roles": [], "autonomy_tier": 1},
                    "parents": [],
                }
            ]
        ),
        schema,
    )
    context = facts(findings=[])
    assert set(context) == set(FACTS)
    request = {
        "principal": {"type": "Principal", "id": "a"},
        "action": {"type": "Action", "id": "execute_task"},
        "resource": {"type": "Resource", "id": "r"},
        "context": context,
    }
    answer = cedarpy.is_authorized(
        request, "permit(principal, action, resource);", entities, schema
    )
    assert answer.diagnostics.errors == []
    assert answer.allowed


def test_low_risk_authenticated_request_is_approved(constitution: Constitution) -> None:
    """An authenticated principal may do a low-risk thing; the baseline permit says so."""
    result = constitution.evaluate("alice", HUMAN, "GET:/v1/items/{id}", "items/1", facts())
    assert result.outcome is Outcome.APPROVED
    assert result.decision is CedarDecision.ALLOW
    assert result.allowed
    assert ids(result.determining) == ["baseline-authenticated-low-medium"]
    assert result.errors == ()


def test_unauthenticated_request_is_rejected_by_default_deny(constitution: Constitution) -> None:
    """Without authentication no permit applies: rejected, and no rule is blamed."""
    result = constitution.evaluate("anon", SERVICE, "GET:/", "", facts(authenticated=False))
    assert result.outcome is Outcome.REJECTED
    assert result.determining == ()


@pytest.mark.parametrize(
    ("finding", "principle"),
    [
        (Finding.DESTRUCTIVE_COMMAND, Principle.NO_DESTRUCTIVE_COMMANDS),
        (Finding.SECRET_EXPOSURE, Principle.NO_SENSITIVE_DATA_EXPOSURE),
        (Finding.PRIVILEGE_ESCALATION, Principle.NO_PRIVILEGE_ESCALATION),
        (Finding.CODE_OBFUSCATION, Principle.NO_CODE_OBFUSCATION),
        (Finding.DATA_EXFILTRATION, Principle.NO_DATA_EXFILTRATION),
        (Finding.UNAUTHORIZED_NETWORK, Principle.NO_UNAUTHORIZED_NETWORK_ACCESS),
        (Finding.MALWARE, Principle.NO_MALWARE_GENERATION),
        (Finding.HARMFUL_CONTENT, Principle.BENEFICENCE),
        (Finding.DISABLES_AUDIT, Principle.ACCOUNTABILITY),
    ],
)
def test_each_safety_finding_is_rejected_by_its_principle(
    constitution: Constitution, finding: Finding, principle: Principle
) -> None:
    """A finding triggers the forbid of the principle it violates, even for an operator."""
    result = constitution.evaluate(
        "ops", OPERATOR, "POST:/v1/run", "job", facts(findings={finding})
    )
    assert result.outcome is Outcome.REJECTED
    assert [m.principle for m in result.determining] == [principle]


def test_self_modification_asks_for_approval_then_passes_with_it(
    constitution: Constitution,
) -> None:
    """Changing governance escalates to an approval; the approved request goes through."""
    change = facts(risk=1, findings={Finding.SELF_MODIFICATION})
    pending = constitution.evaluate("alice", HUMAN, "PUT:/v1/policies", "policies", change)
    assert pending.outcome is Outcome.REQUIRES_APPROVAL
    assert [m.principle for m in pending.determining] == [
        Principle.NO_SELF_MODIFICATION_WITHOUT_APPROVAL
    ]
    assert pending.decision is CedarDecision.DENY
    approved = constitution.evaluate(
        "alice", HUMAN, "PUT:/v1/policies", "policies", {**change, "approved": True}
    )
    assert approved.outcome is Outcome.APPROVED


@pytest.mark.parametrize(
    ("action", "overrides", "policy_id"),
    [
        ("POST:/v1/answer", {"low_confidence": True}, "transparency-disclose-low-confidence"),
        ("bypass_authentication", {}, "law-ethics-prohibited-actions"),
        ("generate_harmful_content", {}, "law-ethics-prohibited-actions"),
        ("GET:/v1/people", {"personal_data": True}, "privacy-personal-data-consent"),
    ],
)
def test_foundational_and_operational_rules_reject(
    constitution: Constitution, action: str, overrides: dict[str, Any], policy_id: str
) -> None:
    """Undisclosed low confidence, prohibited actions and data without consent are rejected."""
    result = constitution.evaluate("alice", HUMAN, action, "r", facts(**overrides))
    assert result.outcome is Outcome.REJECTED
    assert ids(result.determining) == [policy_id]


def test_disclosed_low_confidence_and_consented_personal_data_pass(
    constitution: Constitution,
) -> None:
    """The same requests pass once the confidence is disclosed and consent is on record."""
    result = constitution.evaluate(
        "alice",
        HUMAN,
        "POST:/v1/answer",
        "r",
        facts(low_confidence=True, low_confidence_disclosed=True, personal_data=True, consent=True),
    )
    assert result.outcome is Outcome.APPROVED


def test_significant_autonomous_action_without_reason_is_rejected(
    constitution: Constitution,
) -> None:
    """follow_why: an autonomous medium-risk action must carry its reason."""
    result = constitution.evaluate(
        "bot",
        agent(2),
        "restart_component",
        "svc",
        facts(is_autonomous=True, risk=1, has_reason=False),
    )
    assert result.outcome is Outcome.REJECTED
    assert [m.principle for m in result.determining] == [Principle.FOLLOW_WHY]


# --- escalation semantics --------------------------------------------------------------


def test_high_risk_autonomous_action_requires_approval(constitution: Constitution) -> None:
    """A high-risk autonomous action escalates to a human approval."""
    result = constitution.evaluate(
        "bot", agent(2), "restart_component", "svc", facts(is_autonomous=True, risk=2)
    )
    assert result.outcome is Outcome.REQUIRES_APPROVAL
    assert ids(result.determining) == ["gradual-escalation-high-risk-autonomous-approval"]
    assert result.determining[0].outcome is RuleOutcome.REQUIRES_APPROVAL
    assert not result.allowed


def test_high_risk_autonomous_action_with_approval_is_approved(
    constitution: Constitution,
) -> None:
    """The same action with a valid approval attached is approved."""
    result = constitution.evaluate(
        "bot",
        agent(2),
        "restart_component",
        "svc",
        facts(is_autonomous=True, risk=2, approved=True, approvals=1),
    )
    assert result.outcome is Outcome.APPROVED
    assert ids(result.determining) == ["elevated-high-critical"]


def test_critical_action_requires_parliament_until_quorum(constitution: Constitution) -> None:
    """Critical risk needs a quorum: one approver is not enough, two are."""
    one = constitution.evaluate(
        "alice", HUMAN, "DELETE:/v1/tenants/{id}", "t1", facts(risk=3, approved=True, approvals=1)
    )
    assert one.outcome is Outcome.REQUIRES_PARLIAMENT
    assert ids(one.determining) == ["gradual-escalation-critical-parliament"]
    quorum = constitution.evaluate(
        "alice", HUMAN, "DELETE:/v1/tenants/{id}", "t1", facts(risk=3, approved=True, approvals=2)
    )
    assert quorum.outcome is Outcome.APPROVED


def test_parliament_outranks_single_approval(constitution: Constitution) -> None:
    """When a parliament and an approval rule both match, the parliament is asked."""
    result = constitution.evaluate(
        "alice",
        HUMAN,
        "system_change",
        "governance",
        facts(risk=3, findings={Finding.SELF_MODIFICATION}),
    )
    assert result.outcome is Outcome.REQUIRES_PARLIAMENT
    assert len(result.determining) == 2


def test_plain_forbid_beats_escalation(constitution: Constitution) -> None:
    """An escalating rule never softens a plain forbid: the result is rejected."""
    result = constitution.evaluate(
        "bot",
        agent(2),
        "restart_component",
        "svc",
        facts(is_autonomous=True, risk=2, findings={Finding.DESTRUCTIVE_COMMAND}),
    )
    assert result.outcome is Outcome.REJECTED
    assert ids(result.determining)[0] == "safety-no-destructive-commands"


def test_escalation_without_a_permit_is_rejected(constitution: Constitution) -> None:
    """No approval is asked for what no permit would allow (a plain service, critical risk)."""
    result = constitution.evaluate("svc", SERVICE, "DELETE:/v1/all", "all", facts(risk=3))
    assert result.outcome is Outcome.REJECTED
    assert result.determining == ()


# --- autonomy tiers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("principal", "action", "risk", "outcome"),
    [
        (agent(0), "execute_task", 0, Outcome.REJECTED),
        (agent(1), "execute_task", 0, Outcome.APPROVED),
        (agent(1), "generate_code", 1, Outcome.APPROVED),
        (agent(1), "restart_component", 1, Outcome.REJECTED),
        (agent(2), "restart_component", 1, Outcome.APPROVED),
        (agent(2), "rollback_deployment", 1, Outcome.APPROVED),
        (agent(2), "deploy_code", 1, Outcome.REJECTED),
        (agent(2), "avn:something_unlisted", 1, Outcome.REJECTED),
        (agent(3), "deploy_code", 1, Outcome.APPROVED),
        (agent(3), "avn:something_unlisted", 1, Outcome.APPROVED),
        (GRACE, "restart_component", 1, Outcome.APPROVED),
    ],
)
def test_autonomy_tier_limits_autonomous_actions(
    constitution: Constitution,
    principal: dict[str, Any],
    action: str,
    risk: int,
    outcome: Outcome,
) -> None:
    """An agent performs only its tier's autonomous actions; unlisted ones need tier 3."""
    result = constitution.evaluate(
        "actor", principal, action, "target", facts(is_autonomous=True, risk=risk)
    )
    assert result.outcome is outcome
    if outcome is Outcome.REJECTED:
        assert ids(result.determining) == ["least-privilege-autonomy-tier"]


def test_tier_change_takes_effect_on_the_next_call(constitution: Constitution) -> None:
    """Cached principal entities are keyed by attributes: a promotion is seen at once."""
    before = constitution.evaluate(
        "promoted", agent(1), "scale_service", "svc", facts(is_autonomous=True, risk=1)
    )
    after = constitution.evaluate(
        "promoted", agent(2), "scale_service", "svc", facts(is_autonomous=True, risk=1)
    )
    assert (before.outcome, after.outcome) == (Outcome.REJECTED, Outcome.APPROVED)


# --- staged (log-mode) rules -----------------------------------------------------------


def test_log_mode_rule_reports_would_deny_while_the_rest_enforce(tmp_path: Path) -> None:
    """A staged rule never denies but is reported; an enforcing rule still rejects."""
    staged = forbid_rule(
        "staged-no-anonymous-writes",
        "context.risk >= 1 && context.trust < 800",
        annotations='@mode("log")',
    )
    constitution = Constitution(write_policy_dir(tmp_path / "p", {"staged.cedar": staged}))
    assert constitution.policies["staged-no-anonymous-writes"].mode is RuleMode.LOG

    observed = constitution.evaluate("alice", HUMAN, "POST:/v1/items", "i", facts(risk=1))
    assert observed.outcome is Outcome.APPROVED
    assert ids(observed.would_deny) == ["staged-no-anonymous-writes"]
    assert observed.would_outcome is Outcome.REJECTED

    enforced = constitution.evaluate(
        "alice",
        HUMAN,
        "POST:/v1/items",
        "i",
        facts(risk=1, findings={Finding.SECRET_EXPOSURE}),
    )
    assert enforced.outcome is Outcome.REJECTED
    assert ids(enforced.determining) == ["safety-no-sensitive-data-exposure"]
    assert ids(enforced.would_deny) == ["staged-no-anonymous-writes"]

    quiet = constitution.evaluate("alice", HUMAN, "POST:/v1/items", "i", facts(risk=1, trust=900))
    assert quiet.outcome is Outcome.APPROVED
    assert quiet.would_deny == ()
    assert quiet.would_outcome is Outcome.APPROVED


def test_staged_escalation_reports_the_would_be_escalation(tmp_path: Path) -> None:
    """A staged approval rule over an approved request would have asked for approval."""
    staged = forbid_rule(
        "staged-approval",
        "context.risk >= 1",
        annotations='@mode("log")\n@outcome("requires_approval")',
    )
    constitution = Constitution(write_policy_dir(tmp_path / "p", {"staged.cedar": staged}))
    result = constitution.evaluate("alice", HUMAN, "POST:/v1/items", "i", facts(risk=1))
    assert result.outcome is Outcome.APPROVED
    assert result.would_outcome is Outcome.REQUIRES_APPROVAL


# --- fail closed -----------------------------------------------------------------------


def test_a_policy_that_errors_at_runtime_rejects(tmp_path: Path) -> None:
    """Cedar skips an erroring forbid; the constitution rejects instead of opening up."""
    overflow = forbid_rule("overflowing", "context.trust * 9223372036854775807 > 0")
    constitution = Constitution(
        write_policy_dir(
            tmp_path / "p", {"all.cedar": PERMIT_ALL, "overflow.cedar": overflow}, default=False
        )
    )
    result = constitution.evaluate("alice", HUMAN, "GET:/", "r", facts())
    assert result.outcome is Outcome.REJECTED
    assert result.errors
    assert "overflowing" in result.errors[0]


@pytest.mark.parametrize(
    ("context", "problem"),
    [
        ({k: v for k, v in facts().items() if k != "risk"}, "missing ['risk']"),
        (facts(extra=True), "unexpected ['extra']"),
        (facts(risk=True), "'risk' must be an int"),
        (facts(risk=4), "'risk' must be an int 0..3"),
        (facts(trust=0.7), "'trust' must be an int"),
        (facts(approved=1), "'approved' must be a bool"),
        (facts(findings="destructive_command"), "collection"),
        (facts(findings={"rm_rf"}), "unknown findings"),
    ],
)
def test_malformed_facts_cannot_be_decided(
    constitution: Constitution, context: dict[str, Any], problem: str
) -> None:
    """Facts outside the contract raise instead of being silently misread."""
    with pytest.raises(GovernanceError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        constitution.evaluate("alice", HUMAN, "GET:/", "r", context)


@pytest.mark.parametrize(
    "principal",
    [
        {"kind": "robot", "roles": frozenset(), "autonomy_tier": 0},
        {"kind": "agent", "roles": frozenset(), "autonomy_tier": "2"},
        {"kind": "agent", "roles": frozenset()},
    ],
)
def test_principal_the_schema_refuses_cannot_be_decided(
    constitution: Constitution, principal: dict[str, Any]
) -> None:
    """A principal with an unknown kind or mistyped/missing attributes raises."""
    with pytest.raises(GovernanceError, match="principal 'odd'"):
        constitution.evaluate("odd", principal, "GET:/", "r", facts())


def test_trust_per_mille_rounds_scores() -> None:
    """Trust scores become per-mille integers, rounded, and out-of-range scores are refused."""
    assert [trust_per_mille(s) for s in (0.0, 0.5, 0.57, 1.0)] == [0, 500, 570, 1000]
    with pytest.raises(ValueError, match="within"):
        trust_per_mille(1.5)


# --- loading and reloading -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("permit (principal, action resource);", ["bad.cedar", "syntax error"]),
        (forbid_rule("typo", "context.riks > 1"), ["bad.cedar", "'typo'", "riks"]),
        (forbid_rule("typo-attr", "principal.tier > 1"), ["bad.cedar", "'typo-attr'", "tier"]),
        (
            forbid_rule("bad-finding", 'context.findings.contains("rm_rf")'),
            ["bad.cedar", "'bad-finding'", "unknown finding 'rm_rf'"],
        ),
        (
            '@principle("beneficence") @severity("low") @description("d")\n'
            "forbid (principal, action, resource);",
            ["bad.cedar", "#1", "missing @id"],
        ),
        (
            PERMIT_ALL.replace("permit-all", "x").replace("least_privilege", "kindness"),
            ["bad.cedar", "'x'", "unknown @principle('kindness')"],
        ),
        (
            PERMIT_ALL.replace("permit-all", "x").replace('@severity("low")', ""),
            ["'x'", "missing @severity"],
        ),
        (
            PERMIT_ALL.replace("permit-all", "x").replace("@id", '@owner("me") @id'),
            ["'x'", "unknown annotation(s) @owner"],
        ),
        (
            PERMIT_ALL.replace("permit-all", "x").replace("@id", '@outcome("deny") @id'),
            ["'x'", "@outcome is for forbid rules"],
        ),
        (
            PERMIT_ALL.replace("permit-all", "x").replace("@id", '@mode("log") @id'),
            ["'x'", "a permit cannot be staged"],
        ),
        (
            forbid_rule("m", "true", annotations='@mode("observe")'),
            ["'m'", "unknown @mode('observe')"],
        ),
        (
            forbid_rule("safety-no-destructive-commands", "true"),
            [
                "bad.cedar",
                "'safety-no-destructive-commands'",
                "duplicate @id",
                "constitution.cedar",
            ],
        ),
        (
            '@id("t") @principle("beneficence") @severity("low") @description("d")\n'
            "permit (principal == ?principal, action, resource);",
            ["bad.cedar", "templates"],
        ),
    ],
)
def test_broken_policy_file_is_refused_naming_file_and_policy(
    constitution: Constitution, tmp_path: Path, text: str, expected: list[str]
) -> None:
    """An invalid policy file raises PolicyError naming it; the last good set stays usable."""
    broken = write_policy_dir(tmp_path / "p", {"bad.cedar": text})
    with pytest.raises(PolicyError) as caught:
        constitution.reload(broken)
    for part in expected:
        assert part in str(caught.value)
    again = constitution.evaluate("alice", HUMAN, "GET:/", "r", facts())
    assert again.outcome is Outcome.APPROVED


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    """Several broken files are all named in one error, so one fix round suffices."""
    broken = write_policy_dir(
        tmp_path / "p",
        {"a.cedar": "permit (", "b.cedar": forbid_rule("b", "context.nope")},
    )
    with pytest.raises(PolicyError) as caught:
        Constitution(broken)
    message = str(caught.value)
    assert "a.cedar" in message
    assert "b.cedar" in message


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"schema.cedarschema": "entity Principal = {"}, "invalid schema"),
        ({"second.cedarschema": "entity Other;"}, "exactly one schema"),
    ],
)
def test_bad_or_ambiguous_schema_is_refused(
    tmp_path: Path, files: dict[str, str], problem: str
) -> None:
    """An unparseable schema, or two of them, is a PolicyError."""
    with pytest.raises(PolicyError, match=problem):
        Constitution(write_policy_dir(tmp_path / "p", files))


def test_directory_without_policies_or_schema_is_refused(tmp_path: Path) -> None:
    """A missing directory, no policy files or no schema: nothing loads."""
    with pytest.raises(PolicyError, match="not a policy directory"):
        Constitution(tmp_path / "missing")
    only_schema = write_policy_dir(tmp_path / "schema-only", default=False)
    with pytest.raises(PolicyError, match=r"no \*\.cedar policy files"):
        Constitution(only_schema)
    (tmp_path / "no-schema").mkdir()
    (tmp_path / "no-schema" / "all.cedar").write_text(PERMIT_ALL, "utf-8")
    with pytest.raises(PolicyError, match="found none"):
        Constitution(tmp_path / "no-schema")


def test_schema_without_the_principal_shape_is_refused(tmp_path: Path) -> None:
    """A schema must declare Principal with kind, roles and autonomy_tier."""
    directory = tmp_path / "p"
    directory.mkdir()
    (directory / "schema.cedarschema").write_text(
        "entity Principal; entity Resource;\n"
        "action go appliesTo { principal: Principal, resource: Resource };",
        "utf-8",
    )
    (directory / "all.cedar").write_text(PERMIT_ALL, "utf-8")
    with pytest.raises(PolicyError, match="must declare `entity Principal`"):
        Constitution(directory)


def test_json_schema_directory_loads(tmp_path: Path) -> None:
    """A policy directory may carry its schema in Cedar's JSON schema format."""
    directory = tmp_path / "p"
    directory.mkdir()
    schema = {
        "": {
            "entityTypes": {
                "Principal": {
                    "shape": {
                        "type": "Record",
                        "attributes": {
                            "kind": {"type": "String"},
                            "roles": {"type": "Set", "element": {"type": "String"}},
                            "autonomy_tier": {"type": "Long"},
                        },
                    }
                },
                "Resource": {},
            },
            "actions": {
                "read": {
                    "appliesTo": {
                        "principalTypes": ["Principal"],
                        "resourceTypes": ["Resource"],
                        "context": {
                            "type": "Record",
                            "attributes": {"risk": {"type": "Long"}},
                        },
                    }
                }
            },
        }
    }
    (directory / "schema.cedarschema.json").write_text(json.dumps(schema), "utf-8")
    (directory / "all.cedar").write_text(
        PERMIT_ALL.replace("permit (principal, action, resource);", "")
        + "permit (principal, action, resource) when { context.risk <= 1 };",
        "utf-8",
    )
    constitution = Constitution(directory)
    assert constitution.evaluate("a", HUMAN, "read", "r", facts()).allowed
    assert not constitution.evaluate("a", HUMAN, "read", "r", facts(risk=2)).allowed


def test_reload_returns_a_new_constitution_with_the_new_rules(
    constitution: Constitution, tmp_path: Path
) -> None:
    """reload builds a fresh instance from the directory; the old one is unchanged."""
    directory = write_policy_dir(
        tmp_path / "p", {"extra.cedar": forbid_rule("no-friday-deploys", "context.risk >= 2")}
    )
    first = constitution.reload(directory)
    assert first is not constitution
    assert first.path == directory
    assert "no-friday-deploys" in first.policies
    assert "no-friday-deploys" not in constitution.policies
    assert first.digest != constitution.digest
    (directory / "extra.cedar").unlink()
    second = first.reload()
    assert "no-friday-deploys" not in second.policies
    assert second.digest == constitution.digest
    assert f"{len(second.policies)} policies (0 staged)" in repr(second)


# --- cost ------------------------------------------------------------------------------


def test_evaluation_never_reparses_policies(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Policies are parsed into handles at load; evaluate only passes the handles on."""
    parses: list[str] = []
    real_parse = constitution_module._parse_policy_set

    def counting_parse(est_json: str) -> cedarpy.PolicySet:
        parses.append(est_json)
        return real_parse(est_json)

    monkeypatch.setattr(constitution_module, "_parse_policy_set", counting_parse)
    staged = forbid_rule("staged", "context.risk >= 3", annotations='@mode("log")')
    constitution = Constitution(write_policy_dir(tmp_path / "p", {"staged.cedar": staged}))
    loaded = len(parses)
    assert loaded == 3  # enforcing, permits-only, staged

    calls: list[dict[str, Any]] = []
    real_authorize = cedarpy.is_authorized

    def spying_authorize(request: dict[str, Any], policies: Any, entities: Any) -> Any:
        assert isinstance(policies, cedarpy.PolicySet)
        assert isinstance(entities, cedarpy.Entities)
        answer = real_authorize(request, policies, entities)
        calls.append(answer.metrics)
        return answer

    monkeypatch.setattr(cedarpy, "is_authorized", spying_authorize)
    for _ in range(50):
        constitution.evaluate("alice", HUMAN, "GET:/", "r", facts())
        constitution.evaluate(
            "bot", agent(2), "restart_component", "svc", facts(is_autonomous=True, risk=2)
        )
    assert len(parses) == loaded
    assert calls
    assert all(m["policies_pre_parsed"] == 1 and m["entities_pre_parsed"] == 1 for m in calls)
    assert all(m["parse_policies_duration_micros"] == 0 for m in calls)


def test_a_repeated_request_is_answered_from_the_cache_with_the_same_answer(
    constitution: Constitution,
) -> None:
    """The same principal, action, resource and facts get the identical answer object;
    any different fact is evaluated afresh."""
    first = constitution.evaluate("cache-alice", HUMAN, "GET:/v1/items/{id}", "items/7", facts())
    again = constitution.evaluate("cache-alice", HUMAN, "GET:/v1/items/{id}", "items/7", facts())
    assert again is first
    denied = constitution.evaluate(
        "cache-alice",
        HUMAN,
        "GET:/v1/items/{id}",
        "items/7",
        facts(findings=frozenset({"destructive_command"})),
    )
    assert denied is not first
    assert first.outcome is Outcome.APPROVED
    assert denied.outcome is Outcome.REJECTED


def test_facts_that_cannot_be_cached_are_still_checked(constitution: Constitution) -> None:
    """Unhashable facts skip the cache and are refused by the facts check, never answered."""
    with pytest.raises(GovernanceError):
        constitution.evaluate("cache-bob", HUMAN, "GET:/", "", facts(findings=["x"]))
