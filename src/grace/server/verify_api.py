"""``POST /v1/verify/code``: verify submitted Python code and return the verdict.

The route is governed by :class:`GovernanceMiddleware` like every other; its body is
code to be judged, not the caller's own act, so the middleware's content analyzers do
not inspect it (the verifier does, far more thoroughly). The caller is the principal the
middleware verified; the verdict is recorded in the ledger under that principal.

Limits (413 / 422 naming the problem): the raw body at most ``MAX_BODY_BYTES``; at most
``MAX_FILES`` files, each at most ``MAX_FILE_CHARS`` characters, names as in
:class:`~grace.verification.CodeBundle`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from grace.errors import VerificationError
from grace.governance.model import Principal
from grace.governance.wiring import GovernanceMarker
from grace.verification import BundleLimits, CodeBundle, VerificationEngine

__all__ = ["MAX_BODY_BYTES", "MAX_FILES", "MAX_FILE_CHARS", "VerifyCodeBody", "verify_router"]

MAX_BODY_BYTES: Final = 2 << 20
MAX_FILES: Final = 100
MAX_FILE_CHARS: Final = 256 << 10
_MAX_NAME: Final = 200
_LIMITS: Final = BundleLimits(
    max_files=MAX_FILES, max_file_bytes=MAX_FILE_CHARS * 4, max_total_bytes=MAX_BODY_BYTES
)

Files = dict[str, str]


class VerifyCodeBody(BaseModel):
    """Code to verify: one ``source`` string or ``files`` by name, with optional tests."""

    model_config = ConfigDict(extra="forbid")

    source: str | None = Field(default=None, max_length=MAX_FILE_CHARS)
    """One module (verified as ``module.py``)."""
    files: Files | None = Field(default=None, max_length=MAX_FILES)
    tests: str | Files | None = Field(default=None)
    """One test module (``test_module.py``) or test files by name."""
    target: str = Field(default="", max_length=256)
    """What the code is for (recorded with the verdict)."""

    @model_validator(mode="after")
    def _one_form(self) -> VerifyCodeBody:
        if (self.source is None) == (self.files is None):
            raise ValueError("give exactly one of 'source' or 'files'")
        maps = [self.files or {}, self.tests if isinstance(self.tests, dict) else {}]
        if sum(len(m) for m in maps) > MAX_FILES:
            raise ValueError(f"at most {MAX_FILES} files in all")
        for mapping in maps:
            for name, text in mapping.items():
                if len(name) > _MAX_NAME:
                    raise ValueError(f"file name {name[:40]!r}... is longer than {_MAX_NAME}")
                if len(text) > MAX_FILE_CHARS:
                    raise ValueError(f"{name}: more than {MAX_FILE_CHARS} characters")
        if isinstance(self.tests, str) and len(self.tests) > MAX_FILE_CHARS:
            raise ValueError(f"tests: more than {MAX_FILE_CHARS} characters")
        return self


EngineOf = Callable[[Request], VerificationEngine | None]
"""How the route finds the verification engine (e.g. ``lambda r: r.app.state.grace.verifier``)."""


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise HTTPException(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    return bytes(body)


def verify_router(engine_of: EngineOf) -> APIRouter:
    """A router with ``POST /v1/verify/code`` using the engine ``engine_of`` returns."""
    router = APIRouter(prefix="/v1", tags=["verification"])

    @router.post(
        "/verify/code",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": VerifyCodeBody.model_json_schema()}},
            }
        },
    )
    async def verify_code(request: Request) -> dict[str, Any]:
        """Verify code (static analysis, then its tests in the sandbox); the verdict is
        recorded in the ledger. Always 200 with the verdict, whatever it is."""
        principal = getattr(request.state, "principal", None)
        if not isinstance(principal, Principal):
            raise HTTPException(401, "no verified principal")
        engine = engine_of(request)
        if engine is None:
            raise HTTPException(503, "verification is not configured")
        try:
            body = VerifyCodeBody.model_validate_json(await _read_body(request))
        except ValidationError as e:
            raise HTTPException(
                422, e.errors(include_url=False, include_context=False, include_input=False)
            ) from e
        try:
            bundle = CodeBundle.of(
                body.source if body.source is not None else body.files or {},
                body.tests,
                limits=_LIMITS,
            )
        except VerificationError as e:
            raise HTTPException(422, str(e)) from e
        result = await engine.verify(bundle, target=body.target, actor=principal.id)
        return result.to_json()

    # The body is code under judgement, not the caller's own act: the middleware decides
    # on the route, the verifier judges the content.
    verify_code.__grace_governance__ = GovernanceMarker(  # type: ignore[attr-defined]
        action=None, risk_level=None, is_autonomous=False, inspect_body=False
    )
    return router
