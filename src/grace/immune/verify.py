"""Post-heal verification: did the step work? Checked, never assumed.

* ``health`` — re-probe the health check (``HealthProber.is_healthy``, which probes *now*,
  not a cached state) until it passes ``consecutive`` times in a row, or the timeout ends;
* ``metric`` — watch the series (``MetricWatch``): after the step, every sample must stay
  on the good side of ``factor`` x baseline (above baseline/factor for a throughput drop,
  below baselinexfactor otherwise) for ``window_s``, with at least ``min_samples``
  samples; a bad sample restarts the window; no baseline or too few samples fails;
* ``control`` — the breaker, limit or quarantine the step set is in force, read back from
  :class:`IngressControls` (and the trust store for a quarantine);
* ``none`` — not verified (``verified`` is None): the kernel never counts that as healed.

Waiting uses the injected ``sleep`` and deadlines use the injected clock, so tests drive
time with a fake clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from grace.immune.controls import ControlKind, IngressControls
from grace.immune.executors import ExecutionResult, QuarantineStore
from grace.immune.playbooks import Verification, VerifyKind
from grace.immune.taxonomy import AnomalyType
from grace.types import Clock

__all__ = ["HealthProber", "MetricWatch", "VerificationResult", "Verifier"]

Sleep = Callable[[float], Awaitable[None]]


class HealthProber(Protocol):
    """Probes a named health check now (``grace.monitoring.HealthMonitor``)."""

    async def is_healthy(self, name: str) -> bool:
        """Run the check once, now; True if healthy (raise for an unknown check)."""
        ...


class MetricWatch(Protocol):
    """Reads a metric series' baseline and recent samples (``grace.monitoring.MetricsMonitor``)."""

    def baseline(self, series: str) -> float | None:
        """The series' baseline, None before it is established."""
        ...

    def recent(self, series: str, since: float) -> Sequence[tuple[float, float]]:
        """``(timestamp, value)`` samples observed at or after ``since`` (epoch seconds)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationResult:
    """The outcome of checking one step."""

    kind: VerifyKind
    target: str
    verified: bool | None
    """True passed, False failed, None not verified (kind ``none``)."""
    detail: str
    checks: int = 0
    elapsed_s: float = 0.0


class Verifier:
    """Checks the effect of healing steps."""

    def __init__(
        self,
        *,
        clock: Clock,
        health: HealthProber | None = None,
        metrics: MetricWatch | None = None,
        controls: IngressControls | None = None,
        trust: QuarantineStore | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._health = health
        self._metrics = metrics
        self._controls = controls
        self._trust = trust
        self._sleep = sleep

    async def verify(
        self,
        spec: Verification,
        *,
        target: str,
        execution: ExecutionResult,
        anomaly_type: AnomalyType,
    ) -> VerificationResult:
        """Check the step's effect as ``spec`` says; never raises for a failed check."""
        if spec.kind is VerifyKind.HEALTH:
            return await self._health_check(spec, target)
        if spec.kind is VerifyKind.METRIC:
            return await self._metric_check(spec, target, anomaly_type)
        if spec.kind is VerifyKind.CONTROL:
            return self._control_check(target, execution)
        return VerificationResult(
            kind=spec.kind, target=target, verified=None, detail="not verified (kind none)"
        )

    def _elapsed(self, start: float) -> float:
        return self._clock.now().timestamp() - start

    async def _health_check(self, spec: Verification, target: str) -> VerificationResult:
        if self._health is None:
            return VerificationResult(
                kind=spec.kind, target=target, verified=False, detail="no health prober is wired"
            )
        start = self._clock.now().timestamp()
        checks = streak = 0
        last = "no probe ran"
        while True:
            checks += 1
            try:
                healthy = await self._health.is_healthy(target)
                last = "healthy" if healthy else "unhealthy"
            except Exception as e:  # noqa: BLE001 - a probe that cannot run is a failed check
                healthy, last = False, f"probe failed: {e}"
            streak = streak + 1 if healthy else 0
            if streak >= spec.consecutive:
                return VerificationResult(
                    kind=spec.kind,
                    target=target,
                    verified=True,
                    detail=f"healthy {streak} times in a row",
                    checks=checks,
                    elapsed_s=self._elapsed(start),
                )
            if self._elapsed(start) + spec.interval_s > spec.timeout_s:
                return VerificationResult(
                    kind=spec.kind,
                    target=target,
                    verified=False,
                    detail=f"not healthy {spec.consecutive} times in a row within "
                    f"{spec.timeout_s} s (last: {last})",
                    checks=checks,
                    elapsed_s=self._elapsed(start),
                )
            await self._sleep(spec.interval_s)

    async def _metric_check(
        self, spec: Verification, target: str, anomaly_type: AnomalyType
    ) -> VerificationResult:
        if self._metrics is None:
            return VerificationResult(
                kind=spec.kind, target=target, verified=False, detail="no metric source is wired"
            )
        start = self._clock.now().timestamp()
        checks = 0
        low_is_bad = anomaly_type is AnomalyType.THROUGHPUT_DROP
        detail = "no samples"
        while True:
            checks += 1
            baseline = self._metrics.baseline(target)
            if baseline is None:
                detail = "the series has no baseline"
            else:
                # Re-read the whole window on every poll: stateless, so samples sharing a
                # timestamp are neither skipped nor counted twice.
                window_start, good = start, 0
                detail = "no samples"
                for ts, value in self._metrics.recent(target, start):
                    bad = (
                        value < baseline / spec.factor
                        if low_is_bad
                        else value > baseline * spec.factor
                    )
                    if bad:
                        window_start, good = ts, 0
                        detail = f"sample {value:g} outside {spec.factor}x baseline {baseline:g}"
                    else:
                        good += 1
                now = self._clock.now().timestamp()
                if good >= spec.min_samples and now - window_start >= spec.window_s:
                    return VerificationResult(
                        kind=spec.kind,
                        target=target,
                        verified=True,
                        detail=f"{good} samples within {spec.factor}x baseline {baseline:g} "
                        f"for {now - window_start:.1f} s",
                        checks=checks,
                        elapsed_s=now - start,
                    )
                if good < spec.min_samples:
                    detail = f"{detail}; {good} good samples of {spec.min_samples} needed"
            if self._elapsed(start) + spec.interval_s > spec.timeout_s:
                return VerificationResult(
                    kind=spec.kind,
                    target=target,
                    verified=False,
                    detail=f"not back within baseline for {spec.window_s} s within "
                    f"{spec.timeout_s} s ({detail})",
                    checks=checks,
                    elapsed_s=self._elapsed(start),
                )
            await self._sleep(spec.interval_s)

    def _control_check(self, target: str, execution: ExecutionResult) -> VerificationResult:
        kind = VerifyKind.CONTROL
        if execution.control is None:
            return VerificationResult(
                kind=kind, target=target, verified=False, detail="the step set no control"
            )
        control_kind, pattern = execution.control
        if self._controls is None or self._controls.in_force(control_kind, pattern) is None:
            return VerificationResult(
                kind=kind,
                target=pattern,
                verified=False,
                detail=f"{control_kind} for {pattern!r} is not in force",
                checks=1,
            )
        if (
            control_kind is ControlKind.QUARANTINE
            and execution.subject is not None
            and (self._trust is None or not self._trust.is_quarantined(execution.subject))
        ):
            return VerificationResult(
                kind=kind,
                target=pattern,
                verified=False,
                detail=f"trust store does not hold {execution.subject!r} in quarantine",
                checks=1,
            )
        return VerificationResult(
            kind=kind, target=pattern, verified=True, detail=f"{control_kind} in force", checks=1
        )
