"""Scoring detectors against labelled series: the NAB score, and precision/recall.

The NAB score follows the Numenta Anomaly Benchmark v1.1 scorer (Lavin & Ahmad 2015,
"Evaluating Real-time Anomaly Detection Algorithms"; NAB's ``nab/sweeper.py``), re-written
here from its description:

* each labelled anomaly has a *window* around it; the first ``min(15 % of rows, 750)`` rows
  of every series are probationary and not scored;
* a detection is a row whose score is ``>= threshold``; inside a window only the earliest
  detection counts, worth ``tp_weight * S(pos) / S(-1)`` where ``S(y) = 2/(1+e^(5y)) - 1`` and
  ``pos = -(right - i + 1) / width`` (1.0 at the left edge, about 0 at the right edge);
* a window without a detection costs ``fn_weight``;
* every detection outside a window costs ``fp_weight * S(d)``: the full ``fp_weight`` before
  the first window, less just after a window (``d`` = distance past it in window widths);
* one threshold for the whole corpus, chosen to maximise the total (NAB's optimiser);
* normalised to 0..100 between the null detector (no detections: ``-fn_weight`` per
  window) and the perfect detector (``tp_weight`` per window).

Precision/recall here are per window: recall = detected windows / windows; precision =
detected windows / (detected windows + detections outside every window), at the same
threshold.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "PROFILES",
    "REWARD_LOW_FN",
    "REWARD_LOW_FP",
    "STANDARD",
    "LabelledRun",
    "NABProfile",
    "NABResult",
    "nab_score",
    "nab_windows",
    "scaled_sigmoid",
]

_PROBATION_FRACTION = 0.15
_PROBATION_CAP = 0.15 * 5000  # NAB: min(floor(15 % of rows), 750)


@dataclass(frozen=True, slots=True, kw_only=True)
class NABProfile:
    """The weights of one NAB application profile."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


STANDARD = NABProfile(name="standard", tp_weight=1.0, fp_weight=0.11, fn_weight=1.0)
REWARD_LOW_FP = NABProfile(name="reward_low_FP_rate", tp_weight=1.0, fp_weight=0.22, fn_weight=1.0)
REWARD_LOW_FN = NABProfile(name="reward_low_FN_rate", tp_weight=1.0, fp_weight=0.11, fn_weight=2.0)
PROFILES: tuple[NABProfile, ...] = (STANDARD, REWARD_LOW_FP, REWARD_LOW_FN)


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelledRun:
    """One series as scored: a detector's score per row and the labelled windows.

    ``windows`` are inclusive ``(first_row, last_row)`` index pairs, sorted, disjoint.
    """

    name: str
    scores: Sequence[float]
    windows: Sequence[tuple[int, int]]


@dataclass(frozen=True, slots=True, kw_only=True)
class NABResult:
    """A corpus score under one profile, at the optimal threshold."""

    profile: str
    score: float
    """Normalised: 0 = null detector, 100 = perfect."""
    raw: float
    threshold: float
    windows: int
    detected: int
    false_positives: int

    @property
    def recall(self) -> float:
        """Detected windows / windows."""
        return self.detected / self.windows if self.windows else 1.0

    @property
    def precision(self) -> float:
        """Detected windows / (detected windows + detections outside windows)."""
        hits = self.detected + self.false_positives
        return self.detected / hits if hits else 1.0


def scaled_sigmoid(position: float) -> float:
    """NAB's ``S(y) = 2 / (1 + e^(5y)) - 1``, ``-1`` from ``y >= 3`` on."""
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def nab_windows(length: int, anomalies: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """NAB's windows: 10 % of the rows shared among the anomalies, centred on each.

    Overlapping windows are merged (NAB's labeller does the same).
    """
    if not anomalies:
        return ()
    width = max(1, int(0.10 * length / len(anomalies)))
    merged: list[list[int]] = []
    for a in sorted(anomalies):
        lo, hi = max(0, a - width // 2), min(length - 1, a + width // 2)
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return tuple((lo, hi) for lo, hi in merged)


def _sweep_rows(
    run: LabelledRun, profile: NABProfile, key: int
) -> Iterable[tuple[float, float, int | None]]:
    """(score, weighted sweep score, window key or None) per scored row of one run."""
    n = len(run.scores)
    probation = min(math.floor(_PROBATION_FRACTION * n), _PROBATION_CAP)
    max_tp = scaled_sigmoid(-1.0)
    windows = list(run.windows)
    w = 0
    prev_right: int | None = None
    prev_width = 0.0
    for i, score in enumerate(run.scores):
        while w < len(windows) and windows[w][1] < i:
            prev_right, prev_width = windows[w][1], float(windows[w][1] - windows[w][0] + 1)
            w += 1
        inside = w < len(windows) and windows[w][0] <= i <= windows[w][1]
        if inside:
            left, right = windows[w]
            width = float(right - left + 1)
            sweep = scaled_sigmoid(-(right - i + 1) / width) * profile.tp_weight / max_tp
            window_key: int | None = key + w
        else:
            if prev_right is None:
                position = 3.0
            else:
                position = abs(prev_right - i) / max(prev_width - 1.0, 1.0)
            sweep = scaled_sigmoid(position) * profile.fp_weight
            window_key = None
        if i >= probation:
            yield float(score), sweep, window_key


def nab_score(runs: Sequence[LabelledRun], profile: NABProfile = STANDARD) -> NABResult:
    """The NAB score of a corpus of runs under ``profile`` (threshold optimised)."""
    rows: list[tuple[float, float, int | None]] = []
    key = 0
    all_windows = 0
    for run in runs:
        rows.extend(_sweep_rows(run, profile, key))
        key += len(run.windows)
        all_windows += len(run.windows)
    scorable = {k for _, _, k in rows if k is not None}
    rows.sort(key=lambda r: r[0], reverse=True)

    best_by_window: dict[int, float] = {}
    fp_total = 0.0
    fp_count = 0
    detected_sum = 0.0
    null = -profile.fn_weight * len(scorable)
    total = null
    best = (total, math.inf, 0, 0)  # (raw, threshold, detected, false positives)
    i = 0
    while i < len(rows):
        threshold = rows[i][0]
        # every row with this exact score is detected together (NAB: score >= threshold)
        while i < len(rows) and rows[i][0] == threshold:
            _, sweep, k = rows[i]
            if k is None:
                fp_total += sweep
                fp_count += 1
            else:
                previous = best_by_window.get(k)
                if previous is None:
                    best_by_window[k] = sweep
                    detected_sum += sweep
                elif sweep > previous:
                    best_by_window[k] = sweep
                    detected_sum += sweep - previous
            i += 1
        total = detected_sum - profile.fn_weight * (len(scorable) - len(best_by_window)) + fp_total
        if total > best[0]:
            best = (total, threshold, len(best_by_window), fp_count)
    raw, threshold, detected, fps = best
    perfect = profile.tp_weight * all_windows
    denominator = perfect - null
    normalised = 100.0 * (raw - null) / denominator if denominator else 0.0
    return NABResult(
        profile=profile.name,
        score=normalised,
        raw=raw,
        threshold=threshold,
        windows=len(scorable),
        detected=detected,
        false_positives=fps,
    )
