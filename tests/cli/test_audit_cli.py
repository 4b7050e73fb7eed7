"""The `grace` command, run as a real subprocess against real ledger files."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

GRACE = [sys.executable, "-m", "grace"]


def grace(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `grace ARGS` with a clean GRACE_ environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRACE_")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [*GRACE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with two demo round trips (6 entries, 2 checkpoints)."""
    root = tmp_path_factory.mktemp("cli")
    for _ in range(2):
        done = grace("demo", "--ledger-only", "--data-dir", "data", cwd=root)
        assert done.returncode == 0, done.stderr
    return root


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    """`grace --version` prints the version."""
    from grace import __version__

    done = grace("--version", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.strip() == f"grace {__version__}"


def test_demo_reports_valid_round_trip(demo_dir: Path) -> None:
    """`grace demo` shows appended entries, an offline-valid proof and a valid log."""
    done = grace("demo", "--ledger-only", "-d", "data", cwd=demo_dir)
    assert done.returncode == 0, done.stderr
    assert "offline check" in done.stdout
    assert "valid" in done.stdout
    assert "9 entries" in done.stdout


def test_verify_json_reports_entries_and_checkpoints(demo_dir: Path) -> None:
    """`grace audit verify --json` gives a machine-readable report and exit 0."""
    done = grace("audit", "verify", "-d", "data", "--json", cwd=demo_dir)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["valid"] is True
    assert report["entries_checked"] >= 6
    assert report["checkpoints_checked"] >= 2


def test_tail_and_show_print_entries(demo_dir: Path) -> None:
    """`audit tail --json` prints JSON lines oldest first; `audit show` prints one entry."""
    done = grace("audit", "tail", "-n", "2", "--json", "-d", "data", cwd=demo_dir)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 2
    assert lines[0]["seq"] + 1 == lines[1]["seq"]
    shown = grace("audit", "show", "1", "-d", "data", cwd=demo_dir)
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["action"] == "restart_component"
    missing = grace("audit", "show", "9999", "-d", "data", cwd=demo_dir)
    assert missing.returncode == 1
    assert "no entry 9999" in missing.stderr


def test_prove_then_verify_proof_offline(demo_dir: Path, tmp_path: Path) -> None:
    """A bundle from `audit prove` verifies with the exported key, in a dir without the log."""
    key = grace("audit", "export-key", "-d", "data", cwd=demo_dir)
    assert key.returncode == 0
    (tmp_path / "log.vkey").write_text(key.stdout)
    bundle = tmp_path / "bundle.json"
    done = grace(
        "audit", "prove", "2", "--size", "4", "-o", str(bundle), "-d", "data", cwd=demo_dir
    )
    assert done.returncode == 0, done.stderr
    ok = grace("audit", "verify-proof", str(bundle), "--public-key", "log.vkey", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "valid" in ok.stdout
    data = json.loads(bundle.read_text())
    data["inclusion_proof"][0] = "00" * 32
    bundle.write_text(json.dumps(data))
    bad = grace("audit", "verify-proof", str(bundle), "--public-key", "log.vkey", cwd=tmp_path)
    assert bad.returncode == 1
    assert "INVALID" in bad.stdout


def test_verify_proof_with_pem_key(demo_dir: Path, tmp_path: Path) -> None:
    """The PEM form of the public key verifies bundles too."""
    pem = grace("audit", "export-key", "--pem", "-d", "data", cwd=demo_dir)
    (tmp_path / "log.pem").write_text(pem.stdout)
    bundle = tmp_path / "b.json"
    assert (
        grace("audit", "prove", "1", "-o", str(bundle), "-d", "data", cwd=demo_dir).returncode == 0
    )
    ok = grace("audit", "verify-proof", str(bundle), "-k", str(tmp_path / "log.pem"), cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_checkpoint_command_prints_signed_note(demo_dir: Path) -> None:
    """`grace audit checkpoint` prints a C2SP signed note for the current size."""
    done = grace("audit", "checkpoint", "-d", "data", cwd=demo_dir)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("\n")
    assert lines[0] == "grace.local/ledger"
    assert lines[1].isdigit()
    assert lines[4].startswith("\u2014 grace.local/ledger ")


def test_tampered_ledger_fails_verify_naming_the_seq(tmp_path: Path) -> None:
    """Editing one entry's bytes in SQLite makes `audit verify` exit 1 and name that seq."""
    assert grace("demo", "--ledger-only", "-d", "data", cwd=tmp_path).returncode == 0
    db = sqlite3.connect(tmp_path / "data" / "ledger.db")
    with db:
        db.execute(
            "UPDATE entries SET entry = replace(entry, CAST('restart' AS BLOB), "
            "CAST('Restart' AS BLOB)) WHERE seq = 3"
        )
    db.close()
    done = grace("audit", "verify", "-d", "data", cwd=tmp_path)
    assert done.returncode == 1
    assert "INVALID at seq 3" in done.stdout


def test_errors_are_one_line_with_exit_code_2(tmp_path: Path) -> None:
    """A missing ledger is reported as a clear error, not a traceback."""
    done = grace("audit", "verify", "-d", "nothing-here", cwd=tmp_path)
    assert done.returncode == 2
    assert "no ledger at nothing-here" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def signed_ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed 20-entry ledger whose last checkpoint covers all 20 entries."""
    import asyncio

    from grace.ledger import Ledger

    path = tmp_path_factory.mktemp("signed") / "data"

    async def build() -> None:
        async with await Ledger.open(path) as ledger:
            for i in range(20):
                await ledger.append(subsystem="s", actor="a", action="x", payload={"i": i})
            await ledger.checkpoint()

    asyncio.run(build())
    return path


def _swap(db: sqlite3.Connection, a: int, b: int) -> None:
    rows = {
        s: db.execute("SELECT entry, entry_hash, nodes FROM entries WHERE seq = ?", (s,)).fetchone()
        for s in (a, b)
    }
    db.execute("UPDATE entries SET entry=?, entry_hash=?, nodes=? WHERE seq=?", (*rows[b], a))
    db.execute("UPDATE entries SET entry=?, entry_hash=?, nodes=? WHERE seq=?", (*rows[a], b))


Tamper = Callable[[sqlite3.Connection], object]
TAMPERS: dict[str, tuple[Tamper, int]] = {
    "modified": (
        lambda db: db.execute("UPDATE entries SET entry_hash = zeroblob(32) WHERE seq = 7"),
        7,
    ),
    "deleted": (lambda db: db.execute("DELETE FROM entries WHERE seq = 12"), 12),
    "inserted": (
        lambda db: db.execute(
            "INSERT INTO entries(seq, entry, entry_hash, nodes) "
            "SELECT 21, entry, entry_hash, nodes FROM entries WHERE seq = 3"
        ),
        21,
    ),
    "reordered": (lambda db: _swap(db, 4, 9), 4),
    "truncated": (lambda db: db.execute("DELETE FROM entries WHERE seq > 15"), 16),
}


@pytest.mark.parametrize("kind", sorted(TAMPERS))
def test_audit_verify_names_the_first_bad_seq_for_each_tamper(
    signed_ledger: Path, tmp_path: Path, kind: str
) -> None:
    """Modified, deleted, inserted, reordered and truncated rows each make verify exit 1."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(signed_ledger, data)
    tamper, first_bad = TAMPERS[kind]
    db = sqlite3.connect(data / "ledger.db")
    with db:
        tamper(db)
    db.close()
    done = grace("audit", "verify", "-d", "data", "--json", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["valid"] is False
    assert report["first_bad_seq"] == first_bad
    assert report["reason"]


def test_second_writer_process_is_refused_while_readers_work(tmp_path: Path) -> None:
    """With a writer open, `audit checkpoint` in another process fails clearly; `verify` works."""
    import asyncio

    from grace.ledger import Ledger

    async def scenario() -> tuple[subprocess.CompletedProcess[str], ...]:
        async with await Ledger.open(tmp_path / "data") as ledger:
            await ledger.append(subsystem="s", actor="a", action="x")
            await ledger.checkpoint()
            return await asyncio.gather(
                asyncio.to_thread(grace, "audit", "checkpoint", "-d", "data", cwd=tmp_path),
                asyncio.to_thread(grace, "audit", "verify", "-d", "data", cwd=tmp_path),
                asyncio.to_thread(grace, "audit", "checkpoints", "-d", "data", cwd=tmp_path),
            )

    writer, reader, listing = asyncio.run(scenario())
    assert writer.returncode == 2
    assert f"open for writing by another process (pid {os.getpid()})" in writer.stderr
    assert reader.returncode == 0, reader.stderr
    assert "valid" in reader.stdout
    assert listing.returncode == 0
    assert "│         1 │" in listing.stdout
