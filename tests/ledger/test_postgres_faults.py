"""Faults under load on a private PostgreSQL server: retries never duplicate, never leave gaps.

The server is created by the test (``initdb`` in a temporary directory, a free port) and
stopped by its PID; the shared server is never touched. Each test appends from many
concurrent tasks while a fault happens, then checks that every acknowledged receipt is
stored exactly once, that no append was stored twice, and that the log verifies.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from collections.abc import AsyncIterator, Iterator, MutableMapping
from pathlib import Path
from typing import Any, Final

import asyncpg
import pytest
from structlog.testing import capture_logs

from grace.errors import LedgerError
from grace.ledger import Ledger, LedgerConfig, Receipt
from tests.ledger.pgserver import CommitCutter, PrivateServer, find_bin_dir

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TASKS: Final = 64
PER_TASK: Final = 30
CONFIG: Final = LedgerConfig(checkpoint_every=100, checkpoint_interval_s=0)


@pytest.fixture(scope="module")
def server() -> Iterator[PrivateServer]:
    """A private PostgreSQL server for this module (removed afterwards)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        if os.environ.get("GRACE_REQUIRE_SERVICES") == "1":
            pytest.fail("no /usr/lib/postgresql/*/bin/initdb to start a private server with")
        pytest.skip("no PostgreSQL server binaries to start a private server with")
    pg = PrivateServer(bin_dir)
    try:
        pg.init()
        asyncio.run(pg.start())
        yield pg
    finally:
        asyncio.run(pg.stop())
        pg.remove()


@pytest.fixture
async def dsn(server: PrivateServer) -> AsyncIterator[str]:
    """A fresh database on the private server; the server is running again afterwards."""
    if server.proc is None:
        await server.start()
    name = f"t_{secrets.token_hex(6)}"
    await server.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql://postgres@127.0.0.1:{server.port}/{name}"
    if server.proc is None:
        await server.start()
    await server.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


class Load:
    """TASKS appenders, PER_TASK appends each, every receipt kept."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.receipts: list[Receipt] = []
        self.progress = asyncio.Event()
        self.wanted = 0

    async def _appender(self, task: int) -> None:
        for n in range(PER_TASK):
            receipt = await self.ledger.append(
                subsystem="fault", actor=f"task-{task}", action="append", payload={"n": n}
            )
            self.receipts.append(receipt)
            if len(self.receipts) >= self.wanted:
                self.progress.set()

    async def run_until(self, wanted: int) -> asyncio.Future[list[None]]:
        """Start the appenders; return once ``wanted`` receipts are in (they keep going)."""
        self.wanted = wanted
        work = asyncio.gather(*(self._appender(t) for t in range(TASKS)))
        waiter = asyncio.ensure_future(self.progress.wait())
        await asyncio.wait([work, waiter], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
        waiter.cancel()
        return work

    async def check(self) -> None:
        """Every receipt stored once, every append stored once, the log verifies."""
        total = TASKS * PER_TASK
        assert sorted(r.seq for r in self.receipts) == list(range(1, total + 1))
        page = await self.ledger.query(limit=10_000)
        assert len({(e.actor, e.payload["n"]) for e in page.entries}) == total
        by_seq = {e.seq: e.entry_hash for e in page.entries}
        assert all(by_seq[r.seq] == r.entry_hash for r in self.receipts)
        report = await self.ledger.verify()
        assert report.valid, report


def _events(logs: list[MutableMapping[str, Any]], name: str) -> int:
    return sum(1 for entry in logs if entry.get("event") == name)


async def test_terminated_writer_backends_are_retried_without_duplicates_or_gaps(
    dsn: str, tmp_path: Path
) -> None:
    """pg_terminate_backend on the writer's connection, again and again, mid-append."""
    database = dsn.rsplit("/", 1)[1]
    admin = await asyncpg.connect(dsn)
    kills = 0
    with capture_logs() as logs:
        async with await Ledger.open_postgres(
            dsn, key_file=tmp_path / "ledger.key", config=CONFIG
        ) as ledger:
            load = Load(ledger)
            work = await load.run_until(TASKS)
            while not work.done() and kills < 8:
                kills += await admin.fetchval(
                    "SELECT count(*) FROM ("
                    "  SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    "  WHERE application_name = 'grace-ledger-writer' AND datname = $1"
                    ") AS killed",
                    database,
                )
                await asyncio.sleep(0.02)
            await work
            await load.check()
    await admin.close()
    assert kills >= 1
    assert _events(logs, "ledger_postgres_retry") >= 1


async def test_a_commit_whose_answer_is_lost_is_not_appended_again(
    server: PrivateServer, dsn: str, tmp_path: Path
) -> None:
    """The server commits but the connection dies before the writer hears it: no duplicate."""
    cutter = CommitCutter(server.port)
    await cutter.start()
    proxied = dsn.replace(f":{server.port}/", f":{cutter.port}/")
    try:
        with capture_logs() as logs:
            async with await Ledger.open_postgres(
                proxied, key_file=tmp_path / "ledger.key", config=CONFIG
            ) as ledger:
                load = Load(ledger)
                work = await load.run_until(TASKS)
                cutter.armed = 3
                await work
                assert cutter.cuts == 3
                await load.check()
    finally:
        await cutter.close()
    assert _events(logs, "ledger_postgres_batch_recovered") == 3


async def test_a_server_restart_mid_append_loses_no_acknowledged_entry(
    server: PrivateServer, dsn: str, tmp_path: Path
) -> None:
    """An immediate shutdown (a crash) and restart of the server while 64 tasks append."""
    with capture_logs() as logs:
        async with await Ledger.open_postgres(
            dsn, key_file=tmp_path / "ledger.key", config=CONFIG
        ) as ledger:
            load = Load(ledger)
            work = await load.run_until(TASKS * PER_TASK // 3)
            assert not work.done()
            await server.restart(signal.SIGQUIT)
            await work
            await load.check()
    assert _events(logs, "ledger_postgres_retry") >= 1


async def test_a_server_down_longer_than_the_timeout_fails_the_batch_then_recovers(
    server: PrivateServer, dsn: str, tmp_path: Path
) -> None:
    """Past reconnect_timeout_s callers get a LedgerError; after the server is back, appends
    continue the chain without a gap."""
    config = LedgerConfig(checkpoint_every=0, checkpoint_interval_s=0, reconnect_timeout_s=0.3)
    async with await Ledger.open_postgres(
        dsn, key_file=tmp_path / "ledger.key", config=config
    ) as ledger:
        for i in range(5):
            await ledger.append(subsystem="s", actor="a", action="x", payload={"i": i})
        await server.stop()
        with pytest.raises(LedgerError, match="could not be reached"):
            await ledger.append(subsystem="s", actor="a", action="x", payload={"i": "lost"})
        await server.start()
        receipt = await ledger.append(subsystem="s", actor="a", action="x", payload={"i": 5})
        assert receipt.seq == 6
        assert await ledger.size() == 6
        report = await ledger.verify()
        assert report.valid, report
