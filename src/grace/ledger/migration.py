"""Copy a ledger into PostgreSQL and prove the copy is the same log.

:func:`migrate_ledger` copies entries (exact bytes, hashes and Merkle nodes) and signed
checkpoints in batches, each batch one transaction under the target's sequencer lock, so
an interrupted copy leaves a target that is a prefix of the source and the next run
resumes it. Both sides are verified in full (every hash recomputed from the entry bytes),
and the roots at every checkpoint size and at the end are compared side by side; any
difference is reported, never repaired. The source is verified *before* anything is
copied: a tampered log is not spread further.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from grace.errors import LedgerError
from grace.ledger.entry import VerifyReport
from grace.ledger.ledger import Ledger

__all__ = ["MigrationProgress", "MigrationReport", "RootCheck", "migrate_ledger"]

MigrationProgress = Callable[[str, int, int], None]
"""Called as ``progress(phase, done, total)``; phases: ``verify source``, ``copy``,
``verify target``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RootCheck:
    """The Merkle root of the first ``tree_size`` entries on each side."""

    tree_size: int
    source_root: str
    target_root: str

    @property
    def match(self) -> bool:
        """True when both sides have the same root."""
        return self.source_root == self.target_root


@dataclass(frozen=True, slots=True, kw_only=True)
class MigrationReport:
    """What a migration copied and what it proved."""

    source: str
    target: str
    tree_size: int
    resumed_from: int
    """Entries the target already held (a prefix of the source)."""
    copied_entries: int
    copied_checkpoints: int
    source_verify: VerifyReport
    target_verify: VerifyReport | None
    roots: tuple[RootCheck, ...]
    problem: str | None
    """Why the copy is not proven identical (None: it is)."""

    @property
    def ok(self) -> bool:
        """True when both sides verify and every compared root matches."""
        return self.problem is None


async def _check_prefix(source: Ledger, target: Ledger, have: int, size: int) -> None:
    """Refuse a non-empty target that is not the beginning of the source."""
    if have > size:
        raise LedgerError(
            f"{target.location} holds {have} entries, more than the {size} of "
            f"{source.location}: it is not a prefix of the source"
        )
    if have and await source.root(have) != await target.root(have):
        raise LedgerError(
            f"{target.location} is not empty and not a prefix of {source.location}: "
            f"their roots at size {have} differ"
        )
    theirs = {cp.tree_size: cp.note for cp in await source.checkpoints()}
    for cp in await target.checkpoints():
        if theirs.get(cp.tree_size) != cp.note:
            raise LedgerError(
                f"{target.location} holds a checkpoint at size {cp.tree_size} that "
                f"{source.location} does not: it is not a copy of the source"
            )


async def migrate_ledger(
    source: Ledger,
    target: Ledger,
    *,
    batch_size: int = 2000,
    progress: MigrationProgress | None = None,
) -> MigrationReport:
    """Copy ``source`` into the writable PostgreSQL ledger ``target``, then prove it.

    Raises :class:`LedgerError` (nothing copied) when the target is another log, signed by
    another key, or holds entries that are not a prefix of the source. A source that does
    not verify, or a copy whose roots differ, comes back as a report with a ``problem``.
    """
    from grace.ledger._postgres import PostgresWriter  # asyncpg only when migrating

    writer = target._writer  # rows are written verbatim: package-internal
    if not isinstance(writer, PostgresWriter) or target.read_only:
        raise LedgerError(
            f"the migration target must be a writable PostgreSQL ledger, not {target.location}"
        )
    if batch_size < 1:
        raise LedgerError(f"batch size must be at least 1, got {batch_size}")
    if source.origin != target.origin or source.verifier.vkey != target.verifier.vkey:
        raise LedgerError(
            f"{target.location} is the log {target.origin!r} signed by {target.verifier.vkey}; "
            f"{source.location} is {source.origin!r} signed by {source.verifier.vkey}"
        )
    size = await source.size()
    have = await target.size()
    await _check_prefix(source, target, have, size)

    def report(
        problem: str | None,
        source_verify: VerifyReport,
        target_verify: VerifyReport | None = None,
        roots: tuple[RootCheck, ...] = (),
        copied: tuple[int, int] = (0, 0),
    ) -> MigrationReport:
        return MigrationReport(
            source=source.location,
            target=target.location,
            tree_size=size,
            resumed_from=have,
            copied_entries=copied[0],
            copied_checkpoints=copied[1],
            source_verify=source_verify,
            target_verify=target_verify,
            roots=roots,
            problem=problem,
        )

    def step(phase: str) -> Callable[[int, int], None] | None:
        if progress is None:
            return None
        return lambda done, total: progress(phase, done, total)

    checked = await source.verify(step("verify source"))
    if not checked.valid:
        where = "" if checked.first_bad_seq is None else f" at seq {checked.first_bad_seq}"
        return report(
            f"the source does not verify{where}: {checked.reason}; nothing was copied", checked
        )

    # Checkpoint rows as stored (with their creation time), oldest first.
    signed = [
        row for row in reversed(await source._store().checkpoints(limit=None)) if row[0] <= size
    ]
    present = {cp.tree_size for cp in await target.checkpoints()}
    pending = [row for row in signed if row[0] not in present]
    found = await target._store().get(have) if have else None
    after_hash = found[1] if found else None
    copied_cps = 0
    lo = have
    while True:
        hi = min(lo + batch_size, size)
        rows = await source._rows(lo, hi) if hi > lo else []
        if len(rows) != hi - lo:
            raise LedgerError(f"{source.location} returned {len(rows)} rows for {lo + 1}..{hi}")
        cps = [row for row in pending if row[0] <= hi]
        pending = pending[len(cps) :]
        await writer.import_rows(rows, cps, after=lo, after_hash=after_hash)
        copied_cps += len(cps)
        if rows:
            after_hash = rows[-1][2]
        if progress is not None:
            progress("copy", hi - have, size - have)
        lo = hi
        if lo >= size:
            break

    target_check = await target.verify(step("verify target"))
    sizes = sorted({row[0] for row in signed if row[0] > 0} | ({size} if size else set()))
    roots = tuple(
        [
            RootCheck(
                tree_size=s,
                source_root=(await source.root(s)).hex(),
                target_root=(await target.root(s)).hex(),
            )
            for s in sizes
        ]
    )
    problem = None
    if not target_check.valid:
        problem = (
            f"the copy does not verify at seq {target_check.first_bad_seq}: {target_check.reason}"
        )
    elif (
        target_check.tree_size != size or target_check.root_hash != (await source.root(size)).hex()
    ):
        problem = "the copy's recomputed root differs from the source's root"
    elif mismatch := next((r for r in roots if not r.match), None):
        problem = f"the roots at size {mismatch.tree_size} differ"
    elif [cp.note for cp in reversed(await target.checkpoints()) if cp.tree_size <= size] != [
        row[2] for row in signed
    ]:
        problem = "the copy's signed checkpoints differ from the source's"
    return report(problem, checked, target_check, roots, (size - have, copied_cps))
