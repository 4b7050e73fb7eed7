"""``GovernanceMiddleware``: the HTTP enforcement point, as pure ASGI.

For every HTTP request outside the exempt paths:

1. authenticate from verified credentials (:class:`Authenticator`) — else **401**
   ``application/problem+json`` with ``WWW-Authenticate: Bearer``;
2. read the body (at most ``max_body_bytes``, else **413**) so the analyzers see it, and
   replay it to the application unchanged;
3. name the action ``METHOD:/route/{template}`` from the matched route (path parameters
   become the resource), applying a ``@require_governance`` declaration on the endpoint;
4. ``Gate.decide`` — allowed: the app runs and the response carries
   ``Grace-Decision-Id``; pending approval: **202** (or 403, configurable) with the
   approval id; rejected: **403** problem+json (RFC 9457) with the decision id, reasons and
   principles.

A request may present an approval with ``Grace-Approval-Id``. It is pure ASGI (never
``BaseHTTPMiddleware``) so streaming and background tasks are untouched.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping, Sequence
from typing import Any, Final, Protocol

import orjson
from starlette.routing import Match

from grace.errors import AuthenticationError
from grace.governance.auth import Authenticator
from grace.governance.gate import Gate
from grace.governance.model import ActionRequest, Decision, Outcome
from grace.governance.wiring import GovernanceMarker, decided

__all__ = ["DECISION_HEADER", "GovernanceMiddleware", "Held", "IngressControl"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DECISION_HEADER: Final = "grace-decision-id"
APPROVAL_HEADER: Final = "grace-approval-id"
REASON_HEADER: Final = "grace-reason"
"""Why the caller acts (the follow_why principle asks significant actions for one)."""
_PROBLEM: Final = b"application/problem+json"
_ROUTE_CACHE_SIZE: Final = 4096
_HELD_TITLES: Final = {403: "Forbidden", 429: "Too Many Requests", 503: "Service Unavailable"}


class Held(Protocol):
    """Why a request is held at the ingress (the immune kernel's controls answer this)."""

    @property
    def status_code(self) -> int: ...
    @property
    def reason(self) -> str: ...
    @property
    def retry_after_s(self) -> float | None: ...


class IngressControl(Protocol):
    """Circuit breakers, rate limits and quarantines by key (``METHOD:/route`` or
    ``component:<principal id>``), checked synchronously on every governed request."""

    def check(self, key: str) -> Held | None: ...


class _TooLarge(Exception):
    pass


class GovernanceMiddleware:
    """Governs every HTTP request of the wrapped ASGI app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        gate: Gate | None = None,
        authenticator: Authenticator | None = None,
        state_attribute: str = "governance",
        exempt_paths: Sequence[str] = ("/health", "/metrics", "/favicon.ico"),
        max_body_bytes: int = 1 << 20,
        pending_status: int = 202,
        controls: IngressControl | None = None,
    ) -> None:
        self.app = app
        self.gate = gate
        self.authenticator = authenticator
        self.state_attribute = state_attribute
        self.exempt_paths = frozenset(p for p in exempt_paths if not p.endswith("/*"))
        self.exempt_prefixes = tuple(p[:-1] for p in exempt_paths if p.endswith("/*"))
        """``/console/*`` exempts ``/console/`` and everything under it (not ``/consoleX``)."""
        self.max_body_bytes = max_body_bytes
        if pending_status not in (202, 403):
            raise ValueError("pending approvals are answered with 202 or 403")
        self.pending_status = pending_status
        self.controls = controls
        """Immune ingress controls (circuit breakers, rate limits, quarantines), consulted
        before the gate; default: ``controls`` of the ``app.state`` holder, if any."""
        self._routes_seen: dict[tuple[Any, ...], tuple[str, str, GovernanceMarker | None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in self.exempt_paths
            or (self.exempt_prefixes and scope["path"].startswith(self.exempt_prefixes))
        ):
            await self.app(scope, receive, send)
            return
        gate, authenticator = self._resolve(scope)
        if gate is None or authenticator is None:
            await _problem(send, 503, "Service Unavailable", "governance is not ready")
            return
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        try:
            principal = authenticator.authenticate(headers)
        except AuthenticationError as e:
            await _problem(
                send, 401, "Unauthorized", str(e), extra_headers=[(b"www-authenticate", b"Bearer")]
            )
            return
        try:
            body, replay = await self._read_body(receive)
        except _TooLarge:
            await _problem(
                send,
                413,
                "Content Too Large",
                f"the request body exceeds {self.max_body_bytes} bytes",
            )
            return
        action, resource, marker = self._route(scope)
        controls = self._controls(scope)
        if controls is not None:
            held = controls.check(action) or controls.check(f"component:{principal.id}")
            if held is not None:
                extra = []
                if held.retry_after_s is not None:
                    extra.append((b"retry-after", str(max(1, round(held.retry_after_s))).encode()))
                await _problem(
                    send,
                    held.status_code,
                    _HELD_TITLES.get(held.status_code, "Held"),
                    held.reason,
                    extra_headers=extra,
                )
                return
        request = ActionRequest(
            request_id=headers.get("x-request-id") or f"req_{secrets.token_urlsafe(12)}",
            principal=principal,
            action=action,
            resource=resource,
            context={
                "method": scope["method"],
                "path": scope["path"],
                "query": scope.get("query_string", b"").decode("latin-1"),
                "reason": headers.get(REASON_HEADER, ""),
                "body": (
                    _body_value(body, headers.get("content-type", ""))
                    if marker is None or marker.inspect_body
                    else {"omitted_bytes": len(body)}
                ),
            },
            # Autonomy tiers govern declared autonomous actions (routes marked so, the
            # wiring helpers); a plain HTTP call is a request by its principal.
            is_autonomous=marker.is_autonomous if marker else False,
            declared_risk=marker.risk_level if marker else None,
            source="http",
            approval_id=headers.get(APPROVAL_HEADER) or None,
        )
        decision = await gate.decide(request)
        if decision.allowed:
            state = scope.setdefault("state", {})
            state["principal"] = principal
            state["decision"] = decision
            with decided(decision):
                await self.app(scope, replay, _with_decision_header(send, decision))
            return
        if (
            decision.outcome in (Outcome.REQUIRES_APPROVAL, Outcome.REQUIRES_PARLIAMENT)
            and decision.approval_id
        ):
            await _problem(
                send,
                self.pending_status,
                "Approval Required",
                f"{decision.outcome}: approval {decision.approval_id} must be granted, then "
                f"the same request retried with {APPROVAL_HEADER}",
                decision=decision,
                status_word="pending_approval",
            )
            return
        await _problem(
            send,
            403,
            "Forbidden",
            "; ".join(r.message for r in decision.reasons) or f"decision: {decision.outcome}",
            decision=decision,
        )

    def _controls(self, scope: Scope) -> IngressControl | None:
        if self.controls is not None:
            return self.controls
        holder = getattr(getattr(scope.get("app"), "state", None), self.state_attribute, None)
        controls = getattr(holder, "controls", None)
        return controls if callable(getattr(controls, "check", None)) else None

    def _resolve(self, scope: Scope) -> tuple[Gate | None, Authenticator | None]:
        """The gate and authenticator given, else those on ``app.state`` (set at startup)."""
        if self.gate is not None and self.authenticator is not None:
            return self.gate, self.authenticator
        state = getattr(scope.get("app"), "state", None)
        holder = getattr(state, self.state_attribute, None)
        return getattr(holder, "gate", None), getattr(holder, "authenticator", None)

    async def _read_body(self, receive: Receive) -> tuple[bytes, Receive]:
        chunks: list[bytes] = []
        size = 0
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        pending = iter(messages)

        async def replay() -> Message:
            try:
                return next(pending)
            except StopIteration:
                return await receive()

        return b"".join(chunks), replay

    def _route(self, scope: Scope) -> tuple[str, str, GovernanceMarker | None]:
        """``(METHOD:/template, resource, marker)`` for the route that will serve the request.

        Matching walks every route (FastAPI does it again to dispatch), so answers are kept
        per (router, its route count, method, path, root path): a router that gains routes
        gets a fresh key, and the cache is bounded.
        """
        router = getattr(scope.get("app"), "router", None)
        routes = getattr(router, "routes", ())
        key = (id(router), len(routes), scope["method"], scope["path"], scope.get("root_path", ""))
        found = self._routes_seen.get(key)
        if found is None:
            found = self._match(scope, routes)
            self._routes_seen[key] = found
            if len(self._routes_seen) > _ROUTE_CACHE_SIZE:
                del self._routes_seen[next(iter(self._routes_seen))]
        return found

    def _match(
        self, scope: Scope, routes: Sequence[Any]
    ) -> tuple[str, str, GovernanceMarker | None]:
        method = scope["method"]
        for prefix, route in _routes(routes, ""):
            probe = (
                scope if not prefix else {**scope, "root_path": scope.get("root_path", "") + prefix}
            )
            match, child = route.matches(probe)
            if match is Match.FULL:
                params = child.get("path_params", {})
                resource = ",".join(f"{k}={v}" for k, v in sorted(params.items())) or scope["path"]
                endpoint = child.get("endpoint") or getattr(route, "endpoint", None)
                marker = getattr(endpoint, "__grace_governance__", None)
                template = prefix + str(getattr(route, "path", None) or scope["path"])
                action = marker.action if marker and marker.action else f"{method}:{template}"
                return action, resource, marker
        # No route matched (a 404 or 405 to come): govern the raw path, never skip.
        return f"{method}:{scope['path']}", scope["path"], None


def _routes(routes: Iterable[Any], prefix: str) -> Iterator[tuple[str, Any]]:
    """Leaf routes with their include prefix, descending into FastAPI's included routers."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            yield from _routes(included.routes, prefix + (getattr(context, "prefix", "") or ""))
        else:
            yield prefix, route


def _body_value(body: bytes, content_type: str) -> Any:
    if not body:
        return None
    if "json" in content_type:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return body.decode("utf-8", "replace")


def _with_decision_header(send: Send, decision: Decision) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            headers.append((DECISION_HEADER.encode(), decision.decision_id.encode()))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


async def _problem(
    send: Send,
    status: int,
    title: str,
    detail: str,
    *,
    decision: Decision | None = None,
    status_word: str | None = None,
    extra_headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """An RFC 9457 problem details response."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    headers = [(b"content-type", _PROBLEM), *extra_headers]
    if decision is not None:
        body.update(
            {
                "decision_id": decision.decision_id,
                "outcome": str(decision.outcome),
                "approval_id": decision.approval_id,
                "reasons": [
                    {"message": r.message, "policy_id": r.policy_id, "principle": r.principle}
                    for r in decision.reasons
                ],
                "principles": sorted({r.principle for r in decision.reasons if r.principle}),
                "receipt_seq": decision.receipt_seq,
            }
        )
        if status_word:
            body["state"] = status_word
        headers.append((DECISION_HEADER.encode(), decision.decision_id.encode()))
    payload = orjson.dumps(body)
    headers.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
