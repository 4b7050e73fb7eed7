"""Health monitoring: probes (HTTP GET, TCP connect, Python callables) judged with
hysteresis into healthy / degraded / critical, reported through the mesh.

Each probe sample is a level: healthy, degraded (answered, but slowly) or critical
(error, timeout, refused, bad status). The check's state changes only when samples agree:

* ``fail_after`` critical samples in a row ⇒ **critical**;
* from healthy, ``degrade_after`` non-healthy samples in a row ⇒ **degraded**;
* from critical, ``recover_after`` non-critical samples in a row ⇒ degraded, or healthy
  when they were all healthy; from degraded, ``recover_after`` healthy samples ⇒ healthy.

So one slow answer or one dropped connection does not page anyone, and a flapping probe
does not toggle the state on every sample.

Events on transitions: to degraded ``health.degraded`` (+ ``anomaly.detected`` when it
got worse), to critical ``health.critical`` + ``anomaly.detected``; every transition also
``system.health_check`` (recoveries included — the immune kernel resolves incidents on
it). :meth:`HealthMonitor.is_healthy` probes once *now* without touching the state: the
immune kernel's post-heal verification uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol

import httpx
import structlog

from grace.errors import MonitorError
from grace.immune.taxonomy import AnomalyType, Severity, check_resource
from grace.types import Clock

__all__ = [
    "CallableProbe",
    "EventSink",
    "HealthCheck",
    "HealthMonitor",
    "HealthState",
    "HealthStatus",
    "HttpProbe",
    "Probe",
    "ProbeResult",
    "TcpProbe",
]

log = structlog.get_logger(__name__)

Sleep = Callable[[float], Awaitable[None]]

# Event types the monitor emits (declared in the mesh's default routing config).
ANOMALY_EVENT: Final = "anomaly.detected"
DEGRADED_EVENT: Final = "health.degraded"
CRITICAL_EVENT: Final = "health.critical"
HEALTH_CHECK_EVENT: Final = "system.health_check"


class EventSink(Protocol):
    """Where monitors emit (their mesh :class:`~grace.mesh.Publisher` handle)."""

    async def emit(
        self, event_or_type: Any, payload: Mapping[str, Any] | None = None, **kw: Any
    ) -> object:
        """Emit an event."""
        ...


class HealthState(StrEnum):
    """A check's judged state (and a sample's level)."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeResult:
    """One sample."""

    level: HealthState
    latency_s: float
    detail: str = ""


class Probe(Protocol):
    """Something that can be asked whether a target is healthy."""

    async def probe(self) -> ProbeResult:
        """One sample (exceptions count as critical)."""
        ...


def _level(ok: bool, latency_s: float, degraded_latency_s: float | None) -> HealthState:
    if not ok:
        return HealthState.CRITICAL
    if degraded_latency_s is not None and latency_s >= degraded_latency_s:
        return HealthState.DEGRADED
    return HealthState.HEALTHY


class HttpProbe:
    """``GET url`` within ``timeout_s``: a 2xx/3xx answer is healthy (degraded when slower
    than ``degraded_latency_s``); anything else, an error or a timeout is critical."""

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient,
        timeout_s: float = 2.0,
        degraded_latency_s: float | None = 1.0,
    ) -> None:
        if timeout_s <= 0:
            raise MonitorError(f"http probe {url}: timeout_s must be positive")
        self.url = url
        self._client = client
        self._timeout = timeout_s
        self._degraded = degraded_latency_s

    async def probe(self) -> ProbeResult:
        """GET the URL once."""
        start = time.perf_counter()
        try:
            response = await self._client.get(self.url, timeout=self._timeout)
        except httpx.HTTPError as e:
            return ProbeResult(
                level=HealthState.CRITICAL,
                latency_s=time.perf_counter() - start,
                detail=f"GET {self.url}: {type(e).__name__}: {e}"[:300],
            )
        latency = time.perf_counter() - start
        ok = 200 <= response.status_code < 400
        return ProbeResult(
            level=_level(ok, latency, self._degraded),
            latency_s=latency,
            detail=f"GET {self.url}: {response.status_code} in {latency * 1000:.0f} ms",
        )


class TcpProbe:
    """Connect to ``host:port`` within ``timeout_s`` (then close)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout_s: float = 2.0,
        degraded_latency_s: float | None = 1.0,
    ) -> None:
        if not 0 < port < 65536 or timeout_s <= 0:
            raise MonitorError(f"tcp probe {host}:{port}: bad port or timeout")
        self.host, self.port = host, port
        self._timeout = timeout_s
        self._degraded = degraded_latency_s

    async def probe(self) -> ProbeResult:
        """Open and close one connection."""
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                _, writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError) as e:
            return ProbeResult(
                level=HealthState.CRITICAL,
                latency_s=time.perf_counter() - start,
                detail=f"connect {self.host}:{self.port}: {type(e).__name__}: {e}"[:300],
            )
        latency = time.perf_counter() - start
        writer.close()
        with contextlib.suppress(OSError):  # connected: that is what this probe checks
            await writer.wait_closed()
        return ProbeResult(
            level=_level(True, latency, self._degraded),
            latency_s=latency,
            detail=f"connect {self.host}:{self.port} in {latency * 1000:.0f} ms",
        )


CheckFn = Callable[[], Awaitable[bool | HealthState | ProbeResult]]


class CallableProbe:
    """Await a function: True/False, a :class:`HealthState` or a :class:`ProbeResult`."""

    def __init__(self, fn: CheckFn, *, timeout_s: float = 5.0) -> None:
        self._fn = fn
        self._timeout = timeout_s

    async def probe(self) -> ProbeResult:
        """Call it once within the timeout; an exception or timeout is critical."""
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                answer: object = await self._fn()
        except TimeoutError:
            return ProbeResult(
                level=HealthState.CRITICAL,
                latency_s=time.perf_counter() - start,
                detail=f"no answer within {self._timeout} s",
            )
        except Exception as e:  # noqa: BLE001 - a failing check function is a critical sample
            return ProbeResult(
                level=HealthState.CRITICAL,
                latency_s=time.perf_counter() - start,
                detail=f"{type(e).__name__}: {e}"[:300],
            )
        latency = time.perf_counter() - start
        if isinstance(answer, ProbeResult):
            return answer
        if isinstance(answer, HealthState):
            return ProbeResult(level=answer, latency_s=latency)
        if isinstance(answer, bool):
            return ProbeResult(level=_level(answer, latency, None), latency_s=latency)
        return ProbeResult(
            level=HealthState.CRITICAL,
            latency_s=latency,
            detail=f"check returned {type(answer).__name__}, not bool/HealthState/ProbeResult",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthCheck:
    """A named probe of one resource, with its hysteresis and what to report."""

    name: str
    probe: Probe
    resource: str = ""
    """The component the anomalies are about (default: the check's name)."""
    interval_s: float = 10.0
    fail_after: int = 2
    degrade_after: int = 2
    recover_after: int = 2
    critical_type: AnomalyType = AnomalyType.SERVICE_DOWN
    critical_severity: Severity = Severity.MEDIUM
    degraded_type: AnomalyType = AnomalyType.LATENCY_SPIKE
    degraded_severity: Severity = Severity.LOW

    def __post_init__(self) -> None:
        try:
            check_resource(self.name)
            check_resource(self.resource or self.name)
        except ValueError as e:
            raise MonitorError(f"health check {self.name!r}: {e}") from e
        if not (math.isfinite(self.interval_s) and self.interval_s > 0):
            raise MonitorError(f"health check {self.name!r}: interval_s must be positive")
        if min(self.fail_after, self.degrade_after, self.recover_after) < 1:
            raise MonitorError(f"health check {self.name!r}: thresholds must be at least 1")
        AnomalyType(self.critical_type)
        AnomalyType(self.degraded_type)
        Severity(self.critical_severity)
        Severity(self.degraded_severity)

    @property
    def target(self) -> str:
        """The resource reported on."""
        return self.resource or self.name


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthStatus:
    """A check's state now."""

    name: str
    resource: str
    state: HealthState
    since: _dt.datetime | None
    last: ProbeResult | None = None
    samples: int = 0
    transitions: int = 0


@dataclass(slots=True)
class _Tracker:
    check: HealthCheck
    state: HealthState = HealthState.HEALTHY
    since: _dt.datetime | None = None
    last: ProbeResult | None = None
    samples: int = 0
    transitions: int = 0
    critical_run: int = 0
    unhealthy_run: int = 0
    healthy_run: int = 0
    not_critical_run: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def judge(self, level: HealthState) -> HealthState:
        """Fold one sample into the streaks; the state the streaks now justify."""
        self.critical_run = self.critical_run + 1 if level is HealthState.CRITICAL else 0
        self.unhealthy_run = self.unhealthy_run + 1 if level is not HealthState.HEALTHY else 0
        self.healthy_run = self.healthy_run + 1 if level is HealthState.HEALTHY else 0
        self.not_critical_run = (
            self.not_critical_run + 1 if level is not HealthState.CRITICAL else 0
        )
        c = self.check
        if self.critical_run >= c.fail_after:
            return HealthState.CRITICAL
        if self.state is HealthState.HEALTHY:
            return HealthState.DEGRADED if self.unhealthy_run >= c.degrade_after else self.state
        if self.state is HealthState.CRITICAL:
            if self.not_critical_run >= c.recover_after:
                return (
                    HealthState.HEALTHY
                    if self.healthy_run >= c.recover_after
                    else HealthState.DEGRADED
                )
            return self.state
        return HealthState.HEALTHY if self.healthy_run >= c.recover_after else self.state


class HealthMonitor:
    """Runs health checks and reports state changes through the mesh."""

    def __init__(
        self, *, clock: Clock, events: EventSink | None = None, sleep: Sleep = asyncio.sleep
    ) -> None:
        self._clock = clock
        self._events = events
        self._sleep = sleep
        self._checks: dict[str, _Tracker] = {}
        self.probe_errors = 0
        self.emit_failures = 0

    def add(self, check: HealthCheck) -> None:
        """Register a check (names are unique)."""
        if check.name in self._checks:
            raise MonitorError(f"health check {check.name!r} is already registered")
        self._checks[check.name] = _Tracker(check)

    def remove(self, name: str) -> None:
        """Forget a check."""
        if self._checks.pop(name, None) is None:
            raise MonitorError(f"no health check named {name!r}")

    def _tracker(self, name: str) -> _Tracker:
        tracker = self._checks.get(name)
        if tracker is None:
            raise MonitorError(f"no health check named {name!r}")
        return tracker

    def _tracker_for(self, name: str) -> _Tracker:
        """A check by name, else the first check of that resource."""
        tracker = self._checks.get(name)
        if tracker is None:
            tracker = next((t for t in self._checks.values() if t.check.target == name), None)
        if tracker is None:
            raise MonitorError(f"no health check named {name!r} or watching resource {name!r}")
        return tracker

    async def _sample(self, check: HealthCheck) -> ProbeResult:
        try:
            return await check.probe.probe()
        except Exception as e:  # noqa: BLE001 - a probe that raises is a critical sample
            self.probe_errors += 1
            return ProbeResult(
                level=HealthState.CRITICAL, latency_s=0.0, detail=f"probe raised {e!r}"[:300]
            )

    async def is_healthy(self, name: str) -> bool:
        """Probe check ``name`` (or the check of resource ``name``) once now; True if the
        sample is healthy. The judged state is not changed."""
        tracker = self._tracker_for(name)
        return (await self._sample(tracker.check)).level is HealthState.HEALTHY

    async def check(self, name: str) -> HealthStatus:
        """Probe ``name`` once, apply the hysteresis, report a transition."""
        tracker = self._tracker(name)
        async with tracker.lock:
            sample = await self._sample(tracker.check)
            tracker.samples += 1
            tracker.last = sample
            previous = tracker.state
            state = tracker.judge(sample.level)
            if state is not previous:
                tracker.state = state
                tracker.since = self._clock.now()
                tracker.transitions += 1
                await self._report(tracker.check, previous, state, sample)
            return self._status(tracker)

    async def check_all(self) -> list[HealthStatus]:
        """Run every check once, concurrently."""
        return list(await asyncio.gather(*(self.check(n) for n in list(self._checks))))

    async def run(self) -> None:
        """Run every check on its own interval until cancelled."""
        async with asyncio.TaskGroup() as group:
            for name in list(self._checks):
                group.create_task(self._loop(name), name=f"health-check:{name}")

    async def _loop(self, name: str) -> None:
        while name in self._checks:
            try:
                await self.check(name)
            except MonitorError:
                return  # removed meanwhile
            await self._sleep(self._checks[name].check.interval_s if name in self._checks else 0)

    def status(self, name: str) -> HealthStatus:
        """The state of one check."""
        return self._status(self._tracker(name))

    def statuses(self) -> list[HealthStatus]:
        """Every check's state, by name."""
        return [self._status(self._checks[n]) for n in sorted(self._checks)]

    @staticmethod
    def _status(t: _Tracker) -> HealthStatus:
        return HealthStatus(
            name=t.check.name,
            resource=t.check.target,
            state=t.state,
            since=t.since,
            last=t.last,
            samples=t.samples,
            transitions=t.transitions,
        )

    async def _report(
        self, check: HealthCheck, previous: HealthState, state: HealthState, sample: ProbeResult
    ) -> None:
        log.info("health_changed", check=check.name, previous=str(previous), state=str(state))
        facts = {
            "check": check.name,
            "resource": check.target,
            "status": str(state),
            "previous": str(previous),
            "detail": sample.detail,
            "latency_ms": round(sample.latency_s * 1000, 3),
        }
        worse = _RANK[state] > _RANK[previous]
        if state is HealthState.CRITICAL:
            await self._emit(CRITICAL_EVENT, check, facts)
        elif state is HealthState.DEGRADED:
            await self._emit(DEGRADED_EVENT, check, facts)
        if worse:
            critical = state is HealthState.CRITICAL
            await self._emit(
                ANOMALY_EVENT,
                check,
                {
                    "type": str(check.critical_type if critical else check.degraded_type),
                    "severity": str(
                        check.critical_severity if critical else check.degraded_severity
                    ),
                    "score": 1.0 if critical else 0.5,
                    **facts,
                },
            )
        await self._emit(HEALTH_CHECK_EVENT, check, facts)

    async def _emit(self, event_type: str, check: HealthCheck, payload: dict[str, Any]) -> None:
        if self._events is None:
            return
        try:
            result = await self._events.emit(event_type, payload, resource=check.target)
        except Exception as e:  # noqa: BLE001 - a monitor keeps monitoring when the mesh fails
            self.emit_failures += 1
            log.warning("health_emit_failed", event_type=event_type, error=repr(e))
            return
        if result is not None and not bool(result):
            self.emit_failures += 1
            log.warning("health_emit_blocked", event_type=event_type, result=repr(result)[:200])

    def get_stats(self) -> dict[str, Any]:
        """Checks by state, samples, probe errors, emit failures."""
        by_state = {str(s): 0 for s in HealthState}
        for t in self._checks.values():
            by_state[str(t.state)] += 1
        return {
            "checks": len(self._checks),
            "by_state": by_state,
            "samples": sum(t.samples for t in self._checks.values()),
            "probe_errors": self.probe_errors,
            "emit_failures": self.emit_failures,
        }


_RANK = {HealthState.HEALTHY: 0, HealthState.DEGRADED: 1, HealthState.CRITICAL: 2}
