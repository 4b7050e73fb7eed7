"""Trigger mesh benchmarks: in-memory throughput and latency, NATS JetStream throughput.

Run from the repository root::

    .venv/bin/python bench/mesh.py            # full run
    .venv/bin/python bench/mesh.py --quick    # smoke run, a few seconds
    .venv/bin/python bench/mesh.py --profile  # cProfile of one in-memory run, per event

Every event is a ``trust.updated`` from the ``trust_store`` publisher handle, routed by the
default config (``load_mesh_config()``): it requires constitutional validation and trust
>= 0.8, and its four subscribers (decision_engine, governance_gate and the auditors group,
audit_trail and compliance_reporter) each get a counting component handler. Validation is
on: an async trust scorer returns 0.9 and an async governance validator approves. No
audit sink is set, so the ledger append that an audit sink adds is not measured here
(bench/ledger.py measures appends).

1. In-memory events/s, end to end: from the first emit until all 4 subscribers have seen
   all N events, against a bare ``asyncio.Queue`` fan-out of the same (pre-built) events
   to 4 bounded queues (the mesh's capacity), each drained by a consumer task that calls
   the same counting handler. Goal: >= 0.5x the bare fan-out. An info row repeats the
   mesh run with ``emit(type, payload)`` building each event inside the timed path.
2. Emit-to-handler latency (p50/p99, info): concurrent emitters paced to a moderate
   total rate; the time is taken just before ``emit`` and read in each handler. The bare
   fan-out, paced the same way, is shown as the baseline.
3. NATS JetStream (when ``grace.mesh.nats`` imports, nats-py is installed and a server
   with JetStream answers): events/s emitted through a mesh on ``NatsTransport`` until the
   stream holds them all, against bare nats-py ``publish_async`` of the same CloudEvents
   bytes with ``Nats-Msg-Id`` headers into a stream with the mesh stream's config.
   Goal: >= 0.8x. An info row measures end to end (4 durable subscribers have handled
   every event) against bare publish_async plus 4 durable pull consumers that ack.
   Each run uses a fresh stream and subject prefix, deleted afterwards.

Each paired measurement is repeated ``--repeats`` times, alternating mesh and baseline;
the median of the per-repeat ratios is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import gc
import importlib
import inspect
import logging
import math
import os
import random
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import structlog

from _report import Row, fmt_rate, median, percentile, print_profile, print_table, verdict
from grace.mesh.config import MeshConfig, load_mesh_config
from grace.mesh.event import TriggerEvent
from grace.mesh.mesh import Handler, MeshSettings, Publisher, TriggerMesh
from grace.types import SystemClock

EVENT_TYPE = "trust.updated"
PUBLISHER = "trust_store"
SUBSCRIBERS = 4
MEMORY_GOAL = 0.5
NATS_GOAL = 0.8
NATS_URL = "nats://127.0.0.1:4222"
MSG_ID_HEADER = "Nats-Msg-Id"
FETCH_BATCH = 1024
FETCH_TIMEOUT_S = 0.05
"""A partial batch waits up to this long: it bounds the bare consumers' tail latency."""
DONE_TIMEOUT_S = 300.0
CLOCK = SystemClock()

# -- realistic events ------------------------------------------------------------------

_COMPONENTS = (
    "immune_kernel",
    "health_monitor",
    "verification_engine",
    "governance_gate",
    "decision_engine",
    "learning_engine",
    "metrics_monitor",
)
_REASONS = (
    "healing action succeeded and was verified",
    "verification refuted two generated patches in a row",
    "anomaly report confirmed by an independent monitor",
    "policy violation attributed to this component",
    "decay: no corroborated evidence in the window",
    "operator override recorded for a rejected decision",
)


def trust_payload(rng: random.Random, seq: int) -> dict[str, Any]:
    """A ``trust.updated`` payload as the trust store would send it (~260 B of JSON).

    ``seq`` is the event's index in its run: the latency handlers use it to find the
    emit time.
    """
    previous = round(rng.uniform(0.5, 0.95), 3)
    current = round(min(1.0, max(0.0, previous + rng.uniform(-0.1, 0.05))), 3)
    return {
        "seq": seq,
        "component": rng.choice(_COMPONENTS),
        "previous": previous,
        "current": current,
        "reason": rng.choice(_REASONS),
        "evidence": [f"case-{rng.randrange(10**6):06d}" for _ in range(rng.randint(1, 3))],
        "window_s": 300,
        "policy_version": "2026.02.1",
    }


def make_events(rng: random.Random, count: int) -> list[TriggerEvent]:
    """``count`` events exactly as ``mesh.publisher(PUBLISHER).event(...)`` builds them."""
    return [
        TriggerEvent.create(
            EVENT_TYPE,
            source=PUBLISHER,
            actor=PUBLISHER,
            payload=trust_payload(rng, i),
            clock=CLOCK,
        )
        for i in range(count)
    ]


async def approve_trust(component_id: str) -> float:
    """The trust scorer: every publisher scores 0.9 (the event needs 0.8)."""
    return 0.9


async def approve_event(event: TriggerEvent) -> bool:
    """The governance validator: approves everything."""
    return True


def subscribers_of(config: MeshConfig) -> tuple[str, ...]:
    """The event's configured subscribers; refuses a config where the premise fails."""
    spec = config.spec(EVENT_TYPE)
    if spec is None:
        raise SystemExit(f"the default mesh config does not declare {EVENT_TYPE!r}")
    problems = []
    if not spec.requires_constitutional_validation:
        problems.append("it does not require constitutional validation")
    if config.min_trust(EVENT_TYPE) <= 0:
        problems.append("it has no minimum trust")
    if not config.may_publish(EVENT_TYPE, PUBLISHER):
        problems.append(f"{PUBLISHER!r} may not publish it")
    if config.is_priority(EVENT_TYPE):
        problems.append("it is a priority event")
    subscribers = config.subscribers_of(EVENT_TYPE)
    if len(subscribers) != SUBSCRIBERS:
        problems.append(f"it has {len(subscribers)} subscribers, not {SUBSCRIBERS}")
    if problems:
        raise SystemExit(f"{EVENT_TYPE!r} no longer fits this benchmark: {'; '.join(problems)}")
    return subscribers


# -- helpers ---------------------------------------------------------------------------


def shares(items: Sequence[TriggerEvent], parts: int) -> list[Sequence[TriggerEvent]]:
    """``items`` dealt round-robin into ``parts`` shares."""
    return [items[k::parts] for k in range(parts)]


class Sink:
    """A subscriber that counts events; ``done`` resolves once it has seen ``expected``."""

    __slots__ = ("count", "done", "expected")

    def __init__(self, expected: int) -> None:
        self.count = 0
        self.expected = expected
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def __call__(self, event: TriggerEvent) -> None:
        self.count += 1
        if self.count == self.expected:
            self.done.set_result(None)


class LatencySink(Sink):
    """A counting subscriber that also records ``now - sent[payload["seq"]]`` in ns."""

    __slots__ = ("samples", "sent")

    def __init__(self, expected: int, sent: list[int], samples: list[int]) -> None:
        super().__init__(expected)
        self.sent = sent
        self.samples = samples

    async def __call__(self, event: TriggerEvent) -> None:
        self.samples.append(time.perf_counter_ns() - self.sent[event.payload["seq"]])
        await super().__call__(event)


async def all_done(sinks: Sequence[Sink], what: str) -> None:
    """Wait until every sink has seen all its events; fail loudly on a stall."""
    try:
        async with asyncio.timeout(DONE_TIMEOUT_S):
            await asyncio.gather(*(s.done for s in sinks))
    except TimeoutError:
        counts = ", ".join(f"{s.count}/{s.expected}" for s in sinks)
        raise SystemExit(
            f"{what}: subscribers stalled after {DONE_TIMEOUT_S:.0f} s ({counts})"
        ) from None


def build_mesh(
    config: MeshConfig,
    settings: MeshSettings,
    handlers: Sequence[tuple[str, Handler]],
    transport: Any = None,
) -> tuple[TriggerMesh, Publisher]:
    """A mesh with validation on, ``handlers`` registered, and the publisher handle."""
    mesh = TriggerMesh(config, clock=CLOCK, settings=settings, transport=transport)
    mesh.set_trust_scorer(approve_trust)
    mesh.set_governance_validator(approve_event)
    for component, handler in handlers:
        mesh.register_component_handler(component, handler)
    return mesh, mesh.publisher(PUBLISHER)


def check_stats(mesh: TriggerMesh, emitted: int, delivered: int, what: str) -> None:
    """Every event routed and validated, none blocked, each delivered to every handler."""
    stats = mesh.get_stats()
    expected = {
        "events_routed": emitted,
        "events_validated": emitted,
        "events_blocked": 0,
        "events_delivered": delivered,
        "dead_lettered": 0,
    }
    wrong = {k: (stats[k], v) for k, v in expected.items() if stats[k] != v}
    if wrong:
        detail = ", ".join(f"{k}={got} (expected {want})" for k, (got, want) in wrong.items())
        raise SystemExit(f"{what}: mesh stats are off: {detail}")


async def emit_all(publisher: Publisher, share: Sequence[TriggerEvent], *, build: bool) -> None:
    """Emit ``share`` in order; ``build`` passes (type, payload) so emit builds the event."""
    if build:
        for event in share:
            result = await publisher.emit(EVENT_TYPE, event.payload)
            if not result:
                raise SystemExit(f"event blocked: {result.reason} ({result.detail})")
    else:
        for event in share:
            result = await publisher.emit(event)
            if not result:
                raise SystemExit(f"event blocked: {result.reason} ({result.detail})")


# -- 1. in-memory throughput -----------------------------------------------------------


async def mesh_throughput(
    config: MeshConfig,
    settings: MeshSettings,
    subscribers: Sequence[str],
    events: Sequence[TriggerEvent],
    emitters: int,
    *,
    build: bool = False,
    profiler: cProfile.Profile | None = None,
) -> float:
    """Events/s from the first emit until every subscriber has seen every event."""
    sinks = [Sink(len(events)) for _ in subscribers]
    mesh, publisher = build_mesh(config, settings, list(zip(subscribers, sinks, strict=True)))
    await mesh.start()
    try:
        gc.collect()
        if profiler is not None:
            profiler.enable()
        start = time.perf_counter()
        await asyncio.gather(
            *(emit_all(publisher, s, build=build) for s in shares(events, emitters))
        )
        await all_done(sinks, "in-memory mesh")
        elapsed = time.perf_counter() - start
        if profiler is not None:
            profiler.disable()
    finally:
        await mesh.stop()
    check_stats(mesh, len(events), len(events) * len(sinks), "in-memory mesh")
    return len(events) / elapsed


async def fanout_throughput(
    events: Sequence[TriggerEvent], subscribers: int, capacity: int, emitters: int
) -> float:
    """The baseline: each event put on ``subscribers`` bounded queues, one consumer each."""
    sinks = [Sink(len(events)) for _ in range(subscribers)]
    queues: list[asyncio.Queue[TriggerEvent]] = [asyncio.Queue(capacity) for _ in sinks]

    async def consume(queue: asyncio.Queue[TriggerEvent], sink: Sink) -> None:
        while True:
            await sink(await queue.get())

    async def produce(share: Sequence[TriggerEvent]) -> None:
        for event in share:
            for queue in queues:
                await queue.put(event)

    consumers = [asyncio.create_task(consume(q, s)) for q, s in zip(queues, sinks, strict=True)]
    try:
        gc.collect()
        start = time.perf_counter()
        await asyncio.gather(*(produce(s) for s in shares(events, emitters)))
        await all_done(sinks, "bare fan-out")
        elapsed = time.perf_counter() - start
    finally:
        for task in consumers:
            task.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
    return len(events) / elapsed


@dataclass(frozen=True, slots=True)
class MemoryResult:
    events: int
    mesh_rate: float
    fanout_rate: float
    ratio: float
    build_rate: float
    build_ratio: float


async def bench_memory(
    config: MeshConfig,
    settings: MeshSettings,
    subscribers: Sequence[str],
    count: int,
    emitters: int,
    repeats: int,
    rng: random.Random,
) -> MemoryResult:
    warm = make_events(rng, min(count, 2_000))
    await mesh_throughput(config, settings, subscribers, warm, emitters)
    await fanout_throughput(warm, len(subscribers), settings.queue_capacity, emitters)
    mesh_rates: list[float] = []
    fanout_rates: list[float] = []
    ratios: list[float] = []
    build_rates: list[float] = []
    build_ratios: list[float] = []
    for rep in range(repeats):
        events = make_events(rng, count)
        mesh = await mesh_throughput(config, settings, subscribers, events, emitters)
        bare = await fanout_throughput(events, len(subscribers), settings.queue_capacity, emitters)
        built = await mesh_throughput(config, settings, subscribers, events, emitters, build=True)
        print(
            f"  [rep {rep + 1}/{repeats}] mesh {fmt_rate(mesh):>11}   bare fan-out "
            f"{fmt_rate(bare):>11}   ratio {mesh / bare:.3f}   (emit builds events: "
            f"{fmt_rate(built)}, ratio {built / bare:.3f})",
            flush=True,
        )
        mesh_rates.append(mesh)
        fanout_rates.append(bare)
        ratios.append(mesh / bare)
        build_rates.append(built)
        build_ratios.append(built / bare)
    return MemoryResult(
        events=count,
        mesh_rate=median(mesh_rates),
        fanout_rate=median(fanout_rates),
        ratio=median(ratios),
        build_rate=median(build_rates),
        build_ratio=median(build_ratios),
    )


# -- 2. latency ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Latency:
    samples: int
    rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float


def summarise(samples: Sequence[int], emitted: int, emit_span_s: float) -> Latency:
    ms = [s / 1e6 for s in samples]
    return Latency(
        samples=len(ms),
        rate=emitted / emit_span_s if emit_span_s > 0 else math.inf,
        p50_ms=percentile(ms, 50),
        p99_ms=percentile(ms, 99),
        max_ms=max(ms),
    )


async def paced(
    count: int,
    emitters: int,
    rate: float,
    sent: list[int],
    send: Callable[[int], Awaitable[None]],
) -> float:
    """Call ``send(i)`` for every ``i`` at ``start + i / rate``, from ``emitters`` tasks,
    recording ``sent[i]`` just before; return the span from the first to the last send."""
    loop_start = time.perf_counter() + 0.01
    last = [loop_start]

    async def emitter(k: int) -> None:
        for i in range(k, count, emitters):
            delay = loop_start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent[i] = time.perf_counter_ns()
            await send(i)
        last.append(time.perf_counter())

    await asyncio.gather(*(emitter(k) for k in range(emitters)))
    first = min(sent) / 1e9
    return max(last) - first


async def mesh_latency(
    config: MeshConfig,
    settings: MeshSettings,
    subscribers: Sequence[str],
    events: Sequence[TriggerEvent],
    emitters: int,
    rate: float,
) -> Latency:
    sent = [0] * len(events)
    samples: list[int] = []
    sinks = [LatencySink(len(events), sent, samples) for _ in subscribers]
    mesh, publisher = build_mesh(config, settings, list(zip(subscribers, sinks, strict=True)))

    async def send(i: int) -> None:
        result = await publisher.emit(events[i])
        if not result:
            raise SystemExit(f"event blocked: {result.reason} ({result.detail})")

    await mesh.start()
    try:
        gc.collect()
        span = await paced(len(events), emitters, rate, sent, send)
        await all_done(sinks, "in-memory mesh (latency)")
    finally:
        await mesh.stop()
    check_stats(mesh, len(events), len(events) * len(sinks), "in-memory mesh (latency)")
    return summarise(samples, len(events), span)


async def fanout_latency(
    events: Sequence[TriggerEvent], subscribers: int, capacity: int, emitters: int, rate: float
) -> Latency:
    sent = [0] * len(events)
    samples: list[int] = []
    sinks = [LatencySink(len(events), sent, samples) for _ in range(subscribers)]
    queues: list[asyncio.Queue[TriggerEvent]] = [asyncio.Queue(capacity) for _ in sinks]

    async def consume(queue: asyncio.Queue[TriggerEvent], sink: Sink) -> None:
        while True:
            await sink(await queue.get())

    async def send(i: int) -> None:
        for queue in queues:
            await queue.put(events[i])

    consumers = [asyncio.create_task(consume(q, s)) for q, s in zip(queues, sinks, strict=True)]
    try:
        gc.collect()
        span = await paced(len(events), emitters, rate, sent, send)
        await all_done(sinks, "bare fan-out (latency)")
    finally:
        for task in consumers:
            task.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
    return summarise(samples, len(events), span)


@dataclass(frozen=True, slots=True)
class LatencyResult:
    mesh: Latency
    fanout: Latency


async def bench_latency(
    config: MeshConfig,
    settings: MeshSettings,
    subscribers: Sequence[str],
    count: int,
    emitters: int,
    rate: float,
    rng: random.Random,
) -> LatencyResult:
    events = make_events(rng, count)
    mesh = await mesh_latency(config, settings, subscribers, events, emitters, rate)
    bare = await fanout_latency(events, len(subscribers), settings.queue_capacity, emitters, rate)
    return LatencyResult(mesh, bare)


def print_latency(name: str, lat: Latency) -> None:
    print(
        f"  {name:<14} p50 {lat.p50_ms:7.3f} ms   p99 {lat.p99_ms:7.3f} ms   max "
        f"{lat.max_ms:7.3f} ms   ({lat.samples:,} deliveries, emitted at {fmt_rate(lat.rate)})",
        flush=True,
    )


# -- 3. NATS JetStream -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NatsApi:
    """The modules the NATS section needs, imported only when they exist."""

    nats: Any
    transport_cls: Any


def import_nats() -> NatsApi | str:
    """The NATS modules, or why the section is skipped."""
    try:
        module = importlib.import_module("grace.mesh.nats")
    except ModuleNotFoundError as e:
        if e.name in ("grace.mesh.nats", "grace"):
            return "grace.mesh.nats does not exist yet"
        return f"grace.mesh.nats cannot be imported: {e}"
    except ImportError as e:
        return f"grace.mesh.nats cannot be imported: {e}"
    transport_cls = getattr(module, "NatsTransport", None)
    if transport_cls is None:
        return "grace.mesh.nats has no NatsTransport"
    try:
        inspect.signature(transport_cls).bind(servers=[NATS_URL], stream="S", subject_prefix="p")
    except TypeError as e:
        return (
            f"NatsTransport{inspect.signature(transport_cls)} does not take the spec's "
            f"servers=, stream=, subject_prefix= ({e})"
        )
    except ValueError:
        pass  # no signature to check (a C type): try it
    try:
        nats = importlib.import_module("nats")
    except ImportError:
        return "nats-py is not installed"
    return NatsApi(nats, transport_cls)


async def nats_unreachable(api: NatsApi, url: str) -> str | None:
    """Why the server at ``url`` cannot be used (None when JetStream answers)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 4222
    try:
        async with asyncio.timeout(2.0):
            _, writer = await asyncio.open_connection(host, port)
        writer.close()
        await writer.wait_closed()
    except (OSError, TimeoutError) as e:
        return f"no NATS server answers on {host}:{port} ({e or type(e).__name__})"
    try:
        nc = await api.nats.connect(servers=[url], connect_timeout=2, max_reconnect_attempts=0)
    except Exception as e:  # noqa: BLE001 - any failure to connect skips the section
        return f"cannot connect to NATS at {url}: {e!r}"
    try:
        await nc.jetstream().account_info()
    except Exception as e:  # noqa: BLE001 - no JetStream, no section
        return f"JetStream is not enabled on {url}: {e!r}"
    finally:
        await nc.close()
    return None


def fresh_names(kind: str) -> tuple[str, str]:
    """A unique (stream, subject prefix) for one run."""
    tag = secrets.token_hex(4)
    return f"GRACE_BENCH_{kind.upper()}_{tag}", f"gracebench_{kind}_{tag}"


@dataclass(frozen=True, slots=True)
class NatsRun:
    rate: float
    stream: str
    stored_bytes: int | None


class NatsBench:
    """One nats-py connection for stream management and the bare baselines."""

    def __init__(self, api: NatsApi, url: str, nc: Any) -> None:
        self.api = api
        self.url = url
        self.nc = nc
        self.js = nc.jetstream()
        self.stream_config: Any = None
        """The config of the mesh's stream, reused for the bare streams."""

    @classmethod
    async def connect(cls, api: NatsApi, url: str) -> NatsBench:
        nc = await api.nats.connect(servers=[url], connect_timeout=2)
        return cls(api, url, nc)

    async def close(self) -> None:
        await self.nc.close()

    async def delete_stream(self, name: str) -> None:
        try:
            await self.js.delete_stream(name)
        except Exception as e:  # noqa: BLE001 - cleanup; the stream may not exist
            if "not found" not in str(e).lower():
                print(f"  warning: could not delete stream {name}: {e!r}", flush=True)

    async def last_seq(self, stream: str) -> int:
        info = await self.js.stream_info(stream)
        return int(info.state.last_seq)

    async def wait_stored(self, stream: str, count: int, what: str) -> None:
        """Until ``stream`` has stored ``count`` messages (polling its last sequence)."""
        deadline = time.perf_counter() + DONE_TIMEOUT_S
        while (stored := await self.last_seq(stream)) < count:
            if time.perf_counter() > deadline:
                raise SystemExit(f"{what}: stream {stream} holds {stored} of {count} messages")
            await asyncio.sleep(0.001)

    async def stored_size(self, stream: str) -> int | None:
        """The size of the last stored message, to compare with the bare payloads."""
        try:
            msg = await self.js.get_msg(stream, seq=await self.last_seq(stream))
        except Exception:  # noqa: BLE001 - informative only
            return None
        return len(msg.data or b"")

    def new_transport(self, stream: str, prefix: str) -> Any:
        return self.api.transport_cls(servers=[self.url], stream=stream, subject_prefix=prefix)

    async def remember_config(self, stream: str) -> None:
        if self.stream_config is None:
            self.stream_config = (await self.js.stream_info(stream)).config

    async def add_bare_stream(self, stream: str, prefix: str) -> None:
        subjects = [f"{prefix}.>"]
        if self.stream_config is not None:
            config = dataclasses.replace(self.stream_config, name=stream, subjects=subjects)
            await self.js.add_stream(config=config)
        else:
            await self.js.add_stream(name=stream, subjects=subjects)

    # -- the mesh on NatsTransport --

    async def mesh_run(
        self,
        config: MeshConfig,
        settings: MeshSettings,
        subscribers: Sequence[str],
        events: Sequence[TriggerEvent],
        emitters: int,
        *,
        deliver: bool,
    ) -> NatsRun:
        """Emit ``events``; time until the stream holds them all, or (``deliver``) until
        every subscriber has handled every one."""
        stream, prefix = fresh_names("mesh")
        sinks = [Sink(len(events)) for _ in subscribers] if deliver else []
        handlers = list(zip(subscribers, sinks, strict=True)) if deliver else []
        mesh, publisher = build_mesh(config, settings, handlers, self.new_transport(stream, prefix))
        running = False
        try:
            running = True
            await mesh.start()
            try:
                await self.remember_config(stream)
            except Exception as e:  # the transport is expected to create its stream
                raise SystemExit(f"NatsTransport did not create stream {stream}: {e!r}") from e
            gc.collect()
            start = time.perf_counter()
            await asyncio.gather(
                *(emit_all(publisher, s, build=False) for s in shares(events, emitters))
            )
            if deliver:
                await all_done(sinks, "NATS mesh")
            else:
                await self.wait_stored(stream, len(events), "NATS mesh")
            elapsed = time.perf_counter() - start
            running = False
            await mesh.stop()
            check_stats(mesh, len(events), len(events) * len(sinks), "NATS mesh")
            size = await self.stored_size(stream)
        finally:
            if running:
                await mesh.stop()
            await self.delete_stream(stream)
        return NatsRun(len(events) / elapsed, stream, size)

    # -- bare nats-py --

    async def bare_run(
        self, payloads: Sequence[tuple[bytes, str]], subscribers: int, *, deliver: bool
    ) -> NatsRun:
        """publish_async every payload with its msg id; time until every PubAck, or
        (``deliver``) until ``subscribers`` durable pull consumers have acked every one."""
        stream, prefix = fresh_names("bare")
        subject = f"{prefix}.{EVENT_TYPE}"
        await self.add_bare_stream(stream, prefix)
        counts = [0] * (subscribers if deliver else 0)
        tasks: list[asyncio.Task[None]] = []
        try:
            subs = [
                await self.js.pull_subscribe(subject, durable=f"bench_sub_{k}", stream=stream)
                for k in range(len(counts))
            ]
            timeout_error = self.api.nats.errors.TimeoutError

            async def consume(k: int, sub: Any) -> None:
                while counts[k] < len(payloads):
                    try:
                        msgs = await sub.fetch(FETCH_BATCH, timeout=FETCH_TIMEOUT_S)
                    except timeout_error:
                        continue
                    for msg in msgs:
                        counts[k] += 1
                        await msg.ack()

            tasks = [asyncio.create_task(consume(k, s)) for k, s in enumerate(subs)]
            gc.collect()
            start = time.perf_counter()
            acks = [
                await self.js.publish_async(subject, data, headers={MSG_ID_HEADER: msg_id})
                for data, msg_id in payloads
            ]
            await asyncio.gather(*acks)
            async with asyncio.timeout(DONE_TIMEOUT_S):
                await asyncio.gather(*tasks)  # the consumers return once they have all
            elapsed = time.perf_counter() - start
            if await self.last_seq(stream) != len(payloads):
                raise SystemExit(f"bare publish: stream {stream} misses messages")
            size = await self.stored_size(stream)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.delete_stream(stream)
        return NatsRun(len(payloads) / elapsed, stream, size)


@dataclass(frozen=True, slots=True)
class NatsResult:
    events: int
    publish_mesh: float
    publish_bare: float
    publish_ratio: float
    e2e_mesh: float
    e2e_bare: float
    e2e_ratio: float


async def bench_nats(
    bench: NatsBench,
    config: MeshConfig,
    settings: MeshSettings,
    subscribers: Sequence[str],
    count: int,
    emitters: int,
    repeats: int,
    rng: random.Random,
) -> NatsResult:
    warm = make_events(rng, min(count, 500))
    await bench.mesh_run(config, settings, subscribers, warm, emitters, deliver=True)
    await bench.bare_run([(e.to_json(), e.event_id) for e in warm], len(subscribers), deliver=True)
    pub_mesh: list[float] = []
    pub_bare: list[float] = []
    pub_ratio: list[float] = []
    e2e_mesh: list[float] = []
    e2e_bare: list[float] = []
    e2e_ratio: list[float] = []
    for rep in range(repeats):
        events = make_events(rng, count)
        payloads = [(e.to_json(), e.event_id) for e in events]
        m = await bench.mesh_run(config, settings, subscribers, events, emitters, deliver=False)
        b = await bench.bare_run(payloads, len(subscribers), deliver=False)
        if rep == 0:
            mean = sum(len(p) for p, _ in payloads) / len(payloads)
            print(
                f"  bare payload: CloudEvents JSON, {mean:.0f} B on average; last stored "
                f"message: mesh {m.stored_bytes} B, bare {b.stored_bytes} B",
                flush=True,
            )
        me = await bench.mesh_run(config, settings, subscribers, events, emitters, deliver=True)
        be = await bench.bare_run(payloads, len(subscribers), deliver=True)
        print(
            f"  [rep {rep + 1}/{repeats}] publish: mesh {fmt_rate(m.rate):>10}  bare "
            f"{fmt_rate(b.rate):>10}  ratio {m.rate / b.rate:.3f}   end to end: mesh "
            f"{fmt_rate(me.rate):>10}  bare {fmt_rate(be.rate):>10}  ratio {me.rate / be.rate:.3f}",
            flush=True,
        )
        pub_mesh.append(m.rate)
        pub_bare.append(b.rate)
        pub_ratio.append(m.rate / b.rate)
        e2e_mesh.append(me.rate)
        e2e_bare.append(be.rate)
        e2e_ratio.append(me.rate / be.rate)
    return NatsResult(
        events=count,
        publish_mesh=median(pub_mesh),
        publish_bare=median(pub_bare),
        publish_ratio=median(pub_ratio),
        e2e_mesh=median(e2e_mesh),
        e2e_bare=median(e2e_bare),
        e2e_ratio=median(e2e_ratio),
    )


# -- profile ---------------------------------------------------------------------------


async def profile_memory(
    config: MeshConfig,
    settings: MeshSettings,
    subscribers: Sequence[str],
    count: int,
    emitters: int,
    rng: random.Random,
    top: int,
) -> None:
    """cProfile one in-memory run; print where the time goes, in µs per event."""
    await mesh_throughput(config, settings, subscribers, make_events(rng, 2_000), emitters)
    events = make_events(rng, count)
    plain = await mesh_throughput(config, settings, subscribers, events, emitters)
    profiler = cProfile.Profile()
    profiled = await mesh_throughput(
        config, settings, subscribers, events, emitters, profiler=profiler
    )
    print(
        f"  {count:,} events: {1e6 / plain:.1f} µs/event unprofiled, {1e6 / profiled:.1f} "
        "µs/event under cProfile (which inflates small calls)\n",
        flush=True,
    )
    print_profile(profiler, count, top, "event")


# -- summary ---------------------------------------------------------------------------


# -- main ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    events: int
    emitters: int
    latency_events: int
    latency_emitters: int
    latency_rate: float
    nats_events: int
    nats_emitters: int
    repeats: int


def parse_args(argv: Sequence[str] | None) -> tuple[Plan, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of seconds")
    p.add_argument("--events", type=int, default=None, help="events per in-memory run")
    p.add_argument("--emitters", type=int, default=4, help="concurrent emitters (in-memory)")
    p.add_argument("--latency-events", type=int, default=None, help="events in the latency run")
    p.add_argument("--latency-emitters", type=int, default=8, help="paced concurrent emitters")
    p.add_argument("--latency-rate", type=float, default=2_000.0, help="total events/s, paced")
    p.add_argument("--nats-events", type=int, default=None, help="events per NATS run")
    p.add_argument("--nats-emitters", type=int, default=64, help="concurrent emitters (NATS)")
    p.add_argument("--nats-url", default=NATS_URL)
    p.add_argument("--repeats", type=int, default=None, help="paired repeats per measurement")
    p.add_argument("--seed", type=int, default=20260201)
    p.add_argument(
        "--only",
        choices=("memory", "latency", "nats"),
        action="append",
        help="run only these sections (repeatable)",
    )
    p.add_argument(
        "--profile", action="store_true", help="instead: cProfile one in-memory run per event"
    )
    p.add_argument("--top", type=int, default=30, help="functions listed by --profile")
    a = p.parse_args(argv)
    if a.quick:
        plan = Plan(5_000, a.emitters, 1_000, a.latency_emitters, a.latency_rate, 1_000, 0, 1)
    else:
        plan = Plan(50_000, a.emitters, 20_000, a.latency_emitters, a.latency_rate, 20_000, 0, 5)
    plan = dataclasses.replace(
        plan,
        events=a.events or plan.events,
        latency_events=a.latency_events or plan.latency_events,
        nats_events=a.nats_events or plan.nats_events,
        nats_emitters=a.nats_emitters,
        repeats=a.repeats or plan.repeats,
    )
    numbers = (plan.events, plan.emitters, plan.latency_events, plan.latency_emitters)
    if min(numbers) < 1 or plan.nats_events < 1 or plan.nats_emitters < 1 or plan.repeats < 1:
        p.error("sizes, emitters and repeats must be positive")
    if plan.latency_rate <= 0:
        p.error("--latency-rate must be positive")
    return plan, a


async def run(plan: Plan, args: argparse.Namespace) -> list[Row]:
    rng = random.Random(args.seed)
    config = load_mesh_config()
    subscribers = subscribers_of(config)
    settings = MeshSettings()
    print(
        f"event {EVENT_TYPE!r} from {PUBLISHER!r} (constitutional validation, trust >= "
        f"{config.min_trust(EVENT_TYPE)}) to {', '.join(subscribers)}; mesh settings: "
        f"{settings.workers} workers, queue capacity {settings.queue_capacity:,}\n",
        flush=True,
    )
    if args.profile:
        print(f"profile: one in-memory run of {plan.events:,} events", flush=True)
        await profile_memory(
            config, settings, subscribers, plan.events, plan.emitters, rng, args.top
        )
        return []

    sections = set(args.only or ("memory", "latency", "nats"))
    rows: list[Row] = []
    if "memory" in sections:
        print(
            f"1. in-memory events/s, {SUBSCRIBERS} subscribers, validation on, {plan.emitters} "
            f"emitters, vs bare asyncio.Queue fan-out ({plan.events:,} events)",
            flush=True,
        )
        m = await bench_memory(
            config, settings, subscribers, plan.events, plan.emitters, plan.repeats, rng
        )
        print(
            f"  => mesh {fmt_rate(m.mesh_rate)} ({1e6 / m.mesh_rate:.1f} µs/event) vs bare "
            f"{fmt_rate(m.fanout_rate)} ({1e6 / m.fanout_rate:.1f} µs/event): {m.ratio:.3f}x\n",
            flush=True,
        )
        rows.append(
            Row(
                f"in-memory, {SUBSCRIBERS} subs, validation on ({m.events:,})",
                f">= {MEMORY_GOAL}x fan-out",
                fmt_rate(m.mesh_rate),
                f"{fmt_rate(m.fanout_rate)} (fan-out)",
                f"{m.ratio:.3f}x",
                verdict(m.ratio >= MEMORY_GOAL),
            )
        )
        rows.append(
            Row(
                "  same, emit(type, payload) builds events",
                "-",
                fmt_rate(m.build_rate),
                f"{fmt_rate(m.fanout_rate)} (fan-out)",
                f"{m.build_ratio:.3f}x",
                "info",
            )
        )
    if "latency" in sections:
        print(
            f"2. emit-to-handler latency, {plan.latency_emitters} emitters paced to "
            f"{fmt_rate(plan.latency_rate)} in total ({plan.latency_events:,} events, "
            f"{SUBSCRIBERS} subscribers)",
            flush=True,
        )
        lat = await bench_latency(
            config,
            settings,
            subscribers,
            plan.latency_events,
            plan.latency_emitters,
            plan.latency_rate,
            rng,
        )
        print_latency("mesh", lat.mesh)
        print_latency("bare fan-out", lat.fanout)
        print()
        for stat in ("p50", "p99"):
            mesh_ms: float = getattr(lat.mesh, f"{stat}_ms")
            bare_ms: float = getattr(lat.fanout, f"{stat}_ms")
            rows.append(
                Row(
                    f"emit->handler {stat} @ {fmt_rate(lat.mesh.rate)}",
                    "-",
                    f"{mesh_ms:.3f} ms",
                    f"{bare_ms:.3f} ms (fan-out)",
                    "-",
                    "info",
                )
            )
    if "nats" in sections:
        print(
            f"3. NATS JetStream at {args.nats_url}: mesh on NatsTransport ({plan.nats_emitters} "
            f"emitters) vs bare nats-py publish_async ({plan.nats_events:,} events)",
            flush=True,
        )
        api = import_nats()
        reason = api if isinstance(api, str) else await nats_unreachable(api, args.nats_url)
        if reason is not None or isinstance(api, str):
            print(f"  skipped: {reason}\n", flush=True)
            rows.append(
                Row(
                    "NATS transport",
                    f">= {NATS_GOAL}x bare",
                    f"skipped: {reason}",
                    "-",
                    "-",
                    "SKIP",
                )
            )
        else:
            bench = await NatsBench.connect(api, args.nats_url)
            try:
                n = await bench_nats(
                    bench,
                    config,
                    settings,
                    subscribers,
                    plan.nats_events,
                    plan.nats_emitters,
                    plan.repeats,
                    rng,
                )
            finally:
                await bench.close()
            print(
                f"  => publish {n.publish_ratio:.3f}x bare publish_async; end to end "
                f"{n.e2e_ratio:.3f}x bare publish_async + {SUBSCRIBERS} pull consumers\n",
                flush=True,
            )
            rows.append(
                Row(
                    f"NATS publish ({n.events:,})",
                    f">= {NATS_GOAL}x bare",
                    fmt_rate(n.publish_mesh),
                    f"{fmt_rate(n.publish_bare)} (publish_async)",
                    f"{n.publish_ratio:.3f}x",
                    verdict(n.publish_ratio >= NATS_GOAL),
                )
            )
            rows.append(
                Row(
                    f"  NATS end to end, {SUBSCRIBERS} subs",
                    "-",
                    fmt_rate(n.e2e_mesh),
                    f"{fmt_rate(n.e2e_bare)} (+{SUBSCRIBERS} consumers)",
                    f"{n.e2e_ratio:.3f}x",
                    "info",
                )
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    # The mesh logs blocked events at info level; keep the output to the figures.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    plan, args = parse_args(argv)
    kind = "profile" if args.profile else ("quick" if args.quick else "full")
    print(
        f"grace mesh benchmark: {kind} run, python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, repeats {plan.repeats}",
        flush=True,
    )
    start = time.perf_counter()
    rows = asyncio.run(run(plan, args))
    total = time.perf_counter() - start
    if args.profile:
        print(f"total {total:.1f} s")
        return 0
    print(
        f"summary: medians of {plan.repeats} paired repeats (ratio = median of the per-repeat "
        f"ratios, so it need not equal measured / baseline); total {total:.1f} s\n"
    )
    print_table(rows)
    missed = sum(r.status == "MISS" for r in rows)
    skipped = sum(r.status == "SKIP" for r in rows)
    print(f"\n{missed} goal(s) missed" if missed else "\nall measured goals met", end="")
    print(f", {skipped} section(s) skipped" if skipped else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
