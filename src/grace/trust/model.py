"""The trust vocabulary and the reputation math, as values and pure functions.

The model (ADR 0007). For a subject ``x`` (a component or actor id) and each dimension
``d`` in {reliability, governance_compliance, verification_record, anomaly_history} the
store keeps two decayed pseudo-counts ``s_d, f_d >= 0`` (positive and negative evidence)
as of the subject's ``updated_at`` time ``t_x``. Each dimension is a Beta posterior::

    Beta(alpha0 + s_d, beta0 + f_d)                       alpha0, beta0 > 0: the prior

Time decay (half-life ``h``): at ``t >= t_x`` every count is worth
``s_d * 2 ** (-(t - t_x) / h)`` (a clock that went backwards counts as no time passing).
Evidence of weight ``w`` — clamped to ``(0, max_update]`` so no single event moves a
subject far — first decays the counts to ``now`` and then adds ``w`` to ``s_d`` (positive
outcome) or ``f_d`` (negative) of the one dimension the evidence belongs to::

    healing_success / healing_failure            -> reliability
    governance_compliant / governance_violation  -> governance_compliance
    verification_pass / verification_fail        -> verification_record
    normal_operation / anomaly                   -> anomaly_history

The dimension score is the posterior mean, which is already the prior shrunk toward the
observed success rate by the dimension's own confidence::

    m_d = (alpha0 + s_d) / (alpha0 + beta0 + n_d)
        = c_d * (s_d / n_d) + (1 - c_d) * mu0,   n_d = s_d + f_d,
          c_d = n_d / (n_d + alpha0 + beta0),     mu0 = alpha0 / (alpha0 + beta0)

The composite is the weighted mean ``S = sum(W_d * m_d) / sum(W_d)`` (weights ``W_d >= 0``,
``sum > 0``), forced to 0.0 while the subject is quarantined. The reported confidence is
``C = n / (n + k)`` with ``n = sum(n_d)`` (the decayed evidence count) and ``k =
confidence_k``. An unknown subject scores ``mu0`` (``TrustConfig.default_score``) with
confidence 0.

Invariants the tests check: ``S`` and every ``m_d`` lie in [0, 1]; ``S`` never falls when
positive evidence is added and never rises when negative evidence is added; decay moves
every ``m_d`` monotonically toward ``mu0`` (``s_d / n_d`` is unchanged by decay, only
``c_d`` shrinks) and, given time, ``S`` to ``mu0``; decaying by ``a`` then ``b`` seconds
equals decaying by ``a + b``. Levels: very_low < 0.3 <= low < 0.5 <= medium < 0.7 <= high
< 0.85 <= very_high.
"""

from __future__ import annotations

import datetime as _dt
import math
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final

from grace.errors import TrustError

__all__ = [
    "EVIDENCE_EFFECTS",
    "MAX_REASON_LENGTH",
    "MAX_SUBJECT_ID_LENGTH",
    "Dimension",
    "Evidence",
    "SubjectState",
    "Tally",
    "TrustConfig",
    "TrustLevel",
    "TrustScore",
    "apply_evidence",
    "check_reason",
    "check_subject_id",
    "clamp_weight",
    "confidence",
    "decay_factor",
    "decay_state",
    "parse_evidence",
    "score_state",
]

MAX_SUBJECT_ID_LENGTH: Final = 256
"""Longest subject (or actor) id accepted, in characters."""
MAX_REASON_LENGTH: Final = 2000
"""Longest reason accepted, in characters (it goes into the ledger entry)."""


class TrustLevel(StrEnum):
    """Coarse trust bands of the composite score (the seed plan's names and cut-offs)."""

    VERY_LOW = "very_low"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    VERY_HIGH = "very_high"

    @classmethod
    def for_score(cls, score: float) -> TrustLevel:
        """The band ``score`` falls in: very_low < 0.3, low < 0.5, medium < 0.7, high < 0.85."""
        for upper, level in _LEVEL_BOUNDS:
            if score < upper:
                return level
        return cls.VERY_HIGH


_LEVEL_BOUNDS: Final = (
    (0.3, TrustLevel.VERY_LOW),
    (0.5, TrustLevel.LOW),
    (0.7, TrustLevel.MEDIUM),
    (0.85, TrustLevel.HIGH),
)


class Dimension(StrEnum):
    """The four independent evidence records that make up the composite."""

    RELIABILITY = "reliability"
    GOVERNANCE_COMPLIANCE = "governance_compliance"
    VERIFICATION_RECORD = "verification_record"
    ANOMALY_HISTORY = "anomaly_history"


class Evidence(StrEnum):
    """An outcome attributed to a subject; each feeds one :class:`Dimension`."""

    HEALING_SUCCESS = "healing_success"
    HEALING_FAILURE = "healing_failure"
    VERIFICATION_PASS = "verification_pass"  # noqa: S105 - an evidence kind, not a secret
    VERIFICATION_FAIL = "verification_fail"
    GOVERNANCE_COMPLIANT = "governance_compliant"
    GOVERNANCE_VIOLATION = "governance_violation"
    ANOMALY = "anomaly"
    """An anomaly attributed to the subject."""
    NORMAL_OPERATION = "normal_operation"


EVIDENCE_EFFECTS: Final[Mapping[Evidence, tuple[Dimension, bool]]] = {
    Evidence.HEALING_SUCCESS: (Dimension.RELIABILITY, True),
    Evidence.HEALING_FAILURE: (Dimension.RELIABILITY, False),
    Evidence.VERIFICATION_PASS: (Dimension.VERIFICATION_RECORD, True),
    Evidence.VERIFICATION_FAIL: (Dimension.VERIFICATION_RECORD, False),
    Evidence.GOVERNANCE_COMPLIANT: (Dimension.GOVERNANCE_COMPLIANCE, True),
    Evidence.GOVERNANCE_VIOLATION: (Dimension.GOVERNANCE_COMPLIANCE, False),
    Evidence.NORMAL_OPERATION: (Dimension.ANOMALY_HISTORY, True),
    Evidence.ANOMALY: (Dimension.ANOMALY_HISTORY, False),
}
"""Evidence → (the dimension it feeds, whether it is positive)."""


def _finite(name: str, value: object) -> float:
    """``value`` as a float, or ValueError naming ``name`` (bools and NaN/inf refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"trust {name} must be a number, got {type(value).__name__}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"trust {name} must be finite, got {value!r}")
    return result


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustConfig:
    """How reputation is computed (built from settings at boot; every field validated).

    ``default_score`` — what an unknown subject scores — is the prior mean
    ``prior_alpha / (prior_alpha + prior_beta)``, not a separate knob: a separate default
    would make the score of a subject with one good outcome lower than that of a stranger
    whenever the two disagree (ADR 0007). For a default of 0.75 use e.g. alpha 3, beta 1.
    """

    half_life_s: float = 7 * 24 * 3600.0
    """Evidence loses half its weight in this many seconds."""
    prior_alpha: float = 2.0
    """Prior pseudo-count of positive evidence in every dimension."""
    prior_beta: float = 2.0
    """Prior pseudo-count of negative evidence in every dimension."""
    reliability_weight: float = 0.30
    governance_compliance_weight: float = 0.30
    verification_record_weight: float = 0.20
    anomaly_history_weight: float = 0.20
    max_update: float = 5.0
    """Largest weight one piece of evidence can carry; larger weights are clamped to it."""
    confidence_k: float = 10.0
    """Evidence count at which confidence reaches 0.5 (``n / (n + k)``)."""
    audit_timeout_s: float = 30.0
    """How long a change waits for the ledger to confirm its entry before it is rolled back."""

    def __post_init__(self) -> None:
        for name in ("half_life_s", "prior_alpha", "prior_beta", "max_update", "confidence_k"):
            if _finite(name, getattr(self, name)) <= 0:
                raise ValueError(f"trust {name} must be > 0, got {getattr(self, name)!r}")
        if _finite("audit_timeout_s", self.audit_timeout_s) <= 0:
            raise ValueError(f"trust audit_timeout_s must be > 0, got {self.audit_timeout_s!r}")
        total = 0.0
        for dimension in Dimension:
            name = f"{dimension}_weight"
            value = _finite(name, getattr(self, name))
            if value < 0:
                raise ValueError(f"trust {name} must be >= 0, got {value!r}")
            total += value
        if not total > 0:
            raise ValueError("trust dimension weights must sum to more than 0")

    def weight(self, dimension: Dimension) -> float:
        """The composite weight of ``dimension``."""
        value: float = getattr(self, f"{dimension}_weight")
        return value

    @property
    def prior_mean(self) -> float:
        """``mu0 = alpha0 / (alpha0 + beta0)``: every dimension's score without evidence."""
        return Tally().mean(self.prior_alpha, self.prior_beta)

    @property
    def default_score(self) -> float:
        """The composite of a subject with no evidence: :attr:`prior_mean` (same formula)."""
        return _composite(dict.fromkeys(Dimension, self.prior_mean), self)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustScore:
    """A subject's trust at one moment, with the evidence behind it."""

    subject_id: str
    composite_score: float
    """In [0, 1]; 0.0 while quarantined."""
    level: TrustLevel
    confidence: float
    """``n / (n + confidence_k)`` for the decayed evidence count ``n``; 0 for a stranger."""
    reliability: float
    governance_compliance: float
    verification_record: float
    anomaly_history: float
    evidence_count: float
    """Decayed total weight of evidence across all dimensions."""
    quarantined: bool
    updated_at: _dt.datetime | None
    """When the subject's record last changed; None if it has none."""

    def __post_init__(self) -> None:
        for name in (
            "composite_score",
            "confidence",
            "reliability",
            "governance_compliance",
            "verification_record",
            "anomaly_history",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"trust score {name} must be within [0, 1], got {value!r}")
        if not (math.isfinite(self.evidence_count) and self.evidence_count >= 0):
            raise ValueError(f"evidence_count must be finite and >= 0, not {self.evidence_count}")
        if self.quarantined and self.composite_score != 0.0:
            raise ValueError("a quarantined subject's composite score must be 0.0")
        if self.level is not TrustLevel.for_score(self.composite_score):
            raise ValueError(f"level {self.level} does not match score {self.composite_score}")

    def dimension(self, dimension: Dimension) -> float:
        """The score of one dimension."""
        value: float = getattr(self, str(dimension))
        return value

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``updated_at`` as ISO 8601 text or None)."""
        return {
            "subject_id": self.subject_id,
            "composite_score": self.composite_score,
            "level": str(self.level),
            "confidence": self.confidence,
            "reliability": self.reliability,
            "governance_compliance": self.governance_compliance,
            "verification_record": self.verification_record,
            "anomaly_history": self.anomaly_history,
            "evidence_count": self.evidence_count,
            "quarantined": self.quarantined,
            "updated_at": None if self.updated_at is None else self.updated_at.isoformat(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Tally:
    """Decayed evidence of one dimension, as pseudo-counts on top of the prior."""

    successes: float = 0.0
    failures: float = 0.0

    def __post_init__(self) -> None:
        for name in ("successes", "failures"):
            value = getattr(self, name)
            if not (isinstance(value, float | int) and math.isfinite(value) and value >= 0):
                raise ValueError(f"tally {name} must be a finite number >= 0, got {value!r}")

    @property
    def count(self) -> float:
        """``n_d = s_d + f_d``."""
        return self.successes + self.failures

    def decayed(self, factor: float) -> Tally:
        """Both counts multiplied by ``factor`` (in [0, 1])."""
        return Tally(successes=self.successes * factor, failures=self.failures * factor)

    def mean(self, prior_alpha: float, prior_beta: float) -> float:
        """The posterior mean ``(alpha0 + s) / (alpha0 + beta0 + s + f)``, in (0, 1]."""
        # Written as 1 / (1 + (beta0 + f) / (alpha0 + s)): every step is monotone under IEEE
        # rounding, so more positive evidence can never lower the float result by an ulp.
        return 1.0 / (1.0 + (prior_beta + self.failures) / (prior_alpha + self.successes))


def _empty_tallies() -> dict[Dimension, Tally]:
    return {d: Tally() for d in Dimension}


@dataclass(frozen=True, slots=True, kw_only=True)
class SubjectState:
    """What the store keeps per subject: tallies as of ``updated_at``, and quarantine."""

    subject_id: str
    updated_at: _dt.datetime
    tallies: Mapping[Dimension, Tally] = field(default_factory=_empty_tallies)
    quarantined: bool = False

    def __post_init__(self) -> None:
        if set(self.tallies) != set(Dimension):
            raise ValueError(
                f"subject state needs a tally for each of {[str(d) for d in Dimension]}"
            )
        if self.updated_at.tzinfo is None:
            raise ValueError("subject state updated_at must be timezone-aware")

    @property
    def evidence_count(self) -> float:
        """Total decayed evidence across dimensions."""
        return math.fsum(t.count for t in self.tallies.values())


# -- input checks ------------------------------------------------------------------------


def check_subject_id(value: object, *, what: str = "subject id") -> str:
    """``value`` if it is a usable id, else :class:`TrustError` saying what is wrong."""
    if not isinstance(value, str):
        raise TrustError(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise TrustError(f"{what} must not be empty")
    if len(value) > MAX_SUBJECT_ID_LENGTH:
        raise TrustError(
            f"{what} is {len(value)} characters long; the limit is {MAX_SUBJECT_ID_LENGTH}"
        )
    _check_text(value, what=what, allow_newlines=False)
    return value


def check_reason(value: object, *, what: str = "reason", required: bool = False) -> str:
    """``value`` if it is a usable reason text, else :class:`TrustError`."""
    if not isinstance(value, str):
        raise TrustError(f"{what} must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise TrustError(f"{what} must not be empty")
    if len(value) > MAX_REASON_LENGTH:
        raise TrustError(
            f"{what} is {len(value)} characters long; the limit is {MAX_REASON_LENGTH}"
        )
    _check_text(value, what=what, allow_newlines=True)
    return value


def _check_text(value: str, *, what: str, allow_newlines: bool) -> None:
    # Control characters in ids forge lines in logs and CLI tables; lone surrogates cannot
    # be stored as UTF-8 at all.
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cs") and not (allow_newlines and ch in "\n\t"):
            raise TrustError(f"{what} contains the control character {ch!r}")


def parse_evidence(value: object) -> Evidence:
    """``value`` as :class:`Evidence`, or :class:`TrustError` naming it and the valid kinds."""
    if isinstance(value, Evidence):
        return value
    if isinstance(value, str):
        try:
            return Evidence(value)
        except ValueError:
            pass
    kinds = ", ".join(e.value for e in Evidence)
    raise TrustError(f"unknown evidence {value!r}; expected one of: {kinds}")


def clamp_weight(weight: object, max_update: float) -> float:
    """The weight an event really carries: ``min(weight, max_update)``; it must be > 0.

    A non-number, NaN, infinity, zero or a negative weight is a :class:`TrustError`:
    negative evidence is expressed by the evidence kind, never by the sign of the weight.
    """
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise TrustError(f"evidence weight must be a number, got {type(weight).__name__}")
    value = float(weight)
    if not math.isfinite(value):
        raise TrustError(f"evidence weight must be finite, got {weight!r}")
    if value <= 0:
        raise TrustError(f"evidence weight must be > 0, got {weight!r}")
    return min(value, max_update)


# -- the math ----------------------------------------------------------------------------


def decay_factor(elapsed_s: float, half_life_s: float) -> float:
    """``2 ** (-elapsed / half_life)`` in (0, 1]; negative elapsed time counts as none."""
    if elapsed_s <= 0:
        return 1.0
    return math.exp2(-elapsed_s / half_life_s)


def confidence(evidence_count: float, k: float) -> float:
    """``n / (n + k)``: 0 without evidence, 0.5 at ``n = k``, approaching 1."""
    if evidence_count <= 0:
        return 0.0
    return evidence_count / (evidence_count + k)


def decay_state(state: SubjectState, now: _dt.datetime, half_life_s: float) -> SubjectState:
    """``state`` with its tallies decayed to ``now`` and ``updated_at`` moved there.

    If ``now`` is before ``updated_at`` (the clock went backwards) nothing decays and the
    time stays put, so the same interval is never counted twice.
    """
    elapsed = (now - state.updated_at).total_seconds()
    if elapsed <= 0:
        return state
    factor = decay_factor(elapsed, half_life_s)
    return replace(
        state,
        updated_at=now,
        tallies={d: t.decayed(factor) for d, t in state.tallies.items()},
    )


def apply_evidence(
    state: SubjectState, evidence: Evidence, weight: float, now: _dt.datetime, config: TrustConfig
) -> SubjectState:
    """Decay ``state`` to ``now``, then add ``weight`` (already clamped) to one tally."""
    dimension, positive = EVIDENCE_EFFECTS[evidence]
    current = decay_state(state, now, config.half_life_s)
    tally = current.tallies[dimension]
    if positive:
        tally = Tally(successes=tally.successes + weight, failures=tally.failures)
    else:
        tally = Tally(successes=tally.successes, failures=tally.failures + weight)
    return replace(current, tallies={**current.tallies, dimension: tally})


def _composite(means: Mapping[Dimension, float], config: TrustConfig) -> float:
    """``sum(W_d * m_d) / sum(W_d)``; fsum is correctly rounded, so this stays monotone."""
    total = math.fsum(config.weight(d) for d in Dimension)
    value = math.fsum(config.weight(d) * means[d] for d in Dimension) / total
    return min(1.0, max(0.0, value))


def score_state(
    subject_id: str, state: SubjectState | None, now: _dt.datetime, config: TrustConfig
) -> TrustScore:
    """The :class:`TrustScore` of ``state`` at ``now`` (the prior if ``state`` is None)."""
    if state is None:
        tallies: Mapping[Dimension, Tally] = _empty_tallies()
        quarantined, updated_at = False, None
    else:
        tallies = decay_state(state, now, config.half_life_s).tallies
        quarantined, updated_at = state.quarantined, state.updated_at
    means = {d: t.mean(config.prior_alpha, config.prior_beta) for d, t in tallies.items()}
    composite = 0.0 if quarantined else _composite(means, config)
    count = math.fsum(t.count for t in tallies.values())
    return TrustScore(
        subject_id=subject_id,
        composite_score=composite,
        level=TrustLevel.for_score(composite),
        confidence=confidence(count, config.confidence_k),
        reliability=means[Dimension.RELIABILITY],
        governance_compliance=means[Dimension.GOVERNANCE_COMPLIANCE],
        verification_record=means[Dimension.VERIFICATION_RECORD],
        anomaly_history=means[Dimension.ANOMALY_HISTORY],
        evidence_count=count,
        quarantined=quarantined,
        updated_at=updated_at,
    )
