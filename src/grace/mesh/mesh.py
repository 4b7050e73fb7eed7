"""The trigger mesh: validated, identity-bound, prioritised event routing.

``emit`` runs one pipeline for every event, in this order, and stops at the first "no":

1. the event type is declared in the routing config, its payload is a JSON object within
   the size limit (else :class:`~grace.errors.EventError`: bad input, nothing routed);
2. the publisher — the identity bound to the :class:`Publisher` handle, never the
   event's self-declared ``source`` — is listed for the event type;
3. its trust score meets the event's minimum (scorer missing, failing or slow ⇒ blocked);
4. the constitutional validator approves, when the event requires it (validator missing,
   failing or slow ⇒ blocked);
5. audit events are appended to the ledger (append failing ⇒ blocked: an audit event is
   never routed unrecorded);
6. the event is queued: priority events in their own lane, which overtakes.

A blocked event is a return value (:class:`EmitResult`), counted by reason, audited when
an audit sink is set, and never delivered. Workers take events off the queue and call every
matching handler concurrently, each with a timeout and bounded retries with backoff; a
delivery that fails every attempt becomes a dead letter and raises an alert event, which
goes through this same pipeline as the mesh's own publisher identity.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import orjson
import structlog

from grace.errors import EventError, MeshError
from grace.ledger.audit import AuditSink
from grace.mesh._eager import call_with_timeout, run_now
from grace.mesh.config import MeshConfig, load_mesh_config
from grace.mesh.deadletter import DeadLetter, DeadLetterStore
from grace.mesh.event import EventPriority, TriggerEvent
from grace.mesh.metrics import MeshMetrics
from grace.mesh.patterns import SubjectTrie, validate_pattern
from grace.mesh.queue import QueueClosed
from grace.mesh.transport import MemoryTransport, Transport
from grace.types import Clock

__all__ = [
    "ANONYMOUS",
    "MESH_COMPONENT",
    "BlockReason",
    "EmitResult",
    "GovernanceValidator",
    "Handler",
    "MeshSettings",
    "Publisher",
    "PublisherHold",
    "Subscription",
    "TriggerMesh",
    "TrustScorer",
]

log = structlog.get_logger(__name__)

Handler = Callable[[TriggerEvent], Awaitable[None]]
TrustScorer = Callable[[str], Awaitable[float]]
"""``await scorer(component_id)`` → trust in [0, 1]."""
GovernanceValidator = Callable[[TriggerEvent], Awaitable[bool]]
"""``await validator(event)`` → True when the event is constitutionally acceptable."""
PublisherHold = Callable[[str], str | None]
"""``hold(publisher)`` → why its events are held now (quarantine, open breaker), or None."""

ANONYMOUS: Final = "anonymous"
"""The source given to events emitted without a publisher handle."""
MESH_COMPONENT: Final = "mesh"
"""The mesh's own publisher identity (alert events)."""
ALERT_EVENT: Final = "component.error"


class BlockReason(StrEnum):
    """Why an event was not routed."""

    UNLISTED_PUBLISHER = "unlisted_publisher"
    LOW_TRUST = "low_trust"
    TRUST_UNAVAILABLE = "trust_unavailable"
    CONSTITUTIONAL = "constitutional"
    VALIDATOR_UNAVAILABLE = "validator_unavailable"
    AUDIT_FAILED = "audit_failed"
    QUEUE_FULL = "queue_full"
    STOPPED = "stopped"
    TRANSPORT_FAILED = "transport_failed"
    """The broker did not take the event (unreachable, no acknowledgement in time)."""
    PUBLISHER_HELD = "publisher_held"
    """The publisher is quarantined or behind an open circuit breaker (immune controls)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EmitResult:
    """What happened to an emitted event."""

    event: TriggerEvent
    routed: bool
    reason: BlockReason | None = None
    detail: str = ""

    def __bool__(self) -> bool:
        return self.routed


@dataclass(frozen=True, slots=True, kw_only=True)
class MeshSettings:
    """Limits and timings of a mesh (built from ``GraceSettings`` at boot)."""

    queue_capacity: int = 10_000
    workers: int = 4
    handler_timeout_s: float = 5.0
    max_attempts: int = 3
    backoff_s: float = 0.05
    validation_timeout_s: float = 2.0
    max_payload_bytes: int = 256 * 1024
    dead_letter_capacity: int = 10_000

    def __post_init__(self) -> None:
        for name in ("queue_capacity", "workers", "max_attempts", "max_payload_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"mesh {name} must be at least 1")
        for name in ("handler_timeout_s", "validation_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"mesh {name} must be positive")
        if self.backoff_s < 0:
            raise ValueError("mesh backoff_s must be >= 0")


@dataclass(frozen=True, slots=True)
class _Target:
    name: str
    handler: Handler


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything ``emit`` and dispatch need about one event type, looked up once."""

    publishers: frozenset[str] | None
    """Who may publish; None: any identity (``"*"``)."""
    min_trust: float
    validate: bool
    audit: bool
    priority: bool
    targets: tuple[_Target, ...]


class Subscription:
    """A pattern subscription; :meth:`cancel` stops deliveries."""

    __slots__ = ("_mesh", "pattern", "target")

    def __init__(self, mesh: TriggerMesh, pattern: str, target: _Target) -> None:
        self._mesh = mesh
        self.pattern = pattern
        self.target = target

    def cancel(self) -> bool:
        """Unsubscribe; False if already cancelled."""
        return self._mesh._unsubscribe(self)


class Publisher:
    """An emitting handle bound to one registered component identity.

    Every event it emits carries ``source = component_id``, whatever the caller passes.
    """

    __slots__ = ("_mesh", "component_id")

    def __init__(self, mesh: TriggerMesh, component_id: str) -> None:
        self._mesh = mesh
        self.component_id = component_id

    def event(
        self,
        event_type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        actor: str | None = None,
        resource: str = "",
        priority: EventPriority = EventPriority.NORMAL,
        requires_validation: bool = False,
        caused_by: TriggerEvent | None = None,
    ) -> TriggerEvent:
        """Build an event from this component (not yet emitted)."""
        payload = dict(payload or {})
        if caused_by is not None:
            return caused_by.child(
                event_type, source=self.component_id, payload=payload, clock=self._mesh.clock
            )
        return TriggerEvent.create(
            event_type,
            source=self.component_id,
            actor=actor or self.component_id,
            resource=resource,
            payload=payload,
            priority=priority,
            requires_validation=requires_validation,
            clock=self._mesh.clock,
        )

    async def emit(
        self, event_or_type: TriggerEvent | str, payload: Mapping[str, Any] | None = None, **kw: Any
    ) -> EmitResult:
        """Validate and route an event (waits when the queue is full)."""
        event = (
            self.event(event_or_type, payload, **kw)
            if isinstance(event_or_type, str)
            else event_or_type
        )
        return await self._mesh._emit(event, self.component_id, wait=True)

    async def try_emit(
        self, event_or_type: TriggerEvent | str, payload: Mapping[str, Any] | None = None, **kw: Any
    ) -> EmitResult:
        """Like :meth:`emit`, but a full queue blocks the event (reason ``queue_full``)."""
        event = (
            self.event(event_or_type, payload, **kw)
            if isinstance(event_or_type, str)
            else event_or_type
        )
        return await self._mesh._emit(event, self.component_id, wait=False)


class TriggerMesh:
    """Routes events between Grace's components (in-memory transport)."""

    def __init__(
        self,
        config: MeshConfig,
        *,
        clock: Clock,
        settings: MeshSettings | None = None,
        audit: AuditSink | None = None,
        transport: Transport | None = None,
        metrics: MeshMetrics | None = None,
    ) -> None:
        self.clock = clock
        self.settings = settings or MeshSettings()
        self.transport: Transport = transport or MemoryTransport(
            capacity=self.settings.queue_capacity, workers=self.settings.workers
        )
        self._config = config
        self._audit = audit
        self._metrics = metrics
        if metrics is not None:
            metrics.watch_depth(self.transport.depth)
        self._trust: TrustScorer | None = None
        self._validator: GovernanceValidator | None = None
        self._hold: PublisherHold | None = None
        self._publishers: dict[str, Publisher] = {}
        self._components: dict[str, list[Handler]] = {}
        self._patterns: SubjectTrie[_Target] = SubjectTrie()
        self._subscriptions: set[Subscription] = set()
        self._subscription_count = 0
        self._plans: dict[str, _Plan] = {}
        self.dead_letters = DeadLetterStore(self.settings.dead_letter_capacity)
        self._inflight: set[asyncio.Task[None]] = set()
        self._started = False
        self._stopping = False
        self._routed = 0
        self._validated = 0
        self._delivered = 0
        self._blocked_counts: Counter[str] = Counter()
        self._mesh_publisher = self.publisher(MESH_COMPONENT)

    # -- configuration -------------------------------------------------------------------

    @property
    def config(self) -> MeshConfig:
        """The routing configuration in force."""
        return self._config

    @property
    def running(self) -> bool:
        """Started and not stopping."""
        return self._started and not self._stopping

    def load_config(self, config: MeshConfig | Path | None = None) -> MeshConfig:
        """Replace the routing configuration: a parsed config, a YAML file, or (None) the
        packaged default. Routes are recomputed; a bad file raises MeshConfigError and
        leaves the current configuration in force."""
        if not isinstance(config, MeshConfig):
            config = load_mesh_config(config)
        self._config = config
        self._plans.clear()
        return config

    def set_trust_scorer(self, scorer: TrustScorer | None) -> None:
        """Where publisher trust comes from; without one, trust-gated events are blocked."""
        self._trust = scorer

    def set_publisher_hold(self, hold: PublisherHold | None) -> None:
        """A synchronous check run on every emit: a publisher it names is blocked."""
        self._hold = hold

    def set_governance_validator(self, validator: GovernanceValidator | None) -> None:
        """The constitutional check; without one, events that need it are blocked."""
        self._validator = validator

    def publisher(self, component_id: str) -> Publisher:
        """Issue the emitting handle for a component identity (once per identity).

        Handles are capabilities: the composition root hands each component its own, and a
        second request for the same identity is refused so no one can take over another's.
        """
        if not component_id or component_id == ANONYMOUS:
            raise MeshError(f"{component_id!r} cannot be a publisher identity")
        if component_id in self._publishers:
            raise MeshError(f"publisher identity {component_id!r} was already issued")
        handle = Publisher(self, component_id)
        self._publishers[component_id] = handle
        return handle

    def register_component_handler(self, component_id: str, handler: Handler) -> None:
        """Deliver to ``handler`` every event whose config lists ``component_id`` (or its
        subscriber group) as a subscriber."""
        first = component_id not in self._components
        self._components.setdefault(component_id, []).append(handler)
        self._plans.clear()
        if first:
            subjects = self._config.subscriptions_of(component_id)
            self._attach_later(component_id, subjects, shared=True)

    def subscribe(self, pattern: str, handler: Handler, *, name: str | None = None) -> Subscription:
        """Deliver every routed event whose type matches ``pattern`` (``*`` one token,
        ``>`` the rest) to ``handler``."""
        validate_pattern(pattern)
        self._subscription_count += 1
        target = _Target(name or f"subscription:{pattern}#{self._subscription_count}", handler)
        sub = Subscription(self, pattern, target)
        self._patterns.add(pattern, target)
        self._subscriptions.add(sub)
        self._plans.clear()
        self._attach_later(target.name, (pattern,), shared=False)
        return sub

    def _unsubscribe(self, sub: Subscription) -> bool:
        if sub not in self._subscriptions:
            return False
        self._subscriptions.discard(sub)
        self._patterns.remove(sub.pattern, sub.target)
        self._plans.clear()
        if self._started:
            self._spawn(self.transport.detach(sub.target.name))
        return True

    def _plan(self, event_type: str) -> _Plan | None:
        """The cached plan of a declared event type (None if undeclared)."""
        plan = self._plans.get(event_type)
        if plan is not None:
            return plan
        config = self._config
        spec = config.spec(event_type)
        if spec is None:
            return None
        targets: list[_Target] = []
        for component in config.subscribers_of(event_type):
            targets.extend(_Target(component, h) for h in self._components.get(component, ()))
        targets.extend(self._patterns.match(event_type))
        plan = _Plan(
            publishers=None if spec.any_publisher else frozenset(spec.publishers),
            min_trust=config.min_trust(event_type),
            validate=spec.requires_constitutional_validation,
            audit=config.is_audit(event_type),
            priority=config.is_priority(event_type),
            targets=tuple(targets),
        )
        self._plans[event_type] = plan
        return plan

    def _targets(self, event_type: str) -> tuple[_Target, ...]:
        plan = self._plan(event_type)
        return plan.targets if plan is not None else tuple(self._patterns.match(event_type))

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the transport and its consumers for every local subscriber."""
        if self._started:
            return
        self._started = True
        self._stopping = False
        await self.transport.start(self._deliver)
        for name, subjects, shared in self._local_subscribers():
            await self.transport.attach(name, subjects, shared=shared)

    async def stop(self) -> None:
        """Stop accepting events, deliver everything handed over, then stop."""
        self._stopping = True
        await self.transport.stop()
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)
        self._started = False

    def _local_subscribers(self) -> list[tuple[str, tuple[str, ...], bool]]:
        """``(name, subjects, shared)`` of every subscriber with a handler here."""
        out: list[tuple[str, tuple[str, ...], bool]] = []
        for component in self._components:
            subjects = self._config.subscriptions_of(component)
            if subjects:
                out.append((component, subjects, True))
        out.extend((sub.target.name, (sub.pattern,), False) for sub in self._subscriptions)
        return out

    def _attach_later(self, name: str, subjects: tuple[str, ...], *, shared: bool) -> None:
        if self._started and subjects:
            self._spawn(self.transport.attach(name, subjects, shared=shared))

    # -- emitting ------------------------------------------------------------------------

    async def emit(self, event: TriggerEvent) -> EmitResult:
        """The seed's ``emit`` for callers without a publisher handle.

        Such an event has no verified identity: its ``source`` becomes ``anonymous``, so
        only event types open to any publisher get through.
        """
        return await self._emit(event, ANONYMOUS, wait=True)

    async def publish(
        self, event_type: str, payload: Mapping[str, Any] | None = None, *, actor: str = ANONYMOUS
    ) -> EmitResult:
        """The seed's ``publish(event_type, payload)`` — anonymous, like :meth:`emit`."""
        event = TriggerEvent.create(
            event_type, source=ANONYMOUS, actor=actor, payload=dict(payload or {}), clock=self.clock
        )
        return await self._emit(event, ANONYMOUS, wait=True)

    def _check_payload(self, event: TriggerEvent) -> None:
        try:
            size = len(orjson.dumps(event.payload))
        except (orjson.JSONEncodeError, TypeError) as e:
            raise EventError(f"event {event.event_type!r}: payload is not JSON: {e}") from e
        if size > self.settings.max_payload_bytes:
            raise EventError(
                f"event {event.event_type!r}: payload is {size} bytes; the limit is "
                f"{self.settings.max_payload_bytes}"
            )

    async def _emit(self, event: TriggerEvent, publisher: str, *, wait: bool) -> EmitResult:
        plan = self._plan(event.event_type)
        if plan is None:
            raise EventError(f"event type {event.event_type!r} is not declared in the mesh config")
        self._check_payload(event)
        if event.source != publisher:
            event = event.with_source(publisher)
        if self._stopping:
            return self._block(event, BlockReason.STOPPED, "the mesh is stopping")
        if plan.publishers is not None and publisher not in plan.publishers:
            return await self._blocked(
                event,
                BlockReason.UNLISTED_PUBLISHER,
                f"{publisher!r} is not a listed publisher of {event.event_type!r}",
            )
        if self._hold is not None:
            held = self._hold(publisher)
            if held is not None:
                return await self._blocked(event, BlockReason.PUBLISHER_HELD, held)
        if plan.min_trust > 0:
            verdict = await self._check_trust(event, publisher, plan.min_trust)
            if verdict is not None:
                return verdict
        if plan.validate or event.requires_validation:
            verdict = await self._check_constitution(event)
            if verdict is not None:
                return verdict
        if plan.audit and self._audit is not None:
            try:
                await self._audit.append(
                    subsystem="mesh",
                    actor=publisher,
                    action=event.event_type,
                    resource=event.resource,
                    result="routed",
                    payload={
                        "event_id": event.event_id,
                        "actor": event.actor,
                        "data": event.payload,
                    },
                )
            except Exception as e:  # noqa: BLE001 - any failure to record blocks the event
                return self._block(event, BlockReason.AUDIT_FAILED, f"ledger append failed: {e}")
        priority = plan.priority or event.priority != EventPriority.NORMAL
        try:
            sent = await self.transport.send(event, priority=priority, wait=wait)
        except QueueClosed:
            return self._block(event, BlockReason.STOPPED, "the mesh is stopping")
        except MeshError as e:
            return self._block(event, BlockReason.TRANSPORT_FAILED, str(e))
        if not sent:
            return self._block(event, BlockReason.QUEUE_FULL, "the event queue is full")
        self._routed += 1
        if self._metrics is not None:
            self._metrics.routed.labels(event.event_type).inc()
        return EmitResult(event=event, routed=True)

    async def _check_trust(
        self, event: TriggerEvent, publisher: str, minimum: float
    ) -> EmitResult | None:
        scorer = self._trust
        if scorer is None:
            return await self._blocked(
                event, BlockReason.TRUST_UNAVAILABLE, "no trust scorer is set (fail closed)"
            )
        try:
            score = float(
                await call_with_timeout(scorer(publisher), self.settings.validation_timeout_s)
            )
        except Exception as e:  # noqa: BLE001 - any failure to score is a denial
            return await self._blocked(
                event, BlockReason.TRUST_UNAVAILABLE, f"trust scorer failed: {e!r}"
            )
        if not 0.0 <= score <= 1.0 or score < minimum:
            return await self._blocked(
                event,
                BlockReason.LOW_TRUST,
                f"trust {score:.3f} of {publisher!r} is below {minimum:.3f}",
            )
        return None

    async def _check_constitution(self, event: TriggerEvent) -> EmitResult | None:
        validator = self._validator
        if validator is None:
            return await self._blocked(
                event, BlockReason.VALIDATOR_UNAVAILABLE, "no constitutional validator is set"
            )
        try:
            approved = await call_with_timeout(validator(event), self.settings.validation_timeout_s)
        except Exception as e:  # noqa: BLE001 - any failure to validate is a denial
            return await self._blocked(
                event, BlockReason.VALIDATOR_UNAVAILABLE, f"validator failed: {e!r}"
            )
        self._validated += 1
        if approved is not True:
            return await self._blocked(
                event, BlockReason.CONSTITUTIONAL, "the constitutional validator refused it"
            )
        return None

    def _block(self, event: TriggerEvent, reason: BlockReason, detail: str) -> EmitResult:
        self._blocked_counts[reason] += 1
        if self._metrics is not None:
            self._metrics.blocked.labels(str(reason)).inc()
        log.info(
            "mesh_event_blocked",
            event_type=event.event_type,
            source=event.source,
            reason=str(reason),
            detail=detail,
        )
        return EmitResult(event=event, routed=False, reason=reason, detail=detail)

    async def _blocked(self, event: TriggerEvent, reason: BlockReason, detail: str) -> EmitResult:
        """Block, and record the refusal in the ledger when there is one."""
        result = self._block(event, reason, detail)
        if self._audit is not None:
            with contextlib.suppress(Exception):  # the event is blocked either way
                await self._audit.append(
                    subsystem="mesh",
                    actor=event.source,
                    action=event.event_type,
                    resource=event.resource,
                    result=f"blocked:{reason}",
                    payload={"event_id": event.event_id, "detail": detail},
                )
        return result

    # -- dispatching ---------------------------------------------------------------------

    async def _deliver(self, event: TriggerEvent, subscriber: str | None, final: bool) -> bool:
        """The transport's callback: run the local handlers; True if all succeeded.

        Each handler's first attempt runs eagerly; only handlers that wait, or fail and
        must be retried, continue as tasks.
        """
        targets: Sequence[_Target] = self._targets(event.event_type)
        if subscriber is not None:
            targets = [t for t in targets if t.name == subscriber]
        slow: list[Awaitable[bool]] = []
        for target in targets:
            try:
                done, rest = run_now(target.handler(event))
            except Exception as e:  # noqa: BLE001 - failed at once: retry, then dead-letter
                slow.append(self._deliver_one(event, target, final, first_error=repr(e)))
                continue
            if done:
                self._delivered += 1
                self._observe(event, "delivered")
            else:
                slow.append(self._deliver_one(event, target, final, started=rest))
        if not slow:
            return True
        if len(slow) == 1:
            return await slow[0]
        return all(await asyncio.gather(*slow))

    async def _deliver_one(
        self,
        event: TriggerEvent,
        target: _Target,
        final: bool = True,
        *,
        started: Awaitable[Any] | None = None,
        first_error: str | None = None,
    ) -> bool:
        """Deliver with a timeout per attempt and bounded retries; dead-letter when final.

        ``started``: the rest of a first attempt already under way; ``first_error``: the
        first attempt already failed with this.
        """
        settings = self.settings
        error = first_error or ""
        for attempt in range(1, settings.max_attempts + 1):
            if attempt == 1 and first_error is not None:
                pass
            else:
                try:
                    if attempt == 1 and started is not None:
                        async with asyncio.timeout(settings.handler_timeout_s):
                            await started
                    else:
                        await call_with_timeout(target.handler(event), settings.handler_timeout_s)
                except TimeoutError:
                    error = f"timed out after {settings.handler_timeout_s} s"
                except Exception as e:  # noqa: BLE001 - retried, then dead-lettered
                    error = repr(e)
                else:
                    self._delivered += 1
                    self._observe(event, "delivered")
                    return True
            if attempt < settings.max_attempts and settings.backoff_s:
                await asyncio.sleep(settings.backoff_s * 2 ** (attempt - 1))
        self._observe(event, "failed")
        if not final:  # the transport will deliver it again
            return False
        if self._metrics is not None:
            self._metrics.dead_lettered.inc()
        letter = self.dead_letters.add(
            event,
            subscriber=target.name,
            error=error,
            attempts=settings.max_attempts,
            failed_at=self.clock.now(),
        )
        log.warning(
            "mesh_dead_letter",
            event_type=event.event_type,
            subscriber=target.name,
            error=error,
            dead_letter=letter.id,
        )
        if event.event_type != ALERT_EVENT and self._plan(ALERT_EVENT) is not None:
            self._spawn(self._alert(letter))
        return False

    def _observe(self, event: TriggerEvent, outcome: str) -> None:
        if self._metrics is not None:
            elapsed = (self.clock.now() - event.timestamp).total_seconds()
            self._metrics.dispatch_seconds.labels(outcome).observe(max(elapsed, 0.0))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._inflight.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[Any]) -> None:
        """Forget a background task; a failure (e.g. a consumer not attached) is logged."""
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "mesh_background_task_failed", task=task.get_name(), error=repr(task.exception())
            )

    async def _alert(self, letter: DeadLetter) -> None:
        """Raise the failure as an event — validated like any other."""
        if self._stopping:
            return
        await self._mesh_publisher.try_emit(
            ALERT_EVENT,
            {
                "dead_letter": letter.id,
                "subscriber": letter.subscriber,
                "event_type": letter.event.event_type,
                "event_id": letter.event.event_id,
                "error": letter.error,
            },
            resource=letter.subscriber,
        )

    async def replay(self, letter_id: int) -> bool:
        """Deliver a dead letter again to its subscriber; True if it succeeded now.

        A replay that fails again becomes a new dead letter.
        """
        letter = self.dead_letters.take(letter_id)
        if letter is None:
            raise MeshError(f"no dead letter {letter_id}")
        targets = [t for t in self._targets(letter.event.event_type) if t.name == letter.subscriber]
        if not targets:
            self.dead_letters.add(
                letter.event,
                subscriber=letter.subscriber,
                error="subscriber is gone",
                attempts=letter.attempts,
                failed_at=self.clock.now(),
            )
            return False
        results = await asyncio.gather(*(self._deliver_one(letter.event, t) for t in targets))
        return all(results)

    # -- reporting -----------------------------------------------------------------------

    def get_stats(self) -> dict[str, Any]:
        """The seed's stats keys plus delivery and queue figures."""
        return {
            "events_routed": self._routed,
            "events_blocked": sum(self._blocked_counts.values()),
            "events_blocked_by_reason": {str(k): v for k, v in self._blocked_counts.items()},
            "events_validated": self._validated,
            "events_delivered": self._delivered,
            "routing_rules": self._config.rule_count(),
            "component_handlers": sum(len(h) for h in self._components.values()),
            "subscribers": len(self._subscriptions),
            "dead_lettered": len(self.dead_letters),
            "queue_depth": self.transport.depth(),
        }
