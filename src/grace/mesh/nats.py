"""The NATS JetStream transport: routed events on a broker shared by every Grace instance.

Layout on the server (one stream per deployment):

* every routed event is published to ``<prefix>.<event_type>`` as its CloudEvents JSON,
  with ``Nats-Msg-Id: <event_id>``, so the stream drops a re-published event within its
  duplicate window; :meth:`NatsTransport.send` returns once the stream acknowledged it
  (an acknowledged emit is persisted);
* the stream ``<stream>`` holds exactly the subjects ``<prefix>.>``, file storage,
  *interest* retention (a message is kept until every consumer whose filter matches it
  has acknowledged it, so storage stays bounded by what is still being handled; an event
  that no consumer matches is dropped at once, like the memory transport delivering to no
  one);
* a **shared** subscriber (a component id) is a durable pull consumer whose name derives
  from the subscriber and its subjects alone, so every instance binds the same consumer
  and each event is handled once per subscriber across all instances. Servers 2.10 and
  later take all of a subscriber's subjects as ``filter_subjects`` of one consumer; older
  servers get one consumer per subject;
* a **per-instance** subscriber (a pattern subscription) is a named ephemeral consumer
  with this instance's id in its name and the pattern mapped 1:1 (``*`` and ``>`` mean
  the same on the server); it is deleted on detach/stop, and the server removes it after
  an inactivity threshold if the instance dies.

Consumers use explicit acks, ``max_deliver`` and ``ack_wait``, and start at new messages
(``DeliverPolicy.NEW``): a subscriber receives events published after its consumer first
existed. Delivery, for each fetched message: an undecodable message is terminated
(``term``, logged, never redelivered); otherwise ``final = num_delivered >= max_deliver``
and the mesh's callback runs; success or a final failure (which the mesh dead-letters)
acknowledges, any other failure NAKs for an immediate redelivery. A message whose
handler never finishes (a crash mid-way) is redelivered after ``ack_wait``, to any
instance. Delivery is therefore at least once; handlers see ``event_id`` for idempotence.

Tasks, all owned by the transport: one fetch loop per consumer, which pulls up to
``fetch_batch`` messages minus those still in hand and gives each message its own task
(so a slow handler holds up neither the next fetch nor its batch-mates; at most
``fetch_batch`` messages are in hand per consumer), and one watchdog that fails a send
whose PubAck is later than ``request_timeout_s`` (checked every ``min(1 s, timeout/4)``).
``stop`` refuses new sends, waits for the sends in flight, cancels the fetch loops
(they hold no message between awaits), waits for the messages in hand to be settled,
deletes the per-instance consumers and drains the connection. A message the server sent
into a pull the loop was cancelled in comes back after ``ack_wait``.

Not carried: ``priority``. JetStream delivers a consumer's messages in stream order, so
priority events do not overtake here; the mesh's priority lane exists only in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import math
import re
import secrets
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import nats
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    PubAck,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)

from grace.errors import EventError, MeshError, PatternError
from grace.mesh.event import TriggerEvent
from grace.mesh.patterns import validate_pattern, validate_subject
from grace.mesh.queue import QueueClosed
from grace.mesh.transport import Deliver

__all__ = ["NatsTransport"]

log = structlog.get_logger(__name__)

_MSG_ID_HEADER: Final = "Nats-Msg-Id"
# Characters a NATS stream or consumer name cannot hold (nats-py refuses the same set;
# '/' and '\\' would become path separators in file storage).
_BAD_NAME_RE: Final = re.compile(r"[.*>/\\\s]")
_UNSAFE_NAME_CHARS_RE: Final = re.compile(r"[^A-Za-z0-9_-]")
_READABLE_NAME_LIMIT: Final = 48
_DECODED_MAX_ENTRIES: Final = 512
_DECODED_MAX_BYTES: Final = 8 * 1024
"""Decoded events are remembered for small payloads only: at most ~4 MiB held."""
_CREATE_ATTEMPTS: Final = 3
_INSTANCE_CONSUMER_TTL_S: Final = 60.0
"""A per-instance consumer outlives a dead instance by at least this long (server-side)."""


def _consumer_name(subscriber: str, subjects: Sequence[str], instance: str | None) -> str:
    """A valid consumer name: readable part of the subscriber plus a digest of everything.

    The digest covers the raw subscriber, the subjects and the instance id, so names that
    sanitise alike (``a.b``/``a_b``) or differ only in subjects never collide, and every
    instance derives the same name for a shared subscriber.
    """
    readable = _UNSAFE_NAME_CHARS_RE.sub("_", subscriber)[:_READABLE_NAME_LIMIT] or "subscriber"
    digest = hashlib.sha256(
        "\0".join((subscriber, instance or "", *subjects)).encode("utf-8", "surrogatepass")
    ).hexdigest()[:16]
    return f"{readable}-{instance}-{digest}" if instance else f"{readable}-{digest}"


def _decode(msg: Msg) -> TriggerEvent | str:
    """The event a message carries, or why it carries none."""
    try:
        return TriggerEvent.from_json(msg.data)
    except EventError as e:
        return str(e)


@dataclass(slots=True, eq=False)
class _Consumer:
    """One server-side consumer bound by this instance, and the loop that fetches from it."""

    subscriber: str
    name: str
    per_instance: bool
    sub: JetStreamContext.PullSubscription
    task: asyncio.Task[None] | None = None
    """The fetch loop: it only ever waits (fetching, for room, backing off), so cancelling
    it loses no message it holds; the messages it fetched run in ``handling``."""
    handling: set[asyncio.Task[None]] = field(default_factory=set)
    stopping: bool = False


@dataclass(slots=True, eq=False)
class _SendGate:
    """Counts publishes awaiting their PubAck, so stop waits for them before draining."""

    pending: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    def enter(self) -> None:
        self.pending += 1
        self.idle.clear()

    def leave(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.idle.set()


class NatsTransport:
    """Carries routed events over a NATS JetStream stream (see the module docs).

    ``depth()`` is best effort: the messages this instance fetched and has not yet
    acknowledged, NAKed or terminated. Events waiting in the stream are not counted (the
    stream is shared; ask the server for consumer ``num_pending``).
    """

    def __init__(
        self,
        servers: str | Sequence[str] = "nats://127.0.0.1:4222",
        *,
        stream: str = "GRACE",
        subject_prefix: str = "grace",
        max_deliver: int = 5,
        ack_wait_s: float = 30,
        dedup_window_s: float = 120,
        connect_timeout_s: float = 5,
        fetch_batch: int = 64,
        fetch_timeout_s: float = 1.0,
        request_timeout_s: float = 5.0,
    ) -> None:
        self._servers = [servers] if isinstance(servers, str) else list(servers)
        if not self._servers:
            raise ValueError("the NATS transport needs at least one server URL")
        if not stream or _BAD_NAME_RE.search(stream):
            raise ValueError(
                f"NATS stream name {stream!r} must be non-empty without '.', '*', '>', "
                "slashes or whitespace"
            )
        try:
            validate_subject(subject_prefix)
        except PatternError as e:
            raise ValueError(f"NATS subject prefix {subject_prefix!r} is invalid: {e}") from e
        if max_deliver < 1 or fetch_batch < 1:
            raise ValueError("NATS max_deliver and fetch_batch must be at least 1")
        for name, value in (
            ("ack_wait_s", ack_wait_s),
            ("connect_timeout_s", connect_timeout_s),
            ("fetch_timeout_s", fetch_timeout_s),
            ("request_timeout_s", request_timeout_s),
        ):
            if value <= 0:
                raise ValueError(f"NATS {name} must be positive, got {value}")
        if dedup_window_s < 0:
            raise ValueError(f"NATS dedup_window_s must be >= 0, got {dedup_window_s}")
        self.stream = stream
        self.subject_prefix = subject_prefix
        self.max_deliver = max_deliver
        self.ack_wait_s = float(ack_wait_s)
        self.dedup_window_s = float(dedup_window_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.fetch_batch = fetch_batch
        self.fetch_timeout_s = float(fetch_timeout_s)
        self.request_timeout_s = float(request_timeout_s)
        self.instance_id = secrets.token_hex(6)
        """Names this instance's per-instance consumers."""
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._deliver: Deliver | None = None
        self._multi_filter = False
        self._consumers: dict[str, list[_Consumer]] = {}
        self._sends = _SendGate()
        self._closing = False
        self._in_hand = 0
        self._decoded: dict[bytes, TriggerEvent] = {}
        self._acks: deque[tuple[float, asyncio.Future[PubAck]]] = deque()
        """(deadline, PubAck future) of each publish, in publishing order."""
        self._watchdog: asyncio.Task[None] | None = None

    @property
    def _where(self) -> str:
        return ", ".join(self._servers)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self, deliver: Deliver) -> None:
        """Connect and make sure the stream exists (:class:`MeshError` if either fails)."""
        if self._nc is not None:
            return
        nc = await self._connect()
        try:
            js = nc.jetstream(timeout=self.request_timeout_s)
            await self._ensure_stream(js)
        except BaseException:
            await nc.close()
            raise
        version = nc.connected_server_version
        self._multi_filter = (version.major, version.minor) >= (2, 10)
        self._nc, self._js, self._deliver = nc, js, deliver
        self._closing = False
        self._watchdog = asyncio.create_task(self._expire_acks(), name="grace-mesh-nats-acks")

    async def _connect(self) -> Client:
        nc = Client()
        try:
            # nats-py retries an unreachable server forever (max_reconnect_attempts=-1,
            # which a long-running mesh wants after connecting); bound the first connect.
            async with asyncio.timeout(self.connect_timeout_s):
                await nc.connect(
                    servers=self._servers,
                    name=f"grace-mesh-{self.instance_id}",
                    connect_timeout=math.ceil(self.connect_timeout_s),  # nats-py wants int
                    drain_timeout=math.ceil(self.connect_timeout_s),
                    max_reconnect_attempts=-1,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
        except (OSError, nats.errors.Error) as e:  # TimeoutError is an OSError
            await nc.close()
            cause = nc.last_error or e
            raise MeshError(f"cannot connect to NATS at {self._where}: {cause!r}") from e
        return nc

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        subject = f"{self.subject_prefix}.>"
        try:
            try:
                info = await js.stream_info(self.stream)
            except nats.js.errors.NotFoundError:
                info = await self._create_stream(js, subject)
        except (OSError, nats.errors.Error) as e:
            raise MeshError(
                f"cannot read NATS stream {self.stream!r} at {self._where} "
                f"(is JetStream enabled?): {e!r}"
            ) from e
        subjects = list(info.config.subjects or ())
        if subjects != [subject]:
            raise MeshError(
                f"NATS stream {self.stream!r} exists with subjects {subjects}, not "
                f"[{subject!r}]; use another stream name or subject prefix"
            )

    async def _create_stream(self, js: JetStreamContext, subject: str) -> StreamInfo:
        config = StreamConfig(
            name=self.stream,
            subjects=[subject],
            storage=StorageType.FILE,
            retention=RetentionPolicy.INTEREST,
            duplicate_window=self.dedup_window_s,
        )
        attempt = 0
        while True:
            try:
                info = await js.add_stream(config)
            except nats.js.errors.APIError as e:
                # Another instance may have created it in between: read it back.
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    return await js.stream_info(self.stream)
                attempt += 1
                # nats-server 2.9 fails a create with a 500 ("error creating store for
                # stream") while the account's last stream is being deleted: try again.
                if attempt >= _CREATE_ATTEMPTS or not isinstance(e, nats.js.errors.ServerError):
                    raise MeshError(
                        f"cannot create NATS stream {self.stream!r} with subjects "
                        f"[{subject!r}] at {self._where}: {e}"
                    ) from e
                await asyncio.sleep(0.05 * attempt)
            else:
                log.info("mesh_nats_stream_created", stream=self.stream, subjects=[subject])
                return info

    async def stop(self) -> None:
        """Refuse new sends, finish the messages in hand, stop the consumers, drain."""
        nc = self._nc
        self._closing = True
        if nc is None:
            return
        await self._sends.idle.wait()  # bounded: the watchdog fails overdue PubAcks
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.wait([self._watchdog])
            self._watchdog = None
        consumers = [c for group in self._consumers.values() for c in group]
        self._consumers.clear()
        await self._halt(consumers)
        try:
            await nc.drain()
        except (OSError, nats.errors.Error) as e:
            log.warning("mesh_nats_drain_failed", servers=self._where, error=repr(e))
            await nc.close()
        self._nc = self._js = None

    # -- sending -------------------------------------------------------------------------

    async def send(self, event: TriggerEvent, *, priority: bool, wait: bool) -> bool:
        """Publish and await the stream's acknowledgement.

        ``priority`` is not carried (stream order; see the module docs). ``wait=False``
        publishes too, but returns False when the connection is closed or draining
        instead of raising. A re-published ``event_id`` is acknowledged as a duplicate and
        delivered once. A broker failure raises :class:`MeshError`.
        """
        nc, js = self._nc, self._js
        if self._closing:
            raise QueueClosed("the NATS transport is stopping")
        if nc is None or js is None:
            raise MeshError("the NATS transport is not started")
        if nc.is_closed or nc.is_draining:
            if not wait:
                return False
            raise MeshError(f"the NATS connection to {self._where} is closed")
        subject = f"{self.subject_prefix}.{event.event_type}"
        self._sends.enter()
        try:
            # publish_async, whose PubAck future the watchdog fails when overdue: the same
            # wait as js.publish without a timer per event (a third of the publish cost).
            # No expected-stream header: the server refuses streams with overlapping
            # subjects, and start() checked that ours holds <prefix>.>.
            pending = await js.publish_async(
                subject, event.to_json(), headers={_MSG_ID_HEADER: event.event_id}
            )
            self._acks.append((time.monotonic() + self.request_timeout_s, pending))
            ack = await pending
        except (OSError, nats.errors.Error) as e:  # TimeoutError is an OSError
            raise MeshError(
                f"publishing {event.event_type!r} to NATS stream {self.stream!r} at "
                f"{self._where} failed: {e!r}"
            ) from e
        finally:
            self._sends.leave()
        if ack.duplicate:
            log.debug("mesh_nats_duplicate", event_id=event.event_id, subject=subject)
        return True

    async def _expire_acks(self) -> None:
        """Fail every PubAck wait older than ``request_timeout_s`` (checked a few times
        per timeout), so a send never waits forever on a broker that went quiet."""
        acks = self._acks
        interval = min(1.0, self.request_timeout_s / 4)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            while acks and (acks[0][1].done() or acks[0][0] <= now):
                _, pending = acks.popleft()
                if not pending.done():
                    pending.set_exception(
                        nats.errors.TimeoutError(f"no PubAck within {self.request_timeout_s} s")
                    )

    # -- consuming -----------------------------------------------------------------------

    async def attach(self, subscriber: str, subjects: Sequence[str], *, shared: bool) -> None:
        """Bind the consumer(s) of a local subscriber and start fetching."""
        js = self._js
        if self._closing:
            raise QueueClosed("the NATS transport is stopping")
        if js is None or self._deliver is None:
            raise MeshError("the NATS transport is not started")
        if subscriber in self._consumers:
            return
        filters = [f"{self.subject_prefix}.{validate_pattern(s)}" for s in subjects]
        if not filters:
            return
        groups = [tuple(filters)] if self._multi_filter else [(f,) for f in filters]
        instance = None if shared else self.instance_id
        bound: list[_Consumer] = []
        self._consumers[subscriber] = bound  # claimed now: a concurrent attach returns
        try:
            for group in groups:
                name = _consumer_name(subscriber, group, instance)
                config = ConsumerConfig(
                    name=name,
                    durable_name=name if shared else None,
                    deliver_policy=DeliverPolicy.NEW,
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=self.ack_wait_s,
                    max_deliver=self.max_deliver,
                    filter_subject=group[0] if len(group) == 1 else None,
                    filter_subjects=list(group) if len(group) > 1 else None,
                    inactive_threshold=(
                        None if shared else max(_INSTANCE_CONSUMER_TTL_S, 2 * self.ack_wait_s)
                    ),
                )
                try:
                    await js.add_consumer(self.stream, config)
                    sub = await js.pull_subscribe_bind(name, stream=self.stream)
                except (OSError, nats.errors.Error) as e:
                    raise MeshError(
                        f"cannot create NATS consumer {name!r} on stream {self.stream!r} "
                        f"for {subscriber!r} ({', '.join(group)}): {e!r}"
                    ) from e
                consumer = _Consumer(subscriber, name, per_instance=not shared, sub=sub)
                if self._consumers.get(subscriber) is not bound:  # detached or stopped meanwhile
                    await self._halt([consumer])
                    return
                bound.append(consumer)
                consumer.task = asyncio.create_task(
                    self._consume(consumer), name=f"grace-mesh-nats-{name}"
                )
        except BaseException:
            if self._consumers.get(subscriber) is bound:
                del self._consumers[subscriber]
                await self._halt(bound)
            raise
        log.info(
            "mesh_nats_attached",
            subscriber=subscriber,
            consumers=[c.name for c in bound],
            shared=shared,
        )

    async def detach(self, subscriber: str) -> None:
        """Stop fetching for a subscriber; its per-instance consumers are deleted."""
        await self._halt(list(self._consumers.pop(subscriber, ())))

    async def _halt(self, consumers: Sequence[_Consumer]) -> None:
        """Stop each fetch loop, let the messages in hand finish, unbind the consumer."""
        for c in consumers:
            c.stopping = True
            if c.task is not None:
                c.task.cancel()
        waiting = [c.task for c in consumers if c.task is not None]
        waiting.extend(t for c in consumers for t in c.handling)
        if waiting:
            await asyncio.wait(waiting)
        for c in consumers:
            with contextlib.suppress(nats.errors.Error):
                await c.sub.unsubscribe()
            if c.per_instance and self._js is not None:
                try:
                    await self._js.delete_consumer(self.stream, c.name)
                except (OSError, nats.errors.Error) as e:  # the server expires it anyway
                    log.warning("mesh_nats_consumer_not_deleted", consumer=c.name, error=repr(e))

    async def _consume(self, consumer: _Consumer) -> None:
        """Fetch while there is room for more messages in hand; each runs in its own task.

        Handling does not hold up the next fetch: the consumer's messages arrive one pull
        round trip apart otherwise, whatever the batch size.
        """
        handling = consumer.handling
        settled = functools.partial(self._settled, consumer)
        while not consumer.stopping:
            room = self.fetch_batch - len(handling)
            if room <= 0:
                await asyncio.wait(handling, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                msgs = await consumer.sub.fetch(room, timeout=self.fetch_timeout_s)
            except TimeoutError:  # nothing to fetch (nats' TimeoutError subclasses it)
                continue
            except nats.errors.Error as e:
                log.warning("mesh_nats_fetch_failed", consumer=consumer.name, error=repr(e))
                await asyncio.sleep(self.fetch_timeout_s)
                continue
            self._in_hand += len(msgs)
            for msg in msgs:
                task = asyncio.create_task(self._handle(consumer, msg))
                handling.add(task)
                task.add_done_callback(settled)

    def _settled(self, consumer: _Consumer, task: asyncio.Task[None]) -> None:
        consumer.handling.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("mesh_nats_handle_failed", consumer=consumer.name, error=repr(error))

    def _event_of(self, msg: Msg) -> TriggerEvent | str:
        """Decode, once per payload: the consumers of several local subscribers receive the
        same bytes (decoding is deterministic, so equal bytes give an equal event)."""
        data = msg.data
        cached = self._decoded.get(data)
        if cached is not None:
            return cached
        event = _decode(msg)
        if isinstance(event, TriggerEvent) and len(data) <= _DECODED_MAX_BYTES:
            self._decoded[data] = event
            if len(self._decoded) > _DECODED_MAX_ENTRIES:
                del self._decoded[next(iter(self._decoded))]  # oldest first
        return event

    async def _handle(self, consumer: _Consumer, msg: Msg) -> None:
        deliver = self._deliver
        try:
            event = self._event_of(msg)
            if isinstance(event, str):
                log.error(
                    "mesh_nats_undecodable",
                    subject=msg.subject,
                    consumer=consumer.name,
                    error=event,
                )
                await msg.term()  # never redelivered: no delivery could decode it
                return
            final = msg.metadata.num_delivered >= self.max_deliver
            ok = False
            if deliver is not None:
                try:
                    ok = await deliver(event, consumer.subscriber, final)
                except Exception:  # a failing callback is a failed delivery (logged with its trace)
                    log.exception(
                        "mesh_nats_deliver_failed",
                        event_id=event.event_id,
                        subscriber=consumer.subscriber,
                    )
            if ok or final:
                await msg.ack()
            else:
                await msg.nak()
        except nats.errors.Error as e:  # the server redelivers after ack_wait
            log.warning("mesh_nats_settle_failed", consumer=consumer.name, error=repr(e))
        finally:
            self._in_hand -= 1

    def depth(self) -> int:
        """Messages fetched here and not yet settled (best effort; see the class docs)."""
        return self._in_hand

    # -- connection events ---------------------------------------------------------------

    async def _on_error(self, error: Exception) -> None:
        log.warning("mesh_nats_error", servers=self._where, error=repr(error))

    async def _on_disconnected(self) -> None:
        if not self._closing:  # closing disconnects on purpose
            log.warning("mesh_nats_disconnected", servers=self._where)

    async def _on_reconnected(self) -> None:
        log.info("mesh_nats_reconnected", servers=self._where)

    def __repr__(self) -> str:
        state = "closing" if self._closing else ("started" if self._nc else "stopped")
        return f"NatsTransport(servers={self._where!r}, stream={self.stream!r}, {state})"
