"""The governance HTTP API: decisions for policy enforcement points, and approvals.

Every route here is itself governed by :class:`GovernanceMiddleware`; the principal the
middleware verified is on ``request.state.principal``. Roles: ``pep`` may ask decisions
for other principals, ``approver`` may decide approvals, ``auditor`` may read them.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from grace.errors import ApprovalError
from grace.governance.approvals import Approval, ApprovalState, ApprovalStore
from grace.governance.auth import Authenticator
from grace.governance.decisions import DecisionIndex, decision_json
from grace.governance.gate import Gate
from grace.governance.model import ActionRequest, Principal
from grace.governance.principals import PrincipalRegistry
from grace.governance.wiring import require_governance

__all__ = ["GovernanceAPI", "GovernanceServices", "router"]

router = APIRouter(prefix="/v1", tags=["governance"])

MAX_BATCH = 100


class GovernanceServices(Protocol):
    """What the routes and the middleware need (``app.state.governance``); the runtime's
    :class:`~grace.runtime.Grace` provides it."""

    gate: Gate
    approvals: ApprovalStore
    principals: PrincipalRegistry
    decision_index: DecisionIndex
    authenticator: Authenticator


class GovernanceAPI:
    """A plain :class:`GovernanceServices` (for embedding and tests)."""

    def __init__(
        self,
        *,
        gate: Gate,
        approvals: ApprovalStore,
        principals: PrincipalRegistry,
        decision_index: DecisionIndex,
        authenticator: Authenticator,
    ) -> None:
        self.gate = gate
        self.authenticator = authenticator
        self.approvals = approvals
        self.principals = principals
        self.decision_index = decision_index


def _api(request: Request) -> GovernanceServices:
    api: GovernanceServices | None = getattr(request.app.state, "governance", None)
    if api is None:  # pragma: no cover - the lifespan sets it before serving
        raise HTTPException(503, "governance is not configured")
    return api


def _caller(request: Request) -> Principal:
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):  # pragma: no cover - the middleware sets it
        raise HTTPException(401, "no verified principal")
    return principal


Api = Annotated[GovernanceServices, Depends(_api)]
Caller = Annotated[Principal, Depends(_caller)]


def _require_role(caller: Principal, *roles: str) -> None:
    if not caller.roles & set(roles):
        raise HTTPException(403, f"this needs one of the roles {sorted(roles)}")


class DecideBody(BaseModel):
    """A decision request from a policy enforcement point."""

    model_config = ConfigDict(extra="forbid")

    principal_id: str = Field(min_length=1, max_length=256)
    action: str = Field(min_length=1, max_length=512)
    resource: str = Field(default="", max_length=1024)
    context: dict[str, Any] = Field(default_factory=dict)
    is_autonomous: bool = False
    request_id: str | None = Field(default=None, min_length=1, max_length=128)
    approval_id: str | None = Field(default=None, min_length=1, max_length=128)


async def _decide(api: GovernanceServices, body: DecideBody, index: int) -> dict[str, Any]:
    principal = api.principals.get(body.principal_id)
    if principal is None:
        raise HTTPException(422, f"unknown principal {body.principal_id!r}")
    request = ActionRequest(
        request_id=body.request_id or f"pep_{index}_{id(body):x}",
        principal=principal,
        action=body.action,
        resource=body.resource,
        context=body.context,
        is_autonomous=body.is_autonomous,
        source="pep",
        approval_id=body.approval_id,
    )
    decision = await api.gate.decide(request)
    return decision_json(decision, request)


@router.post("/decide")
@require_governance(inspect_body=False)
async def decide(body: DecideBody, api: Api, caller: Caller) -> dict[str, Any]:
    """Decide one request for a principal (the caller needs the ``pep`` role)."""
    _require_role(caller, "pep")
    return await _decide(api, body, 0)


@router.post("/decide/batch")
@require_governance(inspect_body=False)
async def decide_batch(
    bodies: Annotated[list[DecideBody], Field(min_length=1, max_length=MAX_BATCH)],
    api: Api,
    caller: Caller,
) -> list[dict[str, Any]]:
    """Decide up to 100 requests, in order (``pep`` role)."""
    _require_role(caller, "pep")
    return [await _decide(api, body, i) for i, body in enumerate(bodies)]


@router.get("/decisions/{decision_id}")
async def get_decision(decision_id: str, api: Api, caller: Caller) -> dict[str, Any]:
    """One decision; auditors and PEPs see all, others their own."""
    found = await api.decision_index.get(decision_id)
    if found is None:
        raise HTTPException(404, f"no decision {decision_id}")
    if found.get("principal") != caller.id:
        _require_role(caller, "auditor", "pep")
    return found


def _approval_json(a: Approval) -> dict[str, Any]:
    return {
        "approval_id": a.id,
        "state": str(a.state),
        "requester": a.requester,
        "action": a.action,
        "resource": a.resource,
        "quorum": a.quorum,
        "approvers": list(a.approvers),
        "rejected_by": a.rejected_by,
        "summary": dict(a.summary),
        "created_at": a.created_at.isoformat(),
        "expires_at": a.expires_at.isoformat(),
    }


@router.get("/approvals")
async def list_approvals(
    api: Api, caller: Caller, state: ApprovalState | None = ApprovalState.PENDING
) -> list[dict[str, Any]]:
    """Approval requests (pending by default; ``approver`` or ``auditor`` role)."""
    _require_role(caller, "approver", "auditor")
    return [_approval_json(a) for a in await api.approvals.find(state=state)]


@router.get("/approvals/{approval_id}")
async def get_approval(approval_id: str, api: Api, caller: Caller) -> dict[str, Any]:
    """One approval request (its requester, approvers and auditors may read it)."""
    found = await api.approvals.get(approval_id)
    if found is None:
        raise HTTPException(404, f"no approval {approval_id}")
    if found.requester != caller.id:
        _require_role(caller, "approver", "auditor")
    return _approval_json(found)


class VoteBody(BaseModel):
    """An approver's comment."""

    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", max_length=2000)


async def _vote(
    api: GovernanceServices, caller: Principal, approval_id: str, approve: bool, comment: str
) -> dict[str, Any]:
    _require_role(caller, "approver")
    try:
        if approve:
            result = await api.approvals.approve(approval_id, caller.id, comment=comment)
        else:
            result = await api.approvals.reject(approval_id, caller.id, comment=comment)
    except ApprovalError as e:
        status = 404 if str(e).startswith("no approval") else 409
        raise HTTPException(status, str(e)) from e
    return _approval_json(result)


@router.post("/approvals/{approval_id}/approve")
async def approve(
    approval_id: str, api: Api, caller: Caller, body: VoteBody | None = None
) -> dict[str, Any]:
    """Approve (``approver`` role; never one's own request)."""
    return await _vote(api, caller, approval_id, True, body.comment if body else "")


@router.post("/approvals/{approval_id}/reject")
async def reject(
    approval_id: str, api: Api, caller: Caller, body: VoteBody | None = None
) -> dict[str, Any]:
    """Reject (``approver`` role)."""
    return await _vote(api, caller, approval_id, False, body.comment if body else "")
