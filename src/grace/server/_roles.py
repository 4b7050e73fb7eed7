"""Who is calling, and may they: FastAPI dependencies over the principal the governance
middleware verified (``request.state.principal``). Roles refine what the gate already
allowed; they never replace it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from fastapi import HTTPException, Request

from grace.governance.model import Principal

__all__ = ["READ_ROLES", "WRITE_ROLES", "caller", "requires"]

READ_ROLES: Final = frozenset({"operator", "auditor", "admin", "approver"})
"""Who may read operational state (events, trust, incidents, controls)."""
WRITE_ROLES: Final = frozenset({"operator", "admin"})
"""Who may change it (quarantine, close an incident, reset a breaker)."""


def caller(request: Request) -> Principal:
    """The verified principal of the request; 401 if the middleware set none."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise HTTPException(401, "no verified principal")
    return principal


def requires(roles: Iterable[str]) -> Callable[[Request], Principal]:
    """A dependency: the caller, who must hold one of ``roles`` (else 403 naming them)."""
    needed = frozenset(roles)

    def check(request: Request) -> Principal:
        principal = caller(request)
        if not principal.roles & needed:
            raise HTTPException(403, f"this needs one of the roles {sorted(needed)}")
        return principal

    return check
