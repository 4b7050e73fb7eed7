"""Approvals bind to one request, need distinct approvers besides the requester, are used once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from grace.errors import ApprovalError
from grace.governance.approvals import ApprovalState, ApprovalStore, request_hash
from grace.governance.model import ActionRequest, Principal, PrincipalKind
from grace.testing import FakeClock

AGENT = Principal(id="agent-7", kind=PrincipalKind.AGENT, autonomy_tier=2)


def request(**changes: object) -> ActionRequest:
    """A deploy request by agent-7."""
    fields: dict[str, object] = {
        "request_id": "r1",
        "principal": AGENT,
        "action": "deploy_model",
        "resource": "model:fraud",
        "context": {"version": "1.2"},
        "is_autonomous": True,
    }
    fields.update(changes)
    return ActionRequest(**fields)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock."""
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> ApprovalStore:
    """An approval store in a temporary data dir, one hour TTL."""
    return ApprovalStore(tmp_path / "approvals.db", clock=clock, ttl_s=3600)


async def test_single_approval_then_single_use(store: ApprovalStore) -> None:
    """One approval by someone else approves; it can be consumed once, for the same request."""
    approval = await store.create(request(), quorum=1, summary={"risk": "high"})
    assert approval.state is ApprovalState.PENDING
    decided = await store.approve(approval.id, "alice")
    assert decided.state is ApprovalState.APPROVED
    assert not await store.consume(approval.id, request(context={"version": "9.9"}))
    assert await store.consume(approval.id, request(request_id="r2"))  # same content, new id
    assert not await store.consume(approval.id, request())
    final = await store.get(approval.id)
    assert final is not None
    assert final.state is ApprovalState.CONSUMED


async def test_self_approval_and_double_votes_are_refused(store: ApprovalStore) -> None:
    """The requester cannot approve; an approver counts once."""
    approval = await store.create(request(), quorum=2, summary={})
    with pytest.raises(ApprovalError, match="cannot approve"):
        await store.approve(approval.id, "agent-7")
    await store.approve(approval.id, "alice")
    with pytest.raises(ApprovalError, match="already approved"):
        await store.approve(approval.id, "alice")
    pending = await store.get(approval.id)
    assert pending is not None
    assert pending.state is ApprovalState.PENDING
    assert pending.approvers == ("alice",)
    done = await store.approve(approval.id, "bob")
    assert done.state is ApprovalState.APPROVED


async def test_one_rejection_rejects(store: ApprovalStore) -> None:
    """A rejection ends the request; later votes are refused."""
    approval = await store.create(request(), quorum=3, summary={})
    await store.approve(approval.id, "alice")
    rejected = await store.reject(approval.id, "bob", comment="not during the freeze")
    assert rejected.state is ApprovalState.REJECTED
    assert rejected.rejected_by == "bob"
    with pytest.raises(ApprovalError, match="not pending"):
        await store.approve(approval.id, "carol")
    assert not await store.consume(approval.id, request())


async def test_expired_approvals_cannot_be_decided_or_used(
    store: ApprovalStore, clock: FakeClock
) -> None:
    """After the TTL an approval is expired, pending or approved."""
    pending = await store.create(request(), quorum=1, summary={})
    approved = await store.create(request(resource="model:b"), quorum=1, summary={})
    await store.approve(approved.id, "alice")
    clock.advance(3601)
    with pytest.raises(ApprovalError, match="expired"):
        await store.approve(pending.id, "alice")
    assert not await store.consume(approved.id, request(resource="model:b"))
    assert [a.id for a in await store.find(state=ApprovalState.EXPIRED)] == [
        approved.id,
        pending.id,
    ]


async def test_waiter_wakes_when_a_decision_arrives(store: ApprovalStore) -> None:
    """wait() returns as soon as the approval is decided, or at its timeout."""
    approval = await store.create(request(), quorum=1, summary={})
    waiter = asyncio.create_task(store.wait(approval.id, timeout=5))
    await asyncio.sleep(0.01)
    await store.approve(approval.id, "alice")
    decided = await asyncio.wait_for(waiter, 2)
    assert decided.state is ApprovalState.APPROVED
    other = await store.create(request(resource="x"), quorum=1, summary={})
    timed_out = await store.wait(other.id, timeout=0.05, poll_s=0.01)
    assert timed_out.state is ApprovalState.PENDING


async def test_decisions_from_another_connection_are_seen(tmp_path: Path, clock: FakeClock) -> None:
    """An approval decided through a second store (another process) is seen by the waiter."""
    first = ApprovalStore(tmp_path / "a.db", clock=clock)
    second = ApprovalStore(tmp_path / "a.db", clock=clock)
    approval = await first.create(request(), quorum=1, summary={})
    waiter = asyncio.create_task(first.wait(approval.id, timeout=5, poll_s=0.02))
    await second.approve(approval.id, "alice")
    assert (await asyncio.wait_for(waiter, 2)).state is ApprovalState.APPROVED
    first.close()
    second.close()


def test_request_hash_covers_principal_action_resource_and_context() -> None:
    """Changing any bound field changes the hash; the request id does not."""
    base = request_hash(request())
    assert request_hash(request(request_id="other")) == base
    for change in (
        {"action": "deploy_code"},
        {"resource": "model:other"},
        {"context": {"version": "1.3"}},
        {"principal": Principal(id="agent-8", kind=PrincipalKind.AGENT)},
    ):
        assert request_hash(request(**change)) != base


def test_unknown_approval_and_bad_quorum_are_errors(store: ApprovalStore) -> None:
    """Deciding an unknown approval or asking for quorum 0 raises ApprovalError."""

    async def scenario() -> None:
        with pytest.raises(ApprovalError, match="no approval"):
            await store.approve("apr_missing", "alice")
        with pytest.raises(ApprovalError, match="quorum"):
            await store.create(request(), quorum=0, summary={})

    asyncio.run(scenario())


async def test_find_filters_in_the_database_not_after_a_window(store: ApprovalStore) -> None:
    """An old pending approval is found even behind many newer decided ones."""
    old = await store.create(request(resource="old"), quorum=1, summary={})
    for i in range(30):
        decided = await store.create(request(resource=f"r{i}"), quorum=1, summary={})
        await store.reject(decided.id, "alice")
    pending = await store.find(state=ApprovalState.PENDING, limit=5)
    assert [a.id for a in pending] == [old.id]
    assert len(await store.find(state=ApprovalState.REJECTED, limit=5)) == 5
    assert len(await store.find(state=None, limit=100)) == 31
