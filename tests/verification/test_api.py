"""POST /v1/verify/code: the router from ``verify_router``, on a real engine and sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from grace.governance.model import Principal, PrincipalKind
from grace.ledger import Ledger
from grace.server.verify_api import MAX_BODY_BYTES, MAX_FILES, verify_router
from grace.verification.engine import VerificationEngine

CODE = "def inc(x):\n    return x + 1\n"
TESTS = "from module import inc\n\ndef test_inc():\n    assert inc(1) == 2\n"


class AsPrincipal:
    """Stands in for GovernanceMiddleware: sets the verified principal (or none)."""

    def __init__(self, app: ASGIApp, principal: Principal | None) -> None:
        self.app = app
        self.principal = principal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.principal is not None:
            scope.setdefault("state", {})["principal"] = self.principal
        await self.app(scope, receive, send)


def app_for(engine: VerificationEngine | None, principal: Principal | None) -> FastAPI:
    """An app with only the verification router."""
    app = FastAPI()
    app.include_router(verify_router(lambda _request: engine))
    app.add_middleware(AsPrincipal, principal=principal)
    return app


AGENT = Principal(id="agent-7", kind=PrincipalKind.AGENT, autonomy_tier=2)


@pytest.fixture
async def http(engine: VerificationEngine) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the app as agent-7."""
    transport = httpx.ASGITransport(app=app_for(engine, AGENT))
    async with httpx.AsyncClient(transport=transport, base_url="http://grace.test") as client:
        yield client


async def test_clean_code_is_verified_and_recorded_for_the_caller(
    http: httpx.AsyncClient, ledger: Ledger
) -> None:
    """A source with passing tests comes back verified, recorded under the caller."""
    r = await http.post("/v1/verify/code", json={"source": CODE, "tests": TESTS, "target": "t"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["safe_to_execute"]) == ("verified", True)
    assert body["tests"]["passed"] == 1
    assert body["actor"] == "agent-7"
    entry = await ledger.get(body["receipt_seq"])
    assert entry is not None
    assert (entry.actor, entry.resource) == ("agent-7", "t")


async def test_files_form_and_a_refuted_verdict_are_both_200(http: httpx.AsyncClient) -> None:
    """Files by name work; a refuted verdict is a value, not an HTTP error."""
    r = await http.post(
        "/v1/verify/code",
        json={"files": {"pkg/__init__.py": "", "pkg/calc.py": "def f(s):\n    return eval(s)\n"}},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "refuted"
    assert body["issues"][0]["rule_id"] == "GR101"
    assert body["security_violation"] is True


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"tests": TESTS}, "exactly one of"),
        ({"source": CODE, "files": {"a.py": CODE}}, "exactly one of"),
        ({"files": {f"m{i}.py": "" for i in range(MAX_FILES + 1)}}, "at most"),
        ({"files": {"../escape.py": CODE}}, "relative, normalised"),
        ({"source": CODE, "extra": 1}, "extra"),
    ],
)
async def test_bad_bodies_are_422_naming_the_problem(
    http: httpx.AsyncClient, payload: dict[str, Any], fragment: str
) -> None:
    """Malformed requests are refused with a message that says what is wrong."""
    r = await http.post("/v1/verify/code", json=payload)
    assert r.status_code == 422
    assert fragment in r.text


async def test_an_oversized_body_is_413(http: httpx.AsyncClient) -> None:
    """A body over the limit is refused before it is parsed."""
    r = await http.post(
        "/v1/verify/code",
        content=b'{"source": "' + b"x" * (MAX_BODY_BYTES + 1) + b'"}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413


async def test_without_a_verified_principal_the_route_refuses(
    engine: VerificationEngine,
) -> None:
    """No principal from the middleware means 401 (fail closed); no engine means 503."""
    for app, status in ((app_for(engine, None), 401), (app_for(None, AGENT), 503)):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.post("/v1/verify/code", json={"source": CODE})
            assert r.status_code == status


def test_the_route_tells_the_middleware_not_to_inspect_the_code() -> None:
    """The body is code under judgement: the governance marker says not to analyse it."""
    router = verify_router(lambda _request: None)
    (route,) = router.routes
    marker = route.endpoint.__grace_governance__  # type: ignore[attr-defined]
    assert marker.inspect_body is False


async def test_an_empty_or_malformed_body_is_a_422_naming_the_problem(
    http: httpx.AsyncClient,
) -> None:
    """No body, or not JSON: 422 with pydantic's message, never a 500."""
    for content in (b"", b"{not json", b"[]"):
        r = await http.post(
            "/v1/verify/code", content=content, headers={"content-type": "application/json"}
        )
        assert r.status_code == 422, (content, r.text)
        assert r.json()["detail"]
