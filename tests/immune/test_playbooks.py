"""Playbooks: the shipped set, selection, rendering, and every invalid file as a clear
PlaybookError naming the file, the playbook and the key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from grace.errors import PlaybookError
from grace.immune.playbooks import (
    DEFAULT_EXECUTORS,
    OnFailure,
    PlaybookSet,
    VerifyKind,
    load_playbooks,
    parse_playbooks,
    render,
)
from grace.immune.taxonomy import AnomalyType, HealingAction, Severity

VALID = """
version: 1
playbooks:
  - name: restart
    match: {types: [service_down], min_severity: medium, resource: "svc-*"}
    steps:
      - action: restart_service
        params: {process: "{resource}"}
"""


def error_for(text: str) -> str:
    """The PlaybookError message for ``text``."""
    with pytest.raises(PlaybookError) as info:
        parse_playbooks(textwrap.dedent(text), source="pb.yaml")
    return str(info.value)


def test_default_playbooks_load_and_cover_the_security_types() -> None:
    """The packaged set is valid and answers every security anomaly with a quarantine."""
    playbooks = PlaybookSet.default()
    assert len(playbooks) >= 4
    for kind in (AnomalyType.INJECTION_ATTEMPT, AnomalyType.DATA_EXFILTRATION):
        chosen = playbooks.select(kind, Severity.HIGH, "api")
        assert chosen is not None
        assert chosen.steps[0].action is HealingAction.QUARANTINE_COMPONENT


def test_default_playbooks_leave_low_severity_alone_except_security() -> None:
    """A low-severity latency spike has no automatic remedy in the shipped set."""
    assert PlaybookSet.default().select(AnomalyType.LATENCY_SPIKE, Severity.LOW, "api") is None


def test_defaults_fill_executor_verification_and_disruption() -> None:
    """restart_service gets restart_process, a health verification and disruption 3."""
    [step] = parse_playbooks(VALID, source="pb.yaml").playbooks[0].steps
    assert step.executor == DEFAULT_EXECUTORS[HealingAction.RESTART_SERVICE]
    assert step.verify.kind is VerifyKind.HEALTH
    assert step.disruption == 3
    assert step.on_failure is OnFailure.NEXT


def test_selection_honours_type_severity_and_resource_pattern() -> None:
    """The match needs the type, a severity in range and a resource matching the pattern."""
    playbooks = parse_playbooks(VALID, source="pb.yaml")
    assert playbooks.select(AnomalyType.SERVICE_DOWN, Severity.HIGH, "svc-a") is not None
    assert playbooks.select(AnomalyType.SERVICE_DOWN, Severity.LOW, "svc-a") is None
    assert playbooks.select(AnomalyType.SERVICE_DOWN, Severity.HIGH, "db") is None
    assert playbooks.select(AnomalyType.CPU_SPIKE, Severity.HIGH, "svc-a") is None


def test_render_substitutes_only_whole_known_names() -> None:
    """Placeholders cannot reach attributes or format specs; unknown text is left alone."""
    variables = {"resource": "api", "severity": "high"}
    assert render({"a": ["x-{resource}", 3], "b": "{severity}"}, variables) == {
        "a": ["x-api", 3],
        "b": "high",
    }
    assert render("{resource.__class__}", variables) == "{resource.__class__}"


def test_load_from_a_file_and_a_missing_file(tmp_path: Path) -> None:
    """A file loads; a missing one is a PlaybookError naming it."""
    path = tmp_path / "pb.yaml"
    path.write_text(VALID)
    assert load_playbooks(path).get("restart") is not None
    with pytest.raises(PlaybookError, match="cannot read playbooks"):
        load_playbooks(tmp_path / "absent.yaml")


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 name the offset."""
    path = tmp_path / "pb.yaml"
    path.write_bytes(b"version: 1\n\xff\n")
    with pytest.raises(PlaybookError, match="not UTF-8"):
        load_playbooks(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "expected a mapping"),
        ("- a\n- b\n", "expected a mapping"),
        ("version: 2\nplaybooks: []\n", "pb.yaml: version"),
        ("version: 1\nplaybooks: [\n", "malformed YAML"),
        ("version: 1\nversion: 1\nplaybooks: []\n", "duplicate key 'version'"),
        ("version: 1\nx: &a [1]\nplaybooks: *a\n", "aliases"),
        ("version: 1\nplaybooks: []\nextra: 1\n", "extra: unknown key"),
    ],
)
def test_malformed_files_are_clear_errors(text: str, expected: str) -> None:
    """Structural problems name the file and the key."""
    assert expected in error_for(text)


def step_file(step: str, *, name: str = "broken") -> str:
    """A one-playbook file with ``step`` as its only step."""
    body = textwrap.indent(textwrap.dedent(step).strip(), " " * 6)
    return f"version: 1\nplaybooks:\n  - name: {name}\n    steps:\n{body}\n"


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ("- action: reboot_planet", "playbook 'broken': steps[0].action"),
        ("- action: restart_service\n  colour: red", "steps[0].colour: unknown key"),
        ("- action: scale_up", "action scale_up has no default executor"),
        (
            "- action: restart_service\n  on_failure: rollback",
            "on_failure: 'rollback' needs a rollback step",
        ),
        (
            "- action: restart_service\n  params: {p: '{secret}'}",
            "unknown placeholder {secret}",
        ),
        (
            "- action: restart_service\n  verify: {kind: control}",
            "control verification needs the circuit_breaker",
        ),
        ("- action: restart_service\n  timeout_s: -1", "steps[0].timeout_s"),
        ("- action: restart_service\n  disruption: 11", "steps[0].disruption"),
        (
            "- action: restart_service\n  verify: {kind: health, consecutive: 0}",
            "steps[0].verify.consecutive",
        ),
    ],
)
def test_invalid_steps_name_the_playbook_and_key(step: str, expected: str) -> None:
    """Each bad step is refused with the playbook's name and the key path."""
    message = error_for(step_file(step))
    assert message.startswith("pb.yaml: ")
    assert expected in message


def test_duplicate_playbook_names_are_refused() -> None:
    """Two playbooks may not share a name (it identifies cooldowns and records)."""
    one = "  - name: same\n    steps: [{action: escalate_to_human}]\n"
    assert "duplicate playbook names: same" in error_for(f"version: 1\nplaybooks:\n{one}{one}")


def test_inverted_severity_range_is_refused() -> None:
    """min_severity above max_severity matches nothing: a mistake, refused."""
    text = (
        "version: 1\nplaybooks:\n  - name: inverted\n"
        "    match: {min_severity: high, max_severity: low}\n"
        "    steps: [{action: escalate_to_human}]\n"
    )
    assert "playbook 'inverted': match: min_severity > max_severity" in error_for(text)


def test_unnamed_playbook_is_named_by_its_index() -> None:
    """A playbook without a usable name is pointed at by position."""
    text = "version: 1\nplaybooks:\n  - steps: [{action: escalate_to_human}]\n"
    assert "playbook #0: name" in error_for(text)


def test_unregistered_executor_is_caught_by_check_executors() -> None:
    """check_executors names the playbook, step and the executors that exist."""
    playbooks = parse_playbooks(VALID, source="pb.yaml")
    with pytest.raises(PlaybookError, match=r"steps\[0\]\.executor: 'restart_process'"):
        playbooks.check_executors(["escalate_to_human"])
    playbooks.check_executors(["restart_process"])
