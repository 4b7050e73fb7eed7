"""Monitors that feed the immune system: health probes and metric streams.

>>> # health = HealthMonitor(clock=clock, events=mesh.publisher("health_monitor"))
>>> # metrics = MetricsMonitor(clock=clock, events=mesh.publisher("metrics_monitor"),
>>> #                          detector_factory=lambda: create_detector("default"))
"""

from grace.monitoring.health import (
    CallableProbe,
    EventSink,
    HealthCheck,
    HealthMonitor,
    HealthState,
    HealthStatus,
    HttpProbe,
    Probe,
    ProbeResult,
    TcpProbe,
)
from grace.monitoring.metrics import (
    Detector,
    DetectorFactory,
    MetricsMonitor,
    MetricsSettings,
    Observation,
    SeriesRule,
    guess_anomaly_type,
)
from grace.monitoring.prometheus import PrometheusScraper, ScrapeResult, series_name

__all__ = [
    "CallableProbe",
    "Detector",
    "DetectorFactory",
    "EventSink",
    "HealthCheck",
    "HealthMonitor",
    "HealthState",
    "HealthStatus",
    "HttpProbe",
    "MetricsMonitor",
    "MetricsSettings",
    "Observation",
    "Probe",
    "ProbeResult",
    "PrometheusScraper",
    "ScrapeResult",
    "SeriesRule",
    "TcpProbe",
    "guess_anomaly_type",
    "series_name",
]
