"""Scraping Prometheus text: gauges as values, counters as rates, histograms as means."""

from __future__ import annotations

import httpx
import pytest

from grace.errors import MonitorError
from grace.monitoring import MetricsMonitor, PrometheusScraper, SeriesRule, series_name
from grace.testing import FakeClock

EXPOSITION = """\
# HELP up Whether the target is up.
# TYPE up gauge
up{job="api"} 1
# TYPE http_requests_total counter
http_requests_total{code="200",method="get"} REQUESTS
# TYPE latency_seconds histogram
latency_seconds_bucket{le="0.1"} 3
latency_seconds_bucket{le="+Inf"} COUNT
latency_seconds_sum SUM
latency_seconds_count COUNT
# TYPE ignored_total counter
ignored_total 5
"""


class Target:
    """A fake exporter whose numbers move between scrapes."""

    def __init__(self) -> None:
        self.requests, self.sum, self.count = 100, 1.0, 10
        self.status = 200
        self.body: str | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        text = (
            self.body
            if self.body is not None
            else EXPOSITION.replace("REQUESTS", str(self.requests))
            .replace("SUM", str(self.sum))
            .replace("COUNT", str(self.count))
        )
        return httpx.Response(self.status, text=text)


def scraper(
    clock: FakeClock, target: Target, client: httpx.AsyncClient, **kw: object
) -> tuple[PrometheusScraper, MetricsMonitor]:
    """A scraper into a fresh monitor."""
    monitor = MetricsMonitor(clock=clock, rules=[SeriesRule(min_samples=2)])
    return (
        PrometheusScraper(
            monitor,
            url="http://exporter/metrics",
            client=client,
            clock=clock,
            include=("up", "http_requests", "latency_seconds"),
            **kw,  # type: ignore[arg-type]
        ),
        monitor,
    )


async def test_first_scrape_feeds_gauges_then_rates_and_means(clock: FakeClock) -> None:
    """Scrape 1: gauges only (no previous counters); scrape 2: counter rate and mean
    latency from the deltas."""
    target = Target()
    async with httpx.AsyncClient(transport=httpx.MockTransport(target)) as client:
        s, monitor = scraper(clock, target, client)
        first = await s.scrape()
        assert (first.samples, first.fed) == (1, 1)
        assert monitor.series() == ['up{job="api"}']
        target.requests, target.sum, target.count = 160, 4.0, 20
        clock.advance(30)
        second = await s.scrape()
        assert second.fed == 3
        rate = 'http_requests_rate{code="200",method="get"}'
        assert monitor.recent(rate, 0)[-1][1] == pytest.approx(2.0)
        assert monitor.recent("latency_seconds_mean", 0)[-1][1] == pytest.approx(0.3)
        assert "ignored_total" not in " ".join(monitor.series())


async def test_counter_reset_feeds_nothing(clock: FakeClock) -> None:
    """A counter that went down (process restart) is not a negative rate."""
    target = Target()
    async with httpx.AsyncClient(transport=httpx.MockTransport(target)) as client:
        s, monitor = scraper(clock, target, client)
        await s.scrape()
        clock.advance(10)
        target.requests = 5
        await s.scrape()
        assert not any(name.startswith("http_requests_rate") for name in monitor.series())


async def test_unreadable_endpoints_are_monitor_errors(clock: FakeClock) -> None:
    """A 500, a body over the limit or text that is not Prometheus: MonitorError, counted."""
    target = Target()
    async with httpx.AsyncClient(transport=httpx.MockTransport(target)) as client:
        s, _ = scraper(clock, target, client, max_bytes=100)
        with pytest.raises(MonitorError, match="exceeds 100 bytes"):
            await s.scrape()
        target.status = 500
        with pytest.raises(MonitorError, match="HTTP 500"):
            await s.scrape()
        target.status, target.body = 200, "this is { not prometheus"
        s2, _ = scraper(clock, target, client)
        with pytest.raises(MonitorError, match="not Prometheus text"):
            await s2.scrape()
        assert s.failures == 2


def test_series_names_sort_labels() -> None:
    """Labels are sorted so a series keeps its name between scrapes."""
    assert series_name("m", {"b": "2", "a": "1"}) == 'm{a="1",b="2"}'
    assert series_name("m", {}) == "m"
