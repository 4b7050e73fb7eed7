"""The Guardian boot: order, dependencies, cycles, timeouts, retries, validation, degrade
or abort with reverse-order shutdown, and the report in the ledger and on the mesh."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from grace.boot import (
    BootAborted,
    BootChunk,
    BootOrchestrator,
    BootState,
    ChunkStatus,
    HealthIssue,
    HealthReport,
    IssueSeverity,
)
from grace.errors import BootError
from grace.ledger import Ledger


class Journal:
    """Records what the chunks did, in order."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def chunk(self, chunk_id: str, priority: float, **kw: Any) -> BootChunk:
        """A chunk that notes its boot and shutdown."""

        async def boot() -> dict[str, str]:
            self.lines.append(f"boot {chunk_id}")
            return {"status": "online"}

        async def shutdown() -> None:
            self.lines.append(f"stop {chunk_id}")

        kw.setdefault("shutdown_function", shutdown)
        kw.setdefault("retry_backoff_s", 0.0)
        return BootChunk(
            chunk_id=chunk_id,
            name=chunk_id.title(),
            priority=priority,
            boot_function=kw.pop("boot_function", boot),
            **kw,
        )


class Events:
    """Collects emitted events."""

    def __init__(self) -> None:
        self.emitted: list[tuple[str, dict[str, Any]]] = []

    async def emit(self, event_type: str, payload: Mapping[str, Any] | None = None, /) -> object:
        self.emitted.append((event_type, dict(payload or {})))
        return True


async def fail() -> None:
    """A boot function that fails."""
    raise RuntimeError("disk on fire")


def test_chunks_boot_by_priority_then_dependencies() -> None:
    """Lower priority first; a dependency boots before its dependent even at a higher priority."""
    j = Journal()
    boot = BootOrchestrator()
    boot.register_chunk(j.chunk("api", 3))
    boot.register_chunk(j.chunk("mesh", 1, depends_on=("late-core",)))
    boot.register_chunk(j.chunk("core", 0))
    boot.register_chunk(j.chunk("late-core", 2))
    boot.register_chunk(j.chunk("validators", 1.6))
    assert [c.chunk_id for c in boot.plan()] == ["core", "validators", "late-core", "mesh", "api"]


def test_a_missing_dependency_is_refused_before_anything_starts() -> None:
    """An unknown dependency names the chunk and the dependency."""
    j = Journal()
    boot = BootOrchestrator()
    boot.register_chunk(j.chunk("mesh", 1, depends_on=("core",)))
    with pytest.raises(BootError, match="'mesh' depends on unknown chunk 'core'"):
        boot.plan()
    assert j.lines == []


async def test_a_dependency_cycle_is_refused_before_anything_starts() -> None:
    """A cycle names its chunks and nothing boots."""
    j = Journal()
    boot = BootOrchestrator()
    boot.register_chunk(j.chunk("core", 0))
    boot.register_chunk(j.chunk("a", 1, depends_on=("b",)))
    boot.register_chunk(j.chunk("b", 2, depends_on=("a",)))
    with pytest.raises(BootError, match="cycle: a, b"):
        await boot.run()
    assert j.lines == []


def test_invalid_chunks_and_duplicates_are_refused() -> None:
    """Bad settings and a duplicate id are clear errors."""
    j = Journal()
    with pytest.raises(BootError, match="timeout_s"):
        j.chunk("x", 0, timeout_s=0)
    with pytest.raises(BootError, match="retries"):
        j.chunk("x", 0, retries=-1)
    with pytest.raises(BootError, match="depends on itself"):
        j.chunk("x", 0, depends_on=("x",))
    with pytest.raises(BootError, match="chunk_id"):
        j.chunk(" ", 0)
    boot = BootOrchestrator()
    boot.register_chunk(j.chunk("x", 0))
    with pytest.raises(BootError, match="already registered"):
        boot.register_chunk(j.chunk("x", 1))


async def test_every_chunk_passing_makes_grace_ready() -> None:
    """All chunks pass: state ready, statuses passed, one attempt each."""
    j = Journal()
    boot = BootOrchestrator()
    for cid, prio in (("core", 0), ("mesh", 1), ("api", 3)):
        boot.register_chunk(j.chunk(cid, prio))
    report = await boot.run()
    assert report.state is BootState.READY
    assert [(c.chunk_id, c.status, c.attempts) for c in report.chunks] == [
        ("core", ChunkStatus.PASSED, 1),
        ("mesh", ChunkStatus.PASSED, 1),
        ("api", ChunkStatus.PASSED, 1),
    ]
    assert boot.status == dict.fromkeys(("core", "mesh", "api"), ChunkStatus.PASSED)
    await boot.shutdown()
    assert j.lines[-3:] == ["stop api", "stop mesh", "stop core"]


async def test_a_hanging_chunk_times_out_and_is_retried_with_backoff() -> None:
    """Each attempt is bounded by timeout_s; retries wait with exponential backoff."""
    j = Journal()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def hang() -> None:
        await asyncio.Event().wait()

    boot = BootOrchestrator(sleep=sleep)
    boot.register_chunk(j.chunk("core", 0))
    boot.register_chunk(
        j.chunk(
            "monitors",
            2,
            boot_function=hang,
            timeout_s=0.05,
            retries=2,
            retry_backoff_s=0.5,
            can_fail=True,
        )
    )
    report = await boot.run()
    monitors = report.chunk("monitors")
    assert monitors.status is ChunkStatus.FAILED
    assert monitors.attempts == 3
    assert monitors.error == "timed out after 0.05 s"
    assert waits == [0.5, 1.0]
    assert report.state is BootState.DEGRADED
    assert report.degraded_chunks == ("monitors",)


async def test_a_flaky_chunk_passes_on_a_retry() -> None:
    """A chunk failing once and then succeeding passes with two attempts."""
    j = Journal()
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("broker not up yet")
        return "ok"

    boot = BootOrchestrator()
    boot.register_chunk(j.chunk("mesh", 1, boot_function=flaky, retries=1))
    report = await boot.run()
    assert report.chunk("mesh").status is ChunkStatus.PASSED
    assert report.chunk("mesh").attempts == 2


async def test_a_failing_optional_chunk_degrades_and_skips_its_dependents() -> None:
    """can_fail=True: Grace boots degraded; a chunk needing it is skipped, others run."""
    j = Journal()
    boot = BootOrchestrator()
    boot.register_chunk(j.chunk("core", 0))
    boot.register_chunk(j.chunk("validators", 1.6, boot_function=fail, can_fail=True))
    boot.register_chunk(j.chunk("scorer-ui", 2.5, depends_on=("validators",), can_fail=True))
    boot.register_chunk(j.chunk("api", 3))
    report = await boot.run()
    assert report.state is BootState.DEGRADED
    assert report.chunk("validators").error == "RuntimeError: disk on fire"
    assert report.chunk("scorer-ui").status is ChunkStatus.SKIPPED
    assert "validators" in (report.chunk("scorer-ui").error or "")
    assert report.chunk("api").status is ChunkStatus.PASSED
    assert j.lines == ["boot core", "stop validators", "boot api"]


async def test_a_failing_required_chunk_aborts_and_shuts_down_in_reverse_order() -> None:
    """can_fail=False: the boot aborts, started chunks stop in reverse, the rest are skipped."""
    j = Journal()
    boot = BootOrchestrator()
    boot.register_chunk(j.chunk("core", 0))
    boot.register_chunk(j.chunk("mesh", 1))
    boot.register_chunk(j.chunk("production", 1.5, boot_function=fail))
    boot.register_chunk(j.chunk("api", 3))
    with pytest.raises(BootAborted, match="'production'") as raised:
        await boot.run()
    report = raised.value.report
    assert report.state is BootState.FAILED
    assert [c.status for c in report.chunks] == [
        ChunkStatus.PASSED,
        ChunkStatus.PASSED,
        ChunkStatus.FAILED,
        ChunkStatus.SKIPPED,
    ]
    assert j.lines == [
        "boot core",
        "boot mesh",
        "stop production",  # the failed attempt undoes its own work
        "stop mesh",
        "stop core",
    ]
    assert boot.report is report


async def test_a_required_chunk_skipped_for_a_failed_optional_one_aborts() -> None:
    """A must-not-fail chunk cannot boot without its dependency: the boot aborts."""
    j = Journal()
    boot = BootOrchestrator()
    boot.register_chunk(j.chunk("core", 0))
    boot.register_chunk(j.chunk("validators", 1, boot_function=fail, can_fail=True))
    boot.register_chunk(j.chunk("gate", 2, depends_on=("validators",)))
    with pytest.raises(BootAborted, match="'gate'"):
        await boot.run()
    assert j.lines == ["boot core", "stop validators", "stop core"]


async def test_validation_failures_fail_the_chunk() -> None:
    """A validation returning False, or a critical issue from a Guardian validator, fails it;
    warnings are kept on a passing chunk."""
    j = Journal()

    async def says_no(result: Any) -> bool:
        return False

    async def guardian(chunk: BootChunk, result: Any) -> HealthReport:
        if chunk.chunk_id == "immune":
            return HealthReport.critical("immune kernel is not subscribed", validator="guardian")
        return HealthReport(
            issues=(HealthIssue(severity=IssueSeverity.WARNING, message="slow start"),)
        )

    boot = BootOrchestrator(validators=[guardian])
    boot.register_chunk(j.chunk("core", 0))
    boot.register_chunk(j.chunk("monitors", 2, validation_function=says_no, can_fail=True))
    boot.register_chunk(j.chunk("immune", 2.5, can_fail=True))
    boot.register_chunk(j.chunk("unvalidated", 3, guardian_validates=False))
    report = await boot.run()
    assert report.chunk("core").status is ChunkStatus.PASSED
    assert [i.message for i in report.chunk("core").issues] == ["slow start"]
    assert (
        report.chunk("monitors").error == "validation failed: the chunk's validation returned False"
    )
    assert report.chunk("immune").error == "validation failed: immune kernel is not subscribed"
    assert report.chunk("unvalidated").issues == ()
    assert report.state is BootState.DEGRADED


async def test_the_boot_report_is_in_the_ledger_and_announced(tmp_path: Path) -> None:
    """The report is one ledger entry (its seq on the report) and boot events are emitted."""
    j = Journal()
    events = Events()
    async with await Ledger.open(tmp_path) as ledger:
        boot = BootOrchestrator(audit=ledger, events=events)
        boot.register_chunk(j.chunk("core", 0))
        boot.register_chunk(j.chunk("monitors", 2, boot_function=fail, can_fail=True))
        report = await boot.run()
        assert report.receipt_seq is not None
        entry = await ledger.get(report.receipt_seq)
        assert entry is not None
        assert (entry.subsystem, entry.action, entry.result) == (
            "system",
            "boot.report",
            "degraded",
        )
        assert entry.payload["chunks"][1]["status"] == "failed"
        assert (await ledger.verify()).valid
    assert [e[0] for e in events.emitted] == ["system.boot.started", "system.boot.completed"]
    assert events.emitted[1][1]["state"] == "degraded"


async def test_an_aborted_boot_is_announced_as_failed() -> None:
    """An aborted boot emits system.boot.failed with the report."""
    j = Journal()
    events = Events()
    boot = BootOrchestrator(events=events)
    boot.register_chunk(j.chunk("core", 0, boot_function=fail))
    with pytest.raises(BootAborted):
        await boot.run()
    assert [e[0] for e in events.emitted] == ["system.boot.started", "system.boot.failed"]
    with pytest.raises(BootError, match="already booted"):
        await boot.run()
    with pytest.raises(BootError, match="after the boot"):
        boot.register_chunk(j.chunk("late", 9))


async def test_an_aborted_boot_is_recorded_before_the_ledger_chunk_stops(tmp_path: Path) -> None:
    """The failed boot's report reaches the ledger booted by an earlier chunk."""
    j = Journal()
    boot = BootOrchestrator()
    ledger_box: list[Ledger] = []

    async def core() -> None:
        ledger_box.append(await Ledger.open(tmp_path))
        boot.set_audit(ledger_box[0])

    async def stop_core() -> None:
        await ledger_box[0].close()

    boot.register_chunk(j.chunk("core", 0, boot_function=core, shutdown_function=stop_core))
    boot.register_chunk(j.chunk("gate", 1, boot_function=fail))
    with pytest.raises(BootAborted) as raised:
        await boot.run()
    assert raised.value.report.receipt_seq == 1
    async with await Ledger.open(tmp_path) as ledger:
        entry = await ledger.get(1)
        assert entry is not None
        assert (entry.action, entry.result) == ("boot.report", "failed")
