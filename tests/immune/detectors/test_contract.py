"""What every detector promises: score range, no look-ahead, determinism, bounded state,
and bad input refused without touching state."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grace.errors import MonitorError
from grace.immune.detectors import Detector, available_detectors, create_detector
from grace.immune.detectors.synthetic import labelled_series

ALGORITHMS = [name for name in available_detectors() if name != "default"]
finite = st.floats(allow_nan=False, allow_infinity=False)


def _scores(detector: Detector, values: list[float], start: int = 0) -> list[float]:
    return [detector.observe(float(start + i), v) for i, v in enumerate(values)]


def _state_leaves(obj: object, depth: int = 0) -> int:
    """How many scalars ``obj`` holds through its slots, lists, tuples and dicts."""
    assert depth < 20, "state nests too deep (a cycle?)"
    children: Iterator[object]
    if isinstance(obj, dict):
        children = iter([*obj.keys(), *obj.values()])
    elif isinstance(obj, list | tuple | set):
        children = iter(obj)
    elif hasattr(type(obj), "__slots__"):
        names = [s for cls in type(obj).__mro__ for s in getattr(cls, "__slots__", ())]
        children = (getattr(obj, n) for n in names if hasattr(obj, n))
    else:
        return 1
    return sum(_state_leaves(c, depth + 1) for c in children)


@pytest.mark.parametrize("name", ALGORITHMS)
@settings(max_examples=60, deadline=None)
@given(values=st.lists(finite, min_size=1, max_size=300))
def test_scores_are_finite_and_within_0_1_for_any_finite_input(
    name: str, values: list[float]
) -> None:
    """Any finite samples, however extreme, give scores in [0, 1]."""
    for score in _scores(create_detector(name, warmup=2), values):
        assert 0.0 <= score <= 1.0


@pytest.mark.parametrize("name", ALGORITHMS)
def test_huge_integers_are_clamped_not_refused(name: str) -> None:
    """An int too large for a float is a finite sample: clamped, scored, state stays finite."""
    detector = create_detector(name, warmup=2)
    for i, v in enumerate([1, 2, 10**400, -(10**400), 3, 4]):
        assert 0.0 <= detector.observe(float(i), v) <= 1.0


@pytest.mark.parametrize("name", ALGORITHMS)
def test_prefix_scores_do_not_change_when_more_data_follows(name: str) -> None:
    """No look-ahead: a series' first scores are the same whatever comes after them."""
    values = list(labelled_series("level_shift", seed=3, length=600).values)
    whole = _scores(create_detector(name), values)
    prefix = _scores(create_detector(name), values[:450])
    assert whole[:450] == prefix


@pytest.mark.parametrize("name", ALGORITHMS)
def test_same_input_gives_same_scores(name: str) -> None:
    """Detectors are deterministic: two runs over the same samples agree exactly."""
    values = list(labelled_series("spike", seed=5, length=500).values)
    assert _scores(create_detector(name), values) == _scores(create_detector(name), values)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_state_does_not_grow_with_the_series(name: str) -> None:
    """Constant memory: the state after 100,000 samples holds as many numbers as after 200."""
    series = labelled_series("variance", seed=1, length=200).values
    detector = create_detector(name)
    _scores(detector, list(series))
    early = _state_leaves(detector)
    for i in range(100_000):
        detector.observe(float(200 + i), 100.0 + math.sin(i / 7.0) + (i % 13) * 0.1)
    assert _state_leaves(detector) == early


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_sample_is_refused_and_state_unchanged(name: str, bad: float) -> None:
    """NaN/inf raise MonitorError, and the next scores are as if the sample never came."""
    values = list(labelled_series("spike", seed=2, length=300).values)
    clean = create_detector(name)
    expected = _scores(clean, values)
    detector = create_detector(name)
    got = _scores(detector, values[:200])
    with pytest.raises(MonitorError, match="not finite"):
        detector.observe(199.5, bad)
    got += _scores(detector, values[200:], start=200)
    assert got == expected
    assert detector.observations == len(values)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_out_of_order_timestamp_is_refused_and_state_unchanged(name: str) -> None:
    """A timestamp before the previous one is a MonitorError that changes nothing."""
    detector = create_detector(name, warmup=2)
    reference = create_detector(name, warmup=2)
    for i, v in enumerate([1.0, 2.0, 1.5, 2.5]):
        detector.observe(10.0 + i, v)
        reference.observe(10.0 + i, v)
    with pytest.raises(MonitorError, match="earlier than the previous"):
        detector.observe(12.0, 50.0)
    assert detector.observe(14.0, 2.0) == reference.observe(14.0, 2.0)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_equal_timestamps_are_accepted(name: str) -> None:
    """Two samples with the same timestamp are in order (ties are common in batches)."""
    detector = create_detector(name)
    detector.observe(5.0, 1.0)
    detector.observe(5.0, 1.1)
    assert detector.observations == 2


@pytest.mark.parametrize("name", ALGORITHMS)
def test_aware_datetimes_score_like_epoch_seconds(name: str) -> None:
    """An aware datetime timestamp gives the same scores as its epoch seconds."""
    values = list(labelled_series("spike", seed=4, length=300).values)
    start = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    by_datetime = create_detector(name)
    by_seconds = create_detector(name)
    for i, v in enumerate(values):
        when = start + dt.timedelta(minutes=5 * i)
        assert by_datetime.observe(when, v) == by_seconds.observe(when.timestamp(), v)


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize(
    ("timestamp", "value", "message"),
    [
        (dt.datetime(2024, 5, 1), 1.0, "naive"),
        ("2024-05-01", 1.0, "timestamp must be"),
        (float("nan"), 1.0, "not finite"),
        (1.0, "3", "must be a number"),
        (1.0, True, "must be a number"),
        (1.0, None, "must be a number"),
    ],
)
def test_unusable_input_is_refused_by_name(
    name: str, timestamp: object, value: object, message: str
) -> None:
    """Naive datetimes, non-numbers and booleans are MonitorErrors naming the problem."""
    detector = create_detector(name)
    with pytest.raises(MonitorError, match=message):
        detector.observe(timestamp, value)  # type: ignore[arg-type]
    assert detector.observations == 0


def test_integer_timestamps_and_values_are_accepted() -> None:
    """Plain ints work for both timestamp and value."""
    detector = create_detector("default")
    assert detector.observe(1_700_000_000, 42) == 0.0
