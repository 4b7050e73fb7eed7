"""The NATS transport across a broker restart, on a nats-server this test starts itself.

The shared server (4222) is never touched: each test runs ``nats-server -js`` on a free
port with its own store directory, restarts it mid-stream with the same directory, and
stops it by PID. Only acknowledged emits count: an emit while the broker is down may fail
(or be stored and delivered anyway, which at-least-once allows).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from grace.mesh.config import load_mesh_config
from grace.mesh.event import TriggerEvent
from grace.mesh.mesh import MeshSettings, TriggerMesh
from grace.mesh.nats import NatsTransport
from grace.testing import FakeClock

pytestmark = pytest.mark.nats

NATS_SERVER = Path("/usr/sbin/nats-server")
KERNEL = "immune_kernel"
"""A subscriber group (``anomaly.detected``, published by health_monitor)."""
BEFORE, DURING, AFTER = 25, 3, 25
"""Acknowledged emits wanted before the restart, attempted while down, wanted after."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Broker:
    """A nats-server with JetStream owned by one test (started and stopped by PID)."""

    port: int
    store: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        """The client URL."""
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start the server on the same port and store directory, wait until it listens."""
        argv = [str(NATS_SERVER), "-js", "-sd", str(self.store), "-a", "127.0.0.1"]
        # Popen returns at once (no waiting on the child): fine in a coroutine.
        self.proc = subprocess.Popen(  # noqa: ASYNC220
            [*argv, "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"nats-server exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("nats-server did not listen within 10 s")
                await asyncio.sleep(0.05)

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop this server by its PID (SIGKILL: a crash) and reap it."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, sig)
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait)

    async def restart(self, sig: signal.Signals) -> None:
        """Stop (with ``sig``) and start again with the same store."""
        await self.stop(sig)
        await self.start()
        self.restarts += 1


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    """A private nats-server for this test."""
    if not await asyncio.to_thread(NATS_SERVER.exists):
        pytest.skip(f"{NATS_SERVER} is not installed")
    server = Broker(port=_free_port(), store=tmp_path / "jetstream")
    await server.start()
    try:
        yield server
    finally:
        await server.stop(signal.SIGKILL)


@dataclass
class Group:
    """What a subscriber group saw: every delivery, and the events it handled (by id)."""

    deliveries: Counter[str] = field(default_factory=Counter)
    handled: dict[str, str] = field(default_factory=dict)
    """event id -> the instance that handled it (a redelivered id is not handled again)."""

    def handler(self, instance: str) -> Callable[[TriggerEvent], Awaitable[None]]:
        """The handler of one instance of the group."""

        async def handle(event: TriggerEvent) -> None:
            self.deliveries[event.event_id] += 1
            self.handled.setdefault(event.event_id, instance)  # idempotent by event id

        return handle


async def _fully_trusted(component_id: str) -> float:
    return 1.0


def _mesh(broker: Broker, clock: FakeClock) -> TriggerMesh:
    transport = NatsTransport(
        broker.url,
        stream="GRACE_FAULTS",
        subject_prefix="gfault",
        ack_wait_s=5,
        fetch_timeout_s=0.25,
        connect_timeout_s=2,
        request_timeout_s=1.0,
    )
    mesh = TriggerMesh(
        load_mesh_config(),
        clock=clock,
        settings=MeshSettings(backoff_s=0, max_attempts=1, handler_timeout_s=5.0),
        transport=transport,
    )
    mesh.set_trust_scorer(_fully_trusted)
    return mesh


async def _eventually(predicate: Callable[[], bool], what: str, *, within: float) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {within} s")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["restart", "crash"])
async def test_broker_restart_mid_stream_loses_no_acknowledged_event(
    broker: Broker, clock: FakeClock, sig: signal.Signals
) -> None:
    """Events emitted before, during and after a broker restart: every acknowledged one is
    handled by the subscriber group, once per event id, across two instances."""
    group = Group()
    meshes = [_mesh(broker, clock), _mesh(broker, clock)]
    for n, mesh in enumerate(meshes):
        mesh.register_component_handler(KERNEL, group.handler(f"instance-{n}"))
        await mesh.start()
    monitor = meshes[0].publisher("health_monitor")
    acknowledged: list[str] = []
    refused: list[str] = []

    async def emit(n: int) -> None:
        result = await monitor.emit("anomaly.detected", {"n": n})
        (acknowledged if result.routed else refused).append(result.event.event_id)

    try:
        n = 0
        while len(acknowledged) < BEFORE:
            await emit(n := n + 1)
        await broker.stop(sig)
        for _ in range(DURING):  # the broker is down: each fails after request_timeout_s
            # (nats-py keeps it in its reconnect buffer: it may still be stored and delivered)
            await emit(n := n + 1)
        await broker.start()
        wanted = len(acknowledged) + AFTER
        async with asyncio.timeout(30):
            while len(acknowledged) < wanted:
                await emit(n := n + 1)

        await _eventually(
            lambda: set(acknowledged) <= set(group.handled),
            "every acknowledged event handled",
            within=30,
        )
    finally:
        for mesh in meshes:
            await mesh.stop()

    assert len(acknowledged) >= BEFORE + AFTER
    assert refused  # the outage was real: some emits were not acknowledged
    lost = set(acknowledged) - set(group.handled)
    assert not lost
    # At least once on the wire; the group's handling is once per event id.
    assert all(group.deliveries[e] >= 1 for e in acknowledged)
    assert len(group.handled) == len(set(group.handled))
    assert set(group.handled) <= set(acknowledged) | set(refused)
