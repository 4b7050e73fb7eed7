"""Scraping a Prometheus text endpoint into the metrics monitor.

The exposition text is parsed by ``prometheus_client.parser`` (never by hand). Series are
named ``metric{label="value",…}`` with labels sorted, so a series keeps its name between
scrapes. What is fed to :meth:`MetricsMonitor.observe`:

* gauges and untyped samples: the value;
* counters: the **rate** per second since the previous scrape (a counter's raw value only
  grows; its rate is what changes when something goes wrong); the first scrape and a
  counter reset (the value went down) feed nothing;
* histograms and summaries: the **mean** of the observations made since the previous
  scrape, Δsum / Δcount, as ``<name>_mean{…}`` (the latency series); buckets and
  quantiles are not fed.

``include`` patterns (shell-style, over the metric family name) bound what is tracked;
``max_bytes`` bounds the body. Each sample the monitor refuses is counted, never fatal.
"""

from __future__ import annotations

import asyncio
import fnmatch
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import httpx
import structlog
from prometheus_client.parser import text_string_to_metric_families

from grace.errors import MonitorError
from grace.monitoring.metrics import MetricsMonitor
from grace.types import Clock

__all__ = ["PrometheusScraper", "ScrapeResult", "series_name"]

log = structlog.get_logger(__name__)

DEFAULT_MAX_BYTES: Final = 4 * 1024 * 1024

Sleep = Callable[[float], Awaitable[None]]


def series_name(name: str, labels: dict[str, str]) -> str:
    """``name{a="1",b="2"}`` with labels sorted; just ``name`` without labels."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrapeResult:
    """What one scrape fed to the monitor."""

    samples: int
    """Samples in the exposition (after ``include``)."""
    fed: int
    rejected: int
    anomalies: int


class PrometheusScraper:
    """Scrapes one endpoint into a :class:`MetricsMonitor`."""

    def __init__(
        self,
        monitor: MetricsMonitor,
        *,
        url: str,
        client: httpx.AsyncClient,
        clock: Clock,
        resource: str | None = None,
        include: Sequence[str] = ("*",),
        timeout_s: float = 5.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._monitor = monitor
        self.url = url
        self._client = client
        self._clock = clock
        self._resource = resource
        self._include = tuple(include)
        self._timeout = timeout_s
        self._max_bytes = max_bytes
        self._sleep = sleep
        self._previous: dict[str, tuple[float, float]] = {}
        """Counter series → (time, value); histogram series → (sum, count)."""
        self.scrapes = 0
        self.failures = 0

    async def fetch(self) -> str:
        """The exposition text; MonitorError if the endpoint cannot be read."""
        try:
            async with self._client.stream("GET", self.url, timeout=self._timeout) as response:
                if response.status_code != 200:
                    raise MonitorError(f"scrape {self.url}: HTTP {response.status_code}")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self._max_bytes:
                        raise MonitorError(
                            f"scrape {self.url}: body exceeds {self._max_bytes} bytes"
                        )
                    chunks.append(chunk)
        except httpx.HTTPError as e:
            raise MonitorError(f"scrape {self.url}: {type(e).__name__}: {e}") from e
        return b"".join(chunks).decode("utf-8", "replace")

    def parse(self, text: str, now: float) -> list[tuple[str, float]]:
        """``(series, value)`` to feed from one exposition (see the module docstring)."""
        try:
            families = list(text_string_to_metric_families(text))
        except ValueError as e:
            raise MonitorError(f"scrape {self.url}: not Prometheus text: {e}") from e
        out: list[tuple[str, float]] = []
        for family in families:
            if not any(fnmatch.fnmatchcase(family.name, p) for p in self._include):
                continue
            if family.type in ("histogram", "summary", "gaugehistogram"):
                out.extend(self._means(family))
            elif family.type == "counter":
                out.extend(self._rates(family, now))
            else:
                out.extend(
                    (series_name(s.name, dict(s.labels)), float(s.value)) for s in family.samples
                )
        return out

    def _rates(self, family: Any, now: float) -> list[tuple[str, float]]:
        out = []
        for s in family.samples:
            if not s.name.endswith("_total"):
                continue  # _created timestamps are not rates
            name = series_name(s.name, dict(s.labels))
            value = float(s.value)
            previous = self._previous.get(name)
            self._previous[name] = (now, value)
            if previous is None or value < previous[1] or now <= previous[0]:
                continue
            out.append(
                (name.replace("_total", "_rate", 1), (value - previous[1]) / (now - previous[0]))
            )
        return out

    def _means(self, family: Any) -> list[tuple[str, float]]:
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}
        for s in family.samples:
            labels = {k: v for k, v in dict(s.labels).items() if k not in ("le", "quantile")}
            key = series_name(f"{family.name}_mean", labels)
            if s.name.endswith("_sum"):
                sums[key] = float(s.value)
            elif s.name.endswith("_count"):
                counts[key] = float(s.value)
        out = []
        for key, total in sums.items():
            count = counts.get(key)
            if count is None:
                continue
            previous = self._previous.get(key)
            self._previous[key] = (total, count)
            if previous is None:
                continue
            d_sum, d_count = total - previous[0], count - previous[1]
            if d_count > 0 and d_sum >= 0 and math.isfinite(d_sum / d_count):
                out.append((key, d_sum / d_count))
        return out

    async def scrape(self) -> ScrapeResult:
        """Fetch, parse and feed one exposition."""
        self.scrapes += 1
        try:
            text = await self.fetch()
            now = self._clock.now().timestamp()
            samples = self.parse(text, now)
        except MonitorError:
            self.failures += 1
            raise
        fed = rejected = anomalies = 0
        for series, value in samples:
            try:
                observation = await self._monitor.observe(
                    series, value, now, resource=self._resource
                )
            except MonitorError as e:
                rejected += 1
                log.debug("scrape_sample_rejected", series=series, error=str(e))
                continue
            fed += 1
            anomalies += observation.emitted
        return ScrapeResult(samples=len(samples), fed=fed, rejected=rejected, anomalies=anomalies)

    async def run(self, interval_s: float) -> None:
        """Scrape every ``interval_s`` until cancelled; failures are logged and counted."""
        if not interval_s > 0:
            raise MonitorError("scrape interval must be positive")
        while True:
            try:
                await self.scrape()
            except MonitorError as e:
                log.warning("scrape_failed", url=self.url, error=str(e))
            await self._sleep(interval_s)
