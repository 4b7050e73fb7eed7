"""Prometheus metrics of a mesh, registered in a registry the caller owns (never global)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["MeshMetrics"]


class MeshMetrics:
    """Routed/blocked counters, a dispatch latency histogram and the queue depth."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.routed = Counter(
            "grace_mesh_events_routed",
            "Events that passed validation and were handed to the transport.",
            ["event_type"],
            registry=registry,
        )
        self.blocked = Counter(
            "grace_mesh_events_blocked",
            "Events refused by the mesh, by reason.",
            ["reason"],
            registry=registry,
        )
        self.dispatch_seconds = Histogram(
            "grace_mesh_dispatch_seconds",
            "Time from emit to the end of a handler call.",
            ["outcome"],
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.dead_lettered = Counter(
            "grace_mesh_dead_letters",
            "Deliveries that failed every attempt.",
            registry=registry,
        )
        self.queue_depth = Gauge(
            "grace_mesh_queue_depth",
            "Events handed to the transport and not yet delivered on this instance.",
            registry=registry,
        )

    def watch_depth(self, depth: Callable[[], int]) -> None:
        """Read the queue depth at scrape time."""
        self.queue_depth.set_function(lambda: float(depth()))
