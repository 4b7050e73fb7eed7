"""What the :class:`~grace.ledger.Ledger` façade needs from a storage backend.

Two backends implement these protocols: SQLite (``_sqlite``, one writing process per data
directory, guarded by ``flock``) and PostgreSQL (``_postgres``, any number of writing
processes, sequenced by an advisory lock). The façade owns what is the same for both: the
append queue, group commit, sequencing (seq, prev_hash, timestamp, hashes, Merkle nodes,
checkpoint signing) and proofs. A backend owns where bytes live and how a batch becomes
durable.

Invariants shared by both backends:

* :meth:`StoreWriter.commit` returns only after the batch's transaction committed, and
  returns the :class:`Sequenced` batch that *was* committed — the façade resolves receipts
  from it and only then advances the in-memory :class:`WriterState`.
* A backend whose writer is not the only one (``exclusive`` false) may replace the
  writer state's chain head, tree edge and last checkpoint with what the store holds
  before sequencing: that is committed truth, never uncommitted work.
* A :class:`~grace.errors.LedgerError` from ``commit`` means nothing of the batch was
  written; any other exception stops the writer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import structlog

from grace.ledger._codec import EntryTemplate
from grace.ledger._tree import CompactRange
from grace.ledger.checkpoint import Checkpoint, NoteSigner, NoteVerifier
from grace.ledger.entry import Receipt, VerifyReport
from grace.ledger.merkle import Part

if TYPE_CHECKING:
    from grace.ledger._verify import Progress

__all__ = [
    "Append",
    "CheckpointRequest",
    "Item",
    "Opened",
    "Row",
    "Sequenced",
    "Sequencer",
    "StoreReader",
    "StoreWriter",
    "WriterState",
]

log = structlog.get_logger(__name__)

Row = tuple[int, bytes, bytes, bytes]
"""A stored entry: ``(seq, canonical bytes, entry hash, interior nodes it completed)``."""


class Append:
    """One queued append: its canonical template, its query columns and its caller."""

    __slots__ = ("columns", "future", "template")

    def __init__(
        self,
        template: EntryTemplate,
        future: asyncio.Future[Receipt],
        columns: tuple[str, str, str],
    ) -> None:
        self.template = template
        self.future = future
        self.columns = columns
        """``(subsystem, actor, action)`` as given (stored beside the bytes by PostgreSQL)."""


class CheckpointRequest:
    """A queued request to sign a checkpoint (``future`` None: the writer's own timer)."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[Checkpoint] | None) -> None:
        self.future = future


Item = Append | CheckpointRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class Sequenced:
    """A batch made ready to commit: rows, receipts and the state after it."""

    rows: list[Row]
    receipts: list[Receipt]
    checkpoint: Checkpoint | None
    """The checkpoint to hand to whoever asked for one (None when nobody did)."""
    checkpoint_row: tuple[int, str, str] | None
    """A newly signed checkpoint to store with the batch."""
    tree: CompactRange
    last_hash_hex: bytes
    last_ts: str


class WriterState:
    """What only the writer touches: its key, the tree edge, the chain head."""

    __slots__ = ("last_checkpoint", "last_hash_hex", "last_ts", "signer", "tree")

    def __init__(
        self,
        signer: NoteSigner,
        tree: CompactRange,
        last_hash_hex: bytes,
        last_ts: str,
        last_checkpoint: Checkpoint,
    ) -> None:
        self.signer = signer
        self.tree = tree
        self.last_hash_hex = last_hash_hex
        self.last_ts = last_ts
        self.last_checkpoint = last_checkpoint

    def advance(self, work: Sequenced) -> None:
        """Move to the state after a committed batch."""
        self.tree = work.tree
        self.last_hash_hex = work.last_hash_hex
        self.last_ts = work.last_ts
        if work.checkpoint_row is not None and work.checkpoint is not None:
            self.last_checkpoint = work.checkpoint
            log.debug("ledger_checkpoint", tree_size=work.checkpoint.tree_size)


Sequencer = Callable[[WriterState, list[Item]], Sequenced]
"""Assigns seq, prev_hash and timestamp to a batch against a writer state (pure CPU)."""


class StoreReader(Protocol):
    """Reads of committed ledger data (every handle has one)."""

    @property
    def location(self) -> str:
        """Where the ledger lives, for messages (never holds a password)."""
        ...

    async def size(self) -> int:
        """Highest committed seq."""
        ...

    async def get(self, seq: int) -> tuple[bytes, bytes] | None:
        """Stored bytes and hash of one entry."""
        ...

    async def rows(self, lo: int, hi: int) -> list[Row]:
        """Stored rows with ``lo < seq <= hi``, in seq order (for copying a ledger)."""
        ...

    async def query(
        self,
        *,
        lo: int,
        hi: int | None,
        filters: dict[str, str],
        since: str | None,
        until: str | None,
        limit: int,
        descending: bool,
    ) -> list[tuple[int, bytes, bytes]]:
        """Entries with ``lo < seq <= hi`` matching all filters, at most ``limit``."""
        ...

    async def part_hashes(self, parts: Collection[Part]) -> dict[Part, bytes]:
        """Hashes of perfect subtrees (leaves and stored interior nodes)."""
        ...

    async def checkpoints(self, *, limit: int | None) -> list[tuple[int, str, str]]:
        """Stored checkpoints ``(tree_size, created_at, note)``, newest first."""
        ...

    async def checkpoint_at_least(self, size: int) -> tuple[int, str, str] | None:
        """The smallest stored checkpoint covering ``size`` entries."""
        ...

    async def verify(
        self, verifier: NoteVerifier, origin: str, progress: Progress | None
    ) -> VerifyReport:
        """Recompute and check everything stored, over one consistent snapshot."""
        ...

    async def close(self) -> None:
        """Release connections and threads."""
        ...


class StoreWriter(Protocol):
    """Makes sequenced batches durable."""

    @property
    def exclusive(self) -> bool:
        """True when no other process can append (the in-memory head is always current)."""
        ...

    async def commit(self, state: WriterState, items: list[Item], sequence: Sequencer) -> Sequenced:
        """Sequence ``items`` against the store's head and commit them in one transaction."""
        ...

    async def close(self) -> None:
        """Release the connection, threads and locks."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Opened:
    """The parts of an opened ledger, handed to the façade's constructor."""

    origin: str
    reader: StoreReader
    verifier: NoteVerifier
    writer: StoreWriter | None = None
    state: WriterState | None = None
