"""The NATS JetStream transport against the real server: shared consumers, redelivery,
dead letters, dedup and per-instance pattern subscriptions.

Every test gets its own stream (``GRACE_TEST_<uuid>``) and subject prefix, deleted at the
end, so runs never see each other's events on the shared server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.js.errors
import pytest
from nats.js.api import StreamConfig

from grace.errors import MeshError
from grace.mesh.config import load_mesh_config
from grace.mesh.event import TriggerEvent
from grace.mesh.mesh import MeshSettings, TriggerMesh
from grace.mesh.nats import NatsTransport
from grace.mesh.queue import QueueClosed
from grace.testing import FakeClock

pytestmark = pytest.mark.nats

KERNEL = "immune_kernel"
"""Subscribed (in the default config) to ``anomaly.detected``, published by health_monitor."""
ACK_WAIT_S = 10.0
"""Long enough that no test sees a redelivery it did not ask for, even on a loaded machine."""
SHORT_ACK_WAIT_S = 1.0
"""For the one test that waits for an ack_wait redelivery."""
FETCH_TIMEOUT_S = 0.25
SETTLE_S = 0.3
"""How long to keep watching for an unwanted extra delivery once the wanted ones arrived."""


@dataclass
class Deployment:
    """One test's stream and subject prefix on the shared server, and what runs on it."""

    servers: str
    stream: str
    prefix: str
    meshes: list[TriggerMesh] = field(default_factory=list)
    transports: list[NatsTransport] = field(default_factory=list)

    def transport(self, **overrides: Any) -> NatsTransport:
        """A transport on this deployment's stream with fast test timings."""
        options: dict[str, Any] = {
            "stream": self.stream,
            "subject_prefix": self.prefix,
            "ack_wait_s": ACK_WAIT_S,
            "fetch_timeout_s": FETCH_TIMEOUT_S,
            "connect_timeout_s": 2,
        }
        options.update(overrides)
        transport = NatsTransport(self.servers, **options)
        self.transports.append(transport)
        return transport

    def mesh(
        self, clock: FakeClock, *, handler_timeout_s: float = 5.0, **options: Any
    ) -> TriggerMesh:
        """A mesh instance on this deployment that trusts every publisher."""
        mesh = TriggerMesh(
            load_mesh_config(),
            clock=clock,
            settings=MeshSettings(backoff_s=0, max_attempts=1, handler_timeout_s=handler_timeout_s),
            transport=self.transport(**options),
        )
        mesh.set_trust_scorer(_fully_trusted)
        self.meshes.append(mesh)
        return mesh


async def _fully_trusted(component_id: str) -> float:
    return 1.0


async def _eventually(predicate: Callable[[], bool], *, within: float = 10.0) -> None:
    """Wait until ``predicate()`` holds (fail after ``within`` seconds)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within} s")
        await asyncio.sleep(0.02)


async def _stream_empties(deployment: Deployment, *, within: float = 5.0) -> None:
    """Wait until the stream holds no message: with interest retention, every message was
    settled for good (acknowledged or terminated) by every consumer that received it."""
    nc = await nats.connect(deployment.servers)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + within
        while (stored := (await js.stream_info(deployment.stream)).state.messages) > 0:
            if time.monotonic() > deadline:
                pytest.fail(f"{stored} message(s) still unsettled after {within} s")
            await asyncio.sleep(0.02)
    finally:
        await nc.close()


@pytest.fixture
async def deployment(nats_addr: tuple[str, int]) -> AsyncIterator[Deployment]:
    """A fresh stream name and subject prefix; stops what the test started, deletes the stream."""
    token = uuid.uuid4().hex
    host, port = nats_addr
    dep = Deployment(
        servers=f"nats://{host}:{port}", stream=f"GRACE_TEST_{token}", prefix=f"gtest{token}"
    )
    try:
        yield dep
    finally:
        for mesh in dep.meshes:
            await mesh.stop()
        for transport in dep.transports:
            await transport.stop()
        nc = await nats.connect(dep.servers)
        try:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await nc.jetstream().delete_stream(dep.stream)
        finally:
            await nc.close()


async def test_shared_subscriber_handles_each_event_once_across_two_instances(
    deployment: Deployment, clock: FakeClock
) -> None:
    """Two instances share the subscriber's durable consumer: each event is handled once."""
    handled: list[tuple[str, str]] = []

    def recorder(instance: str) -> Callable[[TriggerEvent], Any]:
        async def handle(event: TriggerEvent) -> None:
            handled.append((instance, event.event_id))

        return handle

    first, second = deployment.mesh(clock), deployment.mesh(clock)
    first.register_component_handler(KERNEL, recorder("first"))
    second.register_component_handler(KERNEL, recorder("second"))
    await first.start()
    await second.start()
    monitor = first.publisher("health_monitor")

    results = [await monitor.emit("anomaly.detected", {"n": i}) for i in range(40)]

    assert all(results)
    await _eventually(lambda: len(handled) >= len(results))
    await asyncio.sleep(SETTLE_S)
    assert Counter(event_id for _, event_id in handled) == Counter(
        r.event.event_id for r in results
    )
    assert first.dead_letters.list() == second.dead_letters.list() == []
    await _stream_empties(deployment)


async def test_handler_failing_once_gets_the_event_redelivered_without_dead_letter(
    deployment: Deployment, clock: FakeClock
) -> None:
    """A handler that fails the first delivery succeeds on the NAK-triggered redelivery."""
    calls: list[str] = []

    async def flaky(event: TriggerEvent) -> None:
        calls.append(event.event_id)
        if len(calls) == 1:
            raise RuntimeError("crashed mid-way")

    mesh = deployment.mesh(clock)
    mesh.register_component_handler(KERNEL, flaky)
    await mesh.start()

    result = await mesh.publisher("health_monitor").emit("anomaly.detected", {"cpu": 0.99})

    await _eventually(lambda: len(calls) >= 2)
    await asyncio.sleep(SETTLE_S)
    assert calls == [result.event.event_id] * 2
    assert mesh.dead_letters.list() == []
    assert mesh.transport.depth() == 0
    await _stream_empties(deployment)


async def test_handler_always_failing_is_dead_lettered_once_after_max_deliver(
    deployment: Deployment, clock: FakeClock
) -> None:
    """After ``max_deliver`` failed deliveries the event becomes exactly one dead letter."""
    calls: list[str] = []

    async def broken(event: TriggerEvent) -> None:
        if event.event_type == "anomaly.detected":  # the alert about it may pass
            calls.append(event.event_id)
            raise RuntimeError("always fails")

    mesh = deployment.mesh(clock, max_deliver=3)
    mesh.register_component_handler(KERNEL, broken)
    await mesh.start()

    result = await mesh.publisher("health_monitor").emit("anomaly.detected", {"disk": "full"})

    def letters() -> list[str]:
        return [
            letter.event.event_id
            for letter in mesh.dead_letters.list(subscriber=KERNEL, event_type="anomaly.detected")
        ]

    await _eventually(lambda: len(letters()) >= 1)
    await asyncio.sleep(SETTLE_S)
    assert letters() == [result.event.event_id]
    assert calls == [result.event.event_id] * 3
    await _stream_empties(deployment)  # acknowledged when final


async def test_duplicate_publish_of_one_event_id_is_delivered_once(
    deployment: Deployment, clock: FakeClock
) -> None:
    """Sending the same event twice through the transport delivers it once (Nats-Msg-Id dedup)."""
    handled: list[str] = []

    async def handle(event: TriggerEvent) -> None:
        handled.append(event.event_id)

    mesh = deployment.mesh(clock)
    mesh.register_component_handler(KERNEL, handle)
    await mesh.start()
    event = mesh.publisher("health_monitor").event("anomaly.detected", {"retry": True})

    first = await mesh.transport.send(event, priority=False, wait=True)
    again = await mesh.transport.send(event, priority=False, wait=False)

    assert first
    assert again
    await _eventually(lambda: len(handled) >= 1)
    await asyncio.sleep(SETTLE_S)
    assert handled == [event.event_id]


async def test_pattern_subscription_receives_matching_events_on_each_instance(
    deployment: Deployment, clock: FakeClock
) -> None:
    """A ``avn.>`` subscription is per instance: each instance gets every matching event once."""
    seen: dict[str, list[str]] = {"first": [], "second": []}

    def recorder(instance: str) -> Callable[[TriggerEvent], Any]:
        async def handle(event: TriggerEvent) -> None:
            seen[instance].append(event.event_type)

        return handle

    first, second = deployment.mesh(clock), deployment.mesh(clock)
    # Names with '.', '>', ':' and whitespace must still make valid consumer names.
    first.subscribe("avn.>", recorder("first"), name="ops watch: avn.>")
    second.subscribe("avn.>", recorder("second"))
    await first.start()
    await second.start()

    await first.publisher("health_monitor").emit("anomaly.detected", {"ignored": True})
    await first.publisher(KERNEL).emit("avn.anomaly_detected", {"case": 1})

    await _eventually(lambda: all(seen.values()))
    await asyncio.sleep(SETTLE_S)
    assert seen == {"first": ["avn.anomaly_detected"], "second": ["avn.anomaly_detected"]}


async def test_cancelled_pattern_subscription_deletes_its_instance_consumer(
    deployment: Deployment, clock: FakeClock
) -> None:
    """Unsubscribing stops the per-instance consumer and removes it from the server."""
    mesh = deployment.mesh(clock)

    async def ignore(event: TriggerEvent) -> None:
        return None

    subscription = mesh.subscribe("avn.*", ignore)
    await mesh.start()
    assert isinstance(mesh.transport, NatsTransport)
    instance = mesh.transport.instance_id
    nc = await nats.connect(deployment.servers)
    try:
        js = nc.jetstream()

        async def consumer_names() -> list[str]:
            return [info.name for info in await js.consumers_info(deployment.stream)]

        names = await consumer_names()
        assert len(names) == 1
        assert instance in names[0]

        assert subscription.cancel()

        # Polled by count: consumers_info trips over a consumer deleted while it lists them.
        for _ in range(200):
            if (await js.stream_info(deployment.stream)).state.consumer_count == 0:
                break
            await asyncio.sleep(0.02)
        assert await consumer_names() == []
    finally:
        await nc.close()


async def test_event_held_past_ack_wait_by_a_stuck_handler_is_redelivered(
    deployment: Deployment, clock: FakeClock
) -> None:
    """An event a hung (or crashed) handler never settles is delivered again after ack_wait."""
    release = asyncio.Event()
    handled: list[str] = []

    async def handle(event: TriggerEvent) -> None:
        if not handled:
            handled.append("stuck")
            await release.wait()  # hangs like a crashed instance: never settles in time
        else:
            handled.append("redelivered")

    first = deployment.mesh(clock, ack_wait_s=SHORT_ACK_WAIT_S)
    second = deployment.mesh(clock, ack_wait_s=SHORT_ACK_WAIT_S)
    first.register_component_handler(KERNEL, handle)
    second.register_component_handler(KERNEL, handle)
    await first.start()
    await second.start()

    await first.publisher("health_monitor").emit("anomaly.detected", {"hang": True})

    await _eventually(lambda: handled == ["stuck"])
    assert first.transport.depth() + second.transport.depth() == 1
    await _eventually(lambda: handled == ["stuck", "redelivered"], within=5 * SHORT_ACK_WAIT_S)
    release.set()


async def test_stop_finishes_the_event_in_hand_and_acknowledges_it(
    deployment: Deployment, clock: FakeClock
) -> None:
    """Stopping waits for a running handler, then acknowledges its event before closing."""
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    async def slow(event: TriggerEvent) -> None:
        started.set()
        await release.wait()
        finished.append(event.event_id)

    mesh = deployment.mesh(clock)
    mesh.register_component_handler(KERNEL, slow)
    await mesh.start()
    result = await mesh.publisher("health_monitor").emit("anomaly.detected", {"slow": True})
    await asyncio.wait_for(started.wait(), 5)

    stopping = asyncio.create_task(mesh.stop())
    await asyncio.sleep(SETTLE_S)
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, 5)

    assert finished == [result.event.event_id]
    assert mesh.transport.depth() == 0
    await _stream_empties(deployment)


async def test_undecodable_message_is_terminated_and_later_events_still_flow(
    deployment: Deployment, clock: FakeClock
) -> None:
    """A message that is not a CloudEvent is dropped for good; the next event is delivered."""
    handled: list[str] = []

    async def handle(event: TriggerEvent) -> None:
        handled.append(event.event_id)

    mesh = deployment.mesh(clock)
    mesh.register_component_handler(KERNEL, handle)
    await mesh.start()
    nc = await nats.connect(deployment.servers)
    try:
        await nc.jetstream().publish(f"{deployment.prefix}.anomaly.detected", b"not json")
    finally:
        await nc.close()

    result = await mesh.publisher("health_monitor").emit("anomaly.detected", {"after": "junk"})

    await _eventually(lambda: len(handled) >= 1)
    await asyncio.sleep(SETTLE_S)
    assert handled == [result.event.event_id]
    assert mesh.transport.depth() == 0
    await _stream_empties(deployment)  # the junk was terminated, not left to expire


async def test_send_after_stop_raises_queue_closed(deployment: Deployment) -> None:
    """A stopped transport refuses new events with QueueClosed (the mesh reports ``stopped``)."""
    transport = deployment.transport()

    async def deliver(event: TriggerEvent, subscriber: str | None, final: bool) -> bool:
        return True

    await transport.start(deliver)
    await transport.stop()
    event = TriggerEvent.create("anomaly.detected", source="x", actor="x", clock=FakeClock())

    with pytest.raises(QueueClosed):
        await transport.send(event, priority=False, wait=True)


async def test_existing_stream_with_other_subjects_is_refused_by_name(
    deployment: Deployment,
) -> None:
    """Starting on a stream that holds other subjects raises MeshError naming the stream."""
    nc = await nats.connect(deployment.servers)
    try:
        await nc.jetstream().add_stream(
            StreamConfig(name=deployment.stream, subjects=[f"{deployment.prefix}other.>"])
        )
    finally:
        await nc.close()
    transport = deployment.transport()

    async def deliver(event: TriggerEvent, subscriber: str | None, final: bool) -> bool:
        return True

    with pytest.raises(MeshError, match=deployment.stream):
        await transport.start(deliver)


async def test_unreachable_server_is_a_mesh_error_naming_it(deployment: Deployment) -> None:
    """A server that refuses connections fails start with MeshError naming the server."""
    transport = NatsTransport("nats://127.0.0.1:1", stream=deployment.stream, connect_timeout_s=0.5)

    async def deliver(event: TriggerEvent, subscriber: str | None, final: bool) -> bool:
        return True

    with pytest.raises(MeshError, match=r"nats://127\.0\.0\.1:1"):
        await transport.start(deliver)


async def test_send_without_puback_fails_with_mesh_error_after_request_timeout(
    deployment: Deployment, clock: FakeClock
) -> None:
    """A publish nobody acknowledges (the stream moved away, a mute listener took the
    subject) raises MeshError once ``request_timeout_s`` has passed."""
    transport = deployment.transport(request_timeout_s=0.3)

    async def deliver(event: TriggerEvent, subscriber: str | None, final: bool) -> bool:
        return True

    await transport.start(deliver)
    nc = await nats.connect(deployment.servers)
    try:
        js = nc.jetstream()
        config = (await js.stream_info(deployment.stream)).config
        moved = dataclasses.replace(config, subjects=[f"{deployment.prefix}moved.>"])
        await js.update_stream(moved)  # the stream no longer answers for the subject...
        await nc.subscribe(f"{deployment.prefix}.>")  # ...and this listener never replies
        await nc.flush()
        event = TriggerEvent.create("anomaly.detected", source="x", actor="x", clock=clock)
        started = time.monotonic()

        with pytest.raises(MeshError, match="PubAck"):
            async with asyncio.timeout(5):  # a TimeoutError here: the send waited forever
                await transport.send(event, priority=False, wait=True)

        assert 0.3 <= time.monotonic() - started < 2.0
    finally:
        await nc.close()
