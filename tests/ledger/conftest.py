"""The ledger tests' backend fixture: each behaviour on SQLite and on PostgreSQL (a fresh
schema from ``pg_dsn`` in tests/conftest.py); fault injection happens on private servers
(``pgserver``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from grace.ledger import Ledger, LedgerConfig
from grace.types import Clock


class Backend:
    """Opens the one ledger of a test on SQLite or on PostgreSQL, with the same arguments."""

    def __init__(self, kind: str, base: Path, dsn: str | None) -> None:
        self.kind = kind
        self.base = base
        self.dsn = dsn
        self.key_file = base / "data" / "ledger.key"
        """Where the signing key lives (SQLite: the data dir's; PostgreSQL: the shared file)."""

    async def open(
        self,
        *,
        config: LedgerConfig | None = None,
        clock: Clock | None = None,
        read_only: bool = False,
        public_key: str | None = None,
    ) -> Ledger:
        """Open the ledger (a new handle each call)."""
        if self.dsn is None:
            return await Ledger.open(
                self.base / "data",
                config=config,
                clock=clock,
                read_only=read_only,
                public_key=public_key,
            )
        return await Ledger.open_postgres(
            self.dsn,
            key_file=self.key_file,
            config=config,
            clock=clock,
            read_only=read_only,
            public_key=public_key,
        )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The same test on each store: SQLite files, then a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return Backend("sqlite", tmp_path, None)
    (tmp_path / "data").mkdir(mode=0o700)
    return Backend("postgresql", tmp_path, request.getfixturevalue("pg_dsn"))
