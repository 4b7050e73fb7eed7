"""The mesh routing file: the shipped default, clear errors for bad input, and lookups."""

from __future__ import annotations

import importlib.resources
import re
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from grace.errors import ConfigError, MeshConfigError
from grace.mesh.config import (
    DEFAULT_CONFIG_NAME,
    EventSpec,
    MeshConfig,
    load_mesh_config,
    parse_mesh_config,
)

SEED_EVENT_TYPES = [
    "system.boot.started",
    "system.boot.completed",
    "system.boot.failed",
    "component.activated",
    "component.deactivated",
    "component.error",
    "governance.policy_violation",
    "governance.approval_required",
    "governance.decision_made",
    "governance.policy_changed",
    "governance.constitutional_risk",
    "verification.refuted",
    "verification.verified",
    "verification.security_violation",
    "avn.anomaly_detected",
    "avn.healing_action",
    "avn.healing_executed",
    "avn.healing_failed",
    "avn.rollback_required",
    "anomaly.detected",
    "system.health_check",
    "security.event",
    "loop.started",
    "loop.completed",
    "loop.failed",
    "memory.stored",
    "memory.trust_updated",
    "health.degraded",
    "health.critical",
    "task.created",
    "task.completed",
    "task.failed",
    "learning.pattern_detected",
    "learning.model_updated",
    "unified.decision_ready",
    "trust.updated",
]

VOCABULARY_PRIORITY_EVENTS = [
    "health.critical",
    "system.boot.failed",
    "governance.policy_violation",
    "verification.security_violation",
    "avn.rollback_required",
]

EVENTS = """\
events:
  - event_type: health.critical
    description: critical health
    publishers: [health_monitor]
    subscribers: [operator_console]
  - event_type: health.degraded
    description: degraded health
    publishers: [health_monitor]
  - event_type: system.boot.failed
    description: boot failed
    publishers: [guardian]
"""
GROUPS = """\
subscriber_groups:
  operators: [operator_console]
"""


def _error_for(tmp_path: Path, text: str) -> str:
    """Load ``text`` from a file and return the MeshConfigError message, which names the file."""
    path = tmp_path / "mesh.yaml"
    path.write_text(text)
    with pytest.raises(MeshConfigError) as info:
        load_mesh_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    return message


def _parse(text: str) -> MeshConfig:
    return parse_mesh_config(textwrap.dedent(text), source="test.yaml")


# --- the shipped default ----------------------------------------------------------------


@pytest.fixture(scope="module")
def default() -> MeshConfig:
    """The packaged default routing file."""
    return load_mesh_config()


def test_default_config_declares_every_seed_event_family(default: MeshConfig) -> None:
    """Every event type of the seed's families and of the immune kernel's contract is declared."""
    declared = {spec.event_type for spec in default.events}
    assert sorted(set(SEED_EVENT_TYPES) - declared) == []


def test_default_config_is_readable_as_package_data() -> None:
    """The YAML ships inside the grace.mesh package, so installed wheels find it."""
    text = importlib.resources.files("grace.mesh").joinpath(DEFAULT_CONFIG_NAME).read_text()
    assert parse_mesh_config(text, source="package") == load_mesh_config()


def test_default_priority_events_are_the_vocabulary_list(default: MeshConfig) -> None:
    """The five priority events of VOCABULARY.md are priority, and an ordinary one is not."""
    assert all(default.is_priority(t) for t in VOCABULARY_PRIORITY_EVENTS)
    assert not default.is_priority("task.created")


def test_default_audits_governance_verification_and_avn(default: MeshConfig) -> None:
    """Every governance, verification and avn event is an audit event, except the gate's
    decision announcement, which the gate already records itself."""
    families = ("governance.", "verification.", "avn.")
    audited = [s.event_type for s in default.events if s.event_type.startswith(families)]
    assert audited
    assert [t for t in audited if not default.is_audit(t)] == ["governance.decision_made"]


def test_default_alerts_on_critical_failures(default: MeshConfig) -> None:
    """Critical health, failed boot, failed healing and security violations raise alerts."""
    for event_type in (
        "health.critical",
        "system.boot.failed",
        "avn.healing_failed",
        "verification.security_violation",
    ):
        assert default.is_alert(event_type), event_type
    assert not default.is_alert("health.degraded")


def test_default_approval_and_decision_events_only_come_from_the_gate(
    default: MeshConfig,
) -> None:
    """Only governance_gate may publish approval and decision events, with high trust."""
    for event_type in ("governance.approval_required", "governance.decision_made"):
        spec = default.spec(event_type)
        assert spec is not None
        assert spec.publishers == ("governance_gate",)
        assert default.min_trust(event_type) >= 0.7


def test_default_action_enabling_events_require_validation(default: MeshConfig) -> None:
    """Events that enable an action require constitutional validation and trust."""
    for event_type in (
        "verification.verified",
        "avn.healing_action",
        "avn.rollback_required",
        "governance.policy_changed",
        "unified.decision_ready",
        "trust.updated",
    ):
        spec = default.spec(event_type)
        assert spec is not None
        assert spec.requires_constitutional_validation, event_type
        assert default.min_trust(event_type) > 0, event_type


def test_default_security_relevant_events_are_protected(default: MeshConfig) -> None:
    """Governance, verification, avn, security and trust events never allow any publisher."""
    families = ("governance.", "verification.", "avn.", "security.", "trust.", "unified.")
    for spec in default.events:
        if spec.event_type.startswith(families):
            assert not spec.any_publisher, spec.event_type
            assert default.min_trust(spec.event_type) > 0, spec.event_type


# --- bad input: each is a MeshConfigError naming the file, the key and the problem -----


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    """A YAML syntax error reports the line and column where the parser stopped."""
    message = _error_for(tmp_path, EVENTS + "  - event_type: [unclosed\n    description: x\n")
    assert "malformed YAML at line 13" in message


def test_unknown_top_level_key_is_rejected(tmp_path: Path) -> None:
    """A misspelt section such as ``routes`` is an error, not silently ignored."""
    message = _error_for(tmp_path, EVENTS + "routes:\n  priority_events: [health.critical]\n")
    assert "routes (line 12): unknown key" in message


def test_unknown_key_inside_an_event_is_rejected(tmp_path: Path) -> None:
    """A misspelt event field is reported with the event's index."""
    text = EVENTS + "    min_trust: 0.5\n"
    assert "events[2].min_trust (line 12): unknown key" in _error_for(tmp_path, text)


def test_trust_above_one_is_rejected(tmp_path: Path) -> None:
    """min_trust_score 1.5 is out of [0, 1] and the message quotes the value."""
    message = _error_for(tmp_path, EVENTS + "    min_trust_score: 1.5\n")
    assert re.search(
        r"events\[2\]\.min_trust_score \(line 12\): .*less than or equal to 1", message
    )
    assert "(got 1.5)" in message


def test_string_where_a_bool_belongs_is_rejected(tmp_path: Path) -> None:
    """Scalars are not coerced: a quoted "true" is not a boolean."""
    message = _error_for(tmp_path, EVENTS + '    requires_constitutional_validation: "true"\n')
    assert "events[2].requires_constitutional_validation" in message


def test_empty_segment_in_event_type_is_rejected(tmp_path: Path) -> None:
    """An event type ``a..b`` has an empty segment."""
    text = EVENTS.replace("system.boot.failed", "system..failed")
    message = _error_for(tmp_path, text)
    assert "events[2].event_type (line 9): subject 'system..failed' has an empty segment" in message


def test_empty_segment_in_routing_pattern_is_rejected(tmp_path: Path) -> None:
    """A routing pattern ``health..*`` has an empty segment."""
    text = EVENTS + "routing_rules:\n  audit_events: [health..*]\n"
    message = _error_for(tmp_path, text)
    assert "routing_rules.audit_events[0]" in message
    assert "empty segment" in message


def test_full_wildcard_must_be_last(tmp_path: Path) -> None:
    """``>`` in the middle of a pattern is rejected."""
    text = EVENTS + "routing_rules:\n  priority_events: [health.>.x]\n"
    message = _error_for(tmp_path, text)
    expected = "routing_rules.priority_events[0] (line 13): pattern 'health.>.x': '>' must be"
    assert expected in message


def test_partial_token_wildcard_is_rejected(tmp_path: Path) -> None:
    """``health.crit*`` is not a NATS pattern: ``*`` must be a whole token."""
    text = EVENTS + "trust_requirements:\n  health.crit*: 0.5\n"
    message = _error_for(tmp_path, text)
    assert "trust_requirements['health.crit*']" in message
    assert "must stand alone as a whole segment" in message


def test_wildcard_in_event_type_is_rejected(tmp_path: Path) -> None:
    """An event type is a concrete subject and cannot contain ``*``."""
    message = _error_for(tmp_path, EVENTS.replace("health.degraded", "health.*"))
    assert "events[1].event_type" in message
    assert "subjects are literal" in message


def test_unknown_subscriber_group_is_rejected(tmp_path: Path) -> None:
    """``group:nope`` must name a declared subscriber group."""
    text = EVENTS.replace("[operator_console]", "[group:nope]") + GROUPS
    message = _error_for(tmp_path, text)
    assert "events[0].subscribers[0] (line 5): unknown subscriber group 'nope'" in message
    assert "declared groups: operators" in message


def test_duplicate_event_type_is_rejected(tmp_path: Path) -> None:
    """Declaring an event type twice is an error naming both places."""
    text = EVENTS.replace("health.degraded", "health.critical")
    message = _error_for(tmp_path, text)
    assert "events[1].event_type (line 6): duplicate event type 'health.critical'" in message
    assert "events[0]" in message


def test_routing_rule_naming_undeclared_event_is_rejected(tmp_path: Path) -> None:
    """An alert rule for an event type that is not declared is almost surely a typo."""
    text = EVENTS + "routing_rules:\n  alert_events: [health.critcal]\n"
    message = _error_for(tmp_path, text)
    assert "routing_rules.alert_events[0]" in message
    assert "event type 'health.critcal' is not declared" in message


def test_pattern_matching_no_declared_event_is_rejected(tmp_path: Path) -> None:
    """A pattern that matches nothing is reported, for routing rules and trust requirements."""
    text = EVENTS + "routing_rules:\n  audit_events: [helth.*]\ntrust_requirements:\n  avn.>: 0.5\n"
    message = _error_for(tmp_path, text)
    assert "pattern 'helth.*' matches no declared event type" in message
    assert "trust_requirements['avn.>'] (line 15)" in message


def test_top_level_list_is_rejected(tmp_path: Path) -> None:
    """A file whose top level is a list is not a routing file."""
    message = _error_for(tmp_path, "- event_type: health.critical\n")
    assert "top level must be a mapping" in message
    assert "got a list" in message


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    """An empty file would load zero routes, which is the seed's bug; it is an error."""
    assert "empty file" in _error_for(tmp_path, "# nothing here\n")


def test_duplicate_yaml_key_is_rejected(tmp_path: Path) -> None:
    """A repeated key would silently override the first; it is reported with both lines."""
    message = _error_for(tmp_path, EVENTS + "    min_trust_score: 0.5\n    min_trust_score: 0\n")
    assert "duplicate key 'min_trust_score' (first at line 12)" in message
    assert "malformed YAML at line 13" in message


def test_yaml_aliases_are_rejected(tmp_path: Path) -> None:
    """Aliases are refused, so a small file cannot expand into a huge one."""
    text = EVENTS + "    subscribers: &subs [a]\n  - event_type: x.y\n    description: d\n"
    text += "    publishers: [a]\n    subscribers: *subs\n"
    assert "YAML aliases (*name) are not allowed" in _error_for(tmp_path, text)


def test_python_tags_are_not_constructed(tmp_path: Path) -> None:
    """The safe loader refuses python object tags instead of executing them."""
    message = _error_for(tmp_path, "events: !!python/object/apply:os.system ['true']\n")
    assert "malformed YAML at line 1" in message


def test_any_publisher_on_validated_event_is_rejected(tmp_path: Path) -> None:
    """``"*"`` may not publish an event that requires constitutional validation."""
    text = EVENTS.replace("[guardian]", '["*"]') + "    requires_constitutional_validation: true\n"
    message = _error_for(tmp_path, text)
    assert "events[2].publishers[0]" in message
    assert "requires constitutional validation" in message


def test_any_publisher_under_a_trust_requirement_is_rejected(tmp_path: Path) -> None:
    """``"*"`` may not publish an event whose effective minimum trust comes from a pattern."""
    text = EVENTS.replace("[guardian]", '["*"]') + "trust_requirements:\n  system.>: 0.4\n"
    message = _error_for(tmp_path, text)
    assert "events[2].publishers[0]" in message
    assert "requires trust >= 0.4 (from trust_requirements['system.>'])" in message


def test_any_publisher_mixed_with_named_publishers_is_rejected(tmp_path: Path) -> None:
    """``"*"`` must stand alone in a publisher list."""
    message = _error_for(tmp_path, EVENTS.replace("[guardian]", '["*", guardian]'))
    assert "events[2].publishers" in message
    assert "must be the only publisher" in message


def test_missing_file_is_a_mesh_config_error(tmp_path: Path) -> None:
    """A path that does not exist names the file; MeshConfigError is a ConfigError."""
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read mesh config"):
        load_mesh_config(tmp_path / "nope.yaml")


# --- lookups ----------------------------------------------------------------------------


def test_min_trust_is_the_max_of_event_and_patterns() -> None:
    """The effective minimum is the largest of min_trust_score and every matching pattern."""
    config = _parse(
        EVENTS
        + "    min_trust_score: 0.9\n"
        + "trust_requirements:\n  health.*: 0.3\n  health.critical: 0.6\n  system.>: 0.5\n"
    )
    assert config.min_trust("health.critical") == 0.6  # exact requirement beats the pattern
    assert config.min_trust("health.degraded") == 0.3  # only the pattern applies
    assert config.min_trust("system.boot.failed") == 0.9  # its own score beats system.>


def test_min_trust_of_undeclared_event_uses_patterns_only() -> None:
    """An undeclared type has no spec but still gets the pattern floors."""
    config = _parse(EVENTS + "trust_requirements:\n  health.*: 0.3\n")
    assert config.spec("health.unknown") is None
    assert config.min_trust("health.unknown") == 0.3
    assert config.min_trust("other") == 0.0


def test_routing_rules_match_nats_patterns() -> None:
    """``*`` matches exactly one token and ``>`` one or more trailing tokens."""
    config = _parse(
        EVENTS + "routing_rules:\n  priority_events: [health.*]\n  alert_events: [system.>]\n"
    )
    assert config.is_priority("health.critical")
    assert config.is_priority("health.degraded")
    assert not config.is_priority("health")
    assert not config.is_priority("health.critical.extra")
    assert config.is_alert("system.boot.failed")
    assert not config.is_alert("system")
    assert not config.is_audit("health.critical")


def test_audit_flag_on_an_event_makes_it_an_audit_event() -> None:
    """``audit: true`` on an event audits it without a routing rule."""
    config = _parse(EVENTS + "    audit: true\n")
    assert config.is_audit("system.boot.failed")
    assert not config.is_audit("health.critical")


def test_spec_returns_the_declared_event() -> None:
    """spec() finds an event by exact type and defaults are filled in."""
    config = _parse(EVENTS.replace("[operator_console]", "[group:operators]") + GROUPS)
    spec = config.spec("health.critical")
    assert spec is not None
    assert spec.subscribers == ("group:operators",)
    assert spec.min_trust_score == 0.0
    assert not spec.requires_constitutional_validation
    assert config.subscriber_groups["operators"] == ("operator_console",)


def test_config_models_are_frozen() -> None:
    """A loaded config cannot be changed after its cross-checks ran."""
    config = _parse(EVENTS)
    with pytest.raises(ValidationError):
        config.events = ()
    with pytest.raises(ValidationError):
        config.events[0].min_trust_score = 1.0


def test_constructing_from_python_runs_the_cross_checks() -> None:
    """Building a MeshConfig directly still rejects an unknown subscriber group."""
    event = EventSpec(
        event_type="a.b", description="d", publishers=("x",), subscribers=("group:g",)
    )
    with pytest.raises(ValidationError, match=r"events\[0\]\.subscribers\[0\]"):
        MeshConfig(events=(event,))


def test_empty_subscriber_group_is_rejected(tmp_path: Path) -> None:
    """A subscriber group with no members is reported under its own name."""
    message = _error_for(tmp_path, EVENTS + "subscriber_groups:\n  operators: []\n")
    assert "subscriber_groups['operators'] (line 13): must not be empty" in message


def test_quoted_number_is_not_a_trust_score(tmp_path: Path) -> None:
    """A quoted "0.5" is a string; scalars are never coerced."""
    message = _error_for(tmp_path, EVENTS + '    min_trust_score: "0.5"\n')
    assert "events[2].min_trust_score (line 12): must be a number (got '0.5')" in message


def test_subscribers_of_expands_groups_once_each() -> None:
    """subscribers_of lists component ids with groups expanded, in order, without repeats."""
    config = _parse(
        EVENTS.replace("[operator_console]", "[immune_kernel, group:operators, operator_console]")
        + "subscriber_groups:\n  operators: [operator_console, alert_notifier]\n"
    )
    assert config.subscribers_of("health.critical") == (
        "immune_kernel",
        "operator_console",
        "alert_notifier",
    )
    assert config.subscribers_of("undeclared.event") == ()


def test_may_publish_denies_unlisted_and_undeclared() -> None:
    """Only listed publishers may publish; ``"*"`` admits any identity; undeclared is denied."""
    config = _parse(EVENTS.replace("[guardian]", '["*"]'))
    assert config.may_publish("health.critical", "health_monitor")
    assert not config.may_publish("health.critical", "guardian")
    assert config.may_publish("system.boot.failed", "anyone")
    assert not config.may_publish("undeclared.event", "health_monitor")
    assert config.rule_count() == 3
