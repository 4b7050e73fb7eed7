"""The Guardian boot orchestrator: prioritised chunks, validated, with timeouts, retries,
degrade-or-abort and reverse-order shutdown.

State machine per chunk::

    pending ─► in_progress ─► validating ─► passed
                   │  ▲            │
                   ▼  │ retry      ▼
                 (attempt failed: error, timeout or critical issue)
                   │ no retries left
                   ▼
                 failed            skipped (a dependency failed or was skipped, or boot aborted)

Invariants:

* the plan (order, dependencies, cycles, duplicate ids) is checked before anything starts;
* chunks boot one at a time in plan order, so a chunk's dependencies have passed when it
  starts; a chunk whose dependency did not pass is skipped;
* a failed attempt runs the chunk's shutdown function (best effort) before the retry or
  the failure, so a half-started chunk leaves nothing behind;
* a failed or skipped chunk with ``can_fail=False`` aborts the boot: every chunk that
  passed is shut down in reverse order and the rest are skipped; a ``can_fail=True``
  failure leaves the boot ``degraded``;
* the report goes to the ledger (``system`` / ``boot.report``) and as
  ``system.boot.started`` / ``completed`` / ``failed`` events; neither can change the
  outcome (the ledger failing is logged and the report carries no seq).
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, Protocol

import structlog

from grace.boot.model import (
    BootChunk,
    BootReport,
    BootState,
    ChunkReport,
    ChunkStatus,
    HealthIssue,
    HealthReport,
    IssueSeverity,
)
from grace.errors import BootError
from grace.ledger.audit import AuditSink
from grace.types import Clock, SystemClock

__all__ = ["BootAborted", "BootOrchestrator", "Validator"]

log = structlog.get_logger(__name__)

BOOT_STARTED: Final = "system.boot.started"
BOOT_COMPLETED: Final = "system.boot.completed"
BOOT_FAILED: Final = "system.boot.failed"

Validator = Callable[[BootChunk, Any], Awaitable[HealthReport]]
"""A Guardian validator: looks at a chunk and its boot result, reports issues."""


class _Events(Protocol):
    async def emit(self, event_type: str, payload: Mapping[str, Any] | None = None, /) -> object:
        """Emit an event."""
        ...


class BootAborted(BootError):
    """A chunk that must not fail failed; carries the :class:`BootReport`."""

    def __init__(self, message: str, report: BootReport) -> None:
        super().__init__(message)
        self.report = report


class BootOrchestrator:
    """Registers chunks, plans their order, boots them and shuts them down."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        audit: AuditSink | None = None,
        events: _Events | None = None,
        validators: Iterable[Validator] = (),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock or SystemClock()
        self._audit = audit
        self._events = events
        self._validators = list(validators)
        self._sleep = sleep
        self._chunks: dict[str, BootChunk] = {}
        self._started: list[BootChunk] = []
        self.report: BootReport | None = None
        self.status: dict[str, ChunkStatus] = {}

    def register_chunk(self, chunk: BootChunk) -> None:
        """Add a chunk; :class:`BootError` for a duplicate id or after boot has run."""
        if self.report is not None:
            raise BootError("chunks cannot be registered after the boot has run")
        if chunk.chunk_id in self._chunks:
            raise BootError(f"chunk {chunk.chunk_id!r} is already registered")
        self._chunks[chunk.chunk_id] = chunk
        self.status[chunk.chunk_id] = ChunkStatus.PENDING

    def add_validator(self, validator: Validator) -> None:
        """Add a Guardian validator run on every chunk with ``guardian_validates``."""
        self._validators.append(validator)

    def set_audit(self, audit: AuditSink | None, events: _Events | None = None) -> None:
        """Where the boot report goes once the ledger (booted by chunk 0) exists."""
        self._audit = audit
        if events is not None:
            self._events = events

    def plan(self) -> list[BootChunk]:
        """The boot order: by priority, each chunk after its dependencies.

        Raises :class:`BootError` naming a missing dependency or the chunks of a cycle.
        """
        for chunk in self._chunks.values():
            for dep in chunk.depends_on:
                if dep not in self._chunks:
                    raise BootError(f"chunk {chunk.chunk_id!r} depends on unknown chunk {dep!r}")
        waiting = {cid: set(c.depends_on) for cid, c in self._chunks.items()}
        dependents: dict[str, list[str]] = {cid: [] for cid in self._chunks}
        for cid, deps in waiting.items():
            for dep in deps:
                dependents[dep].append(cid)
        position = {cid: i for i, cid in enumerate(self._chunks)}
        ready = [
            (self._chunks[cid].priority, position[cid], cid)
            for cid, deps in waiting.items()
            if not deps
        ]
        heapq.heapify(ready)
        order: list[BootChunk] = []
        while ready:
            _, _, cid = heapq.heappop(ready)
            order.append(self._chunks[cid])
            for dependent in dependents[cid]:
                waiting[dependent].discard(cid)
                if not waiting[dependent]:
                    chunk = self._chunks[dependent]
                    heapq.heappush(ready, (chunk.priority, position[dependent], dependent))
        if len(order) != len(self._chunks):
            stuck = sorted(cid for cid, deps in waiting.items() if deps)
            raise BootError(f"boot chunks form a dependency cycle: {', '.join(stuck)}")
        return order

    async def run(self) -> BootReport:
        """Boot every chunk; returns the report (``ready`` or ``degraded``).

        Raises :class:`BootError` for an invalid plan (nothing started) and
        :class:`BootAborted` when a chunk that must not fail failed (started chunks shut
        down in reverse order; the report is on the exception and on ``self.report``).
        """
        if self.report is not None:
            raise BootError("this orchestrator has already booted")
        order = self.plan()
        started_at = self._clock.now()
        t0 = time.perf_counter()
        await self._emit(BOOT_STARTED, {"chunks": [c.chunk_id for c in order]})
        reports: dict[str, ChunkReport] = {}
        aborted_by: ChunkReport | None = None
        for chunk in order:
            if aborted_by is not None:
                reports[chunk.chunk_id] = self._skipped(chunk, "boot aborted")
                continue
            blocked = [d for d in chunk.depends_on if reports[d].status is not ChunkStatus.PASSED]
            if blocked:
                done = self._skipped(chunk, f"dependency did not pass: {', '.join(blocked)}")
            else:
                done = await self._boot(chunk)
            reports[chunk.chunk_id] = done
            if done.status is not ChunkStatus.PASSED and not chunk.can_fail:
                aborted_by = done
        chunks = tuple(reports[c.chunk_id] for c in order)
        if aborted_by is not None:
            state = BootState.FAILED
        elif any(c.status is not ChunkStatus.PASSED for c in chunks):
            state = BootState.DEGRADED
        else:
            state = BootState.READY
        report = BootReport(
            state=state,
            started_at=started_at,
            duration_s=time.perf_counter() - t0,
            chunks=chunks,
        )
        report = await self._record(report)
        self.report = report
        if aborted_by is not None:
            # Recorded and announced first, while the ledger and the mesh still run.
            await self._emit(BOOT_FAILED, report.as_json())
            await self._shutdown_started()
            raise BootAborted(
                f"boot aborted: chunk {aborted_by.chunk_id!r} ({aborted_by.name}) "
                f"{aborted_by.status}: {aborted_by.error or 'no detail'}",
                report,
            )
        await self._emit(BOOT_COMPLETED, report.as_json())
        log.info("boot_completed", state=str(state), duration_s=round(report.duration_s, 3))
        return report

    async def shutdown(self) -> None:
        """Shut down every started chunk in reverse boot order (errors logged, not raised)."""
        await self._shutdown_started()

    async def _boot(self, chunk: BootChunk) -> ChunkReport:
        t0 = time.perf_counter()
        issues: tuple[HealthIssue, ...] = ()
        error: str | None = None
        attempts = 0
        for attempt in range(chunk.retries + 1):
            if attempt:
                await self._sleep(chunk.retry_backoff_s * 2 ** (attempt - 1))
            attempts += 1
            self.status[chunk.chunk_id] = ChunkStatus.IN_PROGRESS
            log.info("boot_chunk_started", chunk=chunk.chunk_id, attempt=attempts)
            try:
                async with asyncio.timeout(chunk.timeout_s):
                    result = await chunk.boot_function()
                    if chunk not in self._started:
                        self._started.append(chunk)
                    issues = ()
                    if chunk.guardian_validates:
                        self.status[chunk.chunk_id] = ChunkStatus.VALIDATING
                        issues = await self._validate(chunk, result)
            except TimeoutError:
                error = f"timed out after {chunk.timeout_s:g} s"
            except Exception as e:  # noqa: BLE001 - a chunk's failure is reported, not raised
                error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            else:
                critical = [i for i in issues if i.severity is IssueSeverity.CRITICAL]
                if not critical:
                    self.status[chunk.chunk_id] = ChunkStatus.PASSED
                    return ChunkReport(
                        chunk_id=chunk.chunk_id,
                        name=chunk.name,
                        priority=chunk.priority,
                        status=ChunkStatus.PASSED,
                        can_fail=chunk.can_fail,
                        attempts=attempts,
                        duration_s=time.perf_counter() - t0,
                        issues=issues,
                    )
                error = "validation failed: " + "; ".join(i.message for i in critical)
            log.warning("boot_chunk_attempt_failed", chunk=chunk.chunk_id, error=error)
            # A failed attempt may have started part of its work: undo it before a retry
            # (or before giving up), so nothing half-started is left behind.
            if chunk in self._started:
                self._started.remove(chunk)
            await self._shut(chunk, failed=True)
        self.status[chunk.chunk_id] = ChunkStatus.FAILED
        return ChunkReport(
            chunk_id=chunk.chunk_id,
            name=chunk.name,
            priority=chunk.priority,
            status=ChunkStatus.FAILED,
            can_fail=chunk.can_fail,
            attempts=attempts,
            duration_s=time.perf_counter() - t0,
            issues=issues,
            error=error,
        )

    async def _validate(self, chunk: BootChunk, result: Any) -> tuple[HealthIssue, ...]:
        issues: list[HealthIssue] = []
        if chunk.validation_function is not None:
            verdict = await chunk.validation_function(result)
            if isinstance(verdict, HealthReport):
                issues.extend(verdict.issues)
            elif verdict is not True:
                # Only an explicit True passes: None, False or anything else is a failure.
                issues.append(
                    HealthIssue(
                        severity=IssueSeverity.CRITICAL,
                        message=f"the chunk's validation returned {verdict!r}",
                        validator=chunk.chunk_id,
                    )
                )
        for validator in self._validators:
            issues.extend((await validator(chunk, result)).issues)
        return tuple(issues)

    def _skipped(self, chunk: BootChunk, why: str) -> ChunkReport:
        self.status[chunk.chunk_id] = ChunkStatus.SKIPPED
        log.warning("boot_chunk_skipped", chunk=chunk.chunk_id, reason=why)
        return ChunkReport(
            chunk_id=chunk.chunk_id,
            name=chunk.name,
            priority=chunk.priority,
            status=ChunkStatus.SKIPPED,
            can_fail=chunk.can_fail,
            error=why,
        )

    async def _shutdown_started(self) -> None:
        while self._started:
            await self._shut(self._started.pop(), failed=False)

    async def _shut(self, chunk: BootChunk, *, failed: bool) -> None:
        if chunk.shutdown_function is None:
            return
        try:
            async with asyncio.timeout(chunk.timeout_s):
                await chunk.shutdown_function()
        except Exception as e:  # noqa: BLE001 - shut the rest down regardless
            log.warning(
                "boot_chunk_shutdown_failed", chunk=chunk.chunk_id, error=repr(e), failed=failed
            )

    async def _record(self, report: BootReport) -> BootReport:
        if self._audit is None:
            return report
        try:
            receipt = await self._audit.append(
                subsystem="system",
                actor="guardian",
                action="boot.report",
                resource="grace",
                result=str(report.state),
                payload=report.as_json(),
            )
        except Exception as e:  # noqa: BLE001 - the boot outcome does not depend on the record
            log.warning("boot_report_unrecorded", error=repr(e))
            return report
        return BootReport(
            state=report.state,
            started_at=report.started_at,
            duration_s=report.duration_s,
            chunks=report.chunks,
            receipt_seq=receipt.seq,
        )

    async def _emit(self, event_type: str, payload: Mapping[str, Any]) -> None:
        if self._events is None:
            return
        try:
            await self._events.emit(event_type, dict(payload))
        except Exception as e:  # noqa: BLE001 - events are news; the ledger is the record
            log.warning("boot_event_failed", event_type=event_type, error=repr(e))
