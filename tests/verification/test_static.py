"""The static stage: one parse, Grace's rules plus bandit, deduplicated, failing closed."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from grace.verification.model import Confidence, Issue, IssueSource, Severity
from grace.verification.static import StaticAnalyzer, deduplicate

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # stevedore, inside bandit
    from bandit.core import config as bandit_config
    from bandit.core import manager as bandit_manager

SNIPPET = b"""\
import pickle
import subprocess


def run(cmd, blob):
    subprocess.call(cmd, shell=True)
    data = pickle.loads(blob)
    password = "hunter2"
    return eval(data)
"""


def bandit_alone(path: Path) -> set[tuple[int, str]]:
    """(line, test id) of every finding bandit's own driver reports for one file."""
    logging.getLogger("bandit").setLevel(logging.CRITICAL)
    manager = bandit_manager.BanditManager(bandit_config.BanditConfig(), "file")
    manager.discover_files([str(path)])
    manager.run_tests()
    return {(i.lineno, i.test_id) for i in manager.get_issue_list()}


def test_findings_are_a_superset_of_bandit_alone(tmp_path: Path) -> None:
    """Every finding of bandit's own driver is kept, under its id or in ``also``."""
    path = tmp_path / "snippet.py"
    path.write_bytes(SNIPPET)
    theirs = bandit_alone(path)
    assert {"B301", "B602", "B307", "B105"} <= {rule for _, rule in theirs}
    result = StaticAnalyzer().analyze({"snippet.py": SNIPPET})
    ours = {(i.line, rule) for i in result.issues for rule in i.rule_ids}
    assert theirs <= ours


def test_same_construct_seen_twice_is_one_issue_keeping_both_ids() -> None:
    """eval seen by GR101 and bandit's B307 is one critical issue listing both rules."""
    issues, _ = StaticAnalyzer().analyze_file("m.py", b"eval(input())\n")
    (issue,) = issues
    assert issue.rule_id == "GR101"
    assert issue.also == ("B307",)
    assert issue.severity is Severity.CRITICAL


def test_nosec_comments_cannot_silence_the_verifier() -> None:
    """Code under verification cannot hide a finding from bandit with ``# nosec``."""
    issues, _ = StaticAnalyzer().analyze_file("m.py", b"import os\nos.system(cmd)  # nosec\n")
    assert any("B605" in i.rule_ids for i in issues)


def test_asserts_are_fine_in_test_files_only() -> None:
    """bandit's B101 (assert used) is dropped for test files and kept for code."""
    analyzer = StaticAnalyzer()
    as_code, _ = analyzer.analyze_file("m.py", b"assert x\n")
    as_test, _ = analyzer.analyze_file("test_m.py", b"assert x\n", is_test=True)
    assert [i.rule_id for i in as_code] == ["B101"]
    assert as_test == []


def test_a_file_that_does_not_parse_is_a_high_issue() -> None:
    """Unparsable code is not shown safe: GR000, high, with the parser's message."""
    result = StaticAnalyzer().analyze({"bad.py": b"def f(:\n", "ok.py": b"x = 1\n"})
    (issue,) = result.issues
    assert (issue.rule_id, issue.severity, issue.file, issue.line) == (
        "GR000",
        Severity.HIGH,
        "bad.py",
        1,
    )
    assert result.parse_errors
    assert result.parse_errors[0].startswith("bad.py: SyntaxError")
    assert result.files_scanned == 2


def test_deeply_nested_code_fails_closed() -> None:
    """Input that exhausts the parser is reported, not skipped."""
    deep = b"x = " + b"(" * 5000 + b"1" + b")" * 5000 + b"\n"
    issues, error = StaticAnalyzer().analyze_file("deep.py", deep)
    assert error is not None
    assert issues[0].rule_id == "GR000"


def test_without_bandit_only_grace_rules_run() -> None:
    """Disabling bandit leaves Grace's rules and reports it in the result."""
    result = StaticAnalyzer(bandit=False).analyze({"m.py": SNIPPET})
    assert not result.bandit
    assert {i.source for i in result.issues} == {IssueSource.RULES}


def test_deduplicate_keeps_unrelated_issues_apart() -> None:
    """Different lines or categories never merge; the more severe issue leads a group."""

    def issue(rule: str, line: int, severity: Severity) -> Issue:
        return Issue(
            rule_id=rule,
            severity=severity,
            confidence=Confidence.HIGH,
            message=rule,
            source=IssueSource.BANDIT if rule.startswith("B") else IssueSource.RULES,
            file="m.py",
            line=line,
        )

    merged = deduplicate(
        [
            issue("B602", 3, Severity.HIGH),
            issue("GR104", 3, Severity.HIGH),
            issue("B404", 3, Severity.LOW),
            issue("GR104", 4, Severity.HIGH),
        ]
    )
    assert [(i.rule_id, i.line, i.also) for i in merged] == [
        ("B404", 3, ()),
        ("GR104", 3, ("B602",)),
        ("GR104", 4, ()),
    ]
