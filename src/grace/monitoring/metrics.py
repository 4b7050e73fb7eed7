"""Metric monitoring: streaming samples judged by the seed's baseline rule and a detector,
reported as ``anomaly.detected`` with a cooldown so one incident is one alert.

For each sample of a series (``observe(series, value, timestamp=None)``):

1. bad input is refused with :class:`~grace.errors.MonitorError` and counted, leaving
   the series untouched: a non-finite value, a timestamp earlier than the series' last, a
   malformed series name, a new series beyond ``max_series``;
2. the **detector** (one per series, from the injected factory) scores the point in
   [0, 1]; the score fires when it reaches the rule's ``score_threshold``;
3. the **baseline rule** (the seed's "latency > 3x baseline"): after ``min_samples``
   warm-up samples, the value fires when above ``baseline_factor`` x baseline — or, for a
   throughput series, below baseline / ``baseline_factor``;
4. the **baseline** is the mean of the warm-up samples, then an EWMA updated only by
   samples that did not fire, so an incident does not become the new normal. After
   ``rebaseline_after`` firing samples in a row the level is accepted as the new normal
   (baseline := mean of the recent samples): a permanent shift alerts, then settles;
5. a firing sample emits ``anomaly.detected`` unless the series fired less than
   ``cooldown_s`` ago (counted as suppressed).

Memory per series is constant: the detector's state, a few numbers and a ring of the
last ``recent_samples`` samples (read by post-heal verification).
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import structlog

from grace.errors import MonitorError
from grace.immune.taxonomy import AnomalyType, Severity, check_resource
from grace.monitoring.health import EventSink
from grace.types import Clock

__all__ = [
    "Detector",
    "DetectorFactory",
    "MetricsMonitor",
    "MetricsSettings",
    "Observation",
    "SeriesRule",
    "guess_anomaly_type",
]

log = structlog.get_logger(__name__)
ANOMALY_EVENT: Final = "anomaly.detected"

SERIES_PATTERN: Final = re.compile(r'[A-Za-z_:][A-Za-z0-9_.:/@=\-{}",+ ]{0,255}')
"""Metric names with optional Prometheus-style labels: ``latency_ms{service="api"}``."""

_TYPE_HINTS: Final = (
    (("latency", "duration", "response_time", "_seconds", "_ms"), AnomalyType.LATENCY_SPIKE),
    (("error", "fail", "5xx"), AnomalyType.ERROR_RATE_INCREASE),
    (("cpu",), AnomalyType.CPU_SPIKE),
    (("mem", "heap", "rss"), AnomalyType.MEMORY_LEAK),
    (("disk", "filesystem", "volume"), AnomalyType.DISK_FULL),
    (("pool", "connections"), AnomalyType.CONNECTION_POOL_EXHAUSTION),
    (("throughput", "rps", "requests", "qps"), AnomalyType.THROUGHPUT_DROP),
)


def guess_anomaly_type(series: str) -> AnomalyType:
    """The anomaly type a series' name suggests (``pattern_deviation`` when unsure)."""
    name = series.split("{", 1)[0].lower()
    for hints, kind in _TYPE_HINTS:
        if any(h in name for h in hints):
            return kind
    return AnomalyType.PATTERN_DEVIATION


class Detector(Protocol):
    """A streaming univariate detector (``grace.immune.detectors``)."""

    def observe(self, timestamp: float, value: float) -> float:
        """The anomaly score in [0, 1] of this point."""
        ...


DetectorFactory = Callable[[], Detector]


@dataclass(frozen=True, slots=True, kw_only=True)
class SeriesRule:
    """How series matching ``pattern`` are judged; the first matching rule applies."""

    pattern: str = "*"
    anomaly_type: AnomalyType | None = None
    """None: guessed from the series name."""
    resource: str | None = None
    """The component anomalies are about; None: the ``resource`` given with the sample,
    else the series name without labels."""
    baseline_factor: float | None = 3.0
    score_threshold: float | None = 0.5
    """The detectors' own alarm level is 0.5."""
    cooldown_s: float = 300.0
    severity: Severity = Severity.MEDIUM
    min_samples: int = 30
    baseline_alpha: float = 0.05
    min_baseline: float = 1e-9
    rebaseline_after: int = 1000

    def __post_init__(self) -> None:
        problems = []
        if self.baseline_factor is not None and not self.baseline_factor > 1.0:
            problems.append("baseline_factor must be > 1")
        if self.score_threshold is not None and not 0.0 < self.score_threshold <= 1.0:
            problems.append("score_threshold must be within (0, 1]")
        if self.cooldown_s < 0 or self.min_samples < 1 or self.rebaseline_after < 1:
            problems.append("cooldown_s >= 0, min_samples >= 1, rebaseline_after >= 1")
        if not 0.0 < self.baseline_alpha <= 1.0:
            problems.append("baseline_alpha must be within (0, 1]")
        if self.resource is not None:
            try:
                check_resource(self.resource)
            except ValueError as e:
                problems.append(str(e))
        if problems:
            raise MonitorError(f"series rule {self.pattern!r}: {'; '.join(problems)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSettings:
    """Bounds of a metrics monitor."""

    max_series: int = 10_000
    recent_samples: int = 256

    def __post_init__(self) -> None:
        if self.max_series < 1 or self.recent_samples < 1:
            raise MonitorError("max_series and recent_samples must be at least 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """What one sample did."""

    series: str
    value: float
    timestamp: float
    score: float | None
    baseline: float | None
    anomalous: bool
    """The rule or the detector fired on this sample."""
    emitted: bool
    """An ``anomaly.detected`` went out (not warm-up, not in cooldown)."""
    reasons: tuple[str, ...] = ()


class _Series:
    __slots__ = (
        "anomaly_type",
        "baseline",
        "count",
        "detector",
        "fired_at",
        "firing_run",
        "last_ts",
        "recent",
        "rule",
        "suppressed",
    )

    def __init__(self, rule: SeriesRule, detector: Detector | None, name: str, recent: int) -> None:
        self.rule = rule
        self.detector = detector
        self.anomaly_type = rule.anomaly_type or guess_anomaly_type(name)
        self.baseline: float | None = None
        self.count = 0
        self.last_ts = -math.inf
        self.fired_at: float | None = None
        self.firing_run = 0
        self.suppressed = 0
        self.recent: deque[tuple[float, float]] = deque(maxlen=recent)


class MetricsMonitor:
    """Judges metric samples and reports anomalies through the mesh."""

    def __init__(
        self,
        *,
        clock: Clock,
        events: EventSink | None = None,
        rules: Sequence[SeriesRule] = (SeriesRule(),),
        detector_factory: DetectorFactory | None = None,
        settings: MetricsSettings | None = None,
    ) -> None:
        self._clock = clock
        self._events = events
        self._rules = tuple(rules)
        self._factory = detector_factory
        self.settings = settings or MetricsSettings()
        self._series: dict[str, _Series] = {}
        self._rejected: Counter[str] = Counter()
        self._observed = 0
        self._emitted = 0
        self._emit_failures = 0

    # -- intake --------------------------------------------------------------------------

    def _refuse(self, reason: str, message: str) -> MonitorError:
        self._rejected[reason] += 1
        return MonitorError(message)

    def _series_for(self, series: str) -> _Series:
        state = self._series.get(series)
        if state is not None:
            return state
        if not isinstance(series, str) or not SERIES_PATTERN.fullmatch(series):
            raise self._refuse(
                "bad_series",
                f"series name {str(series)[:80]!r} must match {SERIES_PATTERN.pattern}",
            )
        if len(self._series) >= self.settings.max_series:
            raise self._refuse(
                "too_many_series",
                f"series {series!r} refused: {self.settings.max_series} series are tracked",
            )
        rule = next((r for r in self._rules if fnmatch.fnmatchcase(series, r.pattern)), None)
        if rule is None:
            raise self._refuse("no_rule", f"series {series!r} matches no rule")
        detector = self._factory() if self._factory is not None else None
        state = _Series(rule, detector, series, self.settings.recent_samples)
        self._series[series] = state
        return state

    async def observe(
        self,
        series: str,
        value: float,
        timestamp: float | None = None,
        *,
        resource: str | None = None,
    ) -> Observation:
        """Judge one sample; MonitorError (counted, nothing changed) for bad input."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._refuse(
                "not_a_number", f"series {series!r}: value {value!r} is not a number"
            )
        value = float(value)
        if not math.isfinite(value):
            raise self._refuse("not_finite", f"series {series!r}: value {value} is not finite")
        ts = self._clock.now().timestamp() if timestamp is None else timestamp
        if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
            raise self._refuse("bad_timestamp", f"series {series!r}: timestamp {ts!r} is invalid")
        ts = float(ts)
        if resource is not None:
            try:
                check_resource(resource)
            except ValueError as e:
                raise self._refuse("bad_resource", f"series {series!r}: {e}") from e
        state = self._series_for(series)
        if ts < state.last_ts:
            raise self._refuse(
                "out_of_order",
                f"series {series!r}: timestamp {ts} is before the last one ({state.last_ts})",
            )
        rule = state.rule
        score: float | None = None
        if state.detector is not None:
            try:
                score = float(state.detector.observe(ts, value))
            except MonitorError:
                self._rejected["detector_refused"] += 1
                raise
        reasons: list[str] = []
        warm = state.count >= rule.min_samples
        baseline = state.baseline
        if (
            warm
            and score is not None
            and rule.score_threshold is not None
            and score >= rule.score_threshold
        ):
            reasons.append("detector")
        ratio: float | None = None
        if (
            warm
            and rule.baseline_factor is not None
            and baseline is not None
            and abs(baseline) >= rule.min_baseline
        ):
            ratio = value / baseline
            low_is_bad = state.anomaly_type is AnomalyType.THROUGHPUT_DROP
            if (ratio < 1 / rule.baseline_factor) if low_is_bad else (ratio > rule.baseline_factor):
                reasons.append("baseline_ratio")
        anomalous = bool(reasons)
        self._update_baseline(state, value, anomalous)
        state.recent.append((ts, value))
        state.last_ts = ts
        state.count += 1
        self._observed += 1
        emitted = False
        if anomalous:
            if state.fired_at is not None and ts - state.fired_at < rule.cooldown_s:
                state.suppressed += 1
            else:
                state.fired_at = ts
                emitted = await self._report(
                    series, state, value, baseline, score, ratio, reasons, resource
                )
        return Observation(
            series=series,
            value=value,
            timestamp=ts,
            score=score,
            baseline=state.baseline,
            anomalous=anomalous,
            emitted=emitted,
            reasons=tuple(reasons),
        )

    @staticmethod
    def _update_baseline(state: _Series, value: float, anomalous: bool) -> None:
        rule = state.rule
        if state.baseline is None:
            state.baseline = value
        elif state.count < rule.min_samples:
            state.baseline += (value - state.baseline) / (state.count + 1)
        elif not anomalous:
            state.baseline += rule.baseline_alpha * (value - state.baseline)
        if not anomalous:
            state.firing_run = 0
            return
        state.firing_run += 1
        if state.firing_run >= rule.rebaseline_after and state.recent:
            # The anomaly has lasted long enough to be the new normal.
            state.baseline = sum(v for _, v in state.recent) / len(state.recent)
            state.firing_run = 0

    async def _report(
        self,
        series: str,
        state: _Series,
        value: float,
        baseline: float | None,
        score: float | None,
        ratio: float | None,
        reasons: list[str],
        resource: str | None,
    ) -> bool:
        rule = state.rule
        target = resource or rule.resource or series.split("{", 1)[0]
        try:
            target = check_resource(target)
        except ValueError:
            target = re.sub(r"[^A-Za-z0-9_.:/@=-]", "_", target)[:200] or "unknown"
        payload: dict[str, Any] = {
            "type": str(state.anomaly_type),
            "severity": str(rule.severity),
            "score": score if score is not None else 1.0,
            "series": series,
            "current": value,
            "baseline": baseline,
            "ratio": ratio,
            "rule": "+".join(reasons),
        }
        if self._events is None:
            return False
        try:
            result = await self._events.emit(ANOMALY_EVENT, payload, resource=target)
        except Exception as e:  # noqa: BLE001 - the monitor keeps observing when the mesh fails
            self._emit_failures += 1
            log.warning("metrics_emit_failed", series=series, error=repr(e))
            return False
        if result is not None and not bool(result):
            self._emit_failures += 1
            return False
        self._emitted += 1
        return True

    # -- reading back (post-heal verification) -------------------------------------------

    def baseline(self, series: str) -> float | None:
        """The series' baseline, None until warmed up or for an unknown series."""
        state = self._series.get(series)
        if state is None or state.count < state.rule.min_samples:
            return None
        return state.baseline

    def recent(self, series: str, since: float) -> list[tuple[float, float]]:
        """``(timestamp, value)`` samples at or after ``since`` (from the bounded ring)."""
        state = self._series.get(series)
        if state is None:
            return []
        return [(ts, v) for ts, v in state.recent if ts >= since]

    def series(self) -> list[str]:
        """Tracked series names."""
        return sorted(self._series)

    def get_stats(self) -> dict[str, Any]:
        """Samples, series, anomalies emitted and suppressed, rejections by reason."""
        return {
            "series": len(self._series),
            "observations": self._observed,
            "anomalies_emitted": self._emitted,
            "suppressed_by_cooldown": sum(s.suppressed for s in self._series.values()),
            "emit_failures": self._emit_failures,
            "rejected": sum(self._rejected.values()),
            "rejected_by_reason": dict(self._rejected),
        }
