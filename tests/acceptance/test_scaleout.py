"""Two Grace runtimes on one PostgreSQL: keys, approvals and decisions are shared.

Each runtime has its own data dir (the same ledger key file), the same ``database_url``
and an in-memory mesh; both are driven over httpx's ASGI transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from grace.config import GraceSettings, LedgerSettings
from grace.governance.model import PrincipalKind
from grace.governance.principals import PrincipalRegistry
from grace.runtime import Grace
from grace.server.governance_api import GovernanceServices
from grace.types import SystemClock
from tests.acceptance.test_governance_http import demo_app


@contextlib.asynccontextmanager
async def instance(
    data_dir: Path, dsn: str, ran: list[str]
) -> AsyncIterator[tuple[httpx.AsyncClient, Grace]]:
    """One Grace instance on the shared database, served in-process."""
    settings = GraceSettings(
        data_dir=data_dir, database_url=dsn, ledger=LedgerSettings(checkpoint_interval_s=0)
    )
    holder: dict[str, Grace] = {}

    async def factory() -> tuple[GovernanceServices, Callable[[], Awaitable[None]]]:
        grace = await Grace.start(settings)
        holder["grace"] = grace
        return grace, grace.stop

    app = demo_app(factory, ran)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://grace.test") as http:
            yield http, holder["grace"]


def bearer(key: str, **extra: str) -> dict[str, str]:
    """Headers carrying an API key."""
    return {"Authorization": f"Bearer {key}", **extra}


async def eventually_ok(call: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
    """Repeat a request (bounded) until the other instance has heard of a change."""
    for _ in range(500):
        response = await call()
        if response.status_code != 401:
            return response
        await asyncio.sleep(0.02)
    return response


async def test_keys_approvals_and_decisions_are_shared_between_two_runtimes(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A key made on A works on B; approved on B, a request passes once via either."""
    operator = await asyncio.to_thread(PrincipalRegistry.open_postgres, pg_dsn, clock=SystemClock())
    try:
        operator.add("bob", kind=PrincipalKind.HUMAN, roles=["approver", "auditor"])
        operator.add("agent-7", kind=PrincipalKind.AGENT, autonomy_tier=2)
        bob = operator.create_key("bob")
        agent = operator.create_key("agent-7")
    finally:
        operator.close()
    ran_a: list[str] = []
    ran_b: list[str] = []
    dir_a, dir_b = tmp_path / "a", tmp_path / "b"
    async with instance(dir_a, pg_dsn, ran_a) as (http_a, grace_a):
        dir_b.mkdir()
        shutil.copy2(dir_a / "ledger.key", dir_b / "ledger.key")  # one key for one chain
        async with instance(dir_b, pg_dsn, ran_b) as (http_b, _grace_b):
            # A key created on A authenticates on B.
            grace_a.principals.add("dave", kind=PrincipalKind.HUMAN)
            dave = grace_a.principals.create_key("dave")
            seen = await eventually_ok(lambda: http_b.get("/items/1", headers=bearer(dave)))
            assert seen.status_code == 200, seen.text

            # Requested via A, approved via B, used once via B, then refused via A.
            headers = bearer(agent, **{"Grace-Reason": "fraud model v2 passed evaluation"})
            first = await http_a.post("/models/fraud/deploy", headers=headers)
            assert first.status_code == 202, first.text
            approval_id = first.json()["approval_id"]
            ok = await http_b.post(f"/v1/approvals/{approval_id}/approve", headers=bearer(bob))
            assert ok.status_code == 200, ok.text
            retry = {**headers, "Grace-Approval-Id": approval_id}
            passed = await http_b.post("/models/fraud/deploy", headers=retry)
            assert passed.status_code == 200, passed.text
            again = await http_a.post("/models/fraud/deploy", headers=retry)
            assert again.status_code != 200
            assert (ran_a, ran_b) == ([], ["get:1", "deploy:fraud"])

            # A decision made on A is readable on B.
            made_on_a = await http_a.get("/items/2", headers=bearer(bob))
            decision_id = made_on_a.headers["grace-decision-id"]
            read_on_b = await http_b.get(f"/v1/decisions/{decision_id}", headers=bearer(bob))
            assert read_on_b.status_code == 200, read_on_b.text
            body: dict[str, Any] = read_on_b.json()
            assert (body["decision_id"], body["principal"]) == (decision_id, "bob")
