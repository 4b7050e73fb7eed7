"""Ledger benchmarks: durable appends, full verification, proof latency.

Run from the repository root::

    .venv/bin/python bench/ledger.py            # full run (builds a 1,000,000-entry ledger)
    .venv/bin/python bench/ledger.py --quick    # smoke run, small sizes

The machine this runs on is noisy, so every rate is paired with a baseline measured in the
same run, on the same disk, with the same bytes, and the *ratio* is what is judged:

1. Durable appends/s through :meth:`Ledger.append` with 1, 16 and 64 concurrent appender
   tasks (fresh data dir each, ``synchronous=FULL``), against raw ``sqlite3`` inserting the
   very rows the ledger wrote (canonical entry bytes + 32-byte hash) into a table created
   from the ledger's own ``entries`` DDL and indexes, WAL, ``synchronous=FULL``, 100 rows
   per transaction. Goal: 64 appenders >= 0.5x the raw batched rate.
2. Entries/s of :meth:`Ledger.verify` against a bare hash chain over the same stored bytes
   (``h = sha256(h + entry)``): (a) bytes already in memory, (b) one ``SELECT`` from the same
   database, then chaining. Goal: >= 0.7x the bare hash rate.
3. :meth:`Ledger.prove_inclusion` latency on a 1,000,000-entry ledger (median and p99;
   goal < 1 ms), with proofs checked by :func:`merkle.verify_inclusion` against
   :meth:`Ledger.root`; :meth:`Ledger.prove_consistency` latency, checked likewise.

Each paired measurement is repeated ``--repeats`` times, alternating ledger and baseline;
the median of the per-repeat ratios is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import logging
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from _report import Row, fmt_rate, median, percentile, print_table, verdict
from grace.ledger import Ledger, LedgerConfig, merkle
from grace.ledger._store import SQLiteStore

DB_NAME = "ledger.db"
RAW_BATCH = 100
APPEND_GOAL = 0.5
VERIFY_GOAL = 0.7
PROOF_GOAL_MS = 1.0

# -- realistic entries -----------------------------------------------------------------

_ACTORS = tuple(f"agent:{role}-{i}" for role in ("planner", "healer", "deployer") for i in range(4))
_ACTIONS = ("deploy", "scale", "rollback", "rotate_secret", "grant_access", "restart", "patch")
_SERVICES = ("payments-api", "ledger-writer", "auth-gateway", "search-indexer", "billing-cron")
_RESULTS = ("approved", "approved", "approved", "rejected", "requires_approval")
_RISK = ("low", "medium", "high", "critical")
_REASONS = (
    "change window open for the target environment",
    "actor trust score below the threshold for production changes",
    "blast radius exceeds the limit for an unattended action",
    "policy requires a second approver for secret rotation",
    "rollback target is the last verified release",
    "no open incident on the affected service",
    "resource quota would be exceeded by the requested scale",
)
_POLICIES = ("gp-001", "gp-007", "gp-012", "sec-003", "sec-019", "ops-044")


@dataclass(frozen=True, slots=True)
class AppendSpec:
    """The caller-side fields of one :meth:`Ledger.append`."""

    actor: str
    action: str
    resource: str
    result: str
    payload: dict[str, Any]


def decision_spec(rng: random.Random) -> AppendSpec:
    """A governance decision as ``grace.ledger.audit.log_decision`` shapes it (~330 B payload).

    ``trust_score`` is a float, as in ``log_decision``, so the payload takes the RFC 8785
    canonicalisation path that real decisions take.
    """
    action = rng.choice(_ACTIONS)
    service = rng.choice(_SERVICES)
    result = rng.choice(_RESULTS)
    violated = rng.sample(_POLICIES, k=rng.choice((0, 0, 1, 2))) if result != "approved" else []
    return AppendSpec(
        actor=rng.choice(_ACTORS),
        action=action,
        resource=f"service/{service}",
        result=result,
        payload={
            "event": "decision",
            "request_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "reasons": rng.sample(_REASONS, k=rng.randint(1, 2)),
            "risk_level": rng.choice(_RISK),
            "trust_score": round(rng.random(), 3),
            "violated_policies": violated,
            "policy_version": "2026.02.1",
            "context": {
                "tenant": rng.choice(("acme", "globex", "initech")),
                "environment": rng.choice(("prod", "staging")),
                "change_id": f"chg-{rng.randrange(10**7):07d}",
                "replicas": rng.randint(1, 12),
            },
        },
    )


async def append_spec(ledger: Ledger, spec: AppendSpec) -> int:
    """Append one decision; return its seq."""
    receipt = await ledger.append(
        subsystem="governance",
        actor=spec.actor,
        action=spec.action,
        resource=spec.resource,
        result=spec.result,
        payload=spec.payload,
    )
    return receipt.seq


# -- helpers ---------------------------------------------------------------------------


def config() -> LedgerConfig:
    return LedgerConfig(synchronous="FULL")


@dataclass(frozen=True, slots=True)
class StoredRows:
    """What the ledger stored in ``entries``: every non-generated column, in seq order."""

    columns: tuple[str, ...]
    rows: list[tuple[object, ...]]


def read_rows(db: Path) -> StoredRows:
    """The ledger's stored ``entries`` rows exactly as written (generated columns left out).

    Taking the columns from the schema keeps the baseline "the same rows" if the ledger's
    row layout changes (today: seq, entry bytes, entry hash and the Merkle nodes the entry
    completes).
    """
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        # table_xinfo's 7th field ``hidden``: 0 for ordinary columns, 2/3 for generated ones.
        columns = tuple(str(r[1]) for r in conn.execute("PRAGMA table_xinfo(entries)") if r[6] == 0)
        sql = f"SELECT {', '.join(columns)} FROM entries ORDER BY seq"
        return StoredRows(columns, [tuple(r) for r in conn.execute(sql)])
    finally:
        conn.close()


def read_entries(db: Path) -> list[bytes]:
    """The canonical entry bytes, in seq order."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return [bytes(r[0]) for r in conn.execute("SELECT entry FROM entries ORDER BY seq")]
    finally:
        conn.close()


def entries_ddl(db: Path) -> list[str]:
    """The ledger's own ``CREATE TABLE entries`` and ``CREATE INDEX ... ON entries`` text."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'entries' AND sql IS NOT NULL "
            "ORDER BY type = 'index', name"
        ).fetchall()
    finally:
        conn.close()
    return [str(r[0]) for r in rows]


def commits_in(db: Path) -> int:
    """How many write transactions stored entries: one timestamp per writer batch."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(DISTINCT ts) FROM entries").fetchone()[0])
    finally:
        conn.close()


# -- 1. appends ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppendRun:
    rate: float
    entries: int
    commits: int
    db: Path


async def ledger_appends(data_dir: Path, specs: Sequence[AppendSpec], tasks: int) -> AppendRun:
    """Append ``specs`` with ``tasks`` concurrent appenders; time until the last receipt."""
    ledger = await Ledger.open(data_dir, config=config())
    try:
        shares = [specs[k::tasks] for k in range(tasks)]

        async def appender(share: Sequence[AppendSpec]) -> None:
            for spec in share:
                await append_spec(ledger, spec)

        gc.collect()
        start = time.perf_counter()
        await asyncio.gather(*(appender(s) for s in shares))
        elapsed = time.perf_counter() - start
        size = await ledger.size()
    finally:
        await ledger.close()
    if size != len(specs):
        raise SystemExit(f"appended {len(specs)} entries but the ledger holds {size}")
    db = data_dir / DB_NAME
    return AppendRun(len(specs) / elapsed, size, commits_in(db), db)


def raw_inserts(target: Path, ddl: Sequence[str], stored: StoredRows, batch: int) -> float:
    """Rows/s inserting ``stored`` into a fresh ``entries`` table, ``batch`` rows per commit."""
    conn = sqlite3.connect(target, isolation_level=None)
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise SystemExit(f"baseline database refused WAL mode ({mode})")
        conn.execute("PRAGMA synchronous = FULL")
        for stmt in ddl:
            conn.execute(stmt)
        marks = ", ".join("?" * len(stored.columns))
        sql = f"INSERT INTO entries({', '.join(stored.columns)}) VALUES ({marks})"
        rows = stored.rows
        gc.collect()
        start = time.perf_counter()
        for i in range(0, len(rows), batch):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, rows[i : i + batch])
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    return len(rows) / elapsed


@dataclass(frozen=True, slots=True)
class AppendResult:
    tasks: int
    entries: int
    ledger_rate: float
    raw_rate: float
    ratio: float
    per_commit: float
    single_row_rate: float | None


async def bench_appends(
    base: Path, tasks: int, count: int, repeats: int, rng: random.Random
) -> AppendResult:
    ledger_rates: list[float] = []
    raw_rates: list[float] = []
    ratios: list[float] = []
    per_commit: list[float] = []
    single: list[float] = []
    for rep in range(repeats):
        specs = [decision_spec(rng) for _ in range(count)]
        with tempfile.TemporaryDirectory(dir=base, prefix="append-") as tmp:
            run = await ledger_appends(Path(tmp) / "ledger", specs, tasks)
            rows = read_rows(run.db)
            ddl = entries_ddl(run.db)
            if rep == 0:
                size = sum(len(v) for r in rows.rows for v in r if isinstance(v, bytes))
                print(
                    f"  raw rows: ({', '.join(rows.columns)}), "
                    f"{size / max(len(rows.rows), 1):.0f} blob bytes per row",
                    flush=True,
                )
            raw = raw_inserts(Path(tmp) / "raw.db", ddl, rows, RAW_BATCH)
            line = (
                f"  [{tasks:>2} tasks, rep {rep + 1}/{repeats}] ledger {fmt_rate(run.rate):>11} "
                f"({run.entries / max(run.commits, 1):5.1f} entries/commit)   "
                f"raw x{RAW_BATCH} {fmt_rate(raw):>11}   ratio {run.rate / raw:.3f}"
            )
            if tasks == 1:
                one = raw_inserts(Path(tmp) / "raw1.db", ddl, rows, 1)
                single.append(one)
                line += f"   raw x1 {fmt_rate(one)} (ratio {run.rate / one:.3f})"
            print(line, flush=True)
        ledger_rates.append(run.rate)
        raw_rates.append(raw)
        ratios.append(run.rate / raw)
        per_commit.append(run.entries / max(run.commits, 1))
    return AppendResult(
        tasks=tasks,
        entries=count,
        ledger_rate=median(ledger_rates),
        raw_rate=median(raw_rates),
        ratio=median(ratios),
        per_commit=median(per_commit),
        single_row_rate=median(single) if single else None,
    )


# -- building big ledgers ----------------------------------------------------------------


async def grow(ledger: Ledger, target: int, in_flight: int, rng: random.Random) -> float:
    """Append decisions with ``in_flight`` concurrent tasks until ``target`` entries; rate."""
    have = await ledger.size()
    todo = target - have
    if todo <= 0:
        return 0.0
    pool = [decision_spec(rng) for _ in range(min(todo, 8192))]
    next_index = 0
    done = 0
    step = max(todo // 10, 1)
    next_report = step
    start = time.perf_counter()

    async def appender() -> None:
        nonlocal next_index, done, next_report
        while next_index < todo:
            i = next_index
            next_index += 1
            await append_spec(ledger, pool[i % len(pool)])
            done += 1
            if done >= next_report:
                next_report += step
                elapsed = time.perf_counter() - start
                print(
                    f"    {have + done:>10,} / {target:,} entries  "
                    f"({done / elapsed:,.0f} appends/s, {elapsed:.1f} s)",
                    flush=True,
                )

    await asyncio.gather(*(appender() for _ in range(min(in_flight, todo))))
    elapsed = time.perf_counter() - start
    if await ledger.size() != target:
        raise SystemExit(f"ledger holds {await ledger.size()} entries, expected {target}")
    return todo / elapsed


# -- 2. verify ---------------------------------------------------------------------------


def chain_memory(entries: Sequence[bytes]) -> float:
    """Seconds to chain ``h = sha256(h + entry)`` over bytes already in memory."""
    sha256 = hashlib.sha256
    h = bytes(32)
    start = time.perf_counter()
    for raw in entries:
        h = sha256(h + raw).digest()
    return time.perf_counter() - start


def chain_select(db: Path, expected: int) -> float:
    """Seconds to ``SELECT entry ... ORDER BY seq`` from ``db`` and chain the hashes."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        sha256 = hashlib.sha256
        h = bytes(32)
        n = 0
        start = time.perf_counter()
        for (raw,) in conn.execute("SELECT entry FROM entries ORDER BY seq"):
            h = sha256(h + raw).digest()
            n += 1
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    if n != expected:
        raise SystemExit(f"baseline read {n} entries, expected {expected}")
    return elapsed


@dataclass(frozen=True, slots=True)
class VerifyResult:
    entries: int
    verify_rate: float
    memory_rate: float
    select_rate: float
    ratio_memory: float
    ratio_select: float


async def bench_verify(ledger: Ledger, repeats: int) -> VerifyResult:
    size = await ledger.size()
    db = ledger.data_dir / DB_NAME
    entries = read_entries(db)
    chain_select(db, size)  # warm the page cache for everyone
    verify_rates: list[float] = []
    memory_rates: list[float] = []
    select_rates: list[float] = []
    for rep in range(repeats):
        gc.collect()
        mem = size / chain_memory(entries)
        gc.collect()
        sel = size / chain_select(db, size)
        gc.collect()
        start = time.perf_counter()
        report = await ledger.verify()
        elapsed = time.perf_counter() - start
        if not report.valid or report.entries_checked != size:
            raise SystemExit(f"verify failed on an untouched ledger: {report}")
        ver = size / elapsed
        print(
            f"  [rep {rep + 1}/{repeats}] verify {fmt_rate(ver):>11}   "
            f"chain (memory) {fmt_rate(mem):>11} ratio {ver / mem:.3f}   "
            f"chain (SELECT) {fmt_rate(sel):>11} ratio {ver / sel:.3f}   "
            f"({report.checkpoints_checked} checkpoints)",
            flush=True,
        )
        verify_rates.append(ver)
        memory_rates.append(mem)
        select_rates.append(sel)
    return VerifyResult(
        entries=size,
        verify_rate=median(verify_rates),
        memory_rate=median(memory_rates),
        select_rate=median(select_rates),
        ratio_memory=median([v / m for v, m in zip(verify_rates, memory_rates, strict=True)]),
        ratio_select=median([v / s for v, s in zip(verify_rates, select_rates, strict=True)]),
    )


# -- 3. proofs ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Latency:
    median_ms: float
    p99_ms: float
    max_ms: float
    mean_hashes: float


def summarise(samples_ns: Sequence[int], lengths: Sequence[int]) -> Latency:
    ms = [s / 1e6 for s in samples_ns]
    return Latency(median(ms), percentile(ms, 99), max(ms), statistics.fmean(lengths))


async def time_proofs(
    make: Callable[[int], Awaitable[list[bytes]]], count: int
) -> tuple[Latency, list[list[bytes]]]:
    """Time ``await make(i)`` for ``i`` in ``range(count)``; return latency and the proofs."""
    samples: list[int] = []
    proofs: list[list[bytes]] = []
    clock = time.perf_counter_ns
    for i in range(count):
        start = clock()
        proof = await make(i)
        samples.append(clock() - start)
        proofs.append(proof)
    return summarise(samples, [len(p) for p in proofs]), proofs


@dataclass(frozen=True, slots=True)
class ProofResult:
    size: int
    samples: int
    inclusion: Latency
    inclusion_historic: Latency
    consistency: Latency
    direct_store: Latency
    checked: int


def check(ok: bool, what: str) -> None:
    if not ok:
        raise SystemExit(f"proof check failed: {what}")


async def canonical(ledger: Ledger, seq: int) -> bytes:
    raw = await ledger.get_canonical(seq)
    if raw is None:
        raise SystemExit(f"entry {seq} is missing")
    return raw


async def bench_proofs(ledger: Ledger, samples: int, rng: random.Random) -> ProofResult:
    size = await ledger.size()
    seqs = [rng.randint(1, size) for _ in range(samples)]
    historic = [(s, rng.randint(s, size)) for s in seqs]
    olds = [rng.randint(1, size - 1) for _ in range(samples)]
    warm = [rng.randint(1, size) for _ in range(min(200, samples))]
    for s in warm:  # warm the reader thread, its connection and its page cache
        await ledger.prove_inclusion(s, size)

    inclusion, inc_proofs = await time_proofs(
        lambda i: ledger.prove_inclusion(seqs[i], size), samples
    )
    inclusion_historic, hist_proofs = await time_proofs(
        lambda i: ledger.prove_inclusion(historic[i][0], historic[i][1]), samples
    )
    consistency, cons_proofs = await time_proofs(
        lambda i: ledger.prove_consistency(olds[i], size), samples
    )

    # The same store lookups without the event loop -> reader thread hop, for comparison.
    store, _ = SQLiteStore.open(
        ledger.data_dir / DB_NAME, read_only=True, create=False, synchronous="FULL", origin=None
    )
    try:
        direct: list[int] = []
        lengths: list[int] = []
        for s in seqs:
            start = time.perf_counter_ns()
            ranges = merkle.inclusion_ranges(s - 1, size)
            per_range = [merkle.perfect_parts(a, b) for a, b in ranges]
            found = store.part_hashes({p for parts in per_range for p in parts})
            path = [merkle.fold_parts([found[p] for p in parts]) for parts in per_range]
            direct.append(time.perf_counter_ns() - start)
            lengths.append(len(path))
    finally:
        store.close()
    direct_store = summarise(direct, lengths)

    # Check a sample of every kind against roots computed by the ledger.
    root = await ledger.root()
    check(root == await ledger.root(size), "root() and root(size) differ")
    checked = 0
    for i in rng.sample(range(samples), k=min(25, samples)):
        leaf = merkle.leaf_hash(await canonical(ledger, seqs[i]))
        check(
            merkle.verify_inclusion(leaf, seqs[i] - 1, size, inc_proofs[i], root),
            f"inclusion of {seqs[i]} in {size}",
        )
        s, n = historic[i]
        hist_raw = await canonical(ledger, s)
        check(
            merkle.verify_inclusion(
                merkle.leaf_hash(hist_raw), s - 1, n, hist_proofs[i], await ledger.root(n)
            ),
            f"inclusion of {s} in {n}",
        )
        check(
            merkle.verify_consistency(
                olds[i], size, await ledger.root(olds[i]), root, cons_proofs[i]
            ),
            f"consistency {olds[i]} -> {size}",
        )
        checked += 3
    # ... and that a wrong proof is refused.
    bad = list(inc_proofs[0])
    bad[0] = bytes(32)
    first = await canonical(ledger, seqs[0])
    check(
        not merkle.verify_inclusion(merkle.leaf_hash(first), seqs[0] - 1, size, bad, root),
        "a corrupted inclusion proof verified",
    )
    return ProofResult(
        size, samples, inclusion, inclusion_historic, consistency, direct_store, checked
    )


def print_latency(name: str, lat: Latency) -> None:
    print(
        f"  {name:<44} median {lat.median_ms:7.3f} ms   p99 {lat.p99_ms:7.3f} ms   "
        f"max {lat.max_ms:7.3f} ms   ({lat.mean_hashes:.1f} hashes/proof)",
        flush=True,
    )


# -- summary ---------------------------------------------------------------------------


# -- main ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    append_counts: dict[int, int]
    verify_entries: int
    proof_entries: int
    proof_samples: int
    build_in_flight: int
    repeats: int


def parse_args(argv: Sequence[str] | None) -> tuple[Plan, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of seconds")
    p.add_argument("--entries-1m", type=int, default=None, help="proof-latency ledger size")
    p.add_argument("--verify-entries", type=int, default=None, help="verify ledger size")
    p.add_argument("--samples", type=int, default=None, help="proofs timed per kind")
    p.add_argument("--repeats", type=int, default=None, help="paired repeats per measurement")
    p.add_argument("--in-flight", type=int, default=1024, help="concurrent appends when building")
    p.add_argument("--seed", type=int, default=20260201)
    p.add_argument("--tmpdir", type=Path, default=None, help="where data dirs go (a real disk)")
    p.add_argument(
        "--only",
        choices=("append", "verify", "proof"),
        action="append",
        help="run only these sections (repeatable)",
    )
    a = p.parse_args(argv)
    if a.quick:
        plan = Plan({1: 300, 16: 3_000, 64: 6_400}, 20_000, 50_000, 500, a.in_flight, 1)
    else:
        plan = Plan({1: 2_000, 16: 20_000, 64: 51_200}, 1_000_000, 1_000_000, 2_000, a.in_flight, 3)
    plan = Plan(
        append_counts=plan.append_counts,
        verify_entries=a.verify_entries or plan.verify_entries,
        proof_entries=a.entries_1m or plan.proof_entries,
        proof_samples=a.samples or plan.proof_samples,
        build_in_flight=plan.build_in_flight,
        repeats=a.repeats or plan.repeats,
    )
    if plan.proof_entries < 2 or plan.verify_entries < 1 or plan.proof_samples < 1:
        p.error("sizes must be positive (the proof ledger needs at least 2 entries)")
    return plan, a


async def run(plan: Plan, args: argparse.Namespace) -> list[Row]:
    rng = random.Random(args.seed)
    sections = set(args.only or ("append", "verify", "proof"))
    rows: list[Row] = []
    base_dir = Path(tempfile.mkdtemp(prefix="grace-bench-", dir=args.tmpdir))
    print(f"data dirs under {base_dir} (synchronous=FULL, WAL)\n", flush=True)
    try:
        if "append" in sections:
            print(
                f"1. durable appends/s via Ledger.append vs raw sqlite3 inserts of the same rows "
                f"({RAW_BATCH} per commit, same entries DDL and indexes)",
                flush=True,
            )
            for tasks, count in plan.append_counts.items():
                r = await bench_appends(base_dir, tasks, count, plan.repeats, rng)
                print(
                    f"  => {tasks:>2} tasks: {fmt_rate(r.ledger_rate)} vs {fmt_rate(r.raw_rate)} "
                    f"raw: {r.ratio:.3f}x  ({r.per_commit:.1f} entries per commit)\n",
                    flush=True,
                )
                has_goal = tasks == 64
                rows.append(
                    Row(
                        f"append, {tasks} task{'s' if tasks > 1 else ''} ({count:,})",
                        f">= {APPEND_GOAL}x raw" if has_goal else "-",
                        fmt_rate(r.ledger_rate),
                        f"{fmt_rate(r.raw_rate)} (x{RAW_BATCH})",
                        f"{r.ratio:.3f}x",
                        verdict(r.ratio >= APPEND_GOAL if has_goal else None),
                    )
                )
                if r.single_row_rate is not None:
                    rows.append(
                        Row(
                            "  same, vs raw 1 row per commit",
                            "-",
                            fmt_rate(r.ledger_rate),
                            f"{fmt_rate(r.single_row_rate)} (x1)",
                            f"{r.ledger_rate / r.single_row_rate:.3f}x",
                            "info",
                        )
                    )

        need_ledger = sections & {"verify", "proof"}
        if need_ledger:
            data_dir = base_dir / "big"
            ledger = await Ledger.open(data_dir, config=config())
            try:
                if "verify" in sections:
                    print(
                        f"2. verify: building {plan.verify_entries:,} entries "
                        f"({plan.build_in_flight} appends in flight)",
                        flush=True,
                    )
                    rate = await grow(ledger, plan.verify_entries, plan.build_in_flight, rng)
                    print(f"  built at {fmt_rate(rate)}", flush=True)
                    v = await bench_verify(ledger, plan.repeats)
                    print(
                        f"  => verify {fmt_rate(v.verify_rate)}: {v.ratio_memory:.3f}x the "
                        f"in-memory chain, {v.ratio_select:.3f}x SELECT+chain\n",
                        flush=True,
                    )
                    for label, base, ratio in (
                        ("in memory", v.memory_rate, v.ratio_memory),
                        ("SELECT+chain", v.select_rate, v.ratio_select),
                    ):
                        rows.append(
                            Row(
                                f"verify {v.entries:,} vs chain ({label})",
                                f">= {VERIFY_GOAL}x",
                                fmt_rate(v.verify_rate),
                                fmt_rate(base),
                                f"{ratio:.3f}x",
                                verdict(ratio >= VERIFY_GOAL),
                            )
                        )
                if "proof" in sections:
                    if await ledger.size() > plan.proof_entries:
                        await ledger.close()
                        data_dir = base_dir / "proofs"
                        ledger = await Ledger.open(data_dir, config=config())
                    print(
                        f"3. proofs: growing the ledger to {plan.proof_entries:,} entries "
                        f"({plan.build_in_flight} appends in flight)",
                        flush=True,
                    )
                    rate = await grow(ledger, plan.proof_entries, plan.build_in_flight, rng)
                    print(f"  built at {fmt_rate(rate)}", flush=True)
                    pr = await bench_proofs(ledger, plan.proof_samples, rng)
                    n = f"{pr.size:,}"
                    print_latency(f"prove_inclusion(seq, {n})", pr.inclusion)
                    print_latency("prove_inclusion(seq, random size >= seq)", pr.inclusion_historic)
                    print_latency(f"prove_consistency(random old, {n})", pr.consistency)
                    print_latency("  inclusion, store lookup in-thread (no hop)", pr.direct_store)
                    print(
                        f"  {pr.checked} sampled proofs verified against ledger.root(); a "
                        "corrupted proof was refused\n",
                        flush=True,
                    )
                    proof_goal = f"< {PROOF_GOAL_MS} ms"
                    for label, lat in (
                        (f"inclusion @ {n}", pr.inclusion),
                        ("inclusion @ random size", pr.inclusion_historic),
                    ):
                        for stat, value in (("median", lat.median_ms), ("p99", lat.p99_ms)):
                            rows.append(
                                Row(
                                    f"{label}, {stat}",
                                    proof_goal,
                                    f"{value:.3f} ms",
                                    "-",
                                    "-",
                                    verdict(value < PROOF_GOAL_MS),
                                )
                            )
                    for stat, value in (
                        ("median", pr.consistency.median_ms),
                        ("p99", pr.consistency.p99_ms),
                    ):
                        rows.append(
                            Row(
                                f"consistency -> {n}, {stat}",
                                "-",
                                f"{value:.3f} ms",
                                "-",
                                "-",
                                "info",
                            )
                        )
            finally:
                await ledger.close()
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    # The ledger logs every signed checkpoint at info level; keep the output to the figures.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    plan, args = parse_args(argv)
    print(
        f"grace ledger benchmark: {'quick' if args.quick else 'full'} run, python "
        f"{sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, repeats {plan.repeats}",
        flush=True,
    )
    start = time.perf_counter()
    rows = asyncio.run(run(plan, args))
    total = time.perf_counter() - start
    print(
        f"summary: medians of {plan.repeats} paired repeats (ratio = median of the per-repeat "
        f"ratios, so it need not equal measured / baseline); total {total:.1f} s\n"
    )
    print_table(rows)
    missed = sum(r.status == "MISS" for r in rows)
    print(f"\n{missed} goal(s) missed" if missed else "\nall goals met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
