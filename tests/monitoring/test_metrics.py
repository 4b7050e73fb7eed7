"""MetricsMonitor: the seed's 3x-baseline rule, detector scores, cooldown, bad input."""

from __future__ import annotations

import math

import pytest

from grace.errors import MonitorError
from grace.immune.detectors import create_detector
from grace.immune.taxonomy import AnomalyType
from grace.monitoring import MetricsMonitor, MetricsSettings, SeriesRule, guess_anomaly_type
from grace.testing import FakeClock
from tests.monitoring.test_health import Events


def monitor(clock: FakeClock, **rule: object) -> tuple[MetricsMonitor, Events]:
    """A monitor with one rule for every series, no detector, warm after 10 samples."""
    events = Events()
    settings: dict[str, object] = {"min_samples": 10, "score_threshold": None} | rule
    return (
        MetricsMonitor(clock=clock, events=events, rules=[SeriesRule(**settings)]),  # type: ignore[arg-type]
        events,
    )


async def steady(m: MetricsMonitor, clock: FakeClock, value: float, n: int, series: str) -> None:
    """n samples of ``value``, one second apart."""
    for _ in range(n):
        await m.observe(series, value)
        clock.advance(1)


async def test_latency_above_three_times_baseline_is_an_anomaly(clock: FakeClock) -> None:
    """After warm-up, 3.5x the baseline fires anomaly.detected with the seed's facts."""
    m, events = monitor(clock)
    await steady(m, clock, 100.0, 20, "checkout_latency_ms")
    observation = await m.observe("checkout_latency_ms", 350.0, resource="checkout")
    assert observation.emitted
    assert observation.reasons == ("baseline_ratio",)
    [(event_type, payload, resource)] = events.emitted
    assert (event_type, resource) == ("anomaly.detected", "checkout")
    assert payload["type"] == "latency_spike"
    assert (payload["baseline"], payload["current"]) == (100.0, 350.0)
    assert payload["severity"] == "medium"


async def test_below_the_factor_or_during_warm_up_nothing_fires(clock: FakeClock) -> None:
    """2.5x is not 3x; and no rule fires before min_samples."""
    m, events = monitor(clock)
    await m.observe("latency_ms", 1.0)
    await m.observe("latency_ms", 1000.0)
    await steady(m, clock, 100.0, 20, "latency_ms")
    assert not (await m.observe("latency_ms", 250.0)).anomalous
    assert events.emitted == []


async def test_cooldown_turns_a_storm_into_one_alert(clock: FakeClock) -> None:
    """Fifty anomalous samples within the cooldown emit one event; after it, another."""
    m, events = monitor(clock, cooldown_s=300)
    await steady(m, clock, 100.0, 20, "latency_ms")
    for _ in range(50):
        await m.observe("latency_ms", 900.0)
        clock.advance(1)
    assert len(events.emitted) == 1
    assert m.get_stats()["suppressed_by_cooldown"] == 49
    clock.advance(300)
    assert (await m.observe("latency_ms", 900.0)).emitted


async def test_baseline_does_not_chase_an_incident(clock: FakeClock) -> None:
    """Firing samples do not move the baseline, so the incident cannot become normal."""
    m, _ = monitor(clock)
    await steady(m, clock, 100.0, 20, "latency_ms")
    await steady(m, clock, 900.0, 30, "latency_ms")
    assert m.baseline("latency_ms") == pytest.approx(100.0)


async def test_a_lasting_shift_becomes_the_new_normal(clock: FakeClock) -> None:
    """After rebaseline_after firing samples in a row the level is accepted."""
    m, _ = monitor(clock, rebaseline_after=20)
    await steady(m, clock, 100.0, 20, "latency_ms")
    await steady(m, clock, 900.0, 60, "latency_ms")
    assert m.baseline("latency_ms") == pytest.approx(900.0, rel=0.2)
    assert not (await m.observe("latency_ms", 900.0)).anomalous


async def test_throughput_fires_when_it_drops(clock: FakeClock) -> None:
    """For throughput series, low is bad: a third of the baseline fires, triple does not."""
    m, events = monitor(clock)
    await steady(m, clock, 300.0, 20, "requests_per_s")
    assert not (await m.observe("requests_per_s", 1000.0)).anomalous
    assert (await m.observe("requests_per_s", 50.0)).emitted
    assert events.emitted[0][1]["type"] == "throughput_drop"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "12", True, None])
async def test_non_numbers_are_counted_rejections(clock: FakeClock, value: object) -> None:
    """NaN, inf and non-numbers are MonitorErrors, counted, and leave the series alone."""
    m, _ = monitor(clock)
    await steady(m, clock, 100.0, 3, "latency_ms")
    with pytest.raises(MonitorError, match="latency_ms"):
        await m.observe("latency_ms", value)  # type: ignore[arg-type]
    assert m.get_stats()["rejected"] == 1
    assert m.get_stats()["observations"] == 3


async def test_out_of_order_timestamps_are_refused(clock: FakeClock) -> None:
    """A sample older than the series' last is refused; equal timestamps are fine."""
    m, _ = monitor(clock)
    await m.observe("latency_ms", 1.0, 1000.0)
    await m.observe("latency_ms", 1.0, 1000.0)
    with pytest.raises(MonitorError, match="before the last one"):
        await m.observe("latency_ms", 1.0, 999.0)
    assert m.get_stats()["rejected_by_reason"] == {"out_of_order": 1}
    assert [ts for ts, _ in m.recent("latency_ms", 0)] == [1000.0, 1000.0]


async def test_series_limits_and_names(clock: FakeClock) -> None:
    """Beyond max_series, or with a malformed name, a new series is refused."""
    m = MetricsMonitor(clock=clock, settings=MetricsSettings(max_series=1))
    await m.observe("a", 1.0)
    with pytest.raises(MonitorError, match="series are tracked"):
        await m.observe("b", 1.0)
    with pytest.raises(MonitorError, match="series name"):
        await MetricsMonitor(clock=clock).observe("bad\nname", 1.0)


async def test_detector_scores_fire_anomalies(clock: FakeClock) -> None:
    """With the real default detector, a huge spike on a steady series fires 'detector'."""
    events = Events()
    m = MetricsMonitor(
        clock=clock,
        events=events,
        rules=[SeriesRule(min_samples=30, baseline_factor=None)],
        detector_factory=lambda: create_detector("default"),
    )
    for i in range(300):
        await m.observe("cpu_percent", 40.0 + (i % 5))
        clock.advance(60)
    observation = await m.observe("cpu_percent", 400.0)
    assert observation.score is not None
    assert observation.score >= 0.5
    assert "detector" in observation.reasons
    assert events.emitted[-1][1]["type"] == "cpu_spike"


def test_anomaly_type_is_guessed_from_the_series_name() -> None:
    """Names hint the type; labels are ignored; unknown names are pattern deviations."""
    assert guess_anomaly_type('http_request_duration_seconds{route="/x"}') is (
        AnomalyType.LATENCY_SPIKE
    )
    assert guess_anomaly_type("errors_total") is AnomalyType.ERROR_RATE_INCREASE
    assert guess_anomaly_type("heap_bytes") is AnomalyType.MEMORY_LEAK
    assert guess_anomaly_type("queue_depth") is AnomalyType.PATTERN_DEVIATION


def test_bad_rules_are_refused() -> None:
    """A factor of at most 1 or a threshold outside (0, 1] is a MonitorError."""
    with pytest.raises(MonitorError, match="baseline_factor"):
        SeriesRule(baseline_factor=1.0)
    with pytest.raises(MonitorError, match="score_threshold"):
        SeriesRule(score_threshold=0.0)
