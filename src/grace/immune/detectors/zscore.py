"""The plain streaming z-score: distance from an exponentially weighted mean, in EW sds.

The simplest detector worth having, and the yardstick for the others: constant memory
(six numbers), a handful of float operations per sample. It finds spikes and abrupt level
shifts in stationary series; it misses slow drifts and variance changes and raises one
alarm per sample for as long as an anomaly lasts (no suppression).

Score: ``z² / (z² + threshold²)``, so ``z = threshold`` scores 0.5.
"""

from __future__ import annotations

import math
from typing import ClassVar

from grace.immune.detectors._base import LIMIT, Timestamp, check_param, check_value, to_seconds

__all__ = ["ZScoreDetector"]

_INF = math.inf


class ZScoreDetector:
    """EWMA/EW-variance z-score of each sample against the samples before it."""

    name: ClassVar[str] = "zscore"

    __slots__ = ("_alpha", "_count", "_k2", "_last_t", "_mean", "_var", "_warmup")

    def __init__(self, *, span: float = 200.0, threshold: float = 4.0, warmup: int = 30) -> None:
        """``span``: memory in samples (alpha = 2 / (span + 1)); ``threshold``: the z that
        scores 0.5; ``warmup``: samples scored 0 while the statistics settle."""
        span = check_param("span", span, 2.0, 1e9)
        self._alpha = 2.0 / (span + 1.0)
        self._k2 = check_param("threshold", threshold, 1e-6, 1e6) ** 2
        self._warmup = int(check_param("warmup", warmup, 1, 1e9))
        self._count = 0
        self._last_t = -_INF
        self._mean = 0.0
        self._var = 0.0

    @property
    def observations(self) -> int:
        """Samples accepted so far."""
        return self._count

    def observe(self, timestamp: Timestamp, value: float) -> float:
        """Score ``value`` against the EW mean and variance of the earlier samples."""
        last = self._last_t
        t = (
            timestamp
            if type(timestamp) is float and last <= timestamp < _INF
            else to_seconds(timestamp, last)
        )
        x = value if type(value) is float and -LIMIT <= value <= LIMIT else check_value(value)
        self._last_t = t
        n = self._count + 1
        self._count = n
        if n == 1:
            self._mean = x
            return 0.0
        d = x - self._mean
        var = self._var
        z2 = d * d / var if var > 0.0 else (0.0 if d == 0.0 else _INF)
        # bias-corrected start: plain averages until the EW memory is filled
        a = self._alpha if self._alpha * n > 1.0 else 1.0 / n
        self._mean += a * d
        self._var = (1.0 - a) * (var + a * d * d)
        if n <= self._warmup:
            return 0.0
        if z2 == _INF:
            return 1.0
        return z2 / (z2 + self._k2)
