"""The static stage: parse each file once, run Grace's rules and bandit on the same tree,
deduplicate.

Invariants:

* **Fail closed.** A file that does not parse is an issue (``GR000``, high); a file the
  analysers crash on is an issue (``GR001``, high): what was not analysed has not been
  shown safe.
* **A superset of bandit.** Every finding bandit's default profile makes is kept (bandit
  runs on the same tree; ``# nosec`` is ignored). Two findings of one category on one line
  (e.g. ``eval`` seen by ``GR101`` and ``B307``) become one issue: the more severe leads
  and ``also`` keeps the other rule ids.
* ``B101`` (``assert`` used) is dropped for test files, where asserting is the point.
"""

from __future__ import annotations

import ast
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace

import structlog

from grace.verification._bandit import BanditRunner
from grace.verification.model import Confidence, Issue, IssueSource, Severity, StaticResult
from grace.verification.rules import category_of, check_module

__all__ = ["StaticAnalyzer", "deduplicate"]

log = structlog.get_logger(__name__)


class StaticAnalyzer:
    """Grace's AST rules plus bandit, one parse per file. Thread-safe."""

    def __init__(self, *, bandit: bool = True) -> None:
        self._bandit = BanditRunner() if bandit else None

    @property
    def bandit_version(self) -> str | None:
        """The bandit in use, or None when disabled."""
        return None if self._bandit is None else self._bandit.version

    def analyze(self, files: Mapping[str, bytes], *, tests: Collection[str] = ()) -> StaticResult:
        """Analyse every file; ``tests`` names the test files among them."""
        started = time.perf_counter()
        issues: list[Issue] = []
        parse_errors: list[str] = []
        for name, data in files.items():
            found, error = self.analyze_file(name, data, is_test=name in tests)
            issues.extend(found)
            if error is not None:
                parse_errors.append(f"{name}: {error}")
        return StaticResult(
            files_scanned=len(files),
            issues=tuple(issues),
            duration_s=time.perf_counter() - started,
            parse_errors=tuple(parse_errors),
            bandit=self._bandit is not None,
        )

    def analyze_file(
        self, name: str, data: bytes, *, is_test: bool = False
    ) -> tuple[list[Issue], str | None]:
        """The issues of one file, and its parse error if it does not parse."""
        try:
            tree = ast.parse(data, filename=name)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
            line = getattr(e, "lineno", None) or 0
            text = f"{type(e).__name__}: {getattr(e, 'msg', None) or e}"
            return [_input_issue("GR000", name, line, f"does not parse: {text}")], text
        try:
            found = check_module(tree, name)
            if self._bandit is not None:
                theirs = self._bandit.run(name, data, tree)
                if is_test:
                    theirs = [i for i in theirs if i.rule_id != "B101"]
                found.extend(theirs)
        except Exception as e:  # noqa: BLE001 - not analysed ⇒ not shown safe (fail closed)
            log.warning("static_analysis_failed", file=name, error=repr(e))
            return [_input_issue("GR001", name, 0, f"analysis failed: {e!r}")], None
        return deduplicate(found), None


def _input_issue(rule_id: str, file: str, line: int, message: str) -> Issue:
    return Issue(
        rule_id=rule_id,
        severity=Severity.HIGH,
        confidence=Confidence.HIGH,
        message=message,
        source=IssueSource.INPUT,
        file=file,
        line=line,
    )


def _rank(issue: Issue) -> tuple[int, int, int, str]:
    return (
        -issue.severity.rank,
        -issue.confidence.rank,
        0 if issue.source is IssueSource.RULES else 1,
        issue.rule_id,
    )


def deduplicate(issues: Iterable[Issue]) -> list[Issue]:
    """Merge issues of one category on one line of one file (see the module docstring)."""
    out: list[Issue] = []
    groups: dict[tuple[str, int, str], list[Issue]] = {}
    for issue in issues:
        category = category_of(issue.rule_id)
        if category is None:
            out.append(issue)
        else:
            groups.setdefault((issue.file, issue.line, category), []).append(issue)
    for group in groups.values():
        if len(group) == 1:
            out.append(group[0])
            continue
        group.sort(key=_rank)
        lead = group[0]
        others = (r for i in group[1:] for r in i.rule_ids)
        also = tuple(dict.fromkeys(r for r in (*lead.also, *others) if r != lead.rule_id))
        out.append(replace(lead, also=also))
    out.sort(key=lambda i: (i.file, i.line, i.column, i.rule_id))
    return out
