"""The mesh pipeline: identity, trust, constitution, audit, priority, retries, back-pressure."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from grace.errors import EventError, MeshError
from grace.ledger import Ledger
from grace.mesh.bridge import EventBus
from grace.mesh.config import MeshConfig, load_mesh_config, parse_mesh_config
from grace.mesh.event import TriggerEvent
from grace.mesh.mesh import BlockReason, MeshSettings, TriggerMesh
from grace.testing import FakeClock

CONFIG = """
events:
  - event_type: job.done
    description: open to any component
    publishers: ["*"]
    subscribers: [worker]
  - event_type: job.secret
    description: only the vault may publish, trust 0.6, validated, audited
    publishers: [vault]
    subscribers: [group:ops]
    requires_constitutional_validation: true
    min_trust_score: 0.6
    audit: true
  - event_type: alarm.fire
    description: a priority alarm
    publishers: [sensor]
    subscribers: [worker]
  - event_type: component.error
    description: mesh alerts
    publishers: ["*"]
    subscribers: [ops_console]
routing_rules:
  priority_events: [alarm.fire]
  audit_events: []
  alert_events: [component.error]
subscriber_groups:
  ops: [worker, ops_console]
trust_requirements: {}
"""


def make_mesh(**settings: Any) -> TriggerMesh:
    """A mesh on the test config with no retry backoff."""
    defaults: dict[str, Any] = {"backoff_s": 0.0}
    return TriggerMesh(
        parse_mesh_config(CONFIG, source="test.yaml"),
        clock=FakeClock(),
        settings=MeshSettings(**(defaults | settings)),
    )


async def approve(event: TriggerEvent) -> bool:
    """A validator that approves everything."""
    return True


async def trusted(component: str) -> float:
    """A scorer that trusts everyone at 0.9."""
    return 0.9


class Recorder:
    """A handler that remembers what it got."""

    def __init__(self) -> None:
        self.events: list[TriggerEvent] = []
        self.got = asyncio.Event()

    async def __call__(self, event: TriggerEvent) -> None:
        self.events.append(event)
        self.got.set()


async def test_forged_source_is_replaced_by_the_publisher_identity() -> None:
    """An event claiming to come from the vault, emitted by another component, is blocked."""
    mesh = make_mesh()
    mesh.set_trust_scorer(trusted)
    mesh.set_governance_validator(approve)
    intruder = mesh.publisher("intruder")
    forged = intruder.event("job.secret", {"k": 1})
    forged = forged.with_source("vault")
    result = await intruder.emit(forged)
    assert not result.routed
    assert result.reason is BlockReason.UNLISTED_PUBLISHER
    assert result.event.source == "intruder"
    anonymous = await mesh.emit(forged)
    assert anonymous.reason is BlockReason.UNLISTED_PUBLISHER
    assert anonymous.event.source == "anonymous"
    assert mesh.get_stats()["events_blocked_by_reason"] == {"unlisted_publisher": 2}


async def test_publisher_identities_are_issued_once() -> None:
    """A second handle for an identity is refused, so none can be taken over."""
    mesh = make_mesh()
    mesh.publisher("vault")
    with pytest.raises(MeshError, match="already issued"):
        mesh.publisher("vault")
    with pytest.raises(MeshError, match="cannot be a publisher"):
        mesh.publisher("anonymous")


@pytest.mark.parametrize(
    ("score", "reason"),
    [(0.59, BlockReason.LOW_TRUST), (None, BlockReason.TRUST_UNAVAILABLE)],
)
async def test_low_or_missing_trust_blocks(score: float | None, reason: BlockReason) -> None:
    """Trust below the minimum, or no scorer at all, blocks the event (fail closed)."""
    mesh = make_mesh()
    mesh.set_governance_validator(approve)
    if score is not None:

        async def scorer(component: str) -> float:
            return score

        mesh.set_trust_scorer(scorer)
    result = await mesh.publisher("vault").emit("job.secret", {"k": 1})
    assert result.reason is reason


async def test_failing_or_slow_trust_scorer_blocks() -> None:
    """A scorer that raises or hangs is a denial, not an approval."""
    mesh = make_mesh(validation_timeout_s=0.05)
    mesh.set_governance_validator(approve)
    vault = mesh.publisher("vault")

    async def broken(component: str) -> float:
        raise RuntimeError("trust store down")

    mesh.set_trust_scorer(broken)
    assert (await vault.emit("job.secret")).reason is BlockReason.TRUST_UNAVAILABLE

    async def hanging(component: str) -> float:
        await asyncio.sleep(10)
        return 1.0

    mesh.set_trust_scorer(hanging)
    assert (await vault.emit("job.secret")).reason is BlockReason.TRUST_UNAVAILABLE


@pytest.mark.parametrize("verdict", ["refuse", "raise", "missing", "truthy"])
async def test_constitutional_validator_must_say_yes(verdict: str) -> None:
    """False, an exception, no validator or a non-True value all block the event."""
    mesh = make_mesh()
    mesh.set_trust_scorer(trusted)

    async def validator(event: TriggerEvent) -> Any:
        if verdict == "raise":
            raise RuntimeError("policy engine down")
        return False if verdict == "refuse" else "yes"

    if verdict != "missing":
        mesh.set_governance_validator(validator)
    result = await mesh.publisher("vault").emit("job.secret")
    expected = (
        BlockReason.CONSTITUTIONAL
        if verdict in ("refuse", "truthy")
        else BlockReason.VALIDATOR_UNAVAILABLE
    )
    assert result.reason is expected


async def test_blocked_events_are_never_delivered() -> None:
    """A handler never sees an event that was blocked."""
    mesh = make_mesh()
    seen = Recorder()
    mesh.register_component_handler("worker", seen)
    await mesh.start()
    await mesh.publisher("vault").emit("job.secret")  # no trust scorer: blocked
    await mesh.publisher("other").emit("job.done")
    await mesh.stop()
    assert [e.event_type for e in seen.events] == ["job.done"]


async def test_audit_events_and_refusals_land_in_the_ledger(tmp_path: Path) -> None:
    """Routed audit events and blocked events are recorded in the ledger."""
    async with await Ledger.open(tmp_path) as ledger:
        mesh = TriggerMesh(
            parse_mesh_config(CONFIG, source="test.yaml"), clock=FakeClock(), audit=ledger
        )
        mesh.set_trust_scorer(trusted)
        mesh.set_governance_validator(approve)
        await mesh.start()
        routed = await mesh.publisher("vault").emit("job.secret", {"k": 1}, resource="db")
        blocked = await mesh.publisher("thief").emit("job.secret", {"k": 2})
        await mesh.stop()
        assert routed.routed
        assert not blocked.routed
        page = await ledger.query(subsystem="mesh")
    records = [(e.actor, e.action, e.result, e.resource) for e in page.entries]
    assert records == [
        ("vault", "job.secret", "routed", "db"),
        ("thief", "job.secret", "blocked:unlisted_publisher", ""),
    ]
    assert page.entries[0].payload["event_id"] == routed.event.event_id


async def test_failing_audit_blocks_the_event() -> None:
    """An audit event whose ledger append fails is not routed."""

    class BrokenLedger:
        async def append(self, **kwargs: Any) -> Any:
            raise OSError("disk full")

    mesh = TriggerMesh(
        parse_mesh_config(CONFIG, source="test.yaml"), clock=FakeClock(), audit=BrokenLedger()
    )
    mesh.set_trust_scorer(trusted)
    mesh.set_governance_validator(approve)
    result = await mesh.publisher("vault").emit("job.secret")
    assert result.reason is BlockReason.AUDIT_FAILED


async def test_priority_events_overtake_a_full_normal_queue() -> None:
    """With the normal lane full, a priority event is still accepted and delivered first."""
    mesh = make_mesh(queue_capacity=5, workers=1)
    order: list[str] = []

    async def handler(event: TriggerEvent) -> None:
        order.append(event.event_type)

    mesh.register_component_handler("worker", handler)
    anyone = mesh.publisher("anyone")
    for _ in range(5):
        assert (await anyone.try_emit("job.done")).routed
    full = await anyone.try_emit("job.done")
    assert full.reason is BlockReason.QUEUE_FULL
    assert (await mesh.publisher("sensor").try_emit("alarm.fire")).routed
    await mesh.start()
    await mesh.stop()
    assert order == ["alarm.fire"] + ["job.done"] * 5


async def test_failing_handler_is_retried_then_dead_lettered_and_replayed() -> None:
    """A handler failing every attempt becomes a dead letter and an alert; replay redelivers."""
    mesh = make_mesh(max_attempts=3)
    attempts = 0
    healthy = False

    async def flaky(event: TriggerEvent) -> None:
        nonlocal attempts
        attempts += 1
        if not healthy:
            raise RuntimeError("database unavailable")

    alerts = Recorder()
    mesh.register_component_handler("worker", flaky)
    mesh.register_component_handler("ops_console", alerts)
    await mesh.start()
    await mesh.publisher("any").emit("job.done", {"n": 1})
    await asyncio.wait_for(alerts.got.wait(), 5)
    assert attempts == 3
    (letter,) = mesh.dead_letters.list(subscriber="worker")
    assert "database unavailable" in letter.error
    assert alerts.events[0].source == "mesh"
    assert alerts.events[0].payload["dead_letter"] == letter.id
    healthy = True
    assert await mesh.replay(letter.id)
    assert attempts == 4
    assert mesh.dead_letters.list(subscriber="worker") == []
    with pytest.raises(MeshError, match="no dead letter"):
        await mesh.replay(letter.id)
    await mesh.stop()


async def test_slow_handler_times_out() -> None:
    """A handler exceeding its timeout counts as a failure."""
    mesh = make_mesh(handler_timeout_s=0.05, max_attempts=1)

    async def slow(event: TriggerEvent) -> None:
        await asyncio.sleep(5)

    mesh.register_component_handler("worker", slow)
    await mesh.start()
    await mesh.publisher("any").emit("job.done")
    await mesh.stop()
    (letter,) = mesh.dead_letters.list()
    assert "timed out" in letter.error


async def test_back_pressure_keeps_memory_bounded_under_a_flood() -> None:
    """A flood of emitters waits for room: the queue never holds more than its capacity."""
    mesh = make_mesh(queue_capacity=50, workers=2)
    peak = 0
    delivered = 0

    async def handler(event: TriggerEvent) -> None:
        nonlocal peak, delivered
        peak = max(peak, mesh.get_stats()["queue_depth"])
        delivered += 1
        await asyncio.sleep(0)

    mesh.register_component_handler("worker", handler)
    await mesh.start()
    flood = mesh.publisher("flood")
    results = await asyncio.gather(*(flood.emit("job.done", {"i": i}) for i in range(2000)))
    await mesh.stop()
    assert all(r.routed for r in results)
    assert delivered == 2000
    assert peak <= 50


async def test_stop_drains_then_refuses() -> None:
    """stop() delivers what was queued; later emits are blocked as stopped."""
    mesh = make_mesh()
    seen = Recorder()
    mesh.register_component_handler("worker", seen)
    anyone = mesh.publisher("anyone")
    for i in range(10):
        await anyone.try_emit("job.done", {"i": i})
    await mesh.start()
    await mesh.stop()
    assert len(seen.events) == 10
    assert (await anyone.emit("job.done")).reason is BlockReason.STOPPED


async def test_pattern_subscriptions_follow_nats_semantics() -> None:
    """`job.*` sees job events, `>` sees all, and a cancelled subscription sees nothing more."""
    mesh = make_mesh()
    jobs, everything = Recorder(), Recorder()
    sub = mesh.subscribe("job.*", jobs)
    mesh.subscribe(">", everything)
    await mesh.start()
    await mesh.publisher("a").emit("job.done")
    await mesh.publisher("sensor").emit("alarm.fire")
    await mesh.stop()
    assert [e.event_type for e in jobs.events] == ["job.done"]
    assert sorted(e.event_type for e in everything.events) == ["alarm.fire", "job.done"]
    assert sub.cancel()
    assert not sub.cancel()


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"x": object()}, "payload is not JSON"),
        ({"x": "y" * 300_000}, "the limit is"),
    ],
)
async def test_bad_payloads_are_clear_errors_and_nothing_is_routed(
    payload: dict[str, Any], problem: str
) -> None:
    """A non-JSON or oversized payload raises EventError and routes nothing."""
    mesh = make_mesh()
    anyone = mesh.publisher("anyone")
    event = TriggerEvent.create("job.done", source="anyone", actor="anyone", clock=mesh.clock)
    bad = TriggerEvent.__new__(TriggerEvent)
    for field in TriggerEvent.__dataclass_fields__:
        object.__setattr__(bad, field, getattr(event, field))
    object.__setattr__(bad, "payload", payload)
    with pytest.raises(EventError, match=problem):
        await anyone.emit(bad)
    assert mesh.get_stats()["events_routed"] == 0


async def test_undeclared_event_type_is_an_error() -> None:
    """Emitting a type the config does not declare raises EventError naming it."""
    mesh = make_mesh()
    with pytest.raises(EventError, match=r"job\.unknown"):
        await mesh.publisher("x").emit("job.unknown")


async def test_legacy_event_bus_goes_through_the_mesh() -> None:
    """EventBus.publish/subscribe delegate to the mesh under the legacy_bus identity."""
    mesh = make_mesh()
    bus = EventBus(mesh)
    got: list[dict[str, Any]] = []

    async def handler(payload: Any) -> None:
        got.append(dict(payload))

    bus.subscribe("job.done", handler)
    await mesh.start()
    assert (await bus.publish("job.done", {"n": 7})).routed
    refused = await bus.publish("alarm.fire", {"n": 8})
    await mesh.stop()
    assert refused.reason is BlockReason.UNLISTED_PUBLISHER
    assert got == [
        {
            "n": 7,
            "_event_type": "job.done",
            "_source": "legacy_bus",
            "_event_id": got[0]["_event_id"],
        }
    ]
    bus.close()


def test_default_config_declares_every_event_type_grace_emits() -> None:
    """Every event type the code emits is declared in the shipped config."""
    import re

    config: MeshConfig = load_mesh_config()
    source_root = Path(__file__).resolve().parents[2] / "src" / "grace"
    emitted: set[str] = set()
    pattern = re.compile(r"^(?:ALERT_EVENT|[A-Z_]+_EVENT): Final = \"([a-z0-9_.]+)\"", re.M)
    call = re.compile(r"\.(?:emit|try_emit|event)\(\s*\"([a-z0-9_.]+)\"")
    for path in source_root.rglob("*.py"):
        text = path.read_text()
        emitted.update(pattern.findall(text))
        emitted.update(call.findall(text))
    assert emitted, "the scan found no emitted event types"
    missing = sorted(t for t in emitted if config.spec(t) is None)
    assert missing == []


async def test_prometheus_metrics_count_routed_blocked_and_dispatch() -> None:
    """Routed and blocked counters, dispatch latency and queue depth reach the registry."""
    from prometheus_client import CollectorRegistry

    from grace.mesh.metrics import MeshMetrics

    registry = CollectorRegistry()
    mesh = TriggerMesh(
        parse_mesh_config(CONFIG, source="test.yaml"),
        clock=FakeClock(),
        metrics=MeshMetrics(registry),
    )
    mesh.register_component_handler("worker", Recorder())
    await mesh.start()
    await mesh.publisher("a").emit("job.done")
    await mesh.publisher("b").emit("job.secret")
    await mesh.stop()
    sample = registry.get_sample_value
    assert sample("grace_mesh_events_routed_total", {"event_type": "job.done"}) == 1
    assert sample("grace_mesh_events_blocked_total", {"reason": "unlisted_publisher"}) == 1
    assert sample("grace_mesh_dispatch_seconds_count", {"outcome": "delivered"}) == 1
    assert sample("grace_mesh_queue_depth") == 0


async def test_load_config_replaces_routes_or_keeps_the_old_on_error(tmp_path: Path) -> None:
    """load_config swaps in a new file; a bad file raises and the old routes stay."""
    from grace.errors import MeshConfigError

    mesh = make_mesh()
    bad = tmp_path / "bad.yaml"
    bad.write_text("events: [\n")
    with pytest.raises(MeshConfigError, match=r"bad\.yaml"):
        mesh.load_config(bad)
    assert mesh.config.spec("job.done") is not None
    default = mesh.load_config()
    assert default.spec("job.done") is None
    assert default.spec("avn.healing_failed") is not None


async def test_broker_failure_blocks_instead_of_raising() -> None:
    """A transport that cannot take the event blocks it with transport_failed."""
    from grace.mesh.transport import MemoryTransport

    class Unreachable(MemoryTransport):
        async def send(self, event: TriggerEvent, *, priority: bool, wait: bool) -> bool:
            raise MeshError("nats://10.0.0.9:4222 did not acknowledge in 5 s")

    mesh = TriggerMesh(
        parse_mesh_config(CONFIG, source="test.yaml"), clock=FakeClock(), transport=Unreachable()
    )
    result = await mesh.publisher("a").emit("job.done")
    assert result.reason is BlockReason.TRANSPORT_FAILED
    assert "did not acknowledge" in result.detail


async def test_same_pattern_subscriptions_are_distinct() -> None:
    """Two subscriptions to one pattern have their own names; cancelling one keeps the other."""
    mesh = make_mesh()
    first, second = Recorder(), Recorder()
    a = mesh.subscribe("job.*", first)
    b = mesh.subscribe("job.*", second)
    assert a.target.name != b.target.name
    a.cancel()
    await mesh.start()
    await mesh.publisher("x").emit("job.done")
    await mesh.stop()
    assert (len(first.events), len(second.events)) == (0, 1)
