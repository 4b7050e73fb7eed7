"""The decision index: written behind the decision path, rebuilt from the ledger."""

from __future__ import annotations

from pathlib import Path

from grace.governance.decisions import DecisionIndex
from grace.ledger import Ledger
from tests.governance.test_gate import make_gate, req


async def test_a_queued_decision_is_readable_before_and_after_the_flush(
    tmp_path: Path,
) -> None:
    """`get` sees a recorded decision at once; after the flush a new index on the file does."""
    async with await Ledger.open(tmp_path / "ledger") as ledger:
        gate, _ = make_gate(ledger, tmp_path)
        index = DecisionIndex(tmp_path / "governance.db")
        decision = await gate.decide(req(resource="task:1"))
        await index.record(decision, req(resource="task:1"))
        queued = await index.get(decision.decision_id)
        assert queued is not None
        assert queued["receipt_seq"] == decision.receipt_seq
        await index.aclose()
    reopened = DecisionIndex(tmp_path / "governance.db")
    try:
        stored = await reopened.get(decision.decision_id)
        assert stored == queued
    finally:
        reopened.close()


async def test_a_burst_of_decisions_is_flushed_in_the_background(tmp_path: Path) -> None:
    """Decisions recorded by the gate reach the table without an explicit flush."""
    async with await Ledger.open(tmp_path / "ledger") as ledger:
        gate, _ = make_gate(ledger, tmp_path)
        index = DecisionIndex(tmp_path / "governance.db")
        gate._index = index
        decisions = [await gate.decide(req(request_id=f"r{i}")) for i in range(20)]
        assert index._flusher is not None
        await index._flusher
        await index.flush()
        assert not index._pending
        rows = index._conn.execute("SELECT COUNT(*) FROM decisions").fetchone()
        assert rows[0] == len(decisions)
        index.close()


async def test_catch_up_rebuilds_decisions_missing_from_the_index(tmp_path: Path) -> None:
    """Decisions in the ledger but not in the index (a crash before the flush) are rebuilt."""
    async with await Ledger.open(tmp_path / "ledger") as ledger:
        gate, _ = make_gate(ledger, tmp_path)
        decisions = [await gate.decide(req(request_id=f"r{i}")) for i in range(5)]
        denied = await gate.decide(req(request_id="bad", context={"cmd": "rm -rf /"}))
        index = DecisionIndex(tmp_path / "governance.db")
        try:
            assert await index.catch_up(ledger, page=2) == 6
            assert await index.catch_up(ledger) == 0
            for decision in [*decisions, denied]:
                body = await index.get(decision.decision_id)
                assert body is not None
                assert body["receipt_seq"] == decision.receipt_seq
                assert body["outcome"] == str(decision.outcome)
                assert body["allowed"] == decision.allowed
                assert body["rebuilt_from_ledger"] is True
            rejected = await index.get(denied.decision_id)
            assert rejected is not None
            assert rejected["reasons"][0]["message"] == denied.reasons[0].message
        finally:
            index.close()
