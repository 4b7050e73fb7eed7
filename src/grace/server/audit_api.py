"""The audit ledger over HTTP: entries, verification, proofs, checkpoints, public key.

Read-only views of :class:`~grace.ledger.Ledger`; every route passes the governance
middleware like any other. A proof is the offline bundle of :mod:`grace.ledger.bundle`, so a
client (the web console, ``grace audit verify-proof``) checks it against the log's public
key without trusting this server's word.
"""

from __future__ import annotations

import datetime as _dt
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from grace.errors import LedgerError
from grace.ledger import Entry, Ledger

__all__ = ["entry_json", "router"]

router = APIRouter(prefix="/v1/audit", tags=["audit"])

MAX_SEQ: Final = 2**63 - 1
"""Sequence numbers are SQLite/PostgreSQL 64-bit integers; larger ones name no entry."""


def _ledger(request: Request) -> Ledger:
    ledger = getattr(getattr(request.app.state, "governance", None), "ledger", None)
    if not isinstance(ledger, Ledger):
        raise HTTPException(503, "the audit ledger is not available")
    return ledger


LedgerDep = Annotated[Ledger, Depends(_ledger)]


def entry_json(entry: Entry) -> dict[str, Any]:
    """An entry as the API shows it."""
    return {
        "seq": entry.seq,
        "timestamp": entry.timestamp.isoformat(),
        "subsystem": entry.subsystem,
        "actor": entry.actor,
        "action": entry.action,
        "resource": entry.resource,
        "result": entry.result,
        "payload": entry.payload,
        "prev_hash": entry.prev_hash,
        "entry_hash": entry.entry_hash,
    }


@router.get("/entries")
async def list_entries(
    ledger: LedgerDep,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_SEQ, description="Cursor: next_after of a page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    subsystem: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=256)] = None,
    action: Annotated[str | None, Query(max_length=512)] = None,
    since: Annotated[_dt.datetime | None, Query(description="ISO 8601 with offset")] = None,
    newest_first: bool = False,
) -> dict[str, Any]:
    """A page of entries matching every filter."""
    if since is not None and since.tzinfo is None:
        raise HTTPException(422, "since must carry a timezone offset (e.g. 2026-11-24T00:00Z)")
    try:
        page = await ledger.query(
            after=after,
            subsystem=subsystem,
            actor=actor,
            action=action,
            since=since,
            limit=limit,
            newest_first=newest_first,
        )
    except LedgerError as e:
        raise HTTPException(422, str(e)) from e
    return {
        "entries": [entry_json(e) for e in page.entries],
        "next_after": page.next_after,
        "size": await ledger.size(),
    }


Seq = Annotated[int, Path(ge=1, le=MAX_SEQ, description="An entry's sequence number")]


@router.get("/entries/{seq}")
async def get_entry(seq: Seq, ledger: LedgerDep) -> dict[str, Any]:
    """One entry by its seq."""
    entry = await ledger.get(seq)
    if entry is None:
        raise HTTPException(404, f"no entry {seq}")
    return entry_json(entry)


@router.get("/entries/{seq}/proof")
async def prove_entry(seq: Seq, ledger: LedgerDep) -> dict[str, Any]:
    """The entry's offline proof bundle: canonical bytes, inclusion proof and the signed
    checkpoint (a checkpoint is made when none covers the entry yet)."""
    size = await ledger.size()
    if not 1 <= seq <= size:
        raise HTTPException(404, f"no entry {seq} (the ledger holds {size})")
    try:
        latest = await ledger.latest_checkpoint()
        if latest is None or latest.tree_size < seq:
            if ledger.read_only:
                raise HTTPException(409, f"no signed checkpoint covers entry {seq} yet")
            await ledger.checkpoint()
        bundle = await ledger.prove(seq)
    except LedgerError as e:
        raise HTTPException(409, str(e)) from e
    return bundle.to_json()


@router.post("/verify")
async def verify_ledger(ledger: LedgerDep) -> dict[str, Any]:
    """Verify the whole ledger: chain, tree, every checkpoint's signature and root."""
    report = await ledger.verify()
    return {
        "valid": report.valid,
        "entries_checked": report.entries_checked,
        "tree_size": report.tree_size,
        "checkpoints_checked": report.checkpoints_checked,
        "first_bad_seq": report.first_bad_seq,
        "reason": report.reason,
        "root_hash": report.root_hash,
    }


@router.get("/checkpoints")
async def list_checkpoints(
    ledger: LedgerDep, limit: Annotated[int, Query(ge=1, le=1000)] = 20
) -> dict[str, Any]:
    """The newest signed checkpoints (C2SP signed notes)."""
    checkpoints = await ledger.checkpoints(limit)
    return {
        "checkpoints": [
            {"tree_size": c.tree_size, "root_hash": c.root_hash.hex(), "note": c.note}
            for c in checkpoints
        ]
    }


@router.get("/public-key")
async def public_key(ledger: LedgerDep) -> dict[str, Any]:
    """The log's checkpoint verifier key (C2SP vkey, raw Ed25519 key and PEM)."""
    verifier = ledger.verifier
    return {
        "origin": verifier.name,
        "vkey": verifier.vkey,
        "ed25519_public_key": verifier.public_raw.hex(),
        "pem": verifier.pem,
    }
