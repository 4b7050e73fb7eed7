"""Bad input is refused with a ``LedgerError`` that names the problem, and changes nothing.

Rejected appends must leave the log exactly as it was (same size, still verifying) and the
ledger usable; a data directory that holds something other than a Grace ledger is refused
without being modified and without keeping the write lock.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import pytest

from grace.errors import (
    EntryRejected,
    KeyFileError,
    LedgerError,
    LedgerFormatError,
    LedgerLocked,
)
from grace.ledger import Ledger, LedgerConfig
from grace.testing import FakeClock

CONFIG: Final = LedgerConfig(checkpoint_every=0, checkpoint_interval_s=0)
SMALL: Final = LedgerConfig(checkpoint_every=0, checkpoint_interval_s=0, max_payload_bytes=64)
MIB: Final = 1 << 20


def _nested(leaf: object, depth: int) -> dict[str, Any]:
    """``leaf`` buried ``depth`` levels deep in alternating objects and arrays."""
    value: Any = [leaf]
    for level in range(depth):
        value = {f"k{level}": value} if level % 2 else [0, value, "x"]
    return {"outer": value}


async def _append_ok(ledger: Ledger, n: int = 0) -> int:
    receipt = await ledger.append(
        subsystem="governance", actor="agent", action="decide", payload={"n": n}
    )
    return receipt.seq


async def _assert_unchanged(ledger: Ledger, size: int) -> None:
    """The ledger still has ``size`` entries, verifies, and takes the next append at size+1."""
    assert await ledger.size() == size
    report = await ledger.verify()
    assert report.valid, report
    assert report.entries_checked == size
    assert await _append_ok(ledger) == size + 1


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    """A writable ledger with three entries."""
    opened = await Ledger.open(tmp_path / "data", config=CONFIG, clock=FakeClock())
    for n in range(3):
        await _append_ok(opened, n)
    yield opened
    await opened.close()


@pytest.fixture
async def small_ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    """A writable ledger with one entry and a 64-byte payload limit."""
    opened = await Ledger.open(tmp_path / "small", config=SMALL, clock=FakeClock())
    await _append_ok(opened)
    yield opened
    await opened.close()


# -- rejected payloads -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        pytest.param(
            {"x": object()},
            r"payload is not JSON-serialisable: unsupported type: <class 'object'>",
            id="object",
        ),
        pytest.param(
            {"tags": {"a", "b"}},
            r"payload is not JSON-serialisable: unsupported type: <class 'set'>",
            id="set",
        ),
        pytest.param(
            {"blob": b"\x00\x01"},
            r"payload is not JSON-serialisable: unsupported type: <class 'bytes'>",
            id="bytes",
        ),
        pytest.param({"ratio": float("nan")}, r": nan is not allowed in JSON", id="nan"),
        pytest.param(_nested(float("nan"), 40), r": nan is not allowed in JSON", id="nan-deep"),
        pytest.param(
            _nested(float("inf"), 40), r": inf is not allowed in JSON", id="infinity-deep"
        ),
        pytest.param(
            _nested(float("-inf"), 40), r": -inf is not allowed in JSON", id="minus-infinity-deep"
        ),
        pytest.param({"n": 2**60}, r"1152921504606846976 exceeds safe integer", id="unsafe-int"),
        pytest.param({1: "x"}, r"object keys must be strings", id="int-key"),
        pytest.param(
            {"text": "ok \ud800 not"},
            r"payload cannot be encoded as JSON: .*surrogates not allowed",
            id="lone-surrogate-value",
        ),
        pytest.param(
            _nested("\udfff", 10),
            r"payload cannot be encoded as JSON: .*surrogates not allowed",
            id="lone-surrogate-deep",
        ),
        pytest.param(
            {"\ud83d": 1},
            r"payload is not JSON-serialisable: .*surrogates not allowed",
            id="lone-surrogate-key",
        ),
        pytest.param(
            {"é": "\udc00"},
            r"payload is not JSON-serialisable: .*non-UTF-8",
            id="lone-surrogate-beside-non-ascii-key",
        ),
        pytest.param(
            {"big": "x" * (MIB + MIB // 10)},
            rf"payload is {MIB + MIB // 10 + 10} bytes as canonical JSON; the limit is {MIB}",
            id="over-default-1MiB",
        ),
        pytest.param([1, 2, 3], r"payload must be a JSON object \(dict\), got list", id="list"),
        pytest.param("text", r"payload must be a JSON object \(dict\), got str", id="str"),
        pytest.param(42, r"payload must be a JSON object \(dict\), got int", id="int"),
    ],
)
async def test_bad_payload_is_rejected_and_nothing_is_written(
    ledger: Ledger, payload: Any, message: str
) -> None:
    """An unusable payload raises EntryRejected naming the problem and leaves the log as it was."""
    with pytest.raises(EntryRejected, match=message):
        await ledger.append(subsystem="governance", actor="agent", action="decide", payload=payload)
    await _assert_unchanged(ledger, 3)


@pytest.mark.parametrize(
    ("size", "rejected"),
    [pytest.param(64, False, id="at-limit"), pytest.param(65, True, id="one-over-limit")],
)
async def test_payload_over_configured_limit_is_rejected(
    small_ledger: Ledger, size: int, rejected: bool
) -> None:
    """The configured max_payload_bytes counts canonical bytes and rejects one byte over it."""
    payload = {"s": "y" * (size - len('{"s":""}'))}
    assert len('{"s":""}') + len(payload["s"]) == size
    if rejected:
        with pytest.raises(
            EntryRejected, match=rf"payload is {size} bytes as canonical JSON; the limit is 64"
        ):
            await small_ledger.append(subsystem="s", actor="a", action="x", payload=payload)
        await _assert_unchanged(small_ledger, 1)
    else:
        receipt = await small_ledger.append(subsystem="s", actor="a", action="x", payload=payload)
        assert receipt.seq == 2


async def test_payload_limit_counts_escaped_bytes(small_ledger: Ledger) -> None:
    """A short string that escapes to many canonical bytes is measured after escaping."""
    payload = {"c": "\x01" * 12}  # 12 characters, 72 bytes as \u0001 escapes
    with pytest.raises(EntryRejected, match=r"payload is 80 bytes as canonical JSON"):
        await small_ledger.append(subsystem="s", actor="a", action="x", payload=payload)
    await _assert_unchanged(small_ledger, 1)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"actor": 42}, r"entry field 'actor' must be a string, got int", id="int"),
        pytest.param({"actor": None}, r"field 'actor' must be a string, got NoneType", id="none"),
        pytest.param({"actor": b"bob"}, r"field 'actor' must be a string, got bytes", id="bytes"),
        pytest.param({"actor": ""}, r"entry field 'actor' must not be empty", id="empty"),
        pytest.param({"subsystem": ""}, r"entry field 'subsystem' must not be empty", id="subsys"),
        pytest.param({"action": ""}, r"entry field 'action' must not be empty", id="action"),
        pytest.param(
            {"actor": "a" * 1025},
            r"entry field 'actor' is 1025 characters; the limit is 1024",
            id="long",
        ),
        pytest.param(
            {"actor": "bob\ud800"},
            r"entry field 'actor' cannot be encoded as JSON: .*surrogates not allowed",
            id="lone-surrogate",
        ),
        pytest.param(
            {"resource": "\udc80"},
            r"entry field 'resource' cannot be encoded as JSON: .*surrogates",
            id="surrogate-resource",
        ),
        pytest.param(
            {"result": 1.0}, r"entry field 'result' must be a string, got float", id="result"
        ),
    ],
)
async def test_bad_entry_field_is_rejected_and_nothing_is_written(
    ledger: Ledger, fields: dict[str, Any], message: str
) -> None:
    """A non-string, empty, overlong or unencodable field raises EntryRejected naming the field."""
    args: dict[str, Any] = {"subsystem": "governance", "actor": "agent", "action": "decide"}
    args.update(fields)
    with pytest.raises(EntryRejected, match=message):
        await ledger.append(**args)
    await _assert_unchanged(ledger, 3)


async def test_rejection_leaves_no_gap_in_seq(ledger: Ledger) -> None:
    """Appends around rejected ones get consecutive seqs and the log still verifies."""
    seqs = [await _append_ok(ledger, 10)]
    for bad in ({"x": float("nan")}, {"x": {1, 2}}, {"x": "\ud800"}):
        with pytest.raises(EntryRejected):
            await ledger.append(subsystem="s", actor="a", action="x", payload=bad)
        seqs.append(await _append_ok(ledger, len(seqs)))
    assert seqs == [4, 5, 6, 7]
    entries = [await ledger.get(seq) for seq in range(1, 8)]
    assert [e.seq for e in entries if e is not None] == list(range(1, 8))
    report = await ledger.verify()
    assert report.valid, report
    assert report.entries_checked == 7


async def test_concurrent_rejections_do_not_disturb_a_batch(ledger: Ledger) -> None:
    """Rejected appends racing good ones fail alone; the good ones commit gaplessly."""

    async def good(n: int) -> int:
        return await _append_ok(ledger, n)

    async def bad(n: int) -> int:
        receipt = await ledger.append(
            subsystem="s", actor="a", action="x", payload={"n": n, "bad": float("inf")}
        )
        return receipt.seq

    tasks = [good(n) if n % 3 else bad(n) for n in range(30)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    rejected = [r for r in results if isinstance(r, BaseException)]
    committed = sorted(r for r in results if isinstance(r, int))
    assert len(rejected) == 10
    assert all(isinstance(r, EntryRejected) for r in rejected)
    assert committed == list(range(4, 24))
    await _assert_unchanged(ledger, 23)


# -- the data directory holds something else -----------------------------------------------------


def _lock_is_free(data_dir: Path) -> bool:
    """True if nobody holds the ledger's write lock (so a failed open released it)."""
    lock = data_dir / "ledger.lock"
    if not lock.exists():
        return True
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops the probe's lock
    return True


async def test_data_dir_that_is_a_regular_file_is_refused(tmp_path: Path) -> None:
    """A data dir path naming a regular file raises LedgerFormatError and leaves the file alone."""
    path = tmp_path / "not-a-dir"
    path.write_text("precious\n")
    with pytest.raises(LedgerFormatError, match=r"data dir .*not-a-dir is a file, not a directory"):
        await Ledger.open(path, config=CONFIG)
    with pytest.raises(LedgerFormatError, match=r"is a file, not a directory"):
        await Ledger.open(path, config=CONFIG, read_only=True)
    assert path.read_text() == "precious\n"


async def test_ledger_db_that_is_a_text_file_is_refused(tmp_path: Path) -> None:
    """A ledger.db holding text raises LedgerFormatError, is not modified, and frees the lock."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    db = data_dir / "ledger.db"
    content = "these are my notes, not a database\n" * 100
    db.write_text(content)
    with pytest.raises(LedgerFormatError, match=r"ledger\.db is not a SQLite database"):
        await Ledger.open(data_dir, config=CONFIG)
    with pytest.raises(LedgerFormatError, match=r"ledger\.db is not a SQLite database"):
        await Ledger.open(data_dir, config=CONFIG, read_only=True)
    assert db.read_text() == content
    assert _lock_is_free(data_dir)
    assert not (data_dir / "ledger.key").exists()


async def test_ledger_db_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    """A directory named ledger.db raises LedgerFormatError instead of an OS error."""
    data_dir = tmp_path / "data"
    (data_dir / "ledger.db").mkdir(parents=True)
    with pytest.raises(LedgerFormatError, match=r"ledger\.db exists but is not a file"):
        await Ledger.open(data_dir, config=CONFIG)
    assert _lock_is_free(data_dir)


async def test_ledger_db_of_another_app_is_refused_untouched(tmp_path: Path) -> None:
    """A SQLite database of some other application is named as such and left unmodified."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    db = data_dir / "ledger.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount INTEGER)")
        conn.execute("INSERT INTO invoices(amount) VALUES (100), (250)")
    conn.close()
    before = db.read_bytes()
    with pytest.raises(
        LedgerFormatError, match=r"SQLite database of something else \(tables: invoices\)"
    ):
        await Ledger.open(data_dir, config=CONFIG)
    with pytest.raises(LedgerFormatError, match=r"something else"):
        await Ledger.open(data_dir, config=CONFIG, read_only=True)
    assert db.read_bytes() == before
    assert _lock_is_free(data_dir)


async def test_ledger_db_with_wrong_format_marker_is_refused(tmp_path: Path) -> None:
    """A database with a meta table that does not say grace-ledger is refused by name."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with sqlite3.connect(data_dir / "ledger.db") as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('format', 'other-app')")
    conn.close()
    with pytest.raises(LedgerFormatError, match=r"is not a Grace ledger \(format 'other-app'\)"):
        await Ledger.open(data_dir, config=CONFIG)
    assert _lock_is_free(data_dir)


async def test_second_writer_in_same_dir_is_locked_out_naming_the_pid(ledger: Ledger) -> None:
    """A second writable open raises LedgerLocked with the holder's pid; the first keeps working."""
    with pytest.raises(
        LedgerLocked, match=rf"open for writing by another process \(pid {os.getpid()}\)"
    ):
        await Ledger.open(ledger.data_dir, config=CONFIG)
    reader = await Ledger.open(ledger.data_dir, config=CONFIG, read_only=True)
    try:
        assert await reader.size() == 3
    finally:
        await reader.close()
    assert await _append_ok(ledger) == 4
    assert not _lock_is_free(ledger.data_dir)


async def test_writer_lock_is_released_on_close(tmp_path: Path) -> None:
    """After close, another writer can open the same data dir."""
    first = await Ledger.open(tmp_path, config=CONFIG)
    await _append_ok(first)
    await first.close()
    second = await Ledger.open(tmp_path, config=CONFIG)
    try:
        assert await _append_ok(second) == 2
    finally:
        await second.close()


async def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    """A signing key with mode 0644 raises KeyFileError saying how to fix it; the lock is freed."""
    first = await Ledger.open(tmp_path, config=CONFIG)
    await _append_ok(first)
    await first.close()
    key = tmp_path / "ledger.key"
    key.chmod(0o644)
    with pytest.raises(
        KeyFileError, match=r"accessible by group/others \(mode -rw-r--r--\).*chmod 600"
    ):
        await Ledger.open(tmp_path, config=CONFIG)
    with pytest.raises(KeyFileError, match=r"accessible by group/others"):
        await Ledger.open(tmp_path, config=CONFIG, read_only=True)
    assert _lock_is_free(tmp_path)
    key.chmod(0o600)
    reopened = await Ledger.open(tmp_path, config=CONFIG)
    try:
        assert await _append_ok(reopened) == 2
    finally:
        await reopened.close()


async def test_key_file_that_is_not_a_key_is_refused(tmp_path: Path) -> None:
    """A key file holding garbage raises KeyFileError naming the file."""
    first = await Ledger.open(tmp_path, config=CONFIG)
    await first.close()
    key = tmp_path / "ledger.key"
    key.write_bytes(b"not a pem key\n")
    with pytest.raises(KeyFileError, match=rf"signing key {re.escape(str(key))} is not a PEM"):
        await Ledger.open(tmp_path, config=CONFIG)
    assert _lock_is_free(tmp_path)


async def test_config_with_another_origin_is_refused(tmp_path: Path) -> None:
    """Opening a ledger under a different origin raises LedgerFormatError naming both origins."""
    first = await Ledger.open(tmp_path, config=LedgerConfig(origin="example.org/audit"))
    await _append_ok(first)
    await first.close()
    with pytest.raises(
        LedgerFormatError,
        match=r"is the log 'example\.org/audit'; settings name 'grace\.local/ledger'",
    ):
        await Ledger.open(tmp_path, config=CONFIG)
    assert _lock_is_free(tmp_path)
    reopened = await Ledger.open(tmp_path, config=LedgerConfig(origin="example.org/audit"))
    try:
        report = await reopened.verify()
        assert report.valid, report
        assert report.entries_checked == 1
    finally:
        await reopened.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"origin": "has space"}, r"must be non-empty, without spaces", id="space"),
        pytest.param({"origin": "a+b"}, r"without spaces or '\+'", id="plus"),
        pytest.param({"origin": ""}, r"must be non-empty", id="empty"),
        pytest.param({"max_payload_bytes": 1}, r"max_payload_bytes must be at least 2", id="tiny"),
        pytest.param({"synchronous": "OFF"}, r"NORMAL, FULL or EXTRA, not 'OFF'", id="sync-off"),
    ],
)
def test_invalid_config_is_refused(kwargs: dict[str, Any], message: str) -> None:
    """A LedgerConfig that could not name or protect a log raises ValueError naming the setting."""
    with pytest.raises(ValueError, match=message):
        LedgerConfig(**kwargs)


async def test_operations_on_a_closed_ledger_raise_ledger_error(ledger: Ledger) -> None:
    """After close, append and reads raise LedgerError instead of touching closed handles."""
    await ledger.close()
    with pytest.raises(LedgerError, match="closed"):
        await _append_ok(ledger)
    with pytest.raises(LedgerError, match="closed"):
        await ledger.get(1)
    with pytest.raises(LedgerError, match="closed"):
        await ledger.verify()


async def test_read_only_ledger_refuses_appends(ledger: Ledger) -> None:
    """A read-only handle raises LedgerError on append and the log is unchanged."""
    reader = await Ledger.open(ledger.data_dir, config=CONFIG, read_only=True)
    try:
        with pytest.raises(LedgerError, match="opened read-only"):
            await _append_ok(reader)
        assert await reader.size() == 3
    finally:
        await reader.close()
    await _assert_unchanged(ledger, 3)
