"""The reputation math: bounded, monotone in evidence, decaying toward the prior, validated."""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grace.errors import TrustError
from grace.trust import Dimension, Evidence, TrustConfig, TrustLevel, TrustScore
from grace.trust.model import (
    EVIDENCE_EFFECTS,
    MAX_REASON_LENGTH,
    MAX_SUBJECT_ID_LENGTH,
    SubjectState,
    Tally,
    apply_evidence,
    check_reason,
    check_subject_id,
    clamp_weight,
    confidence,
    decay_factor,
    decay_state,
    parse_evidence,
    score_state,
)

T0 = _dt.datetime(2026, 1, 1, tzinfo=_dt.UTC)

counts = st.floats(min_value=0, max_value=1e6, allow_nan=False)
tallies = st.builds(Tally, successes=counts, failures=counts)
positive = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False)


@st.composite
def configs(draw: st.DrawFn) -> TrustConfig:
    """Any valid configuration: priors, weights (some zero, sum > 0), half-life, clamp."""
    weights = draw(
        st.lists(st.floats(min_value=0, max_value=10), min_size=4, max_size=4).filter(
            lambda ws: sum(ws) > 0
        )
    )
    return TrustConfig(
        half_life_s=draw(st.floats(min_value=1, max_value=1e8)),
        prior_alpha=draw(positive),
        prior_beta=draw(positive),
        reliability_weight=weights[0],
        governance_compliance_weight=weights[1],
        verification_record_weight=weights[2],
        anomaly_history_weight=weights[3],
        max_update=draw(positive),
        confidence_k=draw(positive),
    )


@st.composite
def states(draw: st.DrawFn) -> SubjectState:
    """A subject with arbitrary evidence in every dimension, last changed at T0."""
    return SubjectState(
        subject_id="svc",
        updated_at=T0,
        tallies={d: draw(tallies) for d in Dimension},
        quarantined=draw(st.booleans()),
    )


def later(seconds: float) -> _dt.datetime:
    """T0 plus ``seconds``."""
    return T0 + _dt.timedelta(seconds=seconds)


# -- levels and vocabulary ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "level"),
    [
        (0.0, TrustLevel.VERY_LOW),
        (0.2999, TrustLevel.VERY_LOW),
        (0.3, TrustLevel.LOW),
        (0.4999, TrustLevel.LOW),
        (0.5, TrustLevel.MEDIUM),
        (0.6999, TrustLevel.MEDIUM),
        (0.7, TrustLevel.HIGH),
        (0.8499, TrustLevel.HIGH),
        (0.85, TrustLevel.VERY_HIGH),
        (1.0, TrustLevel.VERY_HIGH),
    ],
)
def test_levels_use_the_vocabulary_cut_offs(score: float, level: TrustLevel) -> None:
    """very_low < 0.3 <= low < 0.5 <= medium < 0.7 <= high < 0.85 <= very_high."""
    assert TrustLevel.for_score(score) is level


def test_every_evidence_kind_feeds_one_dimension_each_way() -> None:
    """Each dimension has exactly one positive and one negative evidence kind."""
    assert set(EVIDENCE_EFFECTS) == set(Evidence)
    for dimension in Dimension:
        effects = sorted(p for d, p in EVIDENCE_EFFECTS.values() if d is dimension)
        assert effects == [False, True], dimension


def test_unknown_subject_scores_the_default_with_zero_confidence() -> None:
    """A stranger gets the prior mean in every dimension, confidence 0 and no update time."""
    config = TrustConfig(prior_alpha=3.0, prior_beta=1.0)
    score = score_state("stranger", None, T0, config)
    assert score.composite_score == config.default_score == pytest.approx(0.75)
    assert score.confidence == 0.0
    assert score.evidence_count == 0.0
    assert score.updated_at is None
    assert not score.quarantined
    assert all(score.dimension(d) == config.prior_mean for d in Dimension)
    assert score.level is TrustLevel.HIGH


# -- properties of the math --------------------------------------------------------------


@settings(deadline=None)  # pure math; a loaded shared CPU must not fail it
@given(states(), configs(), st.floats(min_value=0, max_value=1e10))
def test_scores_stay_within_zero_and_one(
    state: SubjectState, config: TrustConfig, elapsed: float
) -> None:
    """Composite, every dimension and confidence lie in [0, 1] for any evidence and time."""
    score = score_state("svc", state, later(elapsed), config)
    for value in (score.composite_score, score.confidence, *map(score.dimension, Dimension)):
        assert 0.0 <= value <= 1.0
    assert score.level is TrustLevel.for_score(score.composite_score)
    if state.quarantined:
        assert score.composite_score == 0.0
        assert score.level is TrustLevel.VERY_LOW


@settings(deadline=None)  # pure math; a loaded shared CPU must not fail it
@given(states(), configs(), st.sampled_from(list(Evidence)), positive)
def test_positive_evidence_never_lowers_and_negative_never_raises_the_score(
    state: SubjectState, config: TrustConfig, evidence: Evidence, weight: float
) -> None:
    """Adding evidence moves the composite and its dimension only in the evidence's direction."""
    state = replace(state, quarantined=False)
    dimension, is_positive = EVIDENCE_EFFECTS[evidence]
    before = score_state("svc", state, T0, config)
    after = score_state("svc", apply_evidence(state, evidence, weight, T0, config), T0, config)
    if is_positive:
        assert after.composite_score >= before.composite_score
        assert after.dimension(dimension) >= before.dimension(dimension)
    else:
        assert after.composite_score <= before.composite_score
        assert after.dimension(dimension) <= before.dimension(dimension)
    for other in Dimension:
        if other is not dimension:
            assert after.dimension(other) == before.dimension(other)
    assert after.evidence_count >= before.evidence_count


@settings(deadline=None)  # pure math; a loaded shared CPU must not fail it
@given(configs(), st.sampled_from(list(Evidence)), positive)
def test_one_good_outcome_never_scores_below_a_stranger(
    config: TrustConfig, evidence: Evidence, weight: float
) -> None:
    """A subject whose only evidence is positive is at least the default; negative, at most."""
    fresh = SubjectState(subject_id="svc", updated_at=T0)
    score = score_state("svc", apply_evidence(fresh, evidence, weight, T0, config), T0, config)
    if EVIDENCE_EFFECTS[evidence][1]:
        assert score.composite_score >= config.default_score
    else:
        assert score.composite_score <= config.default_score


@settings(deadline=None)  # pure math; a loaded shared CPU must not fail it
@given(states(), configs(), st.floats(min_value=0, max_value=1e9))
def test_decay_moves_every_dimension_toward_the_prior_without_crossing_it(
    state: SubjectState, config: TrustConfig, elapsed: float
) -> None:
    """With time, each dimension's distance to the prior mean shrinks and keeps its sign."""
    mu0 = config.prior_mean
    before = score_state("svc", state, T0, config)
    after = score_state("svc", state, later(elapsed), config)
    for d in Dimension:
        gap_before, gap_after = before.dimension(d) - mu0, after.dimension(d) - mu0
        assert abs(gap_after) <= abs(gap_before) + 1e-12
        assert gap_after * gap_before >= -1e-12
    assert after.evidence_count <= before.evidence_count
    assert after.confidence <= before.confidence


@settings(deadline=None)  # pure math; a loaded shared CPU must not fail it
@given(states(), configs())
def test_old_evidence_fades_to_the_default_score(state: SubjectState, config: TrustConfig) -> None:
    """After many half-lives a subject scores like a stranger again (unless quarantined)."""
    state = replace(state, quarantined=False)
    faded = score_state("svc", state, later(config.half_life_s * 2000), config)
    assert faded.composite_score == pytest.approx(config.default_score, abs=1e-9)
    assert faded.confidence == pytest.approx(0.0, abs=1e-9)


@settings(deadline=None)  # pure math; a loaded shared CPU must not fail it
@given(
    states(),
    st.floats(min_value=0, max_value=1e7),
    st.floats(min_value=0, max_value=1e7),
    st.floats(min_value=1, max_value=1e7),
)
def test_decaying_in_two_steps_equals_decaying_once(
    state: SubjectState, a: float, b: float, half_life: float
) -> None:
    """Decay is memoryless: rebasing at an intermediate time changes nothing (a restart is safe)."""
    two_steps = decay_state(decay_state(state, later(a), half_life), later(a + b), half_life)
    once = decay_state(state, later(a + b), half_life)
    for d in Dimension:
        assert two_steps.tallies[d].successes == pytest.approx(
            once.tallies[d].successes, rel=1e-9, abs=1e-300
        )
        assert two_steps.tallies[d].failures == pytest.approx(
            once.tallies[d].failures, rel=1e-9, abs=1e-300
        )


def test_one_half_life_halves_the_evidence() -> None:
    """After exactly one half-life every count is worth half."""
    state = SubjectState(
        subject_id="svc",
        updated_at=T0,
        tallies={d: Tally(successes=4.0, failures=2.0) for d in Dimension},
    )
    decayed = decay_state(state, later(3600), 3600)
    assert decayed.updated_at == later(3600)
    assert all(t == Tally(successes=2.0, failures=1.0) for t in decayed.tallies.values())
    assert decay_factor(3600, 3600) == 0.5


def test_a_clock_going_backwards_decays_nothing() -> None:
    """An earlier ``now`` leaves the state as it was, so no interval is counted twice."""
    state = SubjectState(subject_id="svc", updated_at=later(100))
    assert decay_state(state, T0, 10.0) is state
    assert decay_factor(-5.0, 10.0) == 1.0


@settings(deadline=None)  # pure math; a loaded shared CPU must not fail it
@given(st.floats(min_value=0, max_value=1e9), positive)
def test_confidence_grows_with_evidence_from_zero_toward_one(n: float, k: float) -> None:
    """``n / (n + k)`` is 0 without evidence, 0.5 at ``k``, below 1 and non-decreasing."""
    assert confidence(0.0, k) == 0.0
    assert confidence(k, k) == pytest.approx(0.5)
    assert 0.0 <= confidence(n, k) <= 1.0
    assert confidence(n + 1.0, k) >= confidence(n, k)


# -- bad input ---------------------------------------------------------------------------


@settings(deadline=None)  # pure math; a loaded shared CPU must not fail it
@given(st.floats(min_value=1e-9, max_value=1e9), positive)
def test_weights_are_clamped_into_zero_to_max_update(weight: float, max_update: float) -> None:
    """A valid weight carries ``min(weight, max_update)``: never zero, never more than the cap."""
    applied = clamp_weight(weight, max_update)
    assert 0.0 < applied <= max_update
    assert applied == min(weight, max_update)


@pytest.mark.parametrize(
    ("weight", "match"),
    [
        (math.nan, "finite"),
        (math.inf, "finite"),
        (-math.inf, "finite"),
        (0.0, "> 0"),
        (-1.0, "> 0"),
        (True, "number"),
        ("1.0", "number"),
        (None, "number"),
    ],
)
def test_unusable_weights_are_refused(weight: object, match: str) -> None:
    """NaN, infinities, zero, negatives and non-numbers raise TrustError naming the weight."""
    with pytest.raises(TrustError, match=f"evidence weight must be.*{match}"):
        clamp_weight(weight, 5.0)


@pytest.mark.parametrize("value", ["", "healing", "HEALING_SUCCESS", 3, None])
def test_unknown_evidence_is_refused_listing_the_valid_kinds(value: object) -> None:
    """A string that is no evidence kind, or a non-string, names itself and the valid kinds."""
    with pytest.raises(TrustError, match=r"unknown evidence .*healing_success"):
        parse_evidence(value)


def test_evidence_strings_are_accepted() -> None:
    """The plain string value of a kind is as good as the enum member."""
    assert parse_evidence("anomaly") is Evidence.ANOMALY
    assert parse_evidence(Evidence.ANOMALY) is Evidence.ANOMALY


@pytest.mark.parametrize(
    ("subject", "match"),
    [
        ("", "must not be empty"),
        ("x" * (MAX_SUBJECT_ID_LENGTH + 1), "characters long"),
        ("svc\nFAKE LOG LINE", "control character"),
        ("svc\x00", "control character"),
        ("svc\ud800", "control character"),
        (42, "must be a string"),
        (None, "must be a string"),
    ],
)
def test_unusable_subject_ids_are_refused(subject: object, match: str) -> None:
    """Empty, oversized, control-character and non-string ids raise TrustError naming the id."""
    with pytest.raises(TrustError, match=f"subject id .*{match}|subject id {match}"):
        check_subject_id(subject)


def test_longest_subject_id_and_reason_are_accepted() -> None:
    """The limits are inclusive; reasons may span lines."""
    assert check_subject_id("x" * MAX_SUBJECT_ID_LENGTH)
    assert check_reason("a\nb" + "r" * (MAX_REASON_LENGTH - 3))
    with pytest.raises(TrustError, match="reason is 2001 characters"):
        check_reason("r" * (MAX_REASON_LENGTH + 1))
    with pytest.raises(TrustError, match="reason must not be empty"):
        check_reason("  ", required=True)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"half_life_s": 0.0}, "half_life_s must be > 0"),
        ({"half_life_s": math.inf}, "half_life_s must be finite"),
        ({"prior_alpha": -1.0}, "prior_alpha must be > 0"),
        ({"prior_beta": math.nan}, "prior_beta must be finite"),
        ({"max_update": 0.0}, "max_update must be > 0"),
        ({"confidence_k": 0.0}, "confidence_k must be > 0"),
        ({"audit_timeout_s": 0.0}, "audit_timeout_s must be > 0"),
        ({"reliability_weight": -0.1}, "reliability_weight must be >= 0"),
        ({"anomaly_history_weight": math.nan}, "anomaly_history_weight must be finite"),
        (
            {
                "reliability_weight": 0.0,
                "governance_compliance_weight": 0.0,
                "verification_record_weight": 0.0,
                "anomaly_history_weight": 0.0,
            },
            "sum to more than 0",
        ),
    ],
)
def test_invalid_configuration_is_refused_naming_the_field(
    changes: dict[str, float], match: str
) -> None:
    """TrustConfig validates every field in __post_init__ and names the one that is wrong."""
    with pytest.raises(ValueError, match=match):
        TrustConfig(**changes)


def test_non_numeric_configuration_is_refused() -> None:
    """A weight given as text is a TypeError naming the field."""
    with pytest.raises(TypeError, match="reliability_weight must be a number"):
        TrustConfig(reliability_weight="0.3")  # type: ignore[arg-type]


def test_score_values_cannot_be_inconsistent() -> None:
    """A TrustScore out of range, mislabelled, or quarantined with a score is unconstructible."""
    good = score_state("svc", None, T0, TrustConfig())
    with pytest.raises(ValueError, match="within"):
        replace(good, composite_score=1.5)
    with pytest.raises(ValueError, match="does not match"):
        replace(good, level=TrustLevel.VERY_HIGH)
    with pytest.raises(ValueError, match="quarantined"):
        replace(good, quarantined=True)
    assert isinstance(good, TrustScore)
    assert good.to_json()["level"] == "medium"
