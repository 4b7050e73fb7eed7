"""Enforcement points for code, not HTTP: wiring helpers, the decorator, the seed's API.

Every helper builds an :class:`ActionRequest` and calls the one decision path,
:meth:`Gate.decide`. The returned :class:`Decision` is truthy only when the action is
approved and allowed under the enforcement mode in force.

Callers are trusted in-process components: they pass the verified :class:`Principal`
they act for (their own system principal for autonomous work), never a bare name.

``@require_governance`` governs any async function: the gate and the principal come from
:func:`governed` (a context variable, so concurrent tasks keep their own); without them,
or when the decision does not allow, the call raises :class:`GovernanceDenied` and the
function body never runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import secrets
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, ParamSpec, TypeVar

from grace.errors import GovernanceDenied
from grace.governance.gate import Gate
from grace.governance.model import ActionRequest, Decision, Outcome, Principal, RiskLevel

__all__ = [
    "GovernanceMarker",
    "GovernanceWiring",
    "decided",
    "governed",
    "require_governance",
]

P = ParamSpec("P")
R = TypeVar("R")

_SEVERITY_RISK: Final = {
    "info": RiskLevel.LOW,
    "low": RiskLevel.LOW,
    "medium": RiskLevel.MEDIUM,
    "high": RiskLevel.HIGH,
    "critical": RiskLevel.CRITICAL,
}


def _request_id() -> str:
    return f"req_{secrets.token_urlsafe(12)}"


class GovernanceWiring:
    """The seed's ``check_*`` helpers over one gate."""

    def __init__(self, gate: Gate, *, system: Principal) -> None:
        self.gate = gate
        self.system = system
        """The principal autonomous subsystems (AVN) act as."""

    async def check_avn_action(
        self,
        action: str,
        component: str,
        anomaly_id: str,
        severity: str,
        *,
        details: Mapping[str, Any] | None = None,
    ) -> Decision:
        """May the immune kernel perform healing ``action`` on ``component``?"""
        return await self.gate.decide(
            ActionRequest(
                request_id=_request_id(),
                principal=self.system,
                action=f"avn:{action}",
                resource=f"component:{component}",
                context={
                    "anomaly_id": anomaly_id,
                    "severity": severity,
                    "reason": f"heal anomaly {anomaly_id} ({severity}) on {component}",
                    **(details or {}),
                },
                is_autonomous=True,
                declared_risk=_SEVERITY_RISK.get(severity.lower()),
                source="avn",
            )
        )

    async def check_business_operation(
        self,
        operation: str,
        actor: Principal,
        resource: str,
        context: Mapping[str, Any] | None = None,
        *,
        is_autonomous: bool = False,
    ) -> Decision:
        """May ``actor`` perform a business ``operation`` on ``resource``?"""
        return await self.gate.decide(
            ActionRequest(
                request_id=_request_id(),
                principal=actor,
                action=operation,
                resource=resource,
                context=dict(context or {}),
                is_autonomous=is_autonomous,
                source="business",
            )
        )

    async def check_system_change(
        self,
        change_type: str,
        target_system: str,
        actor: Principal,
        details: Mapping[str, Any] | None = None,
    ) -> Decision:
        """May ``actor`` change ``target_system`` (config, policy, scaling, …)?"""
        return await self.gate.decide(
            ActionRequest(
                request_id=_request_id(),
                principal=actor,
                action=f"system:{change_type}",
                resource=target_system,
                context=dict(details or {}),
                is_autonomous=actor.kind != "human",
                source="system",
            )
        )

    async def check_code_deployment(
        self,
        target: str,
        actor: Principal,
        *,
        verification: Mapping[str, Any],
        reason: str = "",
    ) -> Decision:
        """May ``actor`` deploy verified code to ``target``? ``verification`` is the
        verification verdict (status, safe_to_execute, issues…) — a fact, not a request."""
        return await self.gate.decide(
            ActionRequest(
                request_id=_request_id(),
                principal=actor,
                action="deploy_code",
                resource=target,
                context={"verification": dict(verification), "reason": reason},
                is_autonomous=actor.kind != "human",
                source="deployment",
            )
        )

    async def process_request(
        self,
        actor: Principal,
        action: str,
        resource: str,
        context: Mapping[str, Any] | None = None,
        risk_level: RiskLevel | str | None = None,
    ) -> dict[str, Any]:
        """The seed's ``process_request`` → ``{"allowed", "status_code", "response"}``."""
        decision = await self.gate.decide(
            ActionRequest(
                request_id=_request_id(),
                principal=actor,
                action=action,
                resource=resource,
                context=dict(context or {}),
                declared_risk=RiskLevel(risk_level) if risk_level is not None else None,
                source="in_process",
            )
        )
        pending = decision.outcome in (Outcome.REQUIRES_APPROVAL, Outcome.REQUIRES_PARLIAMENT)
        status = 200 if decision.allowed else (202 if pending and decision.approval_id else 403)
        return {
            "allowed": decision.allowed,
            "status_code": status,
            "response": {
                "decision": str(decision.outcome),
                "decision_id": decision.decision_id,
                "reasoning": [r.message for r in decision.reasons],
                "violated_policies": list(decision.violated_policies),
                "approval_id": decision.approval_id,
                "requires_human_approval": decision.requires_human_approval,
                "receipt_seq": decision.receipt_seq,
            },
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class GovernanceMarker:
    """What ``@require_governance`` declared on a function (read by the HTTP middleware)."""

    action: str | None
    risk_level: RiskLevel | None
    is_autonomous: bool
    inspect_body: bool = True
    """False for endpoints whose body describes someone else's action (the decision API):
    the body is judged by the decision it asks for, not as the caller's own act."""


_context: contextvars.ContextVar[tuple[Gate, Principal] | None] = contextvars.ContextVar(
    "grace_governed", default=None
)
_http_decision: contextvars.ContextVar[Decision | None] = contextvars.ContextVar(
    "grace_http_decision", default=None
)


@contextlib.contextmanager
def decided(decision: Decision) -> Iterator[None]:
    """Mark the current request as already decided (the HTTP middleware does this), so a
    ``@require_governance`` route does not decide a second time."""
    token = _http_decision.set(decision)
    try:
        yield
    finally:
        _http_decision.reset(token)


@contextlib.contextmanager
def governed(gate: Gate, principal: Principal) -> Iterator[None]:
    """Within this block, ``@require_governance`` functions decide with ``gate`` for
    ``principal``."""
    token = _context.set((gate, principal))
    try:
        yield
    finally:
        _context.reset(token)


def require_governance(
    *,
    action: str | None = None,
    risk_level: RiskLevel | str | None = None,
    is_autonomous: bool = False,
    inspect_body: bool = True,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Govern an async function: decide before it runs; raise GovernanceDenied unless allowed.

    ``risk_level`` can raise the registry's risk for this function, never lower it. On a
    FastAPI route the HTTP middleware uses the same declaration.
    """
    risk = RiskLevel(risk_level) if risk_level is not None else None

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        name = action or f"call:{fn.__module__}.{fn.__qualname__}"

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            already = _http_decision.get()
            if already is not None and already.allowed:
                return await fn(*args, **kwargs)
            bound = _context.get()
            if bound is None:
                raise GovernanceDenied(
                    f"{name}: no governance context (use `with governed(gate, principal)`)",
                    None,
                )
            gate, principal = bound
            decision = await gate.decide(
                ActionRequest(
                    request_id=_request_id(),
                    principal=principal,
                    action=name,
                    context={"kwargs": {k: repr(v)[:200] for k, v in kwargs.items()}},
                    is_autonomous=is_autonomous,
                    declared_risk=risk,
                    source="decorator",
                )
            )
            if not decision.allowed:
                reasons = "; ".join(r.message for r in decision.reasons) or str(decision.outcome)
                raise GovernanceDenied(f"{name}: {decision.outcome}: {reasons}", decision)
            return await fn(*args, **kwargs)

        wrapper.__grace_governance__ = GovernanceMarker(  # type: ignore[attr-defined]
            action=action, risk_level=risk, is_autonomous=is_autonomous, inspect_body=inspect_body
        )
        return wrapper

    return decorate
