"""Governance benchmarks: ``Gate.decide`` against a bare Cedar call, and HTTP req/s with and
without ``GovernanceMiddleware``.

Run from the repository root::

    .venv/bin/python bench/governance.py            # full run
    .venv/bin/python bench/governance.py --quick    # smoke run, a few seconds
    .venv/bin/python bench/governance.py --profile  # instead: cProfile of Gate.decide and
                                                    # of the governed app per request

Every decision goes through the real runtime, ``Grace.start(GraceSettings(data_dir=tmp,
ledger=LedgerSettings(checkpoint_interval_s=0)))``: the packaged Cedar constitution, the
content analyzers, the durable ledger (``synchronous=FULL``), the decision index and the
mesh publisher. The request is what ``GovernanceMiddleware`` builds for ``GET
/items/{item_id}`` by a human ``operator``; the constitution approves it.

1. ``Gate.decide`` µs per decision (wall time / decisions), for
   * *first sight*: every decision by a new principal for a new action, so neither the
     constitution's principal-entity cache nor the risk registry's cache has seen it;
   * *repeated*: the same principal, action and context every time;
   each with 64 concurrent callers (what a server does; the ledger commits their appends
   together) and with one caller (latency, info). The baseline is a bare
   ``cedarpy.is_authorized(request, PolicySet, Entities)`` on the same request, with
   handles pre-parsed here the way ``constitution.py`` builds them (the enforcing policies
   keyed by ``@id``; the schema's action entities plus the principal, each principal's
   ``Entities`` built before the clock starts). The bench checks that its request equals
   the one the constitution sends to Cedar and that both get the same answer.
   Goals: first sight <= 1.5x the bare call; repeated <= 10 µs.
   Info rows isolate the ledger: the same gate wired to an in-memory ``AuditSink`` that
   returns real-looking receipts (decision index kept; mesh events through a mesh of the
   same config whose audit also goes to that sink), and the gate core (in-memory sink, no
   index, no events). A component breakdown times each step of ``decide`` on its own.
2. req/s of a small FastAPI app (one ``GET /items/{item_id}`` route): ``create_app(factory)``
   with the real runtime (``GovernanceMiddleware`` in enforce mode, every decision in the
   ledger), against a plain FastAPI app with the same route. Each app runs in its own
   uvicorn subprocess (this script, ``--serve``) so that server and load loop do not share
   a core. Two load loops, each with 64 keep-alive connections on 127.0.0.1 and a goal row:
   ``raw`` (HTTP/1.1 over asyncio streams: cheap, so the server is what saturates) and
   ``httpx`` (one ``AsyncClient`` per connection). Every response must be a 200 (the
   governed ones with ``Grace-Decision-Id``); afterwards the governed ledger must hold one
   decision per governed request and verify. Goal: governed >= 0.85x bare. Info rows:
   server CPU µs per request (from ``/proc``), and the load loop's CPU: near 100% means
   the client, not the server, set the pace, and the ratio is flattered.

Each paired measurement is repeated ``--repeats`` times, alternating the measured thing and
its baseline; the median of the per-repeat ratios is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import functools
import gc
import hashlib
import importlib.resources
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol
from unittest import mock

import cedarpy
import httpx
import structlog
import uvicorn
from fastapi import FastAPI

from _report import Row, fmt_rate, print_profile, print_table, verdict
from grace.config import GraceSettings, LedgerSettings, TrustSettings
from grace.governance.analyzers import analyze
from grace.governance.engine import ConstitutionEngine
from grace.governance.gate import DECISION_EVENT, Facts, Gate, StaticTrust
from grace.governance.middleware import DECISION_HEADER
from grace.governance.model import (
    ActionRequest,
    Decision,
    Outcome,
    Principal,
    PrincipalKind,
    RiskLevel,
)
from grace.governance.principals import PrincipalRegistry
from grace.ledger import Ledger
from grace.ledger.audit import log_decision
from grace.ledger.entry import Receipt
from grace.mesh import TriggerMesh, load_mesh_config
from grace.runtime import Grace
from grace.server import create_app
from grace.server.governance_api import GovernanceServices
from grace.types import Clock, SystemClock

PRIOR_TRUST = TrustSettings().to_config().default_score
"""What a principal the trust store has not seen scores (the gate's trust for the bench's)."""
FIRST_SIGHT_GOAL = 1.5
"""First-sight decision <= this many bare Cedar calls."""
REPEATED_GOAL_US = 10.0
HTTP_GOAL = 0.85
CALLERS = 64
ROLE = "operator"
ROUTE = "/items/{item_id}"
ACTION = f"GET:{ROUTE}"
CLIENT_ID = "bench-client"
READY_TIMEOUT_S = 60.0
CLOCK = SystemClock()
SCRIPT = Path(__file__).resolve()

# -- requests --------------------------------------------------------------------------


def grace_settings(data_dir: Path) -> GraceSettings:
    """The runtime's settings: every decision durable in the ledger, no timed checkpoints."""
    return GraceSettings(data_dir=data_dir, ledger=LedgerSettings(checkpoint_interval_s=0))


def http_context(path: str) -> dict[str, Any]:
    """The context ``GovernanceMiddleware`` builds for a body-less GET without a reason."""
    return {"method": "GET", "path": path, "query": "", "reason": "", "body": None}


def principal(principal_id: str) -> Principal:
    return Principal(id=principal_id, kind=PrincipalKind.HUMAN, roles=frozenset({ROLE}))


def request_for(who: Principal, action: str, path: str, request_id: str) -> ActionRequest:
    return ActionRequest(
        request_id=request_id,
        principal=who,
        action=action,
        resource="item_id=1",
        context=http_context(path),
        source="http",
    )


def first_sight_requests(tag: str, count: int) -> list[ActionRequest]:
    """``count`` requests, each by a new principal for a new action (unique ``tag``)."""
    return [
        request_for(
            principal(f"bench-{tag}-{i}"),
            f"GET:/bench/{tag}/r{i}/{{item_id}}",
            f"/bench/{tag}/r{i}/1",
            f"req-{tag}-{i}",
        )
        for i in range(count)
    ]


def repeated_requests(tag: str, count: int) -> list[ActionRequest]:
    """``count`` requests with the same principal, action and context (ids differ)."""
    who = principal("bench-alice")
    return [request_for(who, ACTION, "/items/1", f"req-{tag}-{i}") for i in range(count)]


# -- a bare Cedar call with pre-parsed handles ------------------------------------------


class BareCedar:
    """The constitution's enforcing policies, schema and entities as plain cedarpy handles.

    Built here from the policy files the way ``Constitution`` builds them: each file's
    policies to Cedar's JSON form, staged (``@mode("log")``) ones left out, keyed by
    ``@id`` in one ``PolicySet``; ``Entities`` = the schema's action entities plus the
    principal, validated against the schema.
    """

    def __init__(self, policy_dir: Path | None, trust: float, quorum: int) -> None:
        root: Any = (
            policy_dir
            if policy_dir is not None
            else importlib.resources.files("grace.governance").joinpath("policies")
        )
        files = sorted((f for f in root.iterdir() if f.is_file()), key=lambda f: f.name)
        schema_file = next(f for f in files if f.name.endswith((".cedarschema", ".json")))
        text = schema_file.read_text("utf-8")
        self.schema = (
            cedarpy.Schema.from_json_str(text)
            if schema_file.name.endswith(".json")
            else cedarpy.Schema.from_str(text)
        )
        static: dict[str, Any] = {}
        for f in files:
            if not f.name.endswith(".cedar"):
                continue
            est = json.loads(cedarpy.policies_to_json_str(f.read_text("utf-8")))
            for body in est["staticPolicies"].values():
                annotations = body.get("annotations") or {}
                if annotations.get("mode") != "log":
                    static[annotations["id"]] = body
        self.policies = cedarpy.PolicySet.from_json_str(
            json.dumps({"staticPolicies": static, "templates": {}, "templateLinks": []})
        )
        self.base = cedarpy.Entities.from_json_str("[]", self.schema)
        self.trust = round(trust * 1000)
        self.quorum = quorum

    def entities(self, who: Principal) -> cedarpy.Entities:
        entity = {
            "uid": {"type": "Principal", "id": who.id},
            "attrs": {
                "kind": str(who.kind),
                "roles": sorted(who.roles),
                "autonomy_tier": who.autonomy_tier,
            },
            "parents": [],
        }
        return self.base.with_added_json_str(json.dumps([entity]), self.schema)

    def request(self, request: ActionRequest, risk: RiskLevel) -> dict[str, Any]:
        """The Cedar request for an approved, finding-free HTTP request by ``request``'s
        principal (the facts the gate establishes for it)."""
        return {
            "principal": {"type": "Principal", "id": request.principal.id},
            "action": {"type": "Action", "id": request.action},
            "resource": {"type": "Resource", "id": request.resource},
            "context": {
                "authenticated": True,
                "is_autonomous": request.is_autonomous,
                "risk": risk.rank,
                "trust": self.trust,
                "approved": False,
                "approvals": 0,
                "quorum": self.quorum,
                "has_reason": False,
                "reversible": True,
                "low_confidence": False,
                "low_confidence_disclosed": False,
                "personal_data": False,
                "consent": False,
                "findings": [],
            },
        }

    def calls(
        self, requests: Sequence[ActionRequest]
    ) -> list[tuple[dict[str, Any], cedarpy.Entities]]:
        """Pre-built ``(request, entities)`` pairs (one ``Entities`` per distinct principal)."""
        built: dict[str, cedarpy.Entities] = {}
        out = []
        for r in requests:
            entities = built.get(r.principal.id)
            if entities is None:
                entities = built[r.principal.id] = self.entities(r.principal)
            out.append((self.request(r, RiskLevel.LOW), entities))
        return out


def answer_of(result: cedarpy.AuthzResult) -> tuple[str, list[str], list[str]]:
    return (
        str(result.decision),
        sorted(result.diagnostics.reasons),
        [str(e) for e in result.diagnostics.errors],
    )


async def check_same_request(gate: Gate, bare: BareCedar, request: ActionRequest) -> None:
    """The bench's Cedar request is the constitution's, and both get the same answer."""
    with mock.patch.object(cedarpy, "is_authorized", wraps=cedarpy.is_authorized) as spy:
        decision = await gate.decide(request)
    if not spy.call_args_list:
        raise SystemExit("the gate did not call cedarpy.is_authorized")
    sent, policies, entities = spy.call_args_list[0].args
    mine = bare.request(request, decision.risk)
    if sent != mine:
        raise SystemExit(f"bench request differs from the constitution's:\n{sent}\n{mine}")
    theirs = answer_of(cedarpy.is_authorized(sent, policies, entities))
    ours = answer_of(cedarpy.is_authorized(mine, bare.policies, bare.entities(request.principal)))
    if theirs != ours or ours[0] != str(cedarpy.Decision.Allow):
        raise SystemExit(f"bare Cedar answers {ours}, the constitution's call {theirs}")
    if len(spy.call_args_list) != 1:
        raise SystemExit(f"the gate made {len(spy.call_args_list)} Cedar calls, not 1")


def time_bare(bare: BareCedar, calls: Sequence[tuple[dict[str, Any], cedarpy.Entities]]) -> float:
    """µs per ``cedarpy.is_authorized`` over pre-built calls."""
    is_authorized = cedarpy.is_authorized
    policies = bare.policies
    gc.collect()
    start = time.perf_counter()
    for request, entities in calls:
        result = is_authorized(request, policies, entities)
    elapsed = time.perf_counter() - start
    if result.decision is not cedarpy.Decision.Allow:
        raise SystemExit(f"bare Cedar call denied: {answer_of(result)}")
    return 1e6 * elapsed / len(calls)


# -- gates -----------------------------------------------------------------------------


class MemorySink:
    """An in-memory ``AuditSink``: real-looking receipts, nothing stored."""

    def __init__(self, clock: Clock) -> None:
        self.seq = 0
        self.clock = clock

    async def append(
        self,
        *,
        subsystem: str,
        actor: str,
        action: str,
        resource: str = "",
        result: str = "",
        payload: dict[str, Any] | None = None,
    ) -> Receipt:
        self.seq += 1
        digest = hashlib.sha256(self.seq.to_bytes(8, "big")).hexdigest()
        return Receipt(self.seq, digest, self.clock.now())


@dataclass
class MemoryGate:
    """A gate wired like the runtime's, recording into an in-memory sink; with ``events``,
    its own mesh (the runtime's config and trust, audit into the same sink)."""

    gate: Gate
    sink: MemorySink
    mesh: TriggerMesh | None


async def memory_gate(grace: Grace, *, index: bool, events: bool) -> MemoryGate:
    gov = grace.settings.governance
    sink = MemorySink(CLOCK)
    trust = StaticTrust(PRIOR_TRUST)
    mesh: TriggerMesh | None = None
    if events:
        mesh = TriggerMesh(load_mesh_config(), clock=CLOCK, audit=sink)
        mesh.set_trust_scorer(trust.score)
        await mesh.start()
    gate = Gate(
        policies=ConstitutionEngine(grace.constitution, quorum=gov.parliament_quorum),
        analyze=analyze,
        ledger=sink,
        approvals=grace.approvals,
        clock=CLOCK,
        trust=trust,
        events=mesh.publisher("governance_gate") if mesh is not None else None,
        settings=grace.gate.settings,
        index=grace.decision_index if index else None,
    )
    return MemoryGate(gate, sink, mesh)


def check_decisions(decisions: Sequence[Decision | None], what: str) -> None:
    for d in decisions:
        if (
            d is None
            or not d.allowed
            or d.outcome is not Outcome.APPROVED
            or d.receipt_seq is None
            or d.error is not None
        ):
            raise SystemExit(f"{what}: a decision was not an approved, recorded one: {d}")


async def time_decides(
    gate: Gate,
    requests: Sequence[ActionRequest],
    callers: int,
    what: str,
    profiler: cProfile.Profile | None = None,
) -> float:
    """µs per decision (wall time / decisions) with ``callers`` concurrent callers."""
    decisions: list[Decision | None] = [None] * len(requests)

    async def caller(first: int) -> None:
        for i in range(first, len(requests), callers):
            decisions[i] = await gate.decide(requests[i])

    gc.collect()
    if profiler is not None:
        profiler.enable()
    start = time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(callers)))
    elapsed = time.perf_counter() - start
    if profiler is not None:
        profiler.disable()
    check_decisions(decisions, what)
    return 1e6 * elapsed / len(requests)


# -- 1. Gate.decide ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Variant:
    """One way of wiring the gate, timed with ``callers`` concurrent callers."""

    key: str
    label: str
    callers: int


VARIANTS = (
    Variant("real", f"gate, durable ledger, {CALLERS} callers", CALLERS),
    Variant("real", "gate, durable ledger, 1 caller", 1),
    Variant("memory", f"  ledger -> in-memory sink, {CALLERS} callers", CALLERS),
    Variant("memory", "  ledger -> in-memory sink, 1 caller", 1),
    Variant("core", "  gate core (no ledger/index/events), 1 caller", 1),
)


@dataclass(frozen=True, slots=True)
class DecideResult:
    kind: str
    """``first sight`` or ``repeated``."""
    variant: Variant
    gate_us: float
    bare_us: float
    ratio: float


@dataclass(frozen=True, slots=True)
class DecidePlan:
    first_sight: int
    """Decisions per first-sight run with ``CALLERS`` callers (a quarter with one)."""
    repeated: int
    bare_repeated: int
    repeats: int


def sized(plan: DecidePlan, kind: str, callers: int) -> int:
    n = plan.first_sight if kind == "first sight" else plan.repeated
    return n if callers > 1 else max(n // 4, 10)


async def bench_decide(grace: Grace, plan: DecidePlan) -> tuple[list[DecideResult], int]:
    """Paired runs of every variant against the bare call; returns results and ledger
    entries written per decision by the real gate."""
    gov = grace.settings.governance
    bare = BareCedar(gov.policy_dir, PRIOR_TRUST, gov.parliament_quorum)
    memory = await memory_gate(grace, index=True, events=True)
    core = await memory_gate(grace, index=False, events=False)
    gates: dict[str, Gate] = {"real": grace.gate, "memory": memory.gate, "core": core.gate}
    try:
        return await paired_decides(grace, plan, bare, gates)
    finally:
        if memory.mesh is not None:
            await memory.mesh.stop()


async def paired_decides(
    grace: Grace, plan: DecidePlan, bare: BareCedar, gates: dict[str, Gate]
) -> tuple[list[DecideResult], int]:
    await check_same_request(grace.gate, bare, repeated_requests("check", 1)[0])
    await check_same_request(grace.gate, bare, first_sight_requests("check", 1)[0])
    for gate in gates.values():  # warm every path once
        await time_decides(gate, repeated_requests("warm", 20), 4, "warm-up")
    bare_repeated = bare.calls(repeated_requests("bare", plan.bare_repeated))
    time_bare(bare, bare_repeated[:1000])

    before = await grace.ledger.size()
    real_decisions = 0
    samples: dict[tuple[str, Variant], tuple[list[float], list[float], list[float]]] = {}
    for rep in range(plan.repeats):
        for variant in VARIANTS:
            gate = gates[variant.key]
            for kind in ("first sight", "repeated"):
                n = sized(plan, kind, variant.callers)
                tag = f"{rep}-{variant.key}-{variant.callers}-{kind[0]}"
                if kind == "first sight":
                    requests = first_sight_requests(tag, n)
                    calls = bare.calls(requests)
                else:
                    requests = repeated_requests(tag, n)
                    calls = bare_repeated
                # Alternate which goes first, so drift hurts both alike.
                if rep % 2:
                    bare_us = time_bare(bare, calls)
                    gate_us = await time_decides(gate, requests, variant.callers, variant.label)
                else:
                    gate_us = await time_decides(gate, requests, variant.callers, variant.label)
                    bare_us = time_bare(bare, calls)
                if variant.key == "real":
                    real_decisions += n
                g, b, r = samples.setdefault((kind, variant), ([], [], []))
                g.append(gate_us)
                b.append(bare_us)
                r.append(gate_us / bare_us)
                print(
                    f"  [rep {rep + 1}/{plan.repeats}] {kind:<11} {variant.label.strip():<46} "
                    f"{gate_us:9.1f} µs   bare Cedar {bare_us:6.1f} µs   "
                    f"ratio {gate_us / bare_us:8.2f}",
                    flush=True,
                )
    written = await grace.ledger.size() - before
    results = [
        DecideResult(
            kind, variant, statistics.median(g), statistics.median(b), statistics.median(r)
        )
        for (kind, variant), (g, b, r) in samples.items()
    ]
    return results, round(written / real_decisions)


# -- component breakdown ------------------------------------------------------------------


async def time_async(
    make: Callable[[int], Awaitable[object]], count: int, callers: int = 1
) -> float:
    """µs per ``await make(i)`` (wall time / count) with ``callers`` concurrent callers."""

    async def caller(first: int) -> None:
        for i in range(first, count, callers):
            await make(i)

    gc.collect()
    start = time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(callers)))
    return 1e6 * (time.perf_counter() - start) / count


def time_sync(call: Callable[[int], object], count: int) -> float:
    gc.collect()
    start = time.perf_counter()
    for i in range(count):
        call(i)
    return 1e6 * (time.perf_counter() - start) / count


async def breakdown(grace: Grace, count: int) -> list[tuple[str, float]]:
    """µs per call of each step of ``Gate.decide``, timed on its own."""
    gov = grace.settings.governance
    bare = BareCedar(gov.policy_dir, PRIOR_TRUST, gov.parliament_quorum)
    engine = ConstitutionEngine(grace.constitution, quorum=gov.parliament_quorum)
    core = (await memory_gate(grace, index=False, events=False)).gate
    request = repeated_requests("parts", 1)[0]
    decision = await core.decide(request)
    facts = Facts(risk=RiskLevel.LOW, trust=PRIOR_TRUST)
    scan = {"action": request.action, "resource": request.resource, "context": request.context}
    fresh = first_sight_requests("parts", count)
    fresh_bare = first_sight_requests("parts-bare", count)
    publisher = grace.gate._events
    if publisher is None:
        raise SystemExit("the runtime's gate has no event publisher")
    event = {
        "decision_id": decision.decision_id,
        "request_id": decision.request_id,
        "outcome": str(decision.outcome),
        "allowed": True,
        "action": request.action,
        "resource": request.resource,
        "principal": request.principal.id,
        "receipt_seq": 1,
    }

    async def record(i: int) -> Receipt:
        return await log_decision(
            grace.ledger,
            actor=request.principal.id,
            action=request.action,
            resource=request.resource,
            decision=decision.outcome,
            request_id=f"parts-{i}",
            risk_level=decision.risk,
            trust_score=decision.trust_score,
            details={"decision_id": f"dec_parts_{i}", "allowed": True, "mode": "enforce"},
        )

    async def index(i: int) -> None:
        await grace.decision_index.record(replace(decision, decision_id=f"dec_parts_{i}"), request)

    small = max(count // 4, 10)
    return [
        ("analyze(action, resource, context)", time_sync(lambda i: analyze(scan), count)),
        ("engine.evaluate, repeated", time_sync(lambda i: engine.evaluate(request, facts), count)),
        (
            "engine.evaluate, first sight",
            time_sync(lambda i: engine.evaluate(fresh[i], facts), count),
        ),
        (
            "  of which: principal Entities (bare with_added_json_str)",
            time_sync(lambda i: bare.entities(fresh_bare[i].principal), count),
        ),
        ("bare cedarpy.is_authorized, repeated", time_bare(bare, bare.calls([request] * count))),
        (
            "gate core decide (sum of the above + glue)",
            await time_async(lambda i: core.decide(request), count),
        ),
        ("ledger append (log_decision), 1 caller", await time_async(record, small)),
        (
            f"ledger append (log_decision), {CALLERS} callers",
            await time_async(record, count, CALLERS),
        ),
        ("decision index record, 1 caller", await time_async(index, small)),
        (f"decision index record, {CALLERS} callers", await time_async(index, count, CALLERS)),
        (
            f"mesh emit {DECISION_EVENT} (blocked + audited), 1 caller",
            await time_async(lambda i: publisher.emit(DECISION_EVENT, event), small),
        ),
    ]


# -- profile ---------------------------------------------------------------------------


async def profile_decide(grace: Grace, count: int, top: int) -> None:
    """cProfile the real gate (64 callers, repeated) and the gate core (1 caller)."""
    core = (await memory_gate(grace, index=False, events=False)).gate
    for title, gate, callers in (
        (f"real gate (durable ledger, index, mesh), {CALLERS} callers, repeated", grace.gate, 64),
        ("gate core (in-memory sink, no index, no events), 1 caller, repeated", core, 1),
        ("gate core, 1 caller, first sight", core, 1),
    ):
        first = "first sight" in title
        make = first_sight_requests if first else repeated_requests
        await time_decides(gate, make(f"pw-{title}", 50), callers, title)
        plain = await time_decides(gate, make(f"pp-{title}", count), callers, title)
        profiler = cProfile.Profile()
        profiled = await time_decides(gate, make(f"pr-{title}", count), callers, title, profiler)
        print(
            f"profile: {title}: {count:,} decisions, {plain:.1f} µs/decision unprofiled, "
            f"{profiled:.1f} under cProfile (main thread only: the ledger writer's and "
            "to_thread work is not in it; waiting shows as epoll)\n",
            flush=True,
        )
        print_profile(profiler, count, top, "decision")


class StatusRecorder:
    """An ASGI ``send`` that keeps the response status."""

    def __init__(self) -> None:
        self.status = 0

    async def __call__(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]


async def asgi_requests(
    app: FastAPI, key: str, count: int, callers: int, profiler: cProfile.Profile | None = None
) -> float:
    """µs per ``GET /items/{n}`` called on the ASGI app directly (no sockets, no HTTP parsing)."""
    headers = [(b"host", b"bench"), (b"authorization", f"Bearer {key}".encode())]

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def caller(first: int) -> None:
        for i in range(first, count, callers):
            send = StatusRecorder()
            path = f"/items/{i}"
            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "GET",
                "scheme": "http",
                "path": path,
                "raw_path": path.encode(),
                "root_path": "",
                "query_string": b"",
                "headers": headers,
                "client": ("127.0.0.1", 40000 + first),
                "server": ("127.0.0.1", 80),
            }
            await app(scope, receive, send)
            if send.status != 200:
                raise SystemExit(f"ASGI GET {path}: {send.status}")

    gc.collect()
    if profiler is not None:
        profiler.enable()
    start = time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(callers)))
    elapsed = time.perf_counter() - start
    if profiler is not None:
        profiler.disable()
    return 1e6 * elapsed / count


async def profile_asgi(base: Path, count: int, top: int) -> None:
    """cProfile the governed app per request, called in-process; the bare app for scale."""
    data_dir = base / "asgi-data"
    data_dir.mkdir()
    key = register_client(data_dir)
    bare = bare_app()
    await asgi_requests(bare, key, 200, CALLERS)
    bare_us = await asgi_requests(bare, key, count, CALLERS)
    app = governed_app(data_dir)
    async with app.router.lifespan_context(app):
        await asgi_requests(app, key, 200, CALLERS)
        plain = await asgi_requests(app, key, count, CALLERS)
        profiler = cProfile.Profile()
        profiled = await asgi_requests(app, key, count, CALLERS, profiler)
    print(
        f"profile: governed app, GET {ROUTE} called as ASGI in-process, {CALLERS} callers: "
        f"{count:,} requests, {plain:.1f} µs/request unprofiled ({profiled:.1f} under "
        f"cProfile); the bare app: {bare_us:.1f} µs/request\n",
        flush=True,
    )
    print_profile(profiler, count, top, "request")


# -- 2. HTTP ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(ROUTE)
    async def get_item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    return app


def governed_app(data_dir: Path) -> FastAPI:
    """``create_app`` around the real runtime, plus the same route."""
    settings = grace_settings(data_dir)

    async def factory() -> tuple[GovernanceServices, Callable[[], Awaitable[None]]]:
        grace = await Grace.start(settings)
        return grace, grace.stop

    app = create_app(factory)

    @app.get(ROUTE)
    async def get_item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    return app


def serve(kind: str, port: int, data_dir: Path | None) -> int:
    """The ``--serve`` subprocess: one app under uvicorn until SIGTERM."""
    if kind == "governed":
        if data_dir is None:
            raise SystemExit("--serve governed needs --data-dir")
        app = governed_app(data_dir)
    else:
        app = bare_app()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    asyncio.run(uvicorn.Server(config).serve())
    return 0


def register_client(data_dir: Path) -> str:
    """The load loop's principal and API key, made before the server starts."""
    registry = PrincipalRegistry(data_dir / "principals.db", clock=CLOCK)
    try:
        registry.add(CLIENT_ID, kind=PrincipalKind.HUMAN, roles=[ROLE])
        return registry.create_key(CLIENT_ID)
    finally:
        registry.close()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process (all threads), from ``/proc``; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    kind: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


def spawn(kind: str, port: int, log: Path, data_dir: Path | None) -> subprocess.Popen[bytes]:
    """This script in ``--serve`` mode, output to ``log``."""
    cmd = [sys.executable, str(SCRIPT), "--serve", kind, "--port", str(port)]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603


@contextlib.asynccontextmanager
async def server(kind: str, base: Path, data_dir: Path | None) -> AsyncIterator[Server]:
    """A ``--serve`` subprocess (not yet ready: see :func:`ready`), stopped with SIGTERM."""
    port = free_port()
    log = base / f"{kind}-server.log"
    proc = spawn(kind, port, log, data_dir)
    try:
        yield Server(kind, f"http://127.0.0.1:{port}", proc, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)
            raise SystemExit(f"{kind} server did not stop on SIGTERM") from None
        # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
        if code not in (0, -signal.SIGTERM):
            print(f"  warning: {kind} server exited with {code}:\n{log.read_text()[-2000:]}")


async def ready(srv: Server) -> None:
    """Wait until the server answers ``/health`` (the governed one once Grace started)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with httpx.AsyncClient(base_url=srv.url, verify=plain_http_context()) as client:
        while True:
            if srv.proc.poll() is not None:
                raise SystemExit(f"{srv.kind} server exited:\n{srv.log.read_text()[-4000:]}")
            with contextlib.suppress(httpx.TransportError):
                r = await client.get("/health")
                if r.status_code == 200 and r.json().get("status") == "ok":
                    return
            if time.monotonic() > deadline:
                raise SystemExit(f"{srv.kind} server not ready after {READY_TIMEOUT_S:.0f} s")
            await asyncio.sleep(0.05)


class Connection(Protocol):
    """One keep-alive connection of the load loop."""

    async def get(self, path: str) -> tuple[int, bool, str]:
        """``(status, has a Grace-Decision-Id header, body)``."""
        ...

    async def close(self) -> None: ...


@functools.cache
def plain_http_context() -> ssl.SSLContext:
    """One TLS context for every httpx client (the URLs are plain http; without it each
    client loads the CA bundle)."""
    return ssl.create_default_context()


class HttpxConnection:
    """An ``httpx.AsyncClient`` limited to one connection.

    One client per connection: a shared pool's per-request bookkeeping grows with its
    size (encode/httpx#3215), so 64 workers on one client measure the pool, not the server.
    """

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.client = httpx.AsyncClient(
            base_url=url,
            headers=headers,
            verify=plain_http_context(),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=60.0,
        )

    async def get(self, path: str) -> tuple[int, bool, str]:
        r = await self.client.get(path)
        return r.status_code, DECISION_HEADER in r.headers, r.text

    async def close(self) -> None:
        await self.client.aclose()


class RawConnection:
    """HTTP/1.1 keep-alive GETs over ``asyncio`` streams: a load loop that costs the
    client a fraction of what httpx does, so the server is what runs out first."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.head = head
        """The request's header lines after the request line, and the blank line."""

    @classmethod
    async def open(cls, url: str, headers: dict[str, str]) -> RawConnection:
        host, _, port = url.removeprefix("http://").partition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        lines = [f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in headers.items())]
        return cls(reader, writer, ("\r\n".join(lines) + "\r\n\r\n").encode())

    async def get(self, path: str) -> tuple[int, bool, str]:
        self.writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\n" + self.head)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = raw.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if "content-length" not in headers:
            raise SystemExit(f"response without content-length: {raw[:300]!r}")
        body = await self.reader.readexactly(int(headers["content-length"]))
        return int(status_line.split()[1]), DECISION_HEADER in headers, body.decode()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


CLIENTS = ("raw", "httpx")


async def connect(client: str, url: str, headers: dict[str, str]) -> Connection:
    if client == "httpx":
        return HttpxConnection(url, headers)
    return await RawConnection.open(url, headers)


@dataclass(frozen=True, slots=True)
class LoadRun:
    requests: int
    """Every request sent, warm-up included (each must be in a governed ledger)."""
    rate: float
    server_cpu_us: float | None
    """Server CPU per request."""
    client_busy: float
    """Load loop CPU / wall time (1.0: one core saturated)."""


async def load(srv: Server, key: str, client: str, concurrency: int, seconds: float) -> LoadRun:
    """GET ``/items/{n}`` on ``concurrency`` connections for ``seconds``; every answer a 200."""
    governed = srv.kind == "governed"
    headers = {"Authorization": f"Bearer {key}"}
    conns = [await connect(client, srv.url, headers) for _ in range(concurrency)]
    counts = [0] * concurrency

    async def call(conn: Connection, path: str) -> None:
        status, decided, text = await conn.get(path)
        if status != 200 or decided != governed:
            raise SystemExit(f"{srv.kind} via {client}: {status} {text[:500]}")

    async def worker(k: int, until: float) -> None:
        conn, n = conns[k], 0
        while time.perf_counter() < until:
            await call(conn, f"/items/{k}-{n}")
            n += 1
        counts[k] = n

    try:
        # Open every connection with one request, then run.
        await asyncio.gather(*(call(c, f"/items/warm-{k}") for k, c in enumerate(conns)))
        gc.collect()
        cpu0, server0 = time.process_time(), cpu_seconds(srv.proc.pid)
        start = time.perf_counter()
        await asyncio.gather(*(worker(k, start + seconds) for k in range(concurrency)))
        elapsed = time.perf_counter() - start
        cpu1, server1 = time.process_time(), cpu_seconds(srv.proc.pid)
    finally:
        for conn in conns:
            await conn.close()
    done = sum(counts)
    server_cpu = None if server0 is None or server1 is None else 1e6 * (server1 - server0) / done
    return LoadRun(done + concurrency, done / elapsed, server_cpu, (cpu1 - cpu0) / elapsed)


@dataclass(frozen=True, slots=True)
class HttpResult:
    client: str
    bare_rate: float
    governed_rate: float
    ratio: float
    bare_cpu_us: float | None
    governed_cpu_us: float | None
    cpu_ratio: float | None
    bare_client_busy: float
    governed_client_busy: float


@dataclass(frozen=True, slots=True)
class LedgerCheck:
    requests: int
    decisions: int
    entries: int


async def count_decisions(ledger: Ledger) -> int:
    """Governance entries for the load loop's principal and route."""
    n, after = 0, None
    while True:
        page = await ledger.query(
            after=after, subsystem="governance", actor=CLIENT_ID, action=ACTION, limit=10_000
        )
        n += len(page.entries)
        if page.next_after is None:
            return n
        after = page.next_after


def median_or_none(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


async def bench_http(
    base: Path, plan: Plan, clients: Sequence[str]
) -> tuple[list[HttpResult], LedgerCheck]:
    data_dir = base / "http-data"
    data_dir.mkdir()
    key = register_client(data_dir)
    runs: dict[tuple[str, str], list[LoadRun]] = {}
    ratios: dict[str, list[float]] = {c: [] for c in clients}
    cpu_ratios: dict[str, list[float]] = {c: [] for c in clients}
    governed_requests = 0
    async with (
        server("bare", base, None) as bare,
        server("governed", base, data_dir) as governed,
    ):
        await asyncio.gather(ready(bare), ready(governed))
        for client in clients:
            for srv in (bare, governed):
                warm = await load(srv, key, client, plan.concurrency, plan.warmup)
                governed_requests += warm.requests if srv is governed else 0
        for rep in range(plan.repeats):
            for client in clients:
                order = (bare, governed) if rep % 2 == 0 else (governed, bare)
                got: dict[str, LoadRun] = {}
                for srv in order:
                    got[srv.kind] = await load(srv, key, client, plan.concurrency, plan.seconds)
                    runs.setdefault((client, srv.kind), []).append(got[srv.kind])
                governed_requests += got["governed"].requests
                b, g = got["bare"], got["governed"]
                ratios[client].append(g.rate / b.rate)
                cpu_text = ""
                if b.server_cpu_us is not None and g.server_cpu_us is not None:
                    cpu_ratios[client].append(b.server_cpu_us / g.server_cpu_us)
                    cpu_text = (
                        f"   server CPU/req {b.server_cpu_us:5.0f} vs {g.server_cpu_us:5.0f} µs"
                    )
                print(
                    f"  [rep {rep + 1}/{plan.repeats}] {client:<5} bare {fmt_rate(b.rate):>8}   "
                    f"governed {fmt_rate(g.rate):>8}   ratio {g.rate / b.rate:.3f}{cpu_text}   "
                    f"load loop CPU {b.client_busy:.0%} / {g.client_busy:.0%}",
                    flush=True,
                )
    async with await Ledger.open(data_dir, read_only=True) as ledger:
        decisions = await count_decisions(ledger)
        entries = await ledger.size()
        report = await ledger.verify()
    if decisions != governed_requests:
        raise SystemExit(
            f"the governed server answered {governed_requests} requests, but its ledger holds "
            f"{decisions} decisions for them"
        )
    if not report.valid:
        raise SystemExit(f"the governed ledger does not verify: {report}")
    results = []
    for client in clients:
        b_runs, g_runs = runs[(client, "bare")], runs[(client, "governed")]
        results.append(
            HttpResult(
                client=client,
                bare_rate=statistics.median(r.rate for r in b_runs),
                governed_rate=statistics.median(r.rate for r in g_runs),
                ratio=statistics.median(ratios[client]),
                bare_cpu_us=median_or_none([r.server_cpu_us for r in b_runs if r.server_cpu_us]),
                governed_cpu_us=median_or_none(
                    [r.server_cpu_us for r in g_runs if r.server_cpu_us]
                ),
                cpu_ratio=median_or_none(cpu_ratios[client]),
                bare_client_busy=statistics.median(r.client_busy for r in b_runs),
                governed_client_busy=statistics.median(r.client_busy for r in g_runs),
            )
        )
    return results, LedgerCheck(governed_requests, decisions, entries)


# -- summary ---------------------------------------------------------------------------


def decide_rows(results: Sequence[DecideResult]) -> list[Row]:
    rows = []
    for r in results:
        goal_row = r.variant == VARIANTS[0]
        if r.kind == "first sight":
            goal = f"<= {FIRST_SIGHT_GOAL}x bare" if goal_row else "-"
            ok = r.ratio <= FIRST_SIGHT_GOAL if goal_row else None
        else:
            goal = f"<= {REPEATED_GOAL_US:.0f} µs" if goal_row else "-"
            ok = r.gate_us <= REPEATED_GOAL_US if goal_row else None
        name = r.variant.label
        indent = len(name) - len(name.lstrip())
        rows.append(
            Row(
                f"{' ' * indent}{r.kind}: {name.strip()}",
                goal,
                f"{r.gate_us:,.1f} µs",
                f"{r.bare_us:.1f} µs (cedarpy)",
                f"{r.ratio:,.2f}x",
                verdict(ok),
            )
        )
    return rows


def http_rows(results: Sequence[HttpResult], check: LedgerCheck, concurrency: int) -> list[Row]:
    rows = []
    for h in results:
        rows.append(
            Row(
                f"HTTP GET {ROUTE}, {concurrency} conns, {h.client} load loop",
                f">= {HTTP_GOAL}x bare",
                fmt_rate(h.governed_rate),
                f"{fmt_rate(h.bare_rate)} (plain FastAPI)",
                f"{h.ratio:.3f}x",
                verdict(h.ratio >= HTTP_GOAL),
            )
        )
        if h.bare_cpu_us is not None and h.governed_cpu_us is not None and h.cpu_ratio:
            rows.append(
                Row(
                    "  server CPU per request (ratio: bare / governed)",
                    "-",
                    f"{h.governed_cpu_us:,.0f} µs",
                    f"{h.bare_cpu_us:,.0f} µs",
                    f"{h.cpu_ratio:.3f}x",
                    "info",
                )
            )
        rows.append(
            Row(
                "  load loop CPU (1 core = 100%)",
                "-",
                f"{h.governed_client_busy:.0%}",
                f"{h.bare_client_busy:.0%}",
                "-",
                "info",
            )
        )
    rows.append(
        Row(
            "  governed ledger (verifies)",
            "1 decision/request",
            f"{check.decisions:,} decisions",
            f"{check.requests:,} requests",
            f"{check.entries / max(check.requests, 1):.2f} entries/req",
            verdict(check.decisions == check.requests),
        )
    )
    return rows


# -- main ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    decide: DecidePlan
    parts: int
    concurrency: int
    seconds: float
    warmup: float
    repeats: int


def parse_args(argv: Sequence[str] | None) -> tuple[Plan, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of seconds")
    p.add_argument("--repeats", type=int, default=None, help="paired repeats per measurement")
    p.add_argument(
        "--decisions", type=int, default=None, help=f"decisions per {CALLERS}-caller run"
    )
    p.add_argument("--concurrency", type=int, default=64, help="HTTP connections of the load loop")
    p.add_argument(
        "--client", choices=CLIENTS, action="append", help="HTTP load loops to run (default: both)"
    )
    p.add_argument("--seconds", type=float, default=None, help="seconds per HTTP load run")
    p.add_argument("--tmpdir", type=Path, default=None, help="where data dirs go (a real disk)")
    p.add_argument(
        "--only", choices=("decide", "http"), action="append", help="run only these sections"
    )
    p.add_argument("--profile", action="store_true", help="instead: cProfile Gate.decide")
    p.add_argument("--top", type=int, default=25, help="functions listed by --profile")
    p.add_argument("--serve", choices=("bare", "governed"), help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--data-dir", type=Path, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.quick:
        plan = Plan(DecidePlan(64, 64, 2_000, 1), 100, a.concurrency, 0.5, 0.2, 1)
    else:
        plan = Plan(DecidePlan(1_024, 1_024, 20_000, 3), 1_000, a.concurrency, 5.0, 1.0, 3)
    decisions = a.decisions or plan.decide.first_sight
    plan = dataclasses.replace(
        plan,
        decide=dataclasses.replace(
            plan.decide,
            first_sight=decisions,
            repeated=decisions,
            repeats=a.repeats or plan.decide.repeats,
        ),
        seconds=a.seconds or plan.seconds,
        repeats=a.repeats or plan.repeats,
    )
    if min(decisions, plan.concurrency, plan.repeats) < 1 or plan.seconds <= 0:
        p.error("sizes, concurrency, repeats and seconds must be positive")
    return plan, a


async def run(plan: Plan, args: argparse.Namespace) -> list[Row]:
    sections = set(args.only or ("decide", "http"))
    rows: list[Row] = []
    base = Path(tempfile.mkdtemp(prefix="grace-bench-gov-", dir=args.tmpdir))
    print(f"data dirs under {base} (ledger synchronous=FULL, WAL)\n", flush=True)
    try:
        if args.profile:
            grace = await Grace.start(grace_settings(base / "profile-data"))
            try:
                await profile_decide(grace, plan.decide.repeated, args.top)
            finally:
                await grace.stop()
            await profile_asgi(base, plan.decide.repeated, args.top)
            return []
        if "decide" in sections:
            grace = await Grace.start(grace_settings(base / "decide-data"))
            try:
                d = plan.decide
                print(
                    f"1. Gate.decide µs/decision (wall / decisions) vs a bare cedarpy call on "
                    f"the same request; {d.first_sight:,} decisions per {CALLERS}-caller run, "
                    f"{sized(d, 'first sight', 1):,} per 1-caller run",
                    flush=True,
                )
                results, per_decision = await bench_decide(grace, d)
                blocked = grace.mesh.get_stats()["events_blocked_by_reason"]
                print(
                    f"  the real gate wrote {per_decision} ledger entries per decision; its "
                    f"{DECISION_EVENT} events were blocked by the mesh: {blocked or 'none'}\n",
                    flush=True,
                )
                rows += decide_rows(results)
                print(
                    f"  component breakdown, µs per call ({plan.parts:,} calls each):", flush=True
                )
                for name, us in await breakdown(grace, plan.parts):
                    print(f"    {us:10.1f}  {name}", flush=True)
                print(flush=True)
            finally:
                await grace.stop()
        if "http" in sections:
            print(
                f"2. HTTP req/s, GET {ROUTE}, {plan.concurrency} keep-alive connections, "
                f"{plan.seconds:.1f} s per run; uvicorn subprocesses; load loops: "
                f"{', '.join(args.client or CLIENTS)} "
                f"({os.cpu_count()} CPUs)",
                flush=True,
            )
            results_http, check = await bench_http(base, plan, args.client or CLIENTS)
            for h in results_http:
                print(
                    f"  => {h.client}: governed {fmt_rate(h.governed_rate)} vs bare "
                    f"{fmt_rate(h.bare_rate)}: {h.ratio:.3f}x",
                    flush=True,
                )
            print(
                f"  governed ledger: {check.decisions:,} decisions for {check.requests:,} "
                f"requests, {check.entries:,} entries, verifies\n",
                flush=True,
            )
            rows += http_rows(results_http, check, plan.concurrency)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    # Grace logs its start and the mesh every blocked event at info level; keep the figures.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    plan, args = parse_args(argv)
    if args.serve:
        return serve(args.serve, args.port, args.data_dir)
    if importlib.util.find_spec("sniffio") is None:
        # httpcore tries `import sniffio` on every request and falls back to asyncio when it
        # is missing; a failed import is not cached, so each one scans sys.path (~24 stat
        # calls per request). None in sys.modules makes it fail at once: same fallback,
        # without the scan. Only this process (the load loop) is affected.
        sys.modules["sniffio"] = None  # type: ignore[assignment]
    kind = "profile" if args.profile else ("quick" if args.quick else "full")
    print(
        f"grace governance benchmark: {kind} run, python {sys.version.split()[0]}, cedarpy "
        f"{cedarpy_version()}, {os.cpu_count()} CPUs, repeats {plan.repeats}",
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
    print(f"\n{missed} goal(s) missed" if missed else "\nall goals met")
    return 0


def cedarpy_version() -> str:
    from importlib.metadata import version

    return version("cedarpy")


if __name__ == "__main__":
    sys.exit(main())
