"""Scanning: probes over the joined text, mapped back to paths; the JSON fast path;
decoding and rescanning encoded content; structural rules; :func:`analyze`.

Part of :mod:`grace.governance.analyzers` (its docstring states the invariants).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import functools
import itertools
import re
from dataclasses import dataclass
from typing import Final

import orjson

from grace.governance.analyzers._model import (
    _MAX_EVIDENCE,
    DEFAULT_LIMITS,
    PRINCIPLES,
    AnalyzerLimits,
    Finding,
)
from grace.governance.analyzers._probes import (
    _clip,
    _mask,
    _names,
    _placeholder,
    _Probe,
    _scrub,
    _Text,
)
from grace.governance.analyzers._rules import (
    _ALWAYS,
    _BY_WORD,
    _PROBES,
    _RULE_INDEX,
    _RULES,
    _S,
    _TRIGGER_WORDS,
    _WORDS_TABLE,
    _lower,
    _shellish,
)
from grace.governance.analyzers._walk import (
    _AUDIT,
    _HEX_FULL,
    _KEY_NOISE,
    _MODE,
    _SECRET,
    _is_blob,
    _Node,
    _Walk,
    _walk,
)

# --------------------------------------------------------------------------------------
# Scanning


@dataclass(slots=True)
class _Hit:
    ordinal: int
    rule: int
    node: _Node
    evidence: str


def _accepted(probe: _Probe, text: str, original: str) -> str | None:
    """Evidence of the first match the probe's check accepts, or ``None``."""
    pattern, check = probe.pattern, probe.check
    m = pattern.search(text)
    while m is not None:
        evidence = check(m, original)
        if evidence is not None:
            return evidence
        # Resume after the match, or after its first newline: a rejected match that ran on
        # into the next string must not hide that string's own match.
        newline = text.find("\n", m.start(), m.end())
        m = pattern.search(text, newline + 1 if newline >= 0 else max(m.end(), m.start() + 1))
    return None


class _Forms:
    """The raw, lowercased and shell-normalised forms of one string, made on demand."""

    __slots__ = ("forms", "original")

    def __init__(self, text: str) -> None:
        self.forms: list[str | None] = [text, _lower(text), None]
        self.original = text  # _lower keeps offsets: a lowercase match indexes the raw text

    def __call__(self, kind: _Text) -> str:
        form = self.forms[kind]
        if form is None:
            form = self.forms[kind] = _shellish(self(_Text.LOWER))
        return form

    def accepted(self, probes: list[_Probe]) -> str | None:
        """Evidence of the first probe that accepts a match in this string."""
        for probe in probes:
            base = self.original if probe.text is not _Text.SHELL else self(_Text.SHELL)
            evidence = _accepted(probe, self(probe.text), base)
            if evidence is not None:
                return evidence
        return None


def _candidates(probe: _Probe, blob: str, original: str, starts: list[int]) -> set[int]:
    """Indices of the strings where ``probe`` may match, from its matches in the joined text.

    The joined text puts a newline between strings, which every pattern and check treats as
    a string boundary; a match that runs past its string only marks the string for checking.
    """
    found: set[int] = set()
    pattern, check = probe.pattern, probe.check
    m = pattern.search(blob)
    while m is not None:
        i = bisect.bisect_right(starts, m.start()) - 1
        end = starts[i + 1] - 1 if i + 1 < len(starts) else len(blob)
        if m.end() > end or check(m, original) is not None:
            found.add(i)
            m = pattern.search(blob, end + 1)
        else:  # resume as _accepted does
            newline = blob.find("\n", m.start(), m.end())
            m = pattern.search(blob, newline + 1 if newline >= 0 else max(m.end(), m.start() + 1))
    return found


def _triggered(low: str) -> tuple[frozenset[str], list[int]]:
    """The trigger words in ``low``, and the probes they wake (with the always-run ones)."""
    words = _TRIGGER_WORDS.intersection(low.translate(_WORDS_TABLE).split())
    active = set(_ALWAYS)
    for word in words:
        active.update(_BY_WORD[word])
    return words, sorted(active)


def _matching(blob: str, low: str, active: list[int]) -> dict[int, list[_Probe]]:
    """Stage 1: the rules with an accepted match anywhere in the joined text (usually none)."""
    forms = [blob, low, ""]
    matched: dict[int, list[_Probe]] = {}
    for i in active:
        rule, probe = _PROBES[i]
        if rule in matched:
            continue
        kind = probe.text
        if kind is _Text.SHELL and not forms[2]:
            forms[2] = _shellish(low)
        original = blob if kind is not _Text.SHELL else forms[kind]
        if _accepted(probe, forms[kind], original) is not None:
            matched[rule] = []
    for i in active:  # stage 2 tries every woken probe of a matched rule
        rule, probe = _PROBES[i]
        if rule in matched:
            matched[rule].append(probe)
    return matched


def _scan(
    texts: list[str], paths: list[_Node], blobs: list[int], limits: AnalyzerLimits, nesting: int = 0
) -> list[_Hit]:
    """Hits of every probe over ``texts`` (and over what they decode to)."""
    if not texts:
        return []
    blob = "\n".join(texts)
    low = _lower(blob)
    words, active = _triggered(low)
    # A string ending in a backslash (maybe once quotes are gone) would be joined to the
    # next one as a line continuation: then each string is normalised on its own.
    joins = "\\" in low
    shell = "\n".join(_shellish(_lower(t)) for t in texts) if joins else _shellish(low)
    # Where each string starts in the joined text: the offsets hold for the raw and the
    # lowercased text, and for the shell text when normalising changed nothing.
    starts = list(itertools.accumulate((len(t) + 1 for t in texts[:-1]), initial=0))
    whole = [blob, low, shell]
    located = [True, True, shell is low]
    per_rule: dict[int, tuple[list[_Probe], set[int]]] = {}
    everywhere = set(range(len(texts)))
    for i in active:
        rule, probe = _PROBES[i]
        probes, where = per_rule.setdefault(rule, ([], set()))
        probes.append(probe)
        if where is everywhere:
            continue
        original = blob if probe.text is not _Text.SHELL else shell
        if located[probe.text]:
            where |= _candidates(probe, whole[probe.text], original, starts)
        elif _accepted(probe, whole[probe.text], original) is not None:
            per_rule[rule] = (probes, everywhere)
    hits: list[_Hit] = []
    forms: dict[int, _Forms] = {}
    for rule, (probes, where) in per_rule.items():
        for index in sorted(where):
            form = forms.get(index) or forms.setdefault(index, _Forms(texts[index]))
            evidence = form.accepted(probes)
            if evidence is not None:
                hits.append(_Hit(index, rule, paths[index], evidence))
    if nesting < 2:
        hits.extend(_rescan(texts, paths, blobs, words, blob, limits, nesting))
    return hits


# --- the fast path: a clean request read straight from its JSON --------------------------

_QUICK_MAX_BYTES = 64 * 1024
_QUICK_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_JSON_ARGV = re.compile(r'\["[^"]*"(?:,"[^"]*")+\]')
_JSON_BLOB = re.compile(r'"([A-Za-z0-9+/_\-\\]{40,}={0,2})"')  # \n, \r escapes included
# A key whose name may be a secret or an audit switch (see _key_class), matched at its end
# in the reversed JSON, lowercased and without ``_-. ``: ``"db_password":`` is
# ``:"drowssapbd"``, one attempt per key.
_JSON_FIELD = re.compile(
    r':"(?:drowssap|dwssap|esarhpssap|terces|yek|nekot|noitazirohtua|tidua|gnitidua|goltidua'
    r"|delbane(?:tidua|regdel|noitacifirev|ecnanrevog)|noitacifirev|serutangisyfirev"
    r"|ecnanrevog|etagecnanrevog|enumminva|edom(?:tnemecrofne|ecnanrevog))"
)


def _clean_json(value: object, limits: AnalyzerLimits) -> bool:
    """True only when ``value`` certainly has no finding; ``False`` means "walk it".

    With no JSON escapes but ``\\n``, ``\\t``, ``\\r``, every ``"`` of the serialised
    value delimits a string, so putting a newline for each gives exactly the walk's strings,
    one per line, each between newlines as in the walk's joined text (plus punctuation
    lines, and string lists joined as argv). Stage 1 over it therefore matches whenever any
    string would: no match there means none anywhere. Whatever else could produce a
    finding (a limit, a secret or audit field name, a base64 blob, a decoder's trigger
    word, escapes) sends the value to the full walk.
    """
    try:
        raw = orjson.dumps(value, option=_QUICK_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: a type the walk must judge
        return False
    limit = min(limits.max_chars, _QUICK_MAX_BYTES, limits.max_values)
    if len(raw) > limit or raw.count(b"[") + raw.count(b"{") >= limits.max_depth:
        return False
    text = raw.decode()
    if any(_HEX_FULL.fullmatch(m.group(1)) is None for m in _JSON_BLOB.finditer(text)):
        return False
    if _JSON_FIELD.search(text.lower().translate(_KEY_NOISE)[::-1]):
        return False
    if "\\" in text:
        escapes = text.count("\\n") + text.count("\\t") + text.count("\\r")
        if text.count("\\") != escapes:
            return False
        text = text.replace("\\n", "\n").replace("\\t", "\t").replace("\\r", "\r")
    argv = [m.group(0)[2:-2].replace('","', " ") for m in _JSON_ARGV.finditer(text)]
    blob = "\n".join(["", text.replace('"', "\n"), *argv, ""])
    low = _lower(blob)
    words, active = _triggered(low)
    return _DECODE_WORDS.isdisjoint(words) and not _matching(blob, low, active)


_DECODE_WORDS: Final = _names(
    "base64 b64decode decodebytes atob frombase64string b64 enc encodedcommand powershell pwsh"
)
_B64_RUN = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{12,}={0,2}")
_ESCAPE = re.compile(r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|[0-3][0-7]{2})")
_NONPRINT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
_SCRIPTY = re.compile(
    r"^#!|\bimport\s+\w|(?<![\w.])(?:exec|eval)\s*\(|subprocess|os\.system|/bin/(?:ba)?sh\b"
    r"|powershell|invoke-expression|\biex\b|\b(?:wget|curl)\s|\bchmod\s|socket\."
)


def _as_text(raw: bytes) -> str | None:
    """Decoded bytes as text, or ``None`` when they are binary (an image, a digest…)."""
    if len(raw) >= 4 and raw[1::2].count(0) >= len(raw) // 2 * 0.8:  # UTF-16LE: PowerShell
        text = raw.decode("utf-16-le", "replace")
    else:
        text = raw.decode("utf-8", "replace")
    if not text.strip() or len(_NONPRINT.findall(text)) > len(text) // 50:
        return None
    return text


def _decode_base64(run: str, limit: int) -> str | None:
    s = run.rstrip("=")[:limit]
    s = s[: len(s) - len(s) % 4]
    urlsafe = "-" in s or "_" in s
    if len(s) < 12 or (urlsafe and ("+" in s or "/" in s)):
        return None
    try:
        raw = base64.b64decode(s, altchars=b"-_" if urlsafe else None, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _as_text(raw)


def _escape_char(m: re.Match[str]) -> str:
    code = m.group(0)[1:]
    return chr(int(code[1:], 16) if code[0] in "xu" else int(code, 8))


def _decode_escapes(text: str) -> str | None:
    return _as_text(_ESCAPE.sub(_escape_char, text).encode("utf-8", "replace"))


def _decoded(
    texts: list[str], blobs: list[int], words: frozenset[str], blob: str, limits: AnalyzerLimits
) -> list[tuple[int, str, str]]:
    """(text index, encoding, decoded text) of each encoded payload worth scanning again."""
    out: list[tuple[int, str, str]] = []
    candidates = set(blobs)
    if not _DECODE_WORDS.isdisjoint(words):
        candidates.update(i for i, t in enumerate(texts) if _B64_RUN.search(t))
    budget = limits.max_decodes
    for i in sorted(candidates):
        for m in _B64_RUN.finditer(texts[i]):
            if budget <= 0:
                return out
            budget -= 1
            text = _decode_base64(m.group(0), limits.max_decoded_chars)
            if text is not None:
                out.append((i, "base64", text))
    if "\\" in blob and _ESCAPE.search(blob):
        for i, t in enumerate(texts):
            if budget > 0 and len(_ESCAPE.findall(t, 0, limits.max_decoded_chars)) >= 2:
                budget -= 1
                text = _decode_escapes(t[: limits.max_decoded_chars])
                if text is not None:
                    out.append((i, "escapes", text))
    return out


_ENCODED = _RULE_INDEX["obfuscation.encoded_payload"]


def _rescan(
    texts: list[str],
    paths: list[_Node],
    blobs: list[int],
    words: frozenset[str],
    blob: str,
    limits: AnalyzerLimits,
    nesting: int,
) -> list[_Hit]:
    hits: list[_Hit] = []
    for i, how, text in _decoded(texts, blobs, words, blob, limits):
        inner = _scan([text], [paths[i]], [0] if _is_blob(text) else [], limits, nesting + 1)
        if inner or _SCRIPTY.search(text.lower()):
            evidence = _clip(f"{how} decodes to: {_scrub(text[:400])}")
            hits.append(_Hit(i, _ENCODED, paths[i], evidence))
        hits.extend(_Hit(i, h.rule, paths[i], _clip(f"{how}: {h.evidence}", 120)) for h in inner)
    return hits


# --- structural rules: what a field's *name* says about its value ----------------------

_FALSY_TEXT: Final = _names("false off no 0 disabled disable none")
_NAMED_SECRET = _RULE_INDEX["secret.named_field"]
_DISABLE_AUDIT = _RULE_INDEX["self_modification.disable_audit"]
_DISABLE_VERIFY = _RULE_INDEX["self_modification.disable_verification"]


def _named_secret(key: str, value: str) -> bool:
    """A non-empty value that is neither a placeholder, a mask nor a label ("Password")."""
    v = value.strip()
    if _placeholder(v):
        return False
    name, lowered = key.lower().translate(_KEY_NOISE), v.lower()
    if lowered.translate(_KEY_NOISE) == name:
        return False
    return not any(w in name and w in lowered for w in ("pass", "secret", "token", "key"))


def _switched_off(value: object, cls: int) -> bool:
    if isinstance(value, str):
        word = value.strip().lower()
        return word in _FALSY_TEXT or (cls == _MODE and word == "log")
    return cls != _MODE and (value is None or value is False or value == 0)


def _structural(w: _Walk) -> list[_Hit]:
    hits: list[_Hit] = []
    for ordinal, node, cls, value in w.fields:
        key = node[1] if node is not None else ""
        shown = _clip(str(key), 40)
        if cls == _SECRET:
            if isinstance(value, str) and _named_secret(str(key), value):
                hits.append(_Hit(ordinal, _NAMED_SECRET, node, f"{shown}: ********"))
        elif _switched_off(value, cls):
            rule = _DISABLE_AUDIT if cls == _AUDIT else _DISABLE_VERIFY
            hits.append(_Hit(ordinal, rule, node, f"{shown}: {_clip(repr(value), 12)}"))
    return hits


# --------------------------------------------------------------------------------------
# Paths

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_SECRET_PROBES: Final = tuple(p for rule in _RULES if rule.kind is _S for p in rule.probes)


def _looks_secret(key: str) -> bool:
    if _Forms(key).accepted(list(_SECRET_PROBES)) is not None:
        return True
    return _scrub(key) != key


@functools.lru_cache(maxsize=4096)
def _segment(seg: str | int | None) -> str:
    if seg is None:
        return "#key"
    if isinstance(seg, int):
        return f"[{seg}]"
    key = seg
    if _looks_secret(key):
        key = _mask(key)
    elif _IDENT.fullmatch(key):
        return "." + key
    key = _clip(key, 40).replace("\\", "\\\\").replace('"', '\\"')
    return '["' + "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in key) + '"]'


def _render(root: str, node: _Node) -> str:
    segments: list[str] = []
    while node is not None:
        node, seg = node
        segments.append(_segment(seg))
    return root + "".join(reversed(segments))


# --------------------------------------------------------------------------------------


def analyze(
    value: object, *, root: str = "request", limits: AnalyzerLimits = DEFAULT_LIMITS
) -> tuple[Finding, ...]:
    """Every finding in ``value``, one per rule and path, in document order.

    ``root`` names the value in paths (``request.context.steps[1].cmd``). Any
    ``analysis_incomplete`` finding means part of the value was not inspected: deny.
    """
    if not root:
        raise ValueError("root must name the value, e.g. 'request'")
    if _clean_json(value, limits):
        return ()
    w = _walk(value, limits)
    hits = _scan(w.texts, w.paths, w.blobs, limits)
    hits.extend(_structural(w))
    hits.extend(
        _Hit(ordinal, _RULE_INDEX[rule_id], node, evidence)
        for rule_id, (ordinal, node, evidence) in w.incomplete.items()
    )
    hits.sort(key=lambda h: (h.ordinal, h.rule))
    findings: list[Finding] = []
    seen: set[tuple[int, str]] = set()
    for hit in hits:
        path = _render(root, hit.node)
        if (hit.rule, path) in seen:
            continue
        seen.add((hit.rule, path))
        rule = _RULES[hit.rule]
        findings.append(
            Finding(
                kind=rule.kind,
                principle=PRINCIPLES[rule.kind],
                severity=rule.severity,
                path=path,
                evidence=hit.evidence[:_MAX_EVIDENCE],
                rule=rule.id,
            )
        )
    return tuple(findings)
