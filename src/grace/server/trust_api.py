"""Trust over HTTP: reputation scores, and quarantine / release of a component.

Reading needs one of the roles operator, auditor, admin or approver; quarantine and
release need operator or admin and are recorded in the ledger by the trust store, with
the caller as actor.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from grace.errors import TrustError
from grace.governance.model import Principal
from grace.server._roles import READ_ROLES, WRITE_ROLES, requires
from grace.trust import TrustStore

__all__ = ["router"]

router = APIRouter(prefix="/v1/trust", tags=["trust"])


def _store(request: Request) -> TrustStore:
    store = getattr(getattr(request.app.state, "governance", None), "trust", None)
    if not isinstance(store, TrustStore):
        raise HTTPException(503, "the trust store is not available")
    return store


_reader = requires(READ_ROLES)
_writer = requires(WRITE_ROLES)


Store = Annotated[TrustStore, Depends(_store)]


class ChangeBody(BaseModel):
    """Why a component is quarantined or released."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000)


@router.get("")
async def list_scores(
    store: Store,
    _: Annotated[Principal, Depends(_reader)],
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> dict[str, Any]:
    """Known subjects, least trusted first."""
    return {"scores": [s.to_json() for s in await store.list_scores(limit=limit)]}


@router.get("/{subject_id}")
async def get_score(
    subject_id: str, store: Store, _: Annotated[Principal, Depends(_reader)]
) -> dict[str, Any]:
    """One subject's score (a stranger gets the prior, with confidence 0)."""
    try:
        return (await store.get_trust_score(subject_id)).to_json()
    except TrustError as e:
        raise HTTPException(422, str(e)) from e


@router.post("/{subject_id}/quarantine")
async def quarantine(
    subject_id: str,
    body: ChangeBody,
    store: Store,
    caller: Annotated[Principal, Depends(_writer)],
) -> dict[str, Any]:
    """Quarantine a component: trust 0, its events blocked and its actions denied."""
    try:
        score = await store.quarantine(subject_id, reason=body.reason, actor=caller.id)
    except TrustError as e:
        raise HTTPException(422, str(e)) from e
    return score.to_json()


@router.post("/{subject_id}/release")
async def release(
    subject_id: str,
    body: ChangeBody,
    store: Store,
    caller: Annotated[Principal, Depends(_writer)],
) -> dict[str, Any]:
    """Release a quarantined component (409 when it is not quarantined)."""
    try:
        score = await store.release(subject_id, reason=body.reason, actor=caller.id)
    except TrustError as e:
        raise HTTPException(409, str(e)) from e
    return score.to_json()
