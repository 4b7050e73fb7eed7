"""The governance HTTP API, through the app factory, governed by its own middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from grace.governance.approvals import ApprovalStore
from grace.governance.auth import Authenticator
from grace.governance.decisions import DecisionIndex
from grace.governance.gate import Gate, StaticTrust
from grace.governance.model import PrincipalKind
from grace.governance.principals import PrincipalRegistry
from grace.ledger import Ledger
from grace.server import create_app
from grace.server.governance_api import GovernanceAPI
from grace.testing import FakeClock
from tests.governance.test_gate import RulesEngine, find_rm


class Client:
    """An httpx client on the app, with one key per principal."""

    def __init__(self, http: httpx.AsyncClient, keys: dict[str, str], ledger: Ledger) -> None:
        self.http = http
        self.keys = keys
        self.ledger = ledger

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    """The app with a PEP service, two approvers and an agent."""
    clock = FakeClock()
    ledger = await Ledger.open(tmp_path / "data")
    registry = PrincipalRegistry(tmp_path / "principals.db", clock=clock)
    registry.add("pep-gw", kind=PrincipalKind.SERVICE, roles=["pep"])
    registry.add("alice", kind=PrincipalKind.HUMAN, roles=["approver"])
    registry.add("bob", kind=PrincipalKind.HUMAN, roles=["approver", "auditor"])
    registry.add("agent-7", kind=PrincipalKind.AGENT, autonomy_tier=2)
    keys = {p: registry.create_key(p) for p in ("pep-gw", "alice", "bob", "agent-7")}
    approvals = ApprovalStore(tmp_path / "governance.db", clock=clock)
    index = DecisionIndex(tmp_path / "governance.db")
    gate = Gate(
        policies=RulesEngine(),
        analyze=find_rm,
        ledger=ledger,
        approvals=approvals,
        clock=clock,
        trust=StaticTrust(0.8),
        index=index,
    )

    async def runtime() -> tuple[GovernanceAPI, Callable[[], Awaitable[None]]]:
        api = GovernanceAPI(
            gate=gate,
            approvals=approvals,
            principals=registry,
            decision_index=index,
            authenticator=Authenticator(registry),
        )
        return api, ledger.close

    app = create_app(runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://grace.test") as http:
            yield Client(http, keys, ledger)


async def test_pep_asks_decisions_for_principals(client: Client) -> None:
    """A PEP gets a decision with its ledger seq; the decision can be fetched by id."""
    r = await client.http.post(
        "/v1/decide",
        json={"principal_id": "agent-7", "action": "execute_task", "resource": "t:1"},
        headers=client.as_("pep-gw"),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["outcome"] == "approved"
    assert body["receipt_seq"] is not None
    entry = await client.ledger.get(body["receipt_seq"])
    assert entry is not None
    assert entry.actor == "agent-7"
    got = await client.http.get(f"/v1/decisions/{body['decision_id']}", headers=client.as_("bob"))
    assert got.json()["decision_id"] == body["decision_id"]
    denied = await client.http.get(
        f"/v1/decisions/{body['decision_id']}", headers=client.as_("alice")
    )
    assert denied.status_code == 403


async def test_only_peps_may_decide_for_others(client: Client) -> None:
    """Without the pep role, /v1/decide is forbidden; unknown principals are 422."""
    r = await client.http.post(
        "/v1/decide",
        json={"principal_id": "alice", "action": "execute_task"},
        headers=client.as_("agent-7"),
    )
    assert r.status_code == 403
    r = await client.http.post(
        "/v1/decide",
        json={"principal_id": "ghost", "action": "execute_task"},
        headers=client.as_("pep-gw"),
    )
    assert r.status_code == 422
    assert (await client.http.post("/v1/decide", json={})).status_code == 401


async def test_batch_decides_in_order(client: Client) -> None:
    """A batch returns one decision per request, in order."""
    r = await client.http.post(
        "/v1/decide/batch",
        json=[
            {"principal_id": "agent-7", "action": "execute_task"},
            {"principal_id": "agent-7", "action": "execute_task", "context": {"c": "rm -rf /"}},
        ],
        headers=client.as_("pep-gw"),
    )
    assert r.status_code == 200, r.text
    assert [d["outcome"] for d in r.json()] == ["approved", "rejected"]


async def test_approval_flow_over_http(client: Client) -> None:
    """A pending approval is listed, cannot be self-approved, and is approved by another."""
    r = await client.http.post(
        "/v1/decide",
        json={"principal_id": "alice", "action": "deploy_model", "is_autonomous": True},
        headers=client.as_("pep-gw"),
    )
    approval_id = r.json()["approval_id"]
    assert r.json()["outcome"] == "requires_approval"
    listed = await client.http.get("/v1/approvals", headers=client.as_("bob"))
    assert [a["approval_id"] for a in listed.json()] == [approval_id]
    own = await client.http.post(
        f"/v1/approvals/{approval_id}/approve", headers=client.as_("alice")
    )
    assert own.status_code == 409
    assert "cannot approve" in own.json()["detail"]
    ok = await client.http.post(
        f"/v1/approvals/{approval_id}/approve", json={"comment": "ok"}, headers=client.as_("bob")
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["state"] == "approved"
    agent = await client.http.post(
        f"/v1/approvals/{approval_id}/approve", headers=client.as_("agent-7")
    )
    assert agent.status_code in (202, 403)  # an agent approving is itself governed
    missing = await client.http.post("/v1/approvals/apr_nope/reject", headers=client.as_("bob"))
    assert missing.status_code == 404


async def test_health_and_metrics_are_open(client: Client) -> None:
    """Exempt ops endpoints answer without credentials."""
    assert (await client.http.get("/health")).json() == {"status": "ok"}
    assert (await client.http.get("/metrics")).status_code == 200
