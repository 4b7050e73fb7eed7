"""``schemathesis`` over Grace's whole HTTP API finds no 5xx.

Every operation of the app's OpenAPI schema (governance, audit, trust, immune, metrics,
verification, events, ops — all but the never-ending event stream) is fuzzed with valid
and invalid inputs through schemathesis's in-process ASGI transport, against the real
runtime (Cedar constitution, analyzers, ledger) in a temporary data dir. Every request
carries the API key of a human principal holding the ``pep``, ``approver`` and
``auditor`` roles, so generated requests pass authentication and the role checks and
reach the routes themselves.

Random strings would only ever name unknown principals, decisions and approvals (a 422 or
404 before any real work), so two generation hooks mix in ids that exist: decision bodies
sometimes name registered principals, which sends the generated action, resource and
context through ``Gate.decide``; path parameters sometimes name decisions and approvals
seeded before the run, which reaches the read, approve and reject paths.

Schemathesis starts the app's lifespan (``Grace.start``) on its own event loop at an
operation's first request and stops it when that operation's test ends, so every operation
also restarts Grace on the same data dir; afterwards the whole ledger must verify.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from grace.config import GraceSettings, LedgerSettings
from grace.governance.model import ActionRequest, Outcome, PrincipalKind
from grace.governance.principals import PrincipalRegistry
from grace.ledger import Ledger
from grace.runtime import Grace
from grace.server import create_app
from grace.server.governance_api import GovernanceServices
from grace.types import SystemClock

CALLER = "fuzzer"
"""The principal every generated request authenticates as."""
AGENT = "agent-7"
OPERATOR = "olga"
KNOWN_PRINCIPALS = (CALLER, AGENT, OPERATOR, "grace")
"""Principals that exist (``grace`` is the runtime's own system principal)."""


def _settings(data_dir: Path) -> GraceSettings:
    return GraceSettings(data_dir=data_dir, ledger=LedgerSettings(checkpoint_interval_s=0))


class _Site:
    """What the app's lifespan and the generation hooks need; filled in by the fixture."""

    def __init__(self) -> None:
        self.data_dir: Path | None = None
        self.api_key = ""
        self.decision_ids: tuple[str, ...] = ()
        self.approval_ids: tuple[str, ...] = ()

    async def start(self) -> tuple[GovernanceServices, Callable[[], Awaitable[None]]]:
        """The app's runtime factory: the real Grace on the prepared data dir."""
        if self.data_dir is None:  # pragma: no cover - the fixture runs before any request
            raise RuntimeError("the site fixture has not prepared a data dir")
        grace = await Grace.start(_settings(self.data_dir))
        return grace, grace.stop


SITE = _Site()
APP = create_app(SITE.start)
# What the app serves at /openapi.json; built without starting the lifespan, which needs
# the data dir the fixture prepares.
# The live event stream never ends by design (it is tested in tests/server); fuzzing it
# would wait for its end forever.
schema = schemathesis.openapi.from_dict(APP.openapi()).exclude(path="/v1/events/stream")


@schema.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    """Keep a generated body, or make its ``principal_id`` (one per batch item) a real one."""
    if isinstance(body, dict) and "principal_id" in body:
        return st.sampled_from([body, *({**body, "principal_id": p} for p in KNOWN_PRINCIPALS)])
    if isinstance(body, list) and any(isinstance(b, dict) and "principal_id" in b for b in body):
        picks = st.lists(
            st.sampled_from((None, *KNOWN_PRINCIPALS)), min_size=len(body), max_size=len(body)
        )
        return picks.map(lambda chosen: [_named(b, p) for b, p in zip(body, chosen, strict=True)])
    return st.just(body)


def _named(item: Any, principal: str | None) -> Any:
    if principal is None or not isinstance(item, dict) or "principal_id" not in item:
        return item
    return {**item, "principal_id": principal}


@schema.hook
def flatmap_path_parameters(
    context: schemathesis.HookContext, path_parameters: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    """Keep generated ids, or use a seeded decision or approval id."""
    if path_parameters is None:  # an operation without path parameters
        return st.just(None)
    for name, known in (
        ("decision_id", SITE.decision_ids),
        ("approval_id", SITE.approval_ids),
    ):
        if name in path_parameters and known:
            return st.sampled_from(
                [path_parameters, *({**path_parameters, name: k} for k in known)]
            )
    return st.just(path_parameters)


async def _seed(data_dir: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Decisions and pending approvals requested by others than the caller."""
    grace = await Grace.start(_settings(data_dir))
    try:
        agent, operator = grace.principals.get(AGENT), grace.principals.get(OPERATOR)
        assert agent is not None
        assert operator is not None
        requests = [
            # Routine: approved.
            ActionRequest(request_id="seed-read", principal=agent, action="GET:/items/{id}"),
            # High-risk autonomous action: one approver.
            ActionRequest(
                request_id="seed-deploy",
                principal=agent,
                action="deploy_model",
                resource="name=fraud",
                context={"reason": "fraud model v2 passed evaluation"},
                is_autonomous=True,
            ),
            # Critical change: a parliament of approvers.
            ActionRequest(
                request_id="seed-policy",
                principal=operator,
                action="system:policy_update",
                context={"reason": "quarterly policy review"},
            ),
            # A constitutional violation: rejected.
            ActionRequest(
                request_id="seed-destroy",
                principal=agent,
                action="run_script",
                context={"script": "rm -rf / --no-preserve-root"},
            ),
        ]
        decisions = [await grace.gate.decide(r) for r in requests]
    finally:
        await grace.stop()
    outcomes = [d.outcome for d in decisions]
    assert outcomes == [
        Outcome.APPROVED,
        Outcome.REQUIRES_APPROVAL,
        Outcome.REQUIRES_PARLIAMENT,
        Outcome.REJECTED,
    ], outcomes
    approvals = tuple(d.approval_id for d in decisions if d.approval_id)
    return tuple(d.decision_id for d in decisions), approvals


@pytest.fixture(scope="module", autouse=True)
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Site]:
    """A data dir with principals, the caller's API key, and seeded decisions."""
    data_dir = tmp_path_factory.mktemp("schemathesis") / "data"
    registry = PrincipalRegistry(data_dir / "principals.db", clock=SystemClock())
    registry.add(CALLER, kind=PrincipalKind.HUMAN, roles=["pep", "approver", "auditor"])
    registry.add(AGENT, kind=PrincipalKind.AGENT, autonomy_tier=2)
    registry.add(OPERATOR, kind=PrincipalKind.HUMAN, roles=["operator"])
    SITE.api_key = registry.create_key(CALLER)
    registry.close()
    SITE.decision_ids, SITE.approval_ids = asyncio.run(_seed(data_dir))
    SITE.data_dir = data_dir
    yield SITE
    # Schemathesis has stopped the app's lifespan with each test; the record verifies.
    SITE.data_dir, SITE.decision_ids, SITE.approval_ids = None, (), ()
    asyncio.run(_verify(data_dir))


async def _verify(data_dir: Path) -> None:
    async with await Ledger.open(data_dir, read_only=True) as ledger:
        report = await ledger.verify()
        assert report.valid, report


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case[Any], site: _Site) -> None:
    """No generated request, valid or not, makes the server answer 5xx."""
    case.call_and_validate(
        app=APP,
        headers={"Authorization": f"Bearer {site.api_key}"},
        checks=[not_a_server_error],
    )
