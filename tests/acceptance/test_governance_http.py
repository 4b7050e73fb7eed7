"""Issue 3's acceptance, end to end: the real runtime (Cedar constitution, analyzers,
ledger) behind a real FastAPI app, driven over httpx's ASGI transport."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from grace.boot import BootAborted
from grace.config import GovernanceSettings, GraceSettings, LedgerSettings
from grace.governance.model import PrincipalKind
from grace.governance.principals import PrincipalRegistry
from grace.governance.wiring import require_governance
from grace.ledger import Ledger
from grace.runtime import Grace
from grace.server import create_app
from grace.server.governance_api import GovernanceServices
from grace.types import SystemClock

POLICIES = Path(__file__).resolve().parents[2] / "src" / "grace" / "governance" / "policies"
PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n"


class Site:
    """The running app and what the tests need to reach it."""

    def __init__(self, http: httpx.AsyncClient, keys: dict[str, str], grace: Grace) -> None:
        self.http = http
        self.keys = keys
        self.grace = grace
        self.ran: list[str] = []

    def as_(self, who: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}", **extra}


def register(data_dir: Path) -> dict[str, str]:
    """Principals and their keys, made before the server starts (as an operator would)."""
    registry = PrincipalRegistry(data_dir / "principals.db", clock=SystemClock())
    registry.add("alice", kind=PrincipalKind.HUMAN, roles=["approver", "operator"])
    registry.add("bob", kind=PrincipalKind.HUMAN, roles=["approver"])
    registry.add("carol", kind=PrincipalKind.HUMAN, roles=["approver", "auditor"])
    registry.add("agent-7", kind=PrincipalKind.AGENT, autonomy_tier=2)
    registry.add("batch-svc", kind=PrincipalKind.SERVICE, roles=["approver"])
    registry.add("governance_gate", kind=PrincipalKind.SERVICE)
    keys = {p.id: registry.create_key(p.id) for p in registry.all()}
    registry.close()
    return keys


def demo_app(factory: Callable[[], Awaitable[Any]], ran: list[str]) -> FastAPI:
    """Grace's app plus a few routes of an application it governs."""
    app = create_app(factory)

    @app.get("/items/{item_id}")
    async def get_item(item_id: str) -> dict[str, str]:
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

    @app.post("/admin/rotate-keys")
    @require_governance(risk_level="critical")
    async def rotate() -> dict[str, str]:
        ran.append("rotate")
        return {"rotated": "yes"}

    return app


async def start_site(tmp_path: Path, **governance: Any) -> AsyncIterator[Site]:
    data_dir = tmp_path / "data"
    data_dir.mkdir(exist_ok=True)
    keys = register(data_dir)
    settings = GraceSettings(
        data_dir=data_dir,
        ledger=LedgerSettings(checkpoint_interval_s=0),
        governance=GovernanceSettings(**governance),
    )
    holder: dict[str, Grace] = {}

    async def factory() -> tuple[GovernanceServices, Callable[[], Awaitable[None]]]:
        grace = await Grace.start(settings)
        holder["grace"] = grace
        return grace, grace.stop

    ran: list[str] = []
    app = demo_app(factory, ran)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://grace.test") as http:
            site = Site(http, keys, holder["grace"])
            site.ran = ran
            yield site
    # After shutdown the whole record verifies.
    async with await Ledger.open(data_dir, read_only=True) as ledger:
        report = await ledger.verify()
        assert report.valid, report


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    """Grace in enforce mode with the packaged constitution."""
    async for s in start_site(tmp_path):
        yield s


async def test_credentials_come_from_keys_not_headers(site: Site) -> None:
    """No credentials and X-Actor alone are 401; a valid key runs the app."""
    assert (await site.http.get("/items/1")).status_code == 401
    assert (await site.http.get("/items/1", headers={"X-Actor": "admin"})).status_code == 401
    ok = await site.http.get("/items/1", headers=site.as_("alice"))
    assert ok.status_code == 200
    assert site.ran == ["get:1"]


async def test_every_decision_is_in_the_ledger_under_its_seq(site: Site) -> None:
    """The decision id on a response leads to a ledger entry with the decision's seq."""
    r = await site.http.get("/items/7", headers=site.as_("bob"))
    decision = await site.grace.decision_index.get(r.headers["grace-decision-id"])
    assert decision is not None
    entry = await site.grace.ledger.get(decision["receipt_seq"])
    assert entry is not None
    assert entry.payload["decision_id"] == r.headers["grace-decision-id"]
    assert (entry.actor, entry.action) == ("bob", "GET:/items/{item_id}")


@pytest.mark.parametrize(
    ("body", "principle"),
    [
        ({"script": "rm -rf / --no-preserve-root"}, "no_destructive_commands"),
        ({"config": PRIVATE_KEY}, "no_sensitive_data_exposure"),
    ],
)
async def test_constitutional_violation_is_403_with_the_principle(
    site: Site, body: dict[str, str], principle: str
) -> None:
    """A destructive command or a leaked private key anywhere in the body is refused."""
    r = await site.http.post("/items", json=body, headers=site.as_("alice"))
    assert r.status_code == 403, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert principle in problem["principles"]
    assert problem["outcome"] == "rejected"
    assert site.ran == []


async def test_autonomous_high_risk_action_waits_for_another_approver(site: Site) -> None:
    """The agent's deploy is pending; a human approves; the same request passes once."""
    headers = site.as_("agent-7", **{"Grace-Reason": "new fraud model v2 passed evaluation"})
    first = await site.http.post("/models/fraud/deploy", headers=headers)
    assert first.status_code == 202, first.text
    approval_id = first.json()["approval_id"]
    own = await site.http.post(f"/v1/approvals/{approval_id}/approve", headers=site.as_("agent-7"))
    assert own.status_code == 403
    ok = await site.http.post(f"/v1/approvals/{approval_id}/approve", headers=site.as_("bob"))
    assert ok.status_code == 200, ok.text
    retry = {**headers, "Grace-Approval-Id": approval_id}
    passed = await site.http.post("/models/fraud/deploy", headers=retry)
    assert passed.status_code == 200, passed.text
    again = await site.http.post("/models/fraud/deploy", headers=retry)
    assert again.status_code != 200
    assert site.ran == ["deploy:fraud"]


async def test_critical_action_needs_a_parliament_without_self_approval(site: Site) -> None:
    """A critical action waits for two approvers other than the requester."""
    headers = site.as_("alice", **{"Grace-Reason": "quarterly key rotation"})
    first = await site.http.post("/admin/rotate-keys", headers=headers)
    assert first.status_code == 202, first.text
    approval_id = first.json()["approval_id"]
    own = await site.http.post(f"/v1/approvals/{approval_id}/approve", headers=site.as_("alice"))
    assert own.status_code == 409
    assert "cannot approve" in own.json()["detail"]
    for approver in ("bob", "carol"):
        r = await site.http.post(f"/v1/approvals/{approval_id}/approve", headers=site.as_(approver))
        assert r.status_code == 200, r.text
    assert r.json()["state"] == "approved"
    done = await site.http.post(
        "/admin/rotate-keys", headers={**headers, "Grace-Approval-Id": approval_id}
    )
    assert done.status_code == 200, done.text
    assert site.ran == ["rotate"]


async def test_log_mode_never_blocks_but_records(tmp_path: Path) -> None:
    """In log mode a violation reaches the app, and the ledger records the would-be rejection."""
    async for site in start_site(tmp_path, mode="log"):
        r = await site.http.post("/items", json={"script": "rm -rf /"}, headers=site.as_("alice"))
        assert r.status_code == 200
        decision = await site.grace.decision_index.get(r.headers["grace-decision-id"])
        assert decision is not None
        assert decision["outcome"] == "rejected"
        assert decision["allowed"] is True
        assert decision["mode"] == "log"


async def test_staged_log_rule_observes_while_the_rest_enforce(tmp_path: Path) -> None:
    """A @mode("log") rule reports what it would deny; enforcing rules still reject."""
    policy_dir = tmp_path / "policies"
    shutil.copytree(POLICIES, policy_dir)
    (policy_dir / "staged.cedar").write_text(
        '@id("staged-no-item-42")\n@principle("least_privilege")\n@severity("low")\n'
        '@description("item 42 is being retired")\n@mode("log")\n'
        'forbid (principal, action, resource)\nwhen { resource == Resource::"item_id=42" };\n'
    )
    async for site in start_site(tmp_path, policy_dir=policy_dir):
        r = await site.http.get("/items/42", headers=site.as_("alice"))
        assert r.status_code == 200, r.text
        decision = await site.grace.decision_index.get(r.headers["grace-decision-id"])
        assert decision is not None
        assert decision["observed"] == ["staged-no-item-42"]
        bad = await site.http.post("/items", json={"s": "rm -rf /"}, headers=site.as_("alice"))
        assert bad.status_code == 403


async def test_broken_policy_file_never_opens_the_gate(tmp_path: Path) -> None:
    """A constitution that does not load stops Grace from starting at all."""
    policy_dir = tmp_path / "policies"
    shutil.copytree(POLICIES, policy_dir)
    (policy_dir / "broken.cedar").write_text("permit (principal, action, resource) when {")
    settings = GraceSettings(
        data_dir=tmp_path / "data", governance=GovernanceSettings(policy_dir=policy_dir)
    )
    with pytest.raises(BootAborted, match=r"(?s)PolicyError: .*broken\.cedar"):
        await Grace.start(settings)
    async with await Ledger.open(tmp_path / "data") as ledger:  # nothing left locked
        assert await ledger.size() == 0


async def test_default_deny_is_explained(site: Site) -> None:
    """When no policy permits (a service on a high-risk route), the 403 still says why."""
    r = await site.http.post("/v1/approvals/apr_x/approve", headers=site.as_("batch-svc"))
    assert r.status_code == 403
    problem = r.json()
    assert problem["reasons"]
    assert "default deny" in problem["reasons"][0]["message"]
    assert problem["principles"] == ["least_privilege"]


async def test_http_events_carry_the_callers_identity(site: Site) -> None:
    """An event emitted over HTTP has the principal as source; unlisted types are refused and
    a principal cannot borrow a component's identity."""
    seen: list[Any] = []

    async def handler(event: Any) -> None:
        seen.append(event)

    site.grace.mesh.subscribe("component.error", handler)
    ok = await site.http.post(
        "/v1/events",
        json={"event_type": "component.error", "payload": {"msg": "disk 91%"}},
        headers=site.as_("alice"),
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["source"] == "alice"
    refused = await site.http.post(
        "/v1/events",
        json={"event_type": "governance.decision_made", "payload": {"outcome": "approved"}},
        headers=site.as_("alice"),
    )
    assert refused.status_code == 403
    assert refused.json()["detail"]["reason"] == "unlisted_publisher"
    forged = await site.http.post(
        "/v1/events", json={"event_type": "component.error"}, headers=site.as_("governance_gate")
    )
    assert forged.status_code == 409
    await site.grace.mesh.stop()
    assert [e.source for e in seen] == ["alice"]
