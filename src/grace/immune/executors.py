"""Healing executors: each one acts for real or raises :class:`~grace.errors.ExecutorError`.

The kernel calls an executor only after the governance gate allowed the step, inside the
step's timeout, and records what it returned (``ExecutionResult.detail``) in the ledger.
Executors never report success for something that did not happen.

Executors acting on the world:

* ``restart_process`` — a process the :class:`ProcessSupervisor` manages, or a
  configured restart command (argv, no shell) for a process Grace does not manage;
* ``shell_command`` — a command from an allow-list of named argv templates; the playbook
  names the command, it never supplies argv; placeholders are the incident variables,
  whose alphabet is narrow and which never start with ``-``;
* ``http_webhook`` — a request to a URL under an allowed prefix (none allowed ⇒ refused);
* ``python_callable`` — a registered coroutine function, by name.

Executors acting on Grace itself (their effect is verified by reading it back):

* ``circuit_breaker`` / ``rate_limit`` — :class:`IngressControls` for a route pattern or
  ``component:<id>``;
* ``quarantine_component`` — trust store quarantine (trust 0: its events fail the mesh's
  trust floor, its actions the gate's threshold) plus an ingress quarantine;
* ``escalate_to_human`` — an :class:`Escalator` record and event.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import httpx

from grace.errors import ExecutorError
from grace.immune.controls import ControlKind, IngressControls
from grace.immune.escalation import Escalator
from grace.immune.playbooks import render
from grace.immune.supervisor import ProcessSupervisor
from grace.immune.taxonomy import AnomalyType, HealingAction, Severity

__all__ = [
    "ActionContext",
    "CircuitBreakerExecutor",
    "EscalateExecutor",
    "ExecutionResult",
    "Executor",
    "ExecutorRegistry",
    "HttpWebhookExecutor",
    "PythonCallableExecutor",
    "QuarantineExecutor",
    "QuarantineStore",
    "RateLimitExecutor",
    "RestartProcessExecutor",
    "ShellCommandExecutor",
    "run_command",
]

ACTOR: Final = "immune_kernel"
_OUTPUT_LIMIT: Final = 64 * 1024
_TAIL: Final = 400


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionContext:
    """What an executor is asked to do, for which incident."""

    action: HealingAction
    resource: str
    params: Mapping[str, Any]
    """The step's parameters with placeholders rendered."""
    incident_id: str
    anomaly_id: str
    anomaly_type: AnomalyType
    severity: Severity
    timeout_s: float
    reason: str = ""

    @property
    def variables(self) -> dict[str, str]:
        """The placeholder values of this incident."""
        return {
            "resource": self.resource,
            "anomaly_type": str(self.anomaly_type),
            "severity": str(self.severity),
            "incident_id": self.incident_id,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionResult:
    """What an executor did (JSON-safe ``detail`` goes to the ledger)."""

    detail: Mapping[str, Any] = field(default_factory=dict)
    control: tuple[ControlKind, str] | None = None
    """The ingress control now in force (read back by ``control`` verification)."""
    subject: str | None = None
    """The quarantined trust subject, when the step quarantined one."""


class Executor(Protocol):
    """Performs one kind of healing step."""

    @property
    def name(self) -> str:
        """The name playbooks refer to."""
        ...

    async def execute(self, ctx: ActionContext) -> ExecutionResult:
        """Act, or raise ExecutorError; never pretend."""
        ...


class ExecutorRegistry:
    """Executors by name."""

    def __init__(self, executors: Iterable[Executor] = ()) -> None:
        self._executors: dict[str, Executor] = {}
        for executor in executors:
            self.register(executor)

    def register(self, executor: Executor) -> None:
        """Add an executor; a name is registered once."""
        if executor.name in self._executors:
            raise ExecutorError(f"executor {executor.name!r} is already registered")
        self._executors[executor.name] = executor

    def get(self, name: str) -> Executor:
        """The executor called ``name``; ExecutorError if none is."""
        executor = self._executors.get(name)
        if executor is None:
            raise ExecutorError(
                f"no executor named {name!r} (registered: {', '.join(self.names()) or 'none'})"
            )
        return executor

    def names(self) -> list[str]:
        """Registered executor names."""
        return sorted(self._executors)


# --- parameters -------------------------------------------------------------------------


def _str(ctx: ActionContext, key: str, default: str | None = None) -> str:
    value = ctx.params.get(key, default)
    if not isinstance(value, str) or not value:
        raise ExecutorError(f"{ctx.action}: parameter {key!r} must be a non-empty string")
    return value


def _number(ctx: ActionContext, key: str, default: float | None = None) -> float | None:
    value = ctx.params.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ExecutorError(f"{ctx.action}: parameter {key!r} must be a finite number")
    if value <= 0:
        raise ExecutorError(f"{ctx.action}: parameter {key!r} must be positive")
    return float(value)


def _mode(ctx: ActionContext, allowed: Sequence[str]) -> str:
    mode = _str(ctx, "mode", allowed[0])
    if mode not in allowed:
        raise ExecutorError(f"{ctx.action}: mode must be one of {', '.join(allowed)}")
    return mode


def _tail(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    return text if len(text) <= _TAIL else "…" + text[-_TAIL:]


# --- acting on the world ----------------------------------------------------------------


async def run_command(argv: Sequence[str], *, timeout_s: float) -> dict[str, Any]:
    """Run argv without a shell; ExecutorError unless it exits 0 within the timeout."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as e:
        raise ExecutorError(f"cannot run {argv[0]!r}: {e}") from e
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await process.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise ExecutorError(f"{argv[0]!r} did not finish within {timeout_s} s") from None
    if process.returncode != 0:
        raise ExecutorError(
            f"{argv[0]!r} exited with {process.returncode}: {_tail(err[-_OUTPUT_LIMIT:])}"
        )
    return {"argv": list(argv), "exit_code": 0, "stdout": _tail(out[-_OUTPUT_LIMIT:])}


def _argv(template: Sequence[str], ctx: ActionContext) -> list[str]:
    argv = [str(render(part, ctx.variables)) for part in template]
    for original, part in zip(template, argv, strict=True):
        if part != original and part.startswith("-"):
            raise ExecutorError(f"a rendered argument may not start with '-': {part!r}")
    return argv


class RestartProcessExecutor:
    """``restart_process``: restart a supervised process, or run its restart command.

    Parameter ``process``: the supervised process (or restart command) name.
    """

    name = "restart_process"

    def __init__(
        self,
        supervisor: ProcessSupervisor | None = None,
        *,
        commands: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self._supervisor = supervisor
        self._commands = {k: tuple(v) for k, v in (commands or {}).items()}
        for key, argv in self._commands.items():
            if not argv:
                raise ExecutorError(f"restart command {key!r} has an empty argv")

    async def execute(self, ctx: ActionContext) -> ExecutionResult:
        """Restart for real; the old and new pid (or the command's exit) in the detail."""
        process = _str(ctx, "process")
        if self._supervisor is not None and process in self._supervisor:
            result = await self._supervisor.restart(process)
            return ExecutionResult(
                detail={
                    "process": process,
                    "old_pid": result.old_pid,
                    "new_pid": result.new_pid,
                    "old_exit_code": result.old_exit_code,
                }
            )
        argv = self._commands.get(process)
        if argv is None:
            raise ExecutorError(
                f"{process!r} is neither a supervised process nor has a restart command"
            )
        detail = await run_command(_argv(argv, ctx), timeout_s=ctx.timeout_s)
        return ExecutionResult(detail={"process": process, **detail})


class ShellCommandExecutor:
    """``shell_command``: run an allow-listed command by name (parameter ``command``)."""

    name = "shell_command"

    def __init__(self, commands: Mapping[str, Sequence[str]]) -> None:
        self._commands = {k: tuple(v) for k, v in commands.items()}
        for key, argv in self._commands.items():
            if not argv or not all(isinstance(a, str) and a for a in argv):
                raise ExecutorError(f"allow-listed command {key!r} needs a non-empty argv")

    async def execute(self, ctx: ActionContext) -> ExecutionResult:
        """Run the named command; refuse anything not on the allow-list."""
        command = _str(ctx, "command")
        template = self._commands.get(command)
        if template is None:
            raise ExecutorError(f"command {command!r} is not on the allow-list")
        detail = await run_command(_argv(template, ctx), timeout_s=ctx.timeout_s)
        return ExecutionResult(detail={"command": command, **detail})


class HttpWebhookExecutor:
    """``http_webhook``: call a URL under an allowed prefix; any non-2xx is a failure.

    Parameters: ``url``; ``method`` (POST); ``json`` (default: the incident's facts).
    """

    name = "http_webhook"
    _METHODS: Final = frozenset({"POST", "PUT", "PATCH", "GET", "DELETE"})

    def __init__(self, client: httpx.AsyncClient, *, allowed_prefixes: Sequence[str]) -> None:
        self._client = client
        self._allowed = tuple(allowed_prefixes)
        for prefix in self._allowed:
            # "https://ops.example" would also allow "https://ops.example.evil.com".
            if not prefix.startswith(("http://", "https://")) or not prefix.endswith("/"):
                raise ExecutorError(f"webhook prefix {prefix!r} must be http(s) and end with '/'")

    def _check_url(self, url: str) -> httpx.URL:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, ValueError) as e:
            raise ExecutorError(f"webhook url {url!r} is invalid: {e}") from e
        if parsed.scheme not in ("http", "https") or parsed.userinfo:
            raise ExecutorError(f"webhook url {url!r} must be http(s) without credentials")
        normalized = str(parsed)  # dot segments are resolved here
        if "%2e" in parsed.raw_path.decode("ascii", "replace").lower():
            raise ExecutorError(f"webhook url {url!r} has encoded dot segments")
        if not any(normalized.startswith(prefix) for prefix in self._allowed):
            raise ExecutorError(f"webhook url {url!r} is not under an allowed prefix")
        return parsed

    async def execute(self, ctx: ActionContext) -> ExecutionResult:
        """Send the request; the status code in the detail."""
        url = self._check_url(_str(ctx, "url"))
        method = _str(ctx, "method", "POST").upper()
        if method not in self._METHODS:
            raise ExecutorError(f"webhook method {method!r} is not allowed")
        body = ctx.params.get(
            "json",
            {
                "action": str(ctx.action),
                "resource": ctx.resource,
                "incident_id": ctx.incident_id,
                "anomaly_id": ctx.anomaly_id,
                "severity": str(ctx.severity),
            },
        )
        try:
            response = await self._client.request(
                method, url, json=body if method != "GET" else None, timeout=ctx.timeout_s
            )
        except httpx.HTTPError as e:
            raise ExecutorError(f"webhook {method} {url} failed: {e!r}") from e
        if not 200 <= response.status_code < 300:
            raise ExecutorError(f"webhook {method} {url} answered {response.status_code}")
        return ExecutionResult(
            detail={"url": str(url), "method": method, "status": response.status_code}
        )


Callable_ = Callable[[ActionContext], Awaitable[Mapping[str, Any] | None]]


class PythonCallableExecutor:
    """``python_callable``: await a registered coroutine function (parameter ``callable``)."""

    name = "python_callable"

    def __init__(self, callables: Mapping[str, Callable_]) -> None:
        self._callables = dict(callables)

    async def execute(self, ctx: ActionContext) -> ExecutionResult:
        """Call it; what it returns becomes the detail; its exceptions are failures."""
        name = _str(ctx, "callable")
        fn = self._callables.get(name)
        if fn is None:
            raise ExecutorError(f"no registered callable named {name!r}")
        try:
            returned = await fn(ctx)
        except ExecutorError:
            raise
        except Exception as e:
            raise ExecutorError(f"callable {name!r} raised {e!r}") from e
        return ExecutionResult(detail={"callable": name, "returned": dict(returned or {})})


# --- acting on Grace itself -------------------------------------------------------------


class CircuitBreakerExecutor:
    """``circuit_breaker``: open (``mode: open``, default) or close (``reset``) the breaker
    of ``key`` (default ``component:<resource>``) for ``duration_s`` (default: until reset)."""

    name = "circuit_breaker"

    def __init__(self, controls: IngressControls) -> None:
        self._controls = controls

    async def execute(self, ctx: ActionContext) -> ExecutionResult:
        """Trip or reset."""
        key = _str(ctx, "key", f"component:{ctx.resource}")
        if _mode(ctx, ("open", "reset")) == "reset":
            removed = self._controls.reset(key)
            return ExecutionResult(detail={"key": key, "mode": "reset", "was_open": bool(removed)})
        try:
            control = self._controls.trip(
                key,
                reason=ctx.reason or f"incident {ctx.incident_id}",
                actor=ACTOR,
                duration_s=_number(ctx, "duration_s"),
            )
        except ValueError as e:
            raise ExecutorError(str(e)) from e
        until = None if control.until is None else control.until.isoformat()
        return ExecutionResult(
            detail={"key": key, "mode": "open", "until": until},
            control=(ControlKind.CIRCUIT_BREAKER, key),
        )


class RateLimitExecutor:
    """``rate_limit``: limit ``key`` to ``rate_per_s`` (bursts of ``burst``) for
    ``duration_s``, or ``mode: lift`` it."""

    name = "rate_limit"

    def __init__(self, controls: IngressControls) -> None:
        self._controls = controls

    async def execute(self, ctx: ActionContext) -> ExecutionResult:
        """Set or lift the limit."""
        key = _str(ctx, "key", f"component:{ctx.resource}")
        if _mode(ctx, ("limit", "lift")) == "lift":
            removed = self._controls.lift(key)
            return ExecutionResult(detail={"key": key, "mode": "lift", "was_set": bool(removed)})
        rate = _number(ctx, "rate_per_s")
        if rate is None:
            raise ExecutorError("rate_limit: parameter 'rate_per_s' is required")
        burst = _number(ctx, "burst", max(1.0, rate))
        try:
            self._controls.limit(
                key,
                rate_per_s=rate,
                burst=int(burst or 1),
                reason=ctx.reason or f"incident {ctx.incident_id}",
                actor=ACTOR,
                duration_s=_number(ctx, "duration_s"),
            )
        except ValueError as e:
            raise ExecutorError(str(e)) from e
        return ExecutionResult(
            detail={"key": key, "mode": "limit", "rate_per_s": rate, "burst": int(burst or 1)},
            control=(ControlKind.RATE_LIMIT, key),
        )


class QuarantineStore(Protocol):
    """The trust store's quarantine (``grace.trust.TrustStore``)."""

    async def quarantine(self, subject_id: str, *, reason: str, actor: str) -> object:
        """Set the subject's trust to zero until released."""
        ...

    async def release(self, subject_id: str, *, reason: str, actor: str) -> object:
        """End the quarantine."""
        ...

    def is_quarantined(self, subject_id: str) -> bool:
        """Whether the subject is quarantined now."""
        ...


class QuarantineExecutor:
    """``quarantine_component``: quarantine ``subject`` (default: the resource) in the trust
    store and at the ingress (``key``, default ``component:<subject>``); ``mode: release``
    ends both."""

    name = "quarantine_component"

    def __init__(self, controls: IngressControls, trust: QuarantineStore | None) -> None:
        self._controls = controls
        self._trust = trust

    async def execute(self, ctx: ActionContext) -> ExecutionResult:
        """Quarantine or release for real (trust first: it is what the gate consults)."""
        subject = _str(ctx, "subject", ctx.resource)
        key = _str(ctx, "key", f"component:{subject}")
        reason = ctx.reason or f"incident {ctx.incident_id}"
        if _mode(ctx, ("quarantine", "release")) == "release":
            if self._trust is not None:
                await self._trust.release(subject, reason=reason, actor=ACTOR)
            removed = self._controls.release(key)
            return ExecutionResult(
                detail={"subject": subject, "key": key, "mode": "release", "was": bool(removed)}
            )
        if self._trust is not None:
            await self._trust.quarantine(subject, reason=reason, actor=ACTOR)
        self._controls.quarantine(key, reason=reason, actor=ACTOR)
        return ExecutionResult(
            detail={
                "subject": subject,
                "key": key,
                "mode": "quarantine",
                "trust_store": self._trust is not None,
            },
            control=(ControlKind.QUARANTINE, key),
            subject=subject if self._trust is not None else None,
        )


class EscalateExecutor:
    """``escalate_to_human``: an escalation record in the ledger and an event
    (parameter ``reason``)."""

    name = "escalate_to_human"

    def __init__(self, escalator: Escalator) -> None:
        self._escalator = escalator

    async def execute(self, ctx: ActionContext) -> ExecutionResult:
        """Escalate; the escalation's ledger seq in the detail."""
        reason = ctx.params.get("reason") or ctx.reason or "playbook escalation"
        escalation = await self._escalator.escalate(
            resource=ctx.resource,
            severity=str(ctx.severity),
            reason=str(reason),
            incident_id=ctx.incident_id,
            anomaly_id=ctx.anomaly_id,
        )
        return ExecutionResult(
            detail={
                "escalation_id": escalation.escalation_id,
                "receipt_seq": escalation.receipt_seq,
                "reason": escalation.reason,
            }
        )
