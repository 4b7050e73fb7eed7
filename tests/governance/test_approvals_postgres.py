"""Approvals on PostgreSQL: the same rules as on SQLite, held across instances."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from grace.errors import ApprovalError
from grace.governance.approvals import ApprovalState, ApprovalStore
from grace.testing import FakeClock

# The SQLite suite's behaviour tests, run again here against the PostgreSQL `store` below.
from tests.governance.test_approvals import (
    request,
    test_expired_approvals_cannot_be_decided_or_used,
    test_find_filters_in_the_database_not_after_a_window,
    test_one_rejection_rejects,
    test_self_approval_and_double_votes_are_refused,
    test_single_approval_then_single_use,
    test_waiter_wakes_when_a_decision_arrives,
)

__all__ = [
    "test_expired_approvals_cannot_be_decided_or_used",
    "test_find_filters_in_the_database_not_after_a_window",
    "test_one_rejection_rejects",
    "test_self_approval_and_double_votes_are_refused",
    "test_single_approval_then_single_use",
    "test_waiter_wakes_when_a_decision_arrives",
]


@pytest.fixture
async def store(pg_dsn: str, clock: FakeClock) -> AsyncIterator[ApprovalStore]:
    """An approval store in a fresh PostgreSQL schema, one hour TTL."""
    opened = await ApprovalStore.open_postgres(pg_dsn, clock=clock, ttl_s=3600)
    yield opened
    await opened.aclose()


@pytest.fixture
async def other(
    pg_dsn: str, clock: FakeClock, store: ApprovalStore
) -> AsyncIterator[ApprovalStore]:
    """A second instance's store on the same database."""
    opened = await ApprovalStore.open_postgres(pg_dsn, clock=clock, ttl_s=3600)
    yield opened
    await opened.aclose()


async def test_approved_on_one_instance_is_usable_once_on_another(
    store: ApprovalStore, other: ApprovalStore
) -> None:
    """An approval granted through one instance is consumed once through the other."""
    approval = await store.create(request(), quorum=1, summary={})
    assert (await other.approve(approval.id, "alice")).state is ApprovalState.APPROVED
    assert await store.consume(approval.id, request(request_id="r2"))
    assert not await other.consume(approval.id, request())
    final = await other.get(approval.id)
    assert final is not None
    assert final.state is ApprovalState.CONSUMED


async def test_concurrent_consumers_on_two_instances_exactly_one_wins(
    store: ApprovalStore, other: ApprovalStore
) -> None:
    """Single use holds under concurrency: of many racing consumers, one succeeds."""
    approval = await store.create(request(), quorum=1, summary={})
    await store.approve(approval.id, "alice")
    results = await asyncio.gather(
        *(s.consume(approval.id, request()) for _ in range(10) for s in (store, other))
    )
    assert results.count(True) == 1


async def test_concurrent_votes_on_two_instances_count_each_approver_once(
    store: ApprovalStore, other: ApprovalStore
) -> None:
    """The same approver voting through both instances at once counts once; quorum holds."""
    approval = await store.create(request(), quorum=2, summary={})
    outcomes = await asyncio.gather(
        store.approve(approval.id, "alice"),
        other.approve(approval.id, "alice"),
        return_exceptions=True,
    )
    assert sum(isinstance(o, ApprovalError) for o in outcomes) == 1
    current = await store.get(approval.id)
    assert current is not None
    assert (current.state, current.approvers) == (ApprovalState.PENDING, ("alice",))
    decided = await other.approve(approval.id, "bob")
    assert decided.state is ApprovalState.APPROVED


async def test_a_waiter_wakes_on_another_instances_vote(
    store: ApprovalStore, other: ApprovalStore
) -> None:
    """wait() on one instance returns when the other decides, without polling for it."""
    approval = await store.create(request(), quorum=1, summary={})
    waiter = asyncio.create_task(store.wait(approval.id, timeout=30, poll_s=30))
    await asyncio.sleep(0.05)
    await other.approve(approval.id, "alice")
    decided = await asyncio.wait_for(waiter, 10)
    assert decided.state is ApprovalState.APPROVED


async def test_unknown_approvals_and_bad_quorums_are_errors_on_postgres(
    store: ApprovalStore,
) -> None:
    """Deciding an unknown approval or asking for quorum 0 raises ApprovalError."""
    with pytest.raises(ApprovalError, match="no approval"):
        await store.approve("apr_missing", "alice")
    with pytest.raises(ApprovalError, match="quorum"):
        await store.create(request(), quorum=0, summary={})
