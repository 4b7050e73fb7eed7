"""The NAB scorer and the series generators the detection tests rely on."""

from __future__ import annotations

import pytest

from grace.immune.detectors.evaluation import (
    REWARD_LOW_FN,
    STANDARD,
    LabelledRun,
    nab_score,
    nab_windows,
    scaled_sigmoid,
)
from grace.immune.detectors.synthetic import ANOMALY_KINDS, labelled_series, operational_corpus

N = 1000
WINDOWS = ((400, 449), (700, 749))


def _run(detections: dict[int, float]) -> LabelledRun:
    return LabelledRun(name="r", scores=[detections.get(i, 0.0) for i in range(N)], windows=WINDOWS)


def test_scaled_sigmoid_matches_nab_reference_points() -> None:
    """S(-1) ~ 0.98661, S(0) = 0, S(1) ~ -0.98661, and -1 from 3 on (NAB's constants)."""
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.0) == -1.0


def test_null_detector_scores_0_and_earliest_detections_score_100() -> None:
    """No detections normalise to 0; a detection at each window's left edge to 100."""
    assert nab_score([_run({})]).score == 0.0
    perfect = nab_score([_run({400: 1.0, 700: 1.0})])
    assert perfect.score == pytest.approx(100.0)
    assert (perfect.detected, perfect.false_positives) == (2, 0)
    assert (perfect.precision, perfect.recall) == (1.0, 1.0)


def test_late_detection_earns_less_and_false_positives_cost() -> None:
    """Later in the window is worth less; a far false positive costs fp_weight."""
    early = nab_score([_run({400: 1.0, 700: 1.0})])
    late = nab_score([_run({440: 1.0, 740: 1.0})])
    assert 50.0 < late.score < early.score
    with_fp = nab_score([_run({400: 1.0, 700: 1.0, 200: 1.0})])
    assert with_fp.raw == pytest.approx(early.raw - STANDARD.fp_weight)
    assert with_fp.false_positives == 1


def test_threshold_is_optimised_over_the_corpus() -> None:
    """A low-scored false positive is left out by choosing a threshold above it."""
    result = nab_score([_run({400: 0.9, 700: 0.8, 200: 0.3})])
    assert result.threshold == 0.8
    assert result.false_positives == 0


def test_probationary_rows_are_not_scored() -> None:
    """Detections in the first 15 % of a series count neither way."""
    assert nab_score([_run({10: 1.0})]).score == 0.0


def test_reward_low_fn_profile_weighs_misses_double() -> None:
    """Under reward_low_FN the null detector's raw score is -2 per window."""
    assert nab_score([_run({})], REWARD_LOW_FN).raw == -4.0


def test_nab_windows_share_ten_percent_and_merge_overlaps() -> None:
    """Windows are 10 % of the rows split among the anomalies, centred; overlaps merge."""
    assert nab_windows(1000, [300, 700]) == ((275, 325), (675, 725))
    assert nab_windows(1000, [500, 510]) == ((475, 535),)
    assert nab_windows(1000, []) == ()


def test_generators_are_deterministic_and_labelled() -> None:
    """Same seed, same series; each anomaly has an onset, an end and a window."""
    for kind in ANOMALY_KINDS:
        a, b = labelled_series(kind, seed=3), labelled_series(kind, seed=3)
        assert a == b
        assert a.anomalies[0] <= a.ends[0] < len(a.values)
        assert len(a.windows) == 1
    corpus = operational_corpus(seed=2, count=5, length=1000)
    assert corpus == operational_corpus(seed=2, count=5, length=1000)
    assert all(1 <= len(s.anomalies) <= 3 for s in corpus)


def test_unknown_anomaly_kind_is_refused() -> None:
    """Asking for an anomaly kind that does not exist names the known ones."""
    with pytest.raises(ValueError, match="known: spike"):
        labelled_series("meteor", seed=1)
