"""Content analyzers: facts about what a request *contains*, found server-side.

:func:`analyze` walks the whole request (dict keys and values, lists, strings; numbers,
booleans and ``None`` only count next to an audit switch) and returns :class:`Finding`
values: the kind (the name the constitution tests in ``context.findings``), the safety
principle, a severity, the JSON path of the string, a redacted excerpt and a stable rule
id (all ids: :data:`RULE_IDS`).

Invariants:

* **Fail closed.** Content that was not inspected is itself a finding: more than
  ``max_chars`` characters, containers nested deeper than ``max_depth``, more than
  ``max_values`` values, or a value of an unknown type each yield one
  ``analysis_incomplete`` finding of severity high. The gate must treat that kind as a
  denial: what could not be inspected has not been shown harmless. :func:`analyze` does
  not raise on JSON-like input.
* **Evidence never carries a secret.** Secret rules show a masked token
  (``AKIA************WXYZ``), a PEM header, or ``password: ********``; every other excerpt
  is scrubbed of credentials and long random tokens, and clipped. Path segments that look
  like secrets are masked as well.
* **Linear time.** No pattern nests quantifiers over the same characters. Patterns that
  read "the rest of a shell command" match greedily up to a separator and leave the
  judgement to a Python check, so overlapping attempts cannot go quadratic.
* **Cheap when clean.** All strings are joined once; the words of that text (punctuation
  and quotes removed) select the few probes whose trigger words occur; each probe's regex
  leads with a literal so ``re`` can skip ahead. A probe's matches in the joined text are
  mapped back to their strings, and only those strings are checked again, for the paths.
  Most requests never reach the walk at all: their orjson serialisation, quotes turned
  into newlines, *is* the joined text (:func:`_clean_json` says when that holds), and a
  clean verdict there is final. Property tests pin both shortcuts to the string-by-string
  result.

Shell text is matched after normalisation: lowercased; quotes, backticks and backslash
escapes removed; ``${IFS}`` read as a space; argv lists also read joined. So
``r"m" -r -f /`` and ``["rm", "-rf", "/"]`` are both ``rm -rf /``. Encoded content
(base64 blobs and runs, ``\\x``/``\\u``/octal escapes) is decoded, a bounded prefix, and
scanned again, two levels deep.

Known limits (by design, to stay precise): SQL ``DELETE`` is recognised in upper or lower
case, not mixed; a command split across several fields (``{"cmd": "rm", "args": [...]}``)
is only read joined when it is one argv list.
"""

from __future__ import annotations

from grace.governance.analyzers._model import (
    DEFAULT_LIMITS,
    PRINCIPLES,
    AnalyzerLimits,
    Finding,
    FindingKind,
)
from grace.governance.analyzers._rules import RULE_IDS
from grace.governance.analyzers._scan import analyze
from grace.governance.constitution import Severity

__all__ = [
    "DEFAULT_LIMITS",
    "PRINCIPLES",
    "RULE_IDS",
    "AnalyzerLimits",
    "Finding",
    "FindingKind",
    "Severity",
    "analyze",
]
