"""bandit as a library, on a tree Grace already parsed.

bandit's own driver (``BanditManager.run_tests``) reads each file, counts lines for its
metrics, tokenises it for ``# nosec`` comments and parses it. Here the static stage has
already parsed the file once, and ``# nosec`` is not honoured at all (code under
verification must not be able to silence its verifier), so the adapter runs bandit's
node visitor directly on the shared tree: the same plugins, the same default profile, the
same findings minus what ``nosec`` would have hidden.

Tied to bandit's visitor API (``BanditNodeVisitor`` and its ``tester``), stable across the
1.7 to 1.9 line; a failure is reported by the caller as an incomplete analysis.
"""

from __future__ import annotations

import ast
import io
import os
import warnings
from typing import Any, Final

from grace.errors import VerificationError
from grace.verification.model import Confidence, Issue, IssueSource, Severity

__all__ = ["BanditRunner"]

_SEVERITY: Final = {"LOW": Severity.LOW, "MEDIUM": Severity.MEDIUM, "HIGH": Severity.HIGH}
_CONFIDENCE: Final = {"LOW": Confidence.LOW, "MEDIUM": Confidence.MEDIUM, "HIGH": Confidence.HIGH}


class BanditRunner:
    """bandit's default profile (every plugin and blacklist), loaded once."""

    def __init__(self) -> None:
        try:
            with warnings.catch_warnings():
                # stevedore (bandit's plugin loader) warns about its own deprecated argument
                warnings.simplefilter("ignore", DeprecationWarning)
                import bandit
                from bandit.core import config, meta_ast, metrics, node_visitor, test_set
        except ImportError as e:  # pragma: no cover - bandit is a dependency
            raise VerificationError(f"bandit is not available: {e}") from e
        self.version: str = str(bandit.__version__)
        self._metrics_type: Any = metrics.Metrics
        self._visitor_type: Any = node_visitor.BanditNodeVisitor
        self._meta = meta_ast.BanditMetaAst()
        self._tests = test_set.BanditTestSet(config.BanditConfig(), profile={})

    def run(self, file: str, data: bytes, tree: ast.AST) -> list[Issue]:
        """bandit's findings for one parsed file (``tree`` gains bandit's parent links)."""
        # "./" keeps bandit's module-name lookup from warning about a bare file name.
        name = file if os.path.dirname(file) else f"./{file}"
        visitor = self._visitor_type(
            name, io.BytesIO(data), self._meta, self._tests, False, {}, self._metrics_type()
        )
        visitor.generic_visit(tree)
        # bandit's whole-file checks (e.g. trojan source), as its own ``process`` runs them.
        visitor.context = {
            "file_data": visitor.fdata,
            "filename": name,
            "lineno": 0,
            "linerange": [0, 1],
            "col_offset": 0,
        }
        visitor.update_scores(visitor.tester.run_tests(visitor.context, "File"))
        return [self._issue(file, found) for found in visitor.tester.results]

    @staticmethod
    def _issue(file: str, found: Any) -> Issue:
        cwe = getattr(found.cwe, "id", 0) or None
        return Issue(
            rule_id=str(found.test_id),
            severity=_SEVERITY.get(str(found.severity), Severity.INFO),
            confidence=_CONFIDENCE.get(str(found.confidence), Confidence.LOW),
            message=str(found.text),
            source=IssueSource.BANDIT,
            file=file,
            line=int(found.lineno or 0),
            column=max(int(found.col_offset or 0), 0),
            cwe=int(cwe) if cwe else None,
        )
