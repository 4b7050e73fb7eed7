"""Subject patterns with NATS semantics, matched through a token trie.

Subjects (event types) are dot-separated, non-empty tokens: ``avn.healing_failed``.
Patterns are subjects that may use two wildcards, exactly as NATS defines them:

* ``*`` stands for exactly one token: ``a.*`` matches ``a.b``, not ``a`` nor ``a.b.c``;
* ``>`` stands for one or more trailing tokens and may only be last: ``a.>`` matches
  ``a.b`` and ``a.b.c``, not ``a``; ``>`` alone matches every subject.

A wildcard is a whole token: ``a*`` or ``a.b>`` is refused, never read as a literal, so
a pattern means the same here and on a NATS server (``grace.<pattern>``). Neither
subjects nor patterns may contain whitespace or control characters (they would break
the NATS protocol line).

Invariants of :class:`SubjectTrie`:

* it holds a set of ``(pattern, value)`` pairs; adding a pair twice keeps one (and its
  first position), so a value is never returned twice for the same pattern;
* ``match`` returns the values of every pair whose pattern matches, in the order the
  pairs were added;
* matching walks the trie one token at a time, following at most the literal child and
  the ``*`` child at each level and collecting the ``>`` values on the way: its cost
  depends on the subject's tokens and the trie's branching, never on the number of
  subscribers. Results are memoised per subject (bounded; cleared by every change).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Hashable
from typing import Final, Generic, TypeVar

from grace.errors import PatternError

__all__ = ["SubjectTrie", "matches", "validate_pattern", "validate_subject"]

T = TypeVar("T", bound=Hashable)

_STAR: Final = "*"
_FULL: Final = ">"
_CACHE_LIMIT: Final = 1024

# Fast paths: one C-level match for the common, valid case; the slow diagnosis below runs
# only to explain a failure. A token is any run without dots, wildcards, whitespace or
# control characters (C0, DEL, C1).
_SEGMENT: Final = r"[^.*>\s\x00-\x1f\x7f-\x9f]+"
_SUBJECT_RE: Final = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT})*")
_PATTERN_RE: Final = re.compile(rf"(?:{_SEGMENT}|\*)(?:\.(?:{_SEGMENT}|\*))*(?:\.>)?|>")
_FORBIDDEN_CHAR_RE: Final = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


def validate_subject(subject: str) -> str:
    """Return ``subject`` if it is a valid, wildcard-free subject; else :class:`PatternError`."""
    if isinstance(subject, str) and _SUBJECT_RE.fullmatch(subject):
        return subject
    raise PatternError(_diagnose(subject, kind="subject", wildcards=False))


def validate_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a valid subscription pattern; else :class:`PatternError`."""
    if isinstance(pattern, str) and _PATTERN_RE.fullmatch(pattern):
        return pattern
    raise PatternError(_diagnose(pattern, kind="pattern", wildcards=True))


def matches(pattern: str, subject: str) -> bool:
    """Does one (valid) ``pattern`` match ``subject``? For one-off checks, such as a
    configuration naming patterns; routing many subscribers goes through :class:`SubjectTrie`."""
    p_tokens = pattern.split(".")
    s_tokens = subject.split(".")
    for i, token in enumerate(p_tokens):
        if token == _FULL:
            return len(s_tokens) > i
        if i >= len(s_tokens) or (token != _STAR and token != s_tokens[i]):
            return False
    return len(p_tokens) == len(s_tokens)


def _diagnose(text: object, *, kind: str, wildcards: bool) -> str:
    """Say what is wrong with a subject or pattern that failed the fast check."""
    if not isinstance(text, str):
        return f"{kind} must be a string, got {type(text).__name__}"
    if not text:
        return f"{kind} is empty"
    bad = _FORBIDDEN_CHAR_RE.search(text)
    if bad:
        what = "whitespace" if bad.group().isspace() else "a control character"
        return f"{kind} {text!r} contains {what} ({bad.group()!r} at index {bad.start()})"
    tokens = text.split(".")
    for index, token in enumerate(tokens, start=1):
        if not token:
            return f"{kind} {text!r} has an empty segment (segment {index} of {len(tokens)})"
    for index, token in enumerate(tokens, start=1):
        if not wildcards and (_STAR in token or _FULL in token):
            return (
                f"{kind} {text!r} contains a wildcard in segment {token!r}; "
                "subjects are literal and may not contain '*' or '>'"
            )
        if token == _FULL and index != len(tokens):
            return (
                f"{kind} {text!r}: '>' must be the last segment "
                f"(found at segment {index} of {len(tokens)})"
            )
        if token not in (_STAR, _FULL) and (_STAR in token or _FULL in token):
            return (
                f"{kind} {text!r} has a wildcard inside the segment {token!r}; "
                "'*' and '>' must stand alone as a whole segment"
            )
    return f"{kind} {text!r} is not valid"  # pragma: no cover - the checks above are exhaustive


class _Node(Generic[T]):
    """One trie level. Value maps go from value to its insertion sequence number."""

    __slots__ = ("full", "literal", "star", "values")

    def __init__(self) -> None:
        self.literal: dict[str, _Node[T]] = {}
        self.star: _Node[T] | None = None
        self.values: dict[T, int] = {}
        """Values of patterns that end at this node."""
        self.full: dict[T, int] = {}
        """Values of patterns that end with ``>`` right below this node."""

    def is_empty(self) -> bool:
        return not (self.literal or self.star or self.values or self.full)


class SubjectTrie(Generic[T]):
    """A set of ``(pattern, value)`` subscriptions, matched against subjects.

    Values must be hashable (handlers, subscription records, ids).

    >>> trie: SubjectTrie[str] = SubjectTrie()
    >>> trie.add("avn.*", "immune")
    True
    >>> trie.add("avn.>", "audit")
    True
    >>> trie.match("avn.healing_failed")
    ['immune', 'audit']
    >>> trie.match("avn.healing.step")
    ['audit']
    """

    __slots__ = ("_cache", "_root", "_sequence", "_size")

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()
        self._size = 0
        self._sequence = itertools.count()
        self._cache: dict[str, tuple[T, ...]] = {}

    def __len__(self) -> int:
        """Number of ``(pattern, value)`` pairs held."""
        return self._size

    def add(self, pattern: str, value: T) -> bool:
        """Subscribe ``value`` to ``pattern``; False if that exact pair was already there.

        Raises :class:`PatternError` (and changes nothing) if the pattern is invalid.
        """
        tokens = validate_pattern(pattern).split(".")
        node = self._root
        last = len(tokens) - 1
        for index, token in enumerate(tokens):
            if token == _FULL and index == last:
                return self._insert(node.full, value)
            if token == _STAR:
                if node.star is None:
                    node.star = _Node()
                node = node.star
            else:
                child = node.literal.get(token)
                if child is None:
                    child = node.literal[token] = _Node()
                node = child
        return self._insert(node.values, value)

    def remove(self, pattern: str, value: T) -> bool:
        """Unsubscribe ``value`` from ``pattern``; False if the pair was not there.

        Trie levels left empty are pruned, so memory follows the live subscriptions.
        Raises :class:`PatternError` if the pattern is invalid.
        """
        tokens = validate_pattern(pattern).split(".")
        path: list[tuple[_Node[T], str]] = []
        node = self._root
        last = len(tokens) - 1
        for index, token in enumerate(tokens):
            if token == _FULL and index == last:
                values = node.full
                break
            child = node.star if token == _STAR else node.literal.get(token)
            if child is None:
                return False
            path.append((node, token))
            node = child
        else:
            values = node.values
        if values.pop(value, None) is None:
            return False
        self._size -= 1
        self._cache.clear()
        self._prune(path, node)
        return True

    def match(self, subject: str) -> list[T]:
        """Values of every pattern that matches ``subject``, in the order they were added.

        Raises :class:`PatternError` if ``subject`` is not a valid literal subject.
        """
        cached = self._cache.get(subject)
        if cached is None:
            cached = self._match(validate_subject(subject).split("."))
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[subject] = cached
        return list(cached)

    def _match(self, tokens: list[str]) -> tuple[T, ...]:
        found: list[tuple[int, T]] = []
        end = len(tokens)
        # Depth-first over (node, index of the next token); at most two children per step.
        stack: list[tuple[_Node[T], int]] = [(self._root, 0)]
        while stack:
            node, index = stack.pop()
            if index == end:
                found.extend((seq, value) for value, seq in node.values.items())
                continue
            if node.full:  # '>' needs at least one more token, and there is one
                found.extend((seq, value) for value, seq in node.full.items())
            child = node.literal.get(tokens[index])
            if child is not None:
                stack.append((child, index + 1))
            if node.star is not None:
                stack.append((node.star, index + 1))
        if len(found) > 1:
            found.sort(key=_first)
        return tuple(value for _, value in found)

    def _insert(self, values: dict[T, int], value: T) -> bool:
        if value in values:
            return False
        values[value] = next(self._sequence)
        self._size += 1
        self._cache.clear()
        return True

    @staticmethod
    def _prune(path: list[tuple[_Node[T], str]], node: _Node[T]) -> None:
        """Detach empty levels from the bottom of ``path`` up."""
        for parent, token in reversed(path):
            if not node.is_empty():
                return
            if token == _STAR:
                parent.star = None
            else:
                del parent.literal[token]
            node = parent


def _first(item: tuple[int, object]) -> int:
    return item[0]
