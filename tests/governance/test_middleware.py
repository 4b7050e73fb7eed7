"""GovernanceMiddleware through a real FastAPI app and httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from grace.governance.approvals import ApprovalStore
from grace.governance.auth import Authenticator
from grace.governance.gate import Gate, GateSettings, StaticTrust
from grace.governance.middleware import GovernanceMiddleware
from grace.governance.model import EnforcementMode, PrincipalKind
from grace.governance.principals import PrincipalRegistry
from grace.governance.wiring import require_governance
from grace.ledger import Ledger
from grace.testing import FakeClock
from tests.governance.test_gate import RulesEngine, find_rm


class World:
    """The app, its ledger, and keys for a human and an agent."""

    def __init__(
        self, client: httpx.AsyncClient, ledger: Ledger, keys: dict[str, str], gate: Gate
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.keys = keys
        self.gate = gate
        self.ran: list[str] = []

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}


def build_app(ran: list[str]) -> FastAPI:
    """A small app with a read, a write and a governed autonomous route."""
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, Any]:
        ran.append(f"get:{item_id}")
        return {"id": item_id}

    @app.post("/items")
    async def create_item(item: dict[str, Any]) -> dict[str, Any]:
        ran.append("create")
        return item

    @app.post("/models/{name}/deploy")
    @require_governance(action="deploy_model", is_autonomous=True)
    async def deploy(name: str) -> dict[str, str]:
        ran.append(f"deploy:{name}")
        return {"deployed": name}

    return app


@pytest.fixture(params=[EnforcementMode.ENFORCE])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    """The governed app over a real ledger, registry and approval store."""
    async with await Ledger.open(tmp_path / "data") as ledger:
        clock = FakeClock()
        registry = PrincipalRegistry(tmp_path / "principals.db", clock=clock)
        registry.add("alice", kind=PrincipalKind.HUMAN, roles=["approver"])
        registry.add("agent-7", kind=PrincipalKind.AGENT, autonomy_tier=2)
        keys = {"alice": registry.create_key("alice"), "agent": registry.create_key("agent-7")}
        gate = Gate(
            policies=RulesEngine(),
            analyze=find_rm,
            ledger=ledger,
            approvals=ApprovalStore(tmp_path / "approvals.db", clock=clock),
            clock=clock,
            trust=StaticTrust(0.8),
            settings=GateSettings(mode=request.param),
        )
        ran: list[str] = []
        app = build_app(ran)
        app.add_middleware(
            GovernanceMiddleware,
            gate=gate,
            authenticator=Authenticator(registry),
            max_body_bytes=10_000,
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://grace.test") as client:
            w = World(client, ledger, keys, gate)
            w.ran = ran
            yield w


async def test_unauthenticated_requests_get_401(world: World) -> None:
    """No credentials, a bad key or X-Actor alone: 401 problem+json; the app never runs."""
    for headers in ({}, {"Authorization": "Bearer grace_x_y"}, {"X-Actor": "admin"}):
        r = await world.client.get("/items/1", headers=headers)
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["www-authenticate"] == "Bearer"
    assert world.ran == []


async def test_exempt_paths_skip_governance(world: World) -> None:
    """/health needs no credentials."""
    assert (await world.client.get("/health")).status_code == 200


async def test_a_prefix_exemption_covers_only_what_is_under_it() -> None:
    """`/console/*` exempts `/console/app.js`, never `/consolex` or `/v1/…` reached by `..`."""
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = GovernanceMiddleware(app, exempt_paths=("/health", "/console/*"))
    transport = httpx.ASGITransport(app=middleware)
    async with httpx.AsyncClient(transport=transport, base_url="http://grace.test") as client:
        assert (await client.get("/console/app.js")).status_code == 200
        assert (await client.get("/console/")).status_code == 200
        # Not exempt: without a gate the middleware refuses (503), the app never runs.
        assert (await client.get("/consolex")).status_code == 503
        assert (await client.get("/console")).status_code == 503
    assert seen == ["/console/app.js", "/console/"]


async def test_valid_key_runs_the_app_and_tags_the_decision(world: World) -> None:
    """An allowed request reaches the app; the response names its decision, which is in the
    ledger under the route template."""
    r = await world.client.get("/items/42", headers=world.auth("alice"))
    assert r.status_code == 200
    assert r.json() == {"id": 42}
    assert world.ran == ["get:42"]
    decision_id = r.headers["grace-decision-id"]
    page = await world.ledger.query(subsystem="governance")
    (entry,) = page.entries
    assert entry.action == "GET:/items/{item_id}"
    assert entry.resource == "item_id=42"
    assert entry.payload["decision_id"] == decision_id


async def test_constitutional_violation_in_body_is_403(world: World) -> None:
    """A destructive command in the JSON body is refused with problem+json and principles."""
    r = await world.client.post(
        "/items",
        json={"name": "cleanup", "script": "rm -rf / --no-preserve-root"},
        headers=world.auth("alice"),
    )
    assert r.status_code == 403
    problem = r.json()
    assert r.headers["content-type"] == "application/problem+json"
    assert problem["outcome"] == "rejected"
    assert problem["principles"] == ["beneficence"]
    assert problem["decision_id"] == r.headers["grace-decision-id"]
    assert world.ran == []


async def test_body_is_replayed_to_the_app(world: World) -> None:
    """The middleware reads the body for analysis and the app still receives it intact."""
    r = await world.client.post(
        "/items", json={"name": "widget", "n": 3}, headers=world.auth("alice")
    )
    assert r.status_code == 200
    assert r.json() == {"name": "widget", "n": 3}


async def test_oversized_body_is_413(world: World) -> None:
    """A body over the limit is refused before anything is decided."""
    r = await world.client.post("/items", content=b"x" * 20_000, headers=world.auth("alice"))
    assert r.status_code == 413


async def test_autonomous_high_risk_route_waits_for_approval_then_passes_once(world: World) -> None:
    """The agent's deploy is pending; after a human approves, the same request passes once."""
    first = await world.client.post("/models/fraud/deploy", headers=world.auth("agent"))
    assert first.status_code == 202
    approval_id = first.json()["approval_id"]
    assert approval_id
    assert world.ran == []
    await world.gate.approvals.approve(approval_id, "alice")
    headers = {**world.auth("agent"), "Grace-Approval-Id": approval_id}
    second = await world.client.post("/models/fraud/deploy", headers=headers)
    assert second.status_code == 200
    assert world.ran == ["deploy:fraud"]
    third = await world.client.post("/models/fraud/deploy", headers=headers)
    assert third.status_code in (202, 403)
    assert world.ran == ["deploy:fraud"]
    assert (await world.ledger.verify()).valid


async def test_unknown_routes_are_governed_too(world: World) -> None:
    """A path no route serves still needs credentials (then 404 from the app)."""
    assert (await world.client.get("/nope")).status_code == 401
    assert (await world.client.get("/nope", headers=world.auth("alice"))).status_code == 404
