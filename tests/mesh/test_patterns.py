"""Subject patterns follow NATS semantics exactly, through a trie, and bad patterns are named."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grace.errors import MeshError, PatternError
from grace.mesh.patterns import SubjectTrie, validate_pattern, validate_subject


def reference_match(pattern: str, subject: str) -> bool:
    """NATS matching written the obvious way: token by token, no trie."""
    wanted = pattern.split(".")
    parts = subject.split(".")
    for index, part in enumerate(wanted):
        if part == ">":
            return len(parts) > index
        if index >= len(parts) or part not in ("*", parts[index]):
            return False
    return len(wanted) == len(parts)


NATS_TABLE = [
    ("a.*", "a.b", True),
    ("a.*", "a.b.c", False),
    ("a.*", "a", False),
    ("a.>", "a.b", True),
    ("a.>", "a.b.c", True),
    ("a.>", "a", False),
    ("*.b", "a.b", True),
    ("*.b", "x.b", True),
    ("*.b", "a.c", False),
    ("*.b", "b", False),
    ("*.b", "a.b.c", False),
    (">", "a", True),
    (">", "a.b.c.d", True),
    ("*", "a", True),
    ("*", "a.b", False),
    ("*.*", "a.b", True),
    ("*.>", "a", False),
    ("*.>", "a.b.c", True),
    ("a.*.c", "a.b.c", True),
    ("a.*.c", "a.b.d", False),
    ("a.b", "a.b", True),
    ("a.b", "a.bb", False),
    ("a.b", "a.b.c", False),
    ("a.b", "a", False),
    ("governance.*", "governance.decision_made", True),
    ("system.boot.>", "system.boot.failed", True),
    ("system.>", "system.boot.failed", True),
    ("system.*", "system.boot.failed", False),
]


@pytest.mark.parametrize(("pattern", "subject", "expected"), NATS_TABLE)
def test_trie_matches_exactly_as_nats_does(pattern: str, subject: str, expected: bool) -> None:
    """Each row of the NATS semantics table holds for the trie and the reference matcher."""
    trie: SubjectTrie[str] = SubjectTrie()
    trie.add(pattern, "subscriber")
    assert trie.match(subject) == (["subscriber"] if expected else [])
    assert reference_match(pattern, subject) is expected


def test_match_returns_every_matching_value_in_insertion_order() -> None:
    """Several subscribers get the event in the order they subscribed, whatever the pattern."""
    trie: SubjectTrie[str] = SubjectTrie()
    trie.add("a.>", "first")
    trie.add("a.b", "second")
    trie.add("*.b", "third")
    trie.add(">", "fourth")
    trie.add("a.c", "not me")
    trie.add("a.*.c", "nor me")
    assert trie.match("a.b") == ["first", "second", "third", "fourth"]
    assert len(trie) == 6


def test_adding_the_same_pair_twice_keeps_one_subscription() -> None:
    """A (pattern, value) pair is held once, keeping its first position."""
    trie: SubjectTrie[str] = SubjectTrie()
    assert trie.add("a.*", "x") is True
    assert trie.add("a.b", "y") is True
    assert trie.add("a.*", "x") is False
    assert len(trie) == 2
    assert trie.match("a.b") == ["x", "y"]


def test_one_value_under_two_matching_patterns_is_returned_per_pattern() -> None:
    """Distinct patterns are distinct subscriptions, as on a NATS server."""
    trie: SubjectTrie[str] = SubjectTrie()
    trie.add("a.*", "x")
    trie.add("a.>", "x")
    assert trie.match("a.b") == ["x", "x"]
    assert trie.match("a.b.c") == ["x"]


def test_remove_unsubscribes_only_that_pair() -> None:
    """Removing one pair leaves other values on the same pattern and the same value elsewhere."""
    trie: SubjectTrie[str] = SubjectTrie()
    trie.add("a.*", "x")
    trie.add("a.*", "y")
    trie.add("a.>", "x")
    assert trie.remove("a.*", "x") is True
    assert trie.match("a.b") == ["y", "x"]
    assert len(trie) == 2


def test_remove_of_an_absent_pair_returns_false_and_changes_nothing() -> None:
    """Unknown patterns, unknown values and prefixes of real patterns are not removed."""
    trie: SubjectTrie[str] = SubjectTrie()
    trie.add("a.b.c", "x")
    assert trie.remove("a.b", "x") is False
    assert trie.remove("a.b.c", "y") is False
    assert trie.remove("a.*.c", "x") is False
    assert trie.remove("a.>", "x") is False
    assert trie.remove("q", "x") is False
    assert len(trie) == 1
    assert trie.match("a.b.c") == ["x"]


def test_removing_everything_prunes_the_trie_back_to_empty() -> None:
    """Levels left empty are detached, so memory follows the live subscriptions."""
    trie: SubjectTrie[int] = SubjectTrie()
    patterns = ["a.b.c", "a.*.c", "a.>", "*.b", ">", "a.b"]
    for value, pattern in enumerate(patterns):
        trie.add(pattern, value)
    for value, pattern in enumerate(patterns):
        assert trie.remove(pattern, value) is True
    assert len(trie) == 0
    assert trie.match("a.b.c") == []
    assert trie._root.is_empty()


def test_removal_of_a_deep_pattern_keeps_shorter_patterns_on_its_path() -> None:
    """Pruning stops at a level that still holds a subscription."""
    trie: SubjectTrie[str] = SubjectTrie()
    trie.add("a", "short")
    trie.add("a.b.c", "long")
    assert trie.remove("a.b.c", "long") is True
    assert trie.match("a") == ["short"]
    assert trie.match("a.b.c") == []


def test_memoised_results_follow_every_change() -> None:
    """A subject matched before an add or remove sees the new subscriptions afterwards."""
    trie: SubjectTrie[str] = SubjectTrie()
    trie.add("a.*", "x")
    assert trie.match("a.b") == ["x"]
    trie.add("a.b", "y")
    assert trie.match("a.b") == ["x", "y"]
    trie.remove("a.*", "x")
    assert trie.match("a.b") == ["y"]


def test_match_results_are_fresh_lists() -> None:
    """Mutating a returned list cannot corrupt later matches."""
    trie: SubjectTrie[str] = SubjectTrie()
    trie.add("a", "x")
    trie.match("a").append("intruder")
    assert trie.match("a") == ["x"]


def test_many_distinct_subjects_stay_correct_past_the_memo_bound() -> None:
    """Beyond the memo's size limit results are still right (the memo is just cleared)."""
    trie: SubjectTrie[str] = SubjectTrie()
    trie.add("s.*", "x")
    for index in range(3000):
        assert trie.match(f"s.{index}") == ["x"]
    assert trie.match("t.1") == []


BAD_PATTERNS = [
    ("", "is empty"),
    ("a..b", "empty segment"),
    (".a", "empty segment"),
    ("a.", "empty segment"),
    ("a.>.b", "'>' must be the last segment"),
    (">.a", "'>' must be the last segment"),
    ("a*", "wildcard inside the segment 'a*'"),
    ("a.b*.c", "wildcard inside the segment 'b*'"),
    ("a.>b", "wildcard inside the segment '>b'"),
    ("a.**", "wildcard inside the segment '**'"),
    ("a b", "whitespace"),
    ("a.\tb", "whitespace"),
    ("a.\x00", "control character"),
]


@pytest.mark.parametrize(("pattern", "problem"), BAD_PATTERNS)
def test_invalid_pattern_raises_pattern_error_naming_it_and_the_problem(
    pattern: str, problem: str
) -> None:
    """validate_pattern, add and remove all refuse the pattern with the same explanation."""
    trie: SubjectTrie[str] = SubjectTrie()
    for attempt in (
        lambda: validate_pattern(pattern),
        lambda: trie.add(pattern, "x"),
        lambda: trie.remove(pattern, "x"),
    ):
        with pytest.raises(PatternError) as caught:
            attempt()
        assert problem in str(caught.value)
        assert repr(pattern) in str(caught.value) or pattern == ""
    assert len(trie) == 0


def test_pattern_error_is_a_mesh_error() -> None:
    """Callers can catch every mesh refusal with MeshError."""
    assert issubclass(PatternError, MeshError)


@pytest.mark.parametrize("pattern", ["a", "a.b", "*", ">", "a.*", "a.>", "*.*.>", "a-b_c.D9"])
def test_valid_patterns_are_returned_unchanged(pattern: str) -> None:
    """A valid pattern passes validation as is."""
    assert validate_pattern(pattern) == pattern


@pytest.mark.parametrize(
    ("subject", "problem"),
    [
        ("a.*", "wildcard"),
        ("a.>", "wildcard"),
        ("a*b", "wildcard"),
        (">", "wildcard"),
        ("a..b", "empty segment"),
        ("", "is empty"),
        ("a b", "whitespace"),
    ],
)
def test_invalid_subject_is_refused_by_validation_and_by_match(subject: str, problem: str) -> None:
    """Subjects are literal: wildcards, empty segments and whitespace are refused."""
    trie: SubjectTrie[str] = SubjectTrie()
    trie.add(">", "x")
    with pytest.raises(PatternError, match=problem):
        validate_subject(subject)
    with pytest.raises(PatternError, match=problem):
        trie.match(subject)


def test_non_string_patterns_are_refused() -> None:
    """A pattern that is not a string is named by its type."""
    with pytest.raises(PatternError, match="must be a string, got int"):
        validate_pattern(42)  # type: ignore[arg-type]


TOKENS = st.sampled_from(["a", "b", "c"])
subjects = st.lists(TOKENS, min_size=1, max_size=5).map(".".join)
patterns = st.builds(
    lambda body, tail: ".".join(body + tail),
    st.lists(TOKENS | st.just("*"), min_size=0, max_size=4),
    st.sampled_from([[], [">"]]),
).filter(bool)
operations = st.lists(
    st.tuples(st.sampled_from(["add", "remove"]), patterns, st.integers(0, 3)),
    max_size=40,
)


@settings(max_examples=300)
@given(operations, st.lists(subjects, min_size=1, max_size=10))
def test_trie_agrees_with_the_reference_matcher_after_any_adds_and_removes(
    ops: list[tuple[str, str, int]], probes: list[str]
) -> None:
    """For any subscriptions and any subject, the trie returns what a linear scan returns."""
    trie: SubjectTrie[int] = SubjectTrie()
    model: list[tuple[str, int]] = []  # live (pattern, value) pairs in insertion order
    for op, pattern, value in ops:
        pair = (pattern, value)
        if op == "add":
            assert trie.add(pattern, value) is (pair not in model)
            if pair not in model:
                model.append(pair)
        else:
            assert trie.remove(pattern, value) is (pair in model)
            if pair in model:
                model.remove(pair)
        for subject in probes:
            expected = [v for p, v in model if reference_match(p, subject)]
            assert trie.match(subject) == expected
    assert len(trie) == len(model)
