"""The PostgreSQL ledger: many writers, one chain; same bytes as SQLite; refusals; tampering.

Every test gets a fresh schema in a database created for the session on the shared server.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import asyncpg
import pytest

from grace.errors import KeyFileError, LedgerError, LedgerFormatError
from grace.ledger import Ledger, LedgerConfig, merkle
from grace.ledger.checkpoint import load_or_create_signing_key
from grace.testing import FakeClock

pytestmark = pytest.mark.postgres

QUIET: Final = LedgerConfig(checkpoint_every=0, checkpoint_interval_s=0)
PROCESSES: Final = 3
PER_PROCESS: Final = 400
TASKS: Final = 16

CHILD: Final = textwrap.dedent(
    """
    import asyncio
    import sys

    import structlog

    from grace.ledger import Ledger, LedgerConfig, merkle

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


    async def main(dsn, key_file, name, count, tasks):
        config = LedgerConfig(checkpoint_every=97, checkpoint_interval_s=0)
        async with await Ledger.open_postgres(dsn, key_file=key_file, config=config) as ledger:

            async def worker(w):
                for n in range(w, count, tasks):
                    r = await ledger.append(
                        subsystem="scale", actor=name, action="append", payload={"n": n}
                    )
                    print(r.seq, r.entry_hash, name, n, flush=True)

            await asyncio.gather(*(worker(w) for w in range(tasks)))


    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
    """
)


async def _open(dsn: str, tmp_path: Path, **kwargs: Any) -> Ledger:
    return await Ledger.open_postgres(dsn, key_file=tmp_path / "ledger.key", **kwargs)


async def _execute(dsn: str, sql: str, *args: object) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


async def test_same_appends_give_identical_bytes_roots_and_notes_on_both_stores(
    pg_dsn: str, tmp_path: Path
) -> None:
    """The same appends at the same times give byte-identical entries, nodes and checkpoints."""
    data = tmp_path / "sqlite"
    config = LedgerConfig(checkpoint_every=6, checkpoint_interval_s=0)
    clocks = (FakeClock(), FakeClock())
    sqlite = await Ledger.open(data, config=config, clock=clocks[0])
    postgres = await Ledger.open_postgres(
        pg_dsn, key_file=data / "ledger.key", config=config, clock=clocks[1]
    )
    try:
        for i in range(23):
            for ledger, clock in zip((sqlite, postgres), clocks, strict=True):
                clock.advance(0.5)
                await ledger.append(
                    subsystem="governance",
                    actor=f"agent-{i % 4}",
                    action="decide",
                    resource="svc/ünïcode",
                    payload={"i": i, "score": i / 7, "nested": {"b": [1, "2", None]}},
                )
        assert [await sqlite.get_canonical(s) for s in range(1, 24)] == [
            await postgres.get_canonical(s) for s in range(1, 24)
        ]
        assert await sqlite._rows(0, 23) == await postgres._rows(0, 23)  # nodes too
        assert await sqlite.checkpoints() == await postgres.checkpoints()
        for size in (1, 6, 17, 23):
            assert await sqlite.root(size) == await postgres.root(size)
        assert (await sqlite.verify()).root_hash == (await postgres.verify()).root_hash
    finally:
        await sqlite.close()
        await postgres.close()


async def test_two_writers_continue_each_others_chain_and_checkpoints(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Two handles on one database interleave into one chain; times never go backwards."""
    config = LedgerConfig(checkpoint_every=4, checkpoint_interval_s=0)
    ahead, behind = FakeClock(), FakeClock()
    ahead.advance(3600)
    a = await _open(pg_dsn, tmp_path, config=config, clock=ahead)
    b = await _open(pg_dsn, tmp_path, config=config, clock=behind)
    try:
        for i in range(3):
            await a.append(subsystem="s", actor="a", action="x", payload={"i": i})
        first_b = await b.append(subsystem="s", actor="b", action="x")
        assert first_b.seq == 4
        assert first_b.timestamp == ahead.now()  # b's clock is an hour behind a's entries
        entry3, entry4 = await b.get(3), await b.get(4)
        assert entry3 is not None
        assert entry4 is not None
        assert entry4.prev_hash == entry3.entry_hash
        assert [cp.tree_size for cp in await a.checkpoints()] == [4]  # b signed it
        await asyncio.gather(
            *(
                ledger.append(subsystem="s", actor=name, action="y", payload={"k": k})
                for k in range(20)
                for ledger, name in ((a, "a"), (b, "b"))
            )
        )
        assert await a.size() == await b.size() == 44
        assert (await a.checkpoint()).tree_size == 44
        assert (await b.checkpoint()) == (await a.checkpoint())
        sizes = [cp.tree_size for cp in await b.checkpoints()]
        assert sizes == sorted(set(sizes), reverse=True)
        assert all(s2 - s1 >= 4 for s1, s2 in zip(sizes[1:], sizes[:-1], strict=False))
        report = await b.verify()
        assert report.valid, report
        assert report.checkpoints_checked == len(sizes)
    finally:
        await a.close()
        await b.close()


async def test_the_tree_edge_from_the_database_is_right_at_every_size(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Writers taking turns reload the edge each time: roots match the pure function."""
    handles = [await _open(pg_dsn, tmp_path, config=QUIET) for _ in range(3)]
    try:
        leaves: list[bytes] = []
        for i in range(70):
            receipt = await handles[i % 3].append(subsystem="s", actor="a", action="x")
            assert receipt.seq == i + 1
            leaves.append(bytes.fromhex(receipt.entry_hash))
        for size in range(1, 71):
            assert await handles[size % 3].root(size) == merkle.root_hash(leaves[:size])
        assert (await handles[0].verify()).valid
    finally:
        for handle in handles:
            await handle.close()


async def test_open_url_picks_the_store_by_scheme(pg_dsn: str, tmp_path: Path) -> None:
    """postgresql:// opens the database (with a key file), sqlite:PATH the directory."""
    async with await Ledger.open_url(pg_dsn, key_file=tmp_path / "k" / "ledger.key") as pg:
        await pg.append(subsystem="s", actor="a", action="x")
        assert pg.backend == "postgresql"
        assert pg.location.startswith("postgresql://")
        assert "search_path" not in pg.location
    with pytest.raises(LedgerError, match="needs key_file"):
        await Ledger.open_url(pg_dsn)
    async with await Ledger.open_url(f"sqlite:{tmp_path / 'lite'}") as lite:
        assert lite.backend == "sqlite"
        assert lite.data_dir == tmp_path / "lite"
    async with await Ledger.open_url(f"sqlite:{tmp_path / 'lite' / 'ledger.db'}") as again:
        assert again.location == f"sqlite:{tmp_path / 'lite'}"
    with pytest.raises(LedgerError, match="neither sqlite:PATH nor postgresql"):
        await Ledger.open_url("mysql://nope")


async def test_three_processes_appending_concurrently_form_one_gapless_chain(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Three writer processes: every acknowledged receipt is stored once, the chain verifies."""
    key_file = tmp_path / "ledger.key"
    await (await _open(pg_dsn, tmp_path)).close()  # the first instance creates schema and key
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            pg_dsn,
            str(key_file),
            f"proc-{p}",
            str(PER_PROCESS),
            str(TASKS),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for p in range(PROCESSES)
    ]
    outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 120)
    receipts: dict[int, tuple[str, str, int]] = {}
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()[-3000:]
        for line in out.decode().splitlines():
            seq, entry_hash, name, n = line.split()
            assert int(seq) not in receipts, f"seq {seq} acknowledged twice"
            receipts[int(seq)] = (entry_hash, name, int(n))
    total = PROCESSES * PER_PROCESS
    assert sorted(receipts) == list(range(1, total + 1))
    async with await _open(pg_dsn, tmp_path, read_only=True) as ledger:
        assert await ledger.size() == total
        page = await ledger.query(limit=10_000)
        stored = {(e.actor, e.payload["n"]) for e in page.entries}
        assert len(stored) == total  # no append stored twice
        for e in page.entries:
            assert receipts[e.seq] == (e.entry_hash, e.actor, e.payload["n"])
        report = await ledger.verify()
        assert report.valid, report
        assert report.checkpoints_checked >= total // 97 - PROCESSES


async def test_a_different_key_file_is_refused(pg_dsn: str, tmp_path: Path) -> None:
    """An instance whose key file holds another key cannot write or read the ledger."""
    await (await _open(pg_dsn, tmp_path / "first")).close()
    other = tmp_path / "second"
    other.mkdir()
    load_or_create_signing_key(other / "ledger.key", "grace.local/ledger")
    with pytest.raises(KeyFileError, match="every instance must use the same key file"):
        await _open(pg_dsn, other)
    with pytest.raises(KeyFileError, match="is not the key the ledger"):
        await _open(pg_dsn, other, read_only=True)


async def test_a_missing_key_file_is_not_created_for_an_existing_ledger(
    pg_dsn: str, tmp_path: Path
) -> None:
    """A second instance without the key file is told to copy it; no new key appears."""
    await (await _open(pg_dsn, tmp_path / "first")).close()
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    with pytest.raises(KeyFileError, match="needs a copy of that key file"):
        await _open(pg_dsn, lonely)
    assert not (lonely / "ledger.key").exists()
    with pytest.raises(LedgerError, match="pass the ledger's public key"):
        await _open(pg_dsn, lonely, read_only=True)
    vkey = load_or_create_signing_key(tmp_path / "first" / "ledger.key", "grace.local/ledger")
    async with await _open(pg_dsn, lonely, read_only=True, public_key=vkey.verifier.vkey) as r:
        assert (await r.verify()).valid


async def test_another_origin_is_refused(pg_dsn: str, tmp_path: Path) -> None:
    """Opening the database's ledger under another origin names both origins."""
    await (await _open(pg_dsn, tmp_path, config=LedgerConfig(origin="example.org/audit"))).close()
    with pytest.raises(LedgerFormatError, match=r"is the log 'example\.org/audit'; settings name"):
        await _open(pg_dsn, tmp_path)


async def test_a_newer_schema_version_is_refused(pg_dsn: str, tmp_path: Path) -> None:
    """A database migrated by a newer Grace is left alone with a clear error."""
    await (await _open(pg_dsn, tmp_path)).close()
    await _execute(pg_dsn, "UPDATE ledger_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(LedgerFormatError, match="schema version 99, written by a newer Grace"):
        await _open(pg_dsn, tmp_path)
    with pytest.raises(LedgerFormatError, match="schema version 99"):
        await _open(pg_dsn, tmp_path, read_only=True)


async def test_a_foreign_meta_table_is_refused(pg_dsn: str, tmp_path: Path) -> None:
    """A schema whose ledger_meta belongs to something else is not taken over."""
    await _execute(pg_dsn, "CREATE TABLE ledger_meta (key text PRIMARY KEY, value text)")
    await _execute(pg_dsn, "INSERT INTO ledger_meta VALUES ('format', 'other-app')")
    with pytest.raises(LedgerFormatError, match="not a Grace ledger's"):
        await _open(pg_dsn, tmp_path)


async def test_read_only_open_of_an_empty_schema_is_refused(pg_dsn: str, tmp_path: Path) -> None:
    """There is nothing to read: the error says so and creates nothing."""
    with pytest.raises(LedgerError, match="no ledger in postgresql://"):
        await _open(pg_dsn, tmp_path, read_only=True)
    assert not (tmp_path / "ledger.key").exists()


async def test_a_search_path_without_a_schema_is_refused(pg_database: str, tmp_path: Path) -> None:
    """When no schema on the search_path exists the open fails instead of guessing."""
    with pytest.raises(LedgerError, match="no schema on the connection's search_path"):
        await _open(f"{pg_database}?search_path=does_not_exist", tmp_path)


async def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    """Connecting to a port where nothing listens raises LedgerError without the password."""
    with pytest.raises(
        LedgerError, match=r"cannot connect to PostgreSQL at postgresql://127\.0\.0\.1:1/x"
    ) as info:
        await _open("postgresql://me:secret@127.0.0.1:1/x", tmp_path)
    assert "secret" not in str(info.value)


async def test_nul_and_unicode_in_fields_are_stored_and_queryable(
    pg_dsn: str, tmp_path: Path
) -> None:
    """PostgreSQL text cannot hold NUL, so query columns are bytes: a NUL actor still works."""
    async with await _open(pg_dsn, tmp_path, config=QUIET) as ledger:
        await ledger.append(subsystem="s", actor="a\x00b", action="x")
        await ledger.append(subsystem="s", actor="a", action="x")
        page = await ledger.query(actor="a\x00b")
        assert [e.actor for e in page.entries] == ["a\x00b"]
        assert (await ledger.verify()).valid


async def test_a_row_inserted_behind_the_writers_back_fails_the_batch(
    pg_dsn: str, tmp_path: Path
) -> None:
    """A foreign row at the head makes the writer refuse to build on it; nothing is written."""
    async with await _open(pg_dsn, tmp_path, config=QUIET) as ledger:
        await ledger.append(subsystem="s", actor="a", action="x")
        await _execute(
            pg_dsn,
            "INSERT INTO ledger_entries VALUES (2, '\\x7b7d', '\\x00', '', 's', 'a', 'x', 't')",
        )
        results = await asyncio.gather(
            *(ledger.append(subsystem="s", actor="a", action="x") for _ in range(3)),
            return_exceptions=True,
        )
        assert all(isinstance(r, LedgerError) for r in results), results
        assert "Merkle data" in str(results[0])
        assert await ledger.size() == 2
        report = await ledger.verify()
        assert not report.valid
        assert report.first_bad_seq == 2


Tamper = Callable[[str], Awaitable[None]]


async def _flip_entry_byte(dsn: str) -> None:
    await _execute(
        dsn, "UPDATE ledger_entries SET entry = overlay(entry PLACING '\\x58' FROM 3) WHERE seq = 5"
    )


async def _rewrite_actor_column(dsn: str) -> None:
    await _execute(dsn, "UPDATE ledger_entries SET actor = 'mallory' WHERE seq = 6")


async def _delete_middle_row(dsn: str) -> None:
    await _execute(dsn, "DELETE FROM ledger_entries WHERE seq = 7")


async def _cut_the_end(dsn: str) -> None:
    await _execute(dsn, "DELETE FROM ledger_entries WHERE seq > 8")


async def _forge_checkpoint(dsn: str) -> None:
    await _execute(dsn, "UPDATE ledger_checkpoints SET note = replace(note, '\n10\n', '\n11\n')")


@pytest.mark.parametrize(
    ("tamper", "seq", "reason"),
    [
        pytest.param(_flip_entry_byte, 5, "do not match the stored entry hash", id="entry-byte"),
        pytest.param(_rewrite_actor_column, 6, "query columns stored with entry 6", id="column"),
        pytest.param(_delete_middle_row, 7, "entry 7 is missing", id="deleted-row"),
        pytest.param(_cut_the_end, 9, "entries were removed from the end", id="truncated"),
        pytest.param(_forge_checkpoint, None, "holds a note for size 11", id="checkpoint"),
    ],
)
async def test_tampering_in_the_database_is_found_by_verify(
    pg_dsn: str, tmp_path: Path, tamper: Tamper, seq: int | None, reason: str
) -> None:
    """Edits made with SQL behind the ledger's back are reported at the first bad seq."""
    async with await _open(pg_dsn, tmp_path, config=LedgerConfig(checkpoint_every=10)) as ledger:
        for i in range(12):
            await ledger.append(subsystem="s", actor=f"a{i}", action="x", payload={"i": i})
        assert (await ledger.verify()).valid
        await tamper(pg_dsn)
        report = await ledger.verify()
    assert not report.valid
    assert report.first_bad_seq == seq
    assert report.reason is not None
    assert reason in report.reason


def _grace_audit(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "grace", "audit", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_audit_cli_verifies_a_postgres_ledger(pg_dsn: str, tmp_path: Path) -> None:
    """`grace audit verify --database-url` checks the database's ledger with the key file."""
    async with await _open(pg_dsn, tmp_path, config=QUIET) as ledger:
        for i in range(5):
            await ledger.append(subsystem="s", actor="a", action="x", payload={"i": i})
        root = (await ledger.root()).hex()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRACE_")}
    verify = await asyncio.to_thread(
        _grace_audit, "verify", "--database-url", pg_dsn, "-d", str(tmp_path), "--json", env=env
    )
    assert verify.returncode == 0, verify.stderr
    assert f'"root_hash": "{root}"' in verify.stdout
    tail = await asyncio.to_thread(
        _grace_audit,
        "tail",
        "--json",
        "-n",
        "2",
        "-d",
        str(tmp_path),
        env={**env, "GRACE_DATABASE_URL": pg_dsn},
    )
    assert tail.returncode == 0, tail.stderr
    assert [line.count('"seq":') for line in tail.stdout.splitlines()] == [1, 1]
