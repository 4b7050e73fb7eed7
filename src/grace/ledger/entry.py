"""Ledger records as values: entries, receipts, query pages and verification reports."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from grace.errors import LedgerFormatError
from grace.ledger._codec import parse_timestamp

__all__ = ["Entry", "EntryPage", "Receipt", "VerifyReport"]


class Receipt(NamedTuple):
    """Proof of a durable append: returned only after the entry's transaction committed.

    A named tuple rather than a dataclass: one is built per append on the hot path.
    """

    seq: int
    entry_hash: str
    """Hex of the RFC 6962 leaf hash of the entry's canonical bytes (the chain link too)."""
    timestamp: _dt.datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One ledger entry as stored. ``seq`` is 1-based and gapless."""

    seq: int
    timestamp: _dt.datetime
    subsystem: str
    actor: str
    action: str
    resource: str
    result: str
    payload: dict[str, Any] = field(hash=False)
    prev_hash: str
    entry_hash: str

    @classmethod
    def from_canonical(cls, raw: bytes, entry_hash: bytes) -> Entry:
        """Decode stored canonical bytes; :class:`LedgerFormatError` if they are not an entry."""
        try:
            obj = orjson.loads(raw)
            return cls(
                seq=int(obj["seq"]),
                timestamp=parse_timestamp(obj["timestamp"]),
                subsystem=str(obj["subsystem"]),
                actor=str(obj["actor"]),
                action=str(obj["action"]),
                resource=str(obj["resource"]),
                result=str(obj["result"]),
                payload=dict(obj["payload"]),
                prev_hash=str(obj["prev_hash"]),
                entry_hash=entry_hash.hex(),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise LedgerFormatError(f"stored entry is not a valid ledger entry: {e}") from e

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (timestamps as ISO 8601 text)."""
        return {
            "seq": self.seq,
            "timestamp": self.timestamp.isoformat().replace("+00:00", "Z"),
            "subsystem": self.subsystem,
            "actor": self.actor,
            "action": self.action,
            "resource": self.resource,
            "result": self.result,
            "payload": self.payload,
            "prev_hash": self.prev_hash,
            "entry_hash": self.entry_hash,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryPage:
    """One page of a query; pass ``next_after`` as ``after`` to get the next page."""

    entries: tuple[Entry, ...]
    next_after: int | None
    """The seq to continue after, or None when there are no more matches."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    """Outcome of a full ledger verification."""

    valid: bool
    entries_checked: int
    tree_size: int
    checkpoints_checked: int
    first_bad_seq: int | None = None
    reason: str | None = None
    root_hash: str | None = None
    """Hex Merkle root over all entries, when the log verified."""

    def __post_init__(self) -> None:
        if self.valid and self.reason is not None:
            raise ValueError("a valid report carries no failure reason")
        if not self.valid and self.reason is None:
            raise ValueError("an invalid report must say why")
