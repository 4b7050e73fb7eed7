"""The server's ops, boot, audit, trust and event-stream endpoints over the real runtime."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from grace.config import GraceSettings, LedgerSettings
from grace.ledger import ProofBundle, load_verifier, verify_bundle
from grace.runtime import Grace
from grace.server import create_app
from tests.acceptance.test_governance_http import Site, register


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    """`create_app(settings)`: the app boots Grace itself in its lifespan."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    keys = register(data_dir)
    settings = GraceSettings(data_dir=data_dir, ledger=LedgerSettings(checkpoint_interval_s=0))
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        grace = app.state.governance
        assert isinstance(grace, Grace)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://grace.test") as http:
            yield Site(http, keys, grace)


async def test_probes_need_no_credentials_and_report_the_boot(site: Site) -> None:
    """/health and /ready answer without a key; /ready names the boot state."""
    assert (await site.http.get("/health")).json() == {"status": "ok"}
    ready = await site.http.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "state": "ready", "degraded": []}


async def test_the_boot_report_lists_every_standard_chunk(site: Site) -> None:
    """/v1/boot shows the Guardian's chunks in boot order, all passed, with the ledger seq."""
    assert (await site.http.get("/v1/boot")).status_code == 401
    r = await site.http.get("/v1/boot", headers=site.as_("alice"))
    assert r.status_code == 200
    body = r.json()
    assert body["state"] == "ready"
    assert [c["chunk_id"] for c in body["chunks"]] == [
        "core",
        "mesh",
        "production_systems",
        "mesh_validators",
        "monitors",
        "api",
    ]
    assert {c["status"] for c in body["chunks"]} == {"passed"}
    entry = await site.grace.ledger.get(body["receipt_seq"])
    assert entry is not None
    assert entry.action == "boot.report"


async def test_audit_entries_are_paged_and_filtered(site: Site) -> None:
    """Entries come back in pages with a cursor; filters narrow them."""
    for i in range(5):
        await site.http.get(f"/items/{i}", headers=site.as_("alice"))
    first = await site.http.get("/v1/audit/entries", params={"limit": 2}, headers=site.as_("alice"))
    assert first.status_code == 200
    page = first.json()
    assert len(page["entries"]) == 2
    assert page["next_after"] == page["entries"][-1]["seq"]
    governance = await site.http.get(
        "/v1/audit/entries",
        params={"subsystem": "governance", "newest_first": "true", "limit": 3},
        headers=site.as_("alice"),
    )
    entries = governance.json()["entries"]
    assert [e["subsystem"] for e in entries] == ["governance"] * 3
    assert entries[0]["seq"] > entries[-1]["seq"]
    naive = await site.http.get(
        "/v1/audit/entries", params={"since": "2026-01-01T00:00:00"}, headers=site.as_("alice")
    )
    assert naive.status_code == 422
    assert (
        await site.http.get("/v1/audit/entries/999999", headers=site.as_("alice"))
    ).status_code == 404


async def test_a_proof_from_the_api_verifies_offline_against_the_public_key(site: Site) -> None:
    """The bundle and the public key from the API check out with the offline verifier, and a
    tampered bundle does not."""
    await site.http.get("/items/1", headers=site.as_("alice"))
    key = (await site.http.get("/v1/audit/public-key", headers=site.as_("alice"))).json()
    verifier = load_verifier(key["vkey"])
    r = await site.http.get("/v1/audit/entries/1/proof", headers=site.as_("alice"))
    assert r.status_code == 200
    bundle = ProofBundle.from_json(r.json())
    assert verify_bundle(bundle, verifier).valid
    tampered = r.json()
    entry = orjson.loads(base64.b64decode(tampered["entry_canonical"]))
    entry["actor"] = "mallory"
    tampered["entry_canonical"] = base64.b64encode(orjson.dumps(entry)).decode()
    assert not verify_bundle(ProofBundle.from_json(tampered), verifier).valid
    missing = await site.http.get("/v1/audit/entries/10000/proof", headers=site.as_("alice"))
    assert missing.status_code == 404


async def test_verify_and_checkpoints_over_http(site: Site) -> None:
    """POST /v1/audit/verify reports a valid ledger; checkpoints are signed notes."""
    await site.http.get("/items/1", headers=site.as_("alice"))
    await site.http.get("/v1/audit/entries/1/proof", headers=site.as_("alice"))
    report = (await site.http.post("/v1/audit/verify", headers=site.as_("alice"))).json()
    assert report["valid"] is True
    assert report["entries_checked"] >= 2
    checkpoints = (await site.http.get("/v1/audit/checkpoints", headers=site.as_("alice"))).json()
    assert checkpoints["checkpoints"]
    assert "\n\u2014 " in checkpoints["checkpoints"][0]["note"]  # a signature line


async def test_trust_scores_and_quarantine_over_http(site: Site) -> None:
    """A stranger has the prior; an operator quarantines and releases; others may not."""
    stranger = await site.http.get("/v1/trust/agent-7", headers=site.as_("alice"))
    assert stranger.status_code == 200
    assert stranger.json()["composite_score"] == pytest.approx(0.75)
    assert (await site.http.get("/v1/trust", headers=site.as_("agent-7"))).status_code == 403
    r = await site.http.post(
        "/v1/trust/agent-7/quarantine", json={"reason": "runaway"}, headers=site.as_("alice")
    )
    assert r.status_code == 200, r.text
    assert r.json()["quarantined"] is True
    assert site.grace.trust.is_quarantined("agent-7")
    # The quarantined agent's trust now rejects its requests at the gate.
    denied = await site.http.get("/items/9", headers=site.as_("agent-7"))
    assert denied.status_code == 403
    assert "trust 0.00" in denied.text
    listed = (await site.http.get("/v1/trust", headers=site.as_("alice"))).json()["scores"]
    assert listed[0]["subject_id"] == "agent-7"
    released = await site.http.post(
        "/v1/trust/agent-7/release", json={"reason": "fixed"}, headers=site.as_("alice")
    )
    assert released.status_code == 200
    again = await site.http.post(
        "/v1/trust/agent-7/release", json={"reason": "twice"}, headers=site.as_("alice")
    )
    assert again.status_code == 409


async def test_the_event_stream_delivers_live_events_to_an_operator(site: Site) -> None:
    """An operator's SSE stream carries events as they are routed; others are refused."""
    refused = await site.http.get("/v1/events/stream", headers=site.as_("agent-7"))
    assert refused.status_code == 403
    bad = await site.http.get(
        "/v1/events/stream", params={"pattern": "a..b"}, headers=site.as_("alice")
    )
    assert bad.status_code == 422
    # httpx's ASGI transport buffers whole responses, so the stream is read as raw ASGI.
    app = site.http._transport.app  # type: ignore[attr-defined]
    sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    disconnect = asyncio.Event()

    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        await sent.put(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/events/stream",
        "raw_path": b"/v1/events/stream",
        "root_path": "",
        "query_string": b"pattern=governance.%3E",
        "headers": [(b"authorization", site.as_("alice")["Authorization"].encode())],
        "client": ("127.0.0.1", 1),
        "server": ("grace.test", 80),
        "app": app,
    }
    stream = asyncio.create_task(app(scope, receive, send))
    start = await asyncio.wait_for(sent.get(), 5)
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"].startswith(b"text/event-stream")
    data = b""
    for _ in range(50):  # the decision of each GET below is announced on the mesh
        await site.http.get("/items/7", headers=site.as_("bob"))
        try:
            message = await asyncio.wait_for(sent.get(), 0.2)
        except TimeoutError:
            continue
        data += message.get("body", b"")
        if b"data: " in data:
            break
    disconnect.set()
    await asyncio.wait_for(stream, 5)
    line = next(x for x in data.split(b"\n") if x.startswith(b"data: "))
    event = orjson.loads(line.removeprefix(b"data: "))
    assert event["type"] == "governance.decision_made"
    assert event["source"] == "governance_gate"


async def test_metric_samples_feed_the_monitor_and_a_spike_reaches_the_kernel(site: Site) -> None:
    """POST /v1/metrics (operator) feeds the metrics monitor; a 10x latency spike over the
    baseline becomes an anomaly the immune kernel counts; bad samples are refused whole."""
    samples = [{"series": "checkout_latency_ms", "value": 100.0 + i % 3} for i in range(60)]
    r = await site.http.post("/v1/metrics", json={"samples": samples}, headers=site.as_("alice"))
    assert r.status_code == 200, r.text
    spike = {"samples": [{"series": "checkout_latency_ms", "value": 1000.0}]}
    r = await site.http.post("/v1/metrics", json=spike, headers=site.as_("alice"))
    assert r.status_code == 200, r.text
    kernel = site.grace.immune
    assert kernel is not None
    for _ in range(200):
        if kernel.get_stats()["anomalies_detected"]:
            break
        await asyncio.sleep(0.01)
    await kernel.wait_idle()
    stats = (await site.http.get("/v1/immune/stats", headers=site.as_("alice"))).json()
    assert stats["anomalies_detected"] >= 1
    incidents = (await site.http.get("/v1/immune/incidents", headers=site.as_("alice"))).json()
    (incident,) = incidents["incidents"]
    assert incident["anomaly_type"] == "latency_spike"
    assert incident["timeline"], incident
    assert incident["timeline"][0]["seq"] >= 1
    bad = {"samples": [{"series": "x", "value": "NaN"}, {"series": "x", "value": 1.0}]}
    refused = await site.http.post("/v1/metrics", json=bad, headers=site.as_("alice"))
    assert refused.status_code == 200
    answer = refused.json()
    assert (answer["accepted"], answer["rejected"]) == (1, 1)
    assert answer["errors"][0]["index"] == 0
    denied = await site.http.post("/v1/metrics", json=spike, headers=site.as_("bob"))
    assert denied.status_code == 403


async def test_ingress_controls_hold_requests_before_the_gate(site: Site) -> None:
    """An open breaker on a route answers 503 with Retry-After; a quarantined principal 403;
    nothing reaches the app or the ledger while held."""
    size = await site.grace.ledger.size()
    site.grace.controls.trip("GET:/items/*", reason="dependency down", actor="test", duration_s=30)
    held = await site.http.get("/items/1", headers=site.as_("alice"))
    assert held.status_code == 503
    assert held.headers["content-type"] == "application/problem+json"
    assert held.json()["detail"] == "dependency down"
    assert int(held.headers["retry-after"]) >= 1
    assert await site.grace.ledger.size() == size
    site.grace.controls.reset("GET:/items/*")
    # Released: the request passes the gate and reaches the app (which has no such route).
    assert (await site.http.get("/items/1", headers=site.as_("alice"))).status_code == 404
    site.grace.controls.quarantine("component:bob", reason="compromised key", actor="test")
    assert (await site.http.get("/items/1", headers=site.as_("bob"))).status_code == 403
    listed = (await site.http.get("/v1/immune/controls", headers=site.as_("alice"))).json()
    assert [c["kind"] for c in listed["controls"]] == ["quarantine"]


async def test_a_quarantined_component_emits_nothing(site: Site) -> None:
    """Quarantine in the trust store holds every event of that publisher at the mesh."""
    publisher = site.grace.mesh.publisher("anomaly_watchdog")
    await site.grace.trust.quarantine("anomaly_watchdog", reason="noisy", actor="test")
    result = await publisher.try_emit(
        "anomaly.detected", {"type": "cpu_spike", "severity": "low"}, resource="db"
    )
    assert not result.routed
    assert str(result.reason) == "publisher_held"


async def test_the_api_description_is_public_and_lists_every_part(site: Site) -> None:
    """/openapi.json needs no key and describes decide, approvals, events, audit, immune,
    trust, verification, metrics and boot."""
    spec = (await site.http.get("/openapi.json")).json()
    paths = set(spec["paths"])
    for path in (
        "/v1/decide",
        "/v1/approvals",
        "/v1/events",
        "/v1/events/stream",
        "/v1/audit/entries",
        "/v1/audit/entries/{seq}/proof",
        "/v1/immune/incidents",
        "/v1/trust",
        "/v1/verify/code",
        "/v1/metrics",
        "/v1/boot",
        "/v1/status",
        "/ready",
    ):
        assert path in paths, path
    assert (await site.http.get("/docs")).status_code == 200


async def test_the_console_is_served_without_credentials_and_cannot_be_framed(site: Site) -> None:
    """`/` and its static files load without a key; the page forbids framing and scripts
    from anywhere but this server."""
    page = await site.http.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert (await site.http.get("/console/proof.js")).status_code == 200
    assert "http://" not in page.text
    assert "https://" not in page.text


async def test_me_names_the_verified_principal(site: Site) -> None:
    """/v1/me answers with the key's principal, never with a claimed X-Actor."""
    r = await site.http.get("/v1/me", headers=site.as_("bob", **{"X-Actor": "alice"}))
    assert r.json() == {"id": "bob", "kind": "human", "roles": ["approver"], "autonomy_tier": 0}
    assert (await site.http.get("/v1/me")).status_code == 401


async def test_sequence_numbers_beyond_64_bits_are_a_422(site: Site) -> None:
    """A seq or cursor no database integer can hold is refused, not a 500."""
    huge = 2**63
    for url in (f"/v1/audit/entries/{huge}", f"/v1/audit/entries/{huge}/proof"):
        assert (await site.http.get(url, headers=site.as_("alice"))).status_code == 422
    r = await site.http.get("/v1/audit/entries", params={"after": huge}, headers=site.as_("alice"))
    assert r.status_code == 422


async def test_incidents_recorded_by_another_instance_are_listed_from_the_ledger(
    site: Site,
) -> None:
    """In a shared ledger, an incident another instance opened shows up here too, with its
    latest recorded state and its timeline."""
    record = {
        "incident_id": "inc_elsewhere",
        "resource": "payments",
        "anomaly_type": "service_down",
        "severity": "medium",
        "state": "healing",
        "opened_at": "2026-11-24T00:00:00+00:00",
        "last_seen_at": "2026-11-24T00:00:01+00:00",
        "first_anomaly_id": "evt-1",
        "anomaly_count": 1,
        "held_count": 0,
        "healing_runs": 1,
        "playbook": "restart-unhealthy-service",
        "resolved_at": None,
        "reason": "",
        "approval_id": None,
    }
    ledger = site.grace.ledger
    for action, state in (("incident_opened", "open"), ("incident_healing", "healing")):
        await ledger.append(
            subsystem="avn",
            actor="immune_kernel",
            action=action,
            resource="payments",
            result=state,
            payload={"event": action, **record, "state": state},
        )
    body = (await site.http.get("/v1/immune/incidents", headers=site.as_("alice"))).json()
    (listed,) = [i for i in body["incidents"] if i["incident_id"] == "inc_elsewhere"]
    assert listed["state"] == "healing"
    assert [step["action"] for step in listed["timeline"]] == [
        "incident_opened",
        "incident_healing",
    ]
