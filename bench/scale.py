"""Scale-out benchmarks: the PostgreSQL ledger with 1, 2 and 3 appending instances.

Run from the repository root (needs the local PostgreSQL; a fresh database per run)::

    .venv/bin/python bench/scale.py            # full run
    .venv/bin/python bench/scale.py --quick    # smoke run, small sizes

Durable appends/s: N processes (N = 1, 2, 3), each a Grace instance opening the same
database with the same key file, append governance decisions (the same generator as
``bench/ledger.py``) from 64 concurrent tasks each; the rate is all entries over the time
from "go" to the last receipt. The baseline, measured in the same run right after each
ledger run, is a bare asyncpg insert of *the very rows the ledger stored* (bytes, hashes,
Merkle nodes, query columns) into a table created ``LIKE ledger_entries INCLUDING ALL``
(same columns and indexes), in batches of the ledger's own mean batch size, one
transaction per batch, ``synchronous_commit`` as configured on the server: first on one
connection (what one sequencer could do at best: the judged ratio, goal >= 0.5x), then
spread over N connections with no ordering at all (for information: what the database
absorbs without a sequencer).

Each run also reports entries per commit and the CPU time per entry of the instances
(their processes) and of their PostgreSQL backends (from /proc), so the printed
explanation of the curve rests on figures from this run, not on guesses.

Decisions/s: N ``grace serve`` subprocesses (N = 1, 2, 3) on different ports share one
PostgreSQL schema (ledger, principals, approvals; ``GRACE_DATABASE_URL``), one NATS
JetStream stream created for the run (``[mesh] transport = "nats"``, a fresh stream name
and subject prefix, deleted afterwards) and one ledger key file (copied into each data
dir). The load principal and its API key are created once in the shared principal store
before the servers start. A closed loop of ``DECIDE_CONNECTIONS`` keep-alive connections,
spread round-robin over the instances, sends ``POST /v1/decide`` (a non-autonomous
``read`` of a new resource each time) for a warm-up and then a measured window; the rate
is the successful decisions in the window over its length. The CPU of the servers and of
their PostgreSQL backends in the window is reported per decision.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import asyncpg
import orjson
import structlog

from _report import Row, fmt_rate, print_table, verdict
from grace.governance.model import PrincipalKind
from grace.governance.principals import PrincipalRegistry
from grace.ledger import Ledger, LedgerConfig
from grace.types import SystemClock
from ledger import AppendSpec, decision_spec
from server import (
    CLIENT_ID,
    DECIDE_ACTION,
    SUBJECT_ID,
    BenchBroken,
    Connection,
    Server,
    cpu_seconds,
    free_port,
    stop_server,
    wait_ready,
)

TASKS: Final = 64
GOAL: Final = 0.5
INSTANCES: Final = (1, 2, 3)
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")

_RAW_INSERT: Final = """
INSERT INTO raw_entries (seq, entry, entry_hash, nodes, subsystem, actor, action, ts)
SELECT * FROM unnest(
    $1::bigint[], $2::bytea[], $3::bytea[], $4::bytea[], $5::bytea[], $6::bytea[], $7::bytea[],
    $8::text[]
)
"""


def config() -> LedgerConfig:
    """What a deployment would run with (checkpoints every 1000 entries)."""
    return LedgerConfig(checkpoint_interval_s=0)


# -- the instance (a child process) --------------------------------------------------------


async def child(dsn: str, key_file: str, count: int, seed: int) -> None:
    """One instance: open the ledger, wait for "go", append ``count`` decisions, report."""
    rng = random.Random(seed)
    specs = [decision_spec(rng) for _ in range(count)]
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with await Ledger.open_postgres(dsn, key_file=key_file, config=config()) as ledger:
        print("ready", flush=True)
        await reader.readline()
        cpu = time.process_time()
        start = time.perf_counter()

        async def appender(share: Sequence[AppendSpec]) -> None:
            for spec in share:
                await ledger.append(
                    subsystem="governance",
                    actor=spec.actor,
                    action=spec.action,
                    resource=spec.resource,
                    result=spec.result,
                    payload=spec.payload,
                )

        await asyncio.gather(*(appender(specs[k::TASKS]) for k in range(TASKS)))
        print(f"done {time.perf_counter() - start:.6f} {time.process_time() - cpu:.6f}", flush=True)
        await reader.readline()  # stay connected until the parent read the backends' CPU


# -- the parent ----------------------------------------------------------------------------


async def admin_connect(dsn: str) -> Any:
    """A connection to the admin DSN, trying the OS user and then ``postgres``."""
    try:
        return await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError):
        return await asyncpg.connect(dsn, user="postgres")


def database_dsn(admin_dsn: str, user: str, name: str) -> str:
    """The admin DSN's server, as ``user``, database ``name``."""
    parts = urlsplit(admin_dsn)
    host = f"{parts.hostname or '127.0.0.1'}:{parts.port or 5432}"
    return f"postgresql://{user}@{host}/{name}"


def pipes(proc: asyncio.subprocess.Process) -> tuple[asyncio.StreamWriter, asyncio.StreamReader]:
    """The instance's stdin and stdout (both are pipes)."""
    if proc.stdin is None or proc.stdout is None:  # pragma: no cover - created with PIPE
        raise SystemExit("instance started without pipes")
    return proc.stdin, proc.stdout


def backend_cpu(pids: Sequence[int]) -> float:
    """CPU seconds (user + system) the given server processes used so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / CLK_TCK


@dataclass(frozen=True, slots=True)
class LedgerRun:
    instances: int
    entries: int
    rate: float
    per_commit: float
    client_us: float
    server_us: float


async def ledger_run(dsn: str, key_file: Path, instances: int, count: int, seed: int) -> LedgerRun:
    """N instances appending ``count`` entries in all; time from "go" to the last receipt."""
    per = count // instances
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--child",
            dsn,
            str(key_file),
            str(per),
            str(seed + i),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for i in range(instances)
    ]
    try:
        for p in procs:
            line = await asyncio.wait_for(pipes(p)[1].readline(), 60)
            if line.strip() != b"ready":
                raise SystemExit(f"instance did not start: {line!r}")
        conn = await asyncpg.connect(dsn)
        try:
            pids = [
                r[0]
                for r in await conn.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name LIKE 'grace-ledger-%'"
                )
            ]
            server_before = backend_cpu(pids)
            start = time.perf_counter()
            for p in procs:
                pipes(p)[0].write(b"go\n")
            client = 0.0
            for p in procs:
                done = (await asyncio.wait_for(pipes(p)[1].readline(), 600)).split()
                if not done or done[0] != b"done":
                    raise SystemExit(f"instance failed: {done!r}")
                client += float(done[2])
            elapsed = time.perf_counter() - start
            server = backend_cpu(pids) - server_before
            size = await conn.fetchval("SELECT COALESCE(MAX(seq), 0) FROM ledger_entries")
            batches = await conn.fetchval("SELECT count(*) FROM ledger_batches")
        finally:
            await conn.close()
        for p in procs:
            pipes(p)[0].write(b"exit\n")
        for p in procs:
            if await asyncio.wait_for(p.wait(), 60) != 0:
                raise SystemExit("an instance exited with an error")
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
    total = per * instances
    if size != total:
        raise SystemExit(f"the ledger holds {size} entries, {total} were appended")
    return LedgerRun(
        instances=instances,
        entries=total,
        rate=total / elapsed,
        per_commit=total / max(batches, 1),
        client_us=1e6 * client / total,
        server_us=1e6 * server / total,
    )


async def raw_inserts(dsn: str, rows: list[Any], batch: int, connections: int) -> float:
    """Rows/s inserting ``rows`` into a fresh ``raw_entries`` table, one transaction per batch."""
    setup = await asyncpg.connect(dsn)
    try:
        await setup.execute(
            "DROP TABLE IF EXISTS raw_entries; "
            "CREATE TABLE raw_entries (LIKE ledger_entries INCLUDING ALL)"
        )
    finally:
        await setup.close()
    chunks = [rows[i : i + batch] for i in range(0, len(rows), batch)]
    columns = [[list(col) for col in zip(*chunk, strict=True)] for chunk in chunks]
    conns = [await asyncpg.connect(dsn) for _ in range(connections)]
    try:
        for conn in conns:  # prepare the statement before the clock starts
            await conn.prepare(_RAW_INSERT)

        async def worker(k: int) -> None:
            conn = conns[k]
            for cols in columns[k::connections]:
                async with conn.transaction():
                    await conn.execute(_RAW_INSERT, *cols)

        start = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(connections)))
        elapsed = time.perf_counter() - start
    finally:
        for conn in conns:
            await conn.close()
    return len(rows) / elapsed


@dataclass(frozen=True, slots=True)
class ScaleResult:
    run: LedgerRun
    raw_one: float
    raw_many: float
    spread: tuple[float, float] = (0.0, 0.0)
    """The lowest and highest ratio over the repeats (this machine is shared and noisy)."""

    @property
    def ratio(self) -> float:
        return self.run.rate / self.raw_one


async def bench_instances(
    database: str, base: Path, instances: int, count: int, repeats: int, seed: int
) -> ScaleResult:
    results: list[ScaleResult] = []
    for rep in range(repeats):
        schema = f"bench_{instances}_{rep}"
        admin = await asyncpg.connect(database)
        try:
            await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
        finally:
            await admin.close()
        dsn = f"{database}?search_path={schema}"
        key_file = base / f"{schema}.key"
        await (await Ledger.open_postgres(dsn, key_file=key_file, config=config())).close()
        run = await ledger_run(dsn, key_file, instances, count, seed + 1000 * rep)
        conn = await asyncpg.connect(dsn)
        try:
            rows = list(
                await conn.fetch(
                    "SELECT seq, entry, entry_hash, nodes, subsystem, actor, action, ts "
                    "FROM ledger_entries ORDER BY seq"
                )
            )
        finally:
            await conn.close()
        batch = max(1, round(run.per_commit))
        raw_one = await raw_inserts(dsn, rows, batch, 1)
        raw_many = await raw_inserts(dsn, rows, batch, instances)
        result = ScaleResult(run, raw_one, raw_many)
        print(
            f"  [{instances} instance{'s' if instances > 1 else ' '}, rep {rep + 1}/{repeats}] "
            f"ledger {fmt_rate(run.rate):>10} ({run.per_commit:6.1f} entries/commit, "
            f"instances {run.client_us:5.1f} µs + server {run.server_us:5.1f} µs CPU/entry)   "
            f"bare x{batch} {fmt_rate(raw_one):>10}   ratio {result.ratio:.3f}   "
            f"bare on {instances} conn {fmt_rate(raw_many)}",
            flush=True,
        )
        results.append(result)
        admin = await asyncpg.connect(database)
        try:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        finally:
            await admin.close()
    results.sort(key=lambda r: r.ratio)
    middle = results[len(results) // 2]  # the repeat with the median ratio
    return dataclasses.replace(middle, spread=(results[0].ratio, results[-1].ratio))


def explain(results: Sequence[ScaleResult]) -> list[str]:
    """What limits the curve, from this run's figures."""
    cores = os.cpu_count() or 1
    lines = [f"What limits the curve on this machine ({cores} cores):"]
    busiest = 0.0
    for r in results:
        run = r.run
        cpu = run.client_us + run.server_us
        busy = run.rate * cpu / 1e6
        busiest = max(busiest, busy)
        lines.append(
            f"  {run.instances} instance(s): a batch of {run.per_commit:.0f} every "
            f"{1000 * run.per_commit / run.rate:.2f} ms (a bare insert+commit of that batch: "
            f"{1000 * run.per_commit / r.raw_one:.2f} ms); CPU {cpu:.1f} µs/entry "
            f"({run.client_us:.1f} instances + {run.server_us:.1f} PostgreSQL) = {busy:.2f} "
            f"of {cores} cores busy"
        )
    bound = (
        "CPU: the instances and the database share the same cores, so more instances add "
        "CPU demand, not CPU."
        if busiest > 0.8 * cores
        else "latency under the lock, not CPU: the cores are not saturated."
    )
    lines += [
        "  - One sequencer serialises commits: a batch holds the advisory lock through the",
        "    head read, sequencing (hashing the batch in Python), INSERT and COMMIT (a WAL",
        "    flush). Throughput = batch size / lock-hold time. An instance's batch is at most",
        f"    its {TASKS} waiting appenders, so more instances add no parallel commits, only",
        "    lock hand-offs: the next backend wakes, its Python process must be scheduled",
        "    (2N+1 busy processes on these cores), and the tree edge it reloads comes back",
        "    in the same round trip as the lock.",
        f"  - Here the curve is bound by {bound}",
        f"  - Within one instance the cycle is serial too: all {TASKS} appenders wait for the",
        "    batch in flight, so their Python work (encode, sequence, resolve the receipts)",
        "    and the database's (INSERT, COMMIT) alternate instead of overlapping; a second",
        "    instance fills that gap, which is why two beat one.",
        "  - The bare insert pays the same indexes and WAL flushes but no hashing, canonical",
        "    JSON, signing, task wake-ups or lock; spread over several connections it also",
        "    skips ordering, which a ledger cannot. More appenders per instance (bigger",
        "    batches) or faster commits (disk) move the curve; instances beyond the one that",
        "    fills the other's gap add hand-offs, not commits.",
    ]
    return lines


async def run(args: argparse.Namespace) -> list[Row]:
    count = args.entries or (3_000 if args.quick else 24_000)
    repeats = args.repeats or (1 if args.quick else 5)
    name = f"grace_bench_{secrets.token_hex(4)}"
    admin = await admin_connect(args.admin_dsn)
    user = await admin.fetchval("SELECT current_user")
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    database = database_dsn(args.admin_dsn, user, name)
    rows: list[Row] = []
    results: list[ScaleResult] = []
    base = Path(tempfile.mkdtemp(prefix="grace-scale-"))
    try:
        if not args.skip_appends:
            print(
                f"durable appends/s on PostgreSQL (database {name}), {TASKS} appenders per "
                f"instance, {count:,} entries per run, median of {repeats} by ratio\n",
                flush=True,
            )
            for instances in INSTANCES:
                r = await bench_instances(database, base, instances, count, repeats, args.seed)
                results.append(r)
                rows.append(
                    Row(
                        f"appends, {instances} instance{'s' if instances > 1 else ''} x {TASKS}",
                        f">= {GOAL}x bare",
                        fmt_rate(r.run.rate),
                        f"{fmt_rate(r.raw_one)} (x{round(r.run.per_commit)}, 1 conn)",
                        f"{r.ratio:.3f}x ({r.spread[0]:.2f}-{r.spread[1]:.2f})",
                        verdict(r.ratio >= GOAL),
                    )
                )
                rows.append(
                    Row(
                        f"  bare insert on {instances} connection{'s' if instances > 1 else ''}",
                        "-",
                        fmt_rate(r.run.rate),
                        fmt_rate(r.raw_many),
                        f"{r.run.rate / r.raw_many:.3f}x",
                        "info",
                    )
                )
            print()
            for line in explain(results):
                print(line)
            print()
        if not args.skip_decisions:
            warmup, duration = (1.0, 4.0) if args.quick else (3.0, 15.0)
            print(
                f"decisions/s through N grace serve instances (PostgreSQL + NATS), "
                f"{DECIDE_CONNECTIONS} connections, {warmup:g} s warm-up, {duration:g} s "
                "measured\n",
                flush=True,
            )
            runs: list[DecideRun] = []
            for instances in INSTANCES:
                d = await decide_run(database, base, instances, warmup, duration)
                runs.append(d)
                print(
                    f"  [{instances} instance{'s' if instances > 1 else ' '}] "
                    f"{fmt_rate(d.rate):>10} ({d.decisions:,} ok, {d.errors} errors; ledger "
                    f"{d.ledger_size:,} entries; CPU/decision servers {d.server_us:.0f} µs + "
                    f"PostgreSQL {d.database_us:.0f} µs)",
                    flush=True,
                )
                rows.append(
                    Row(
                        f"decisions, {instances} grace serve",
                        "-",
                        fmt_rate(d.rate),
                        fmt_rate(runs[0].rate),
                        f"{d.rate / runs[0].rate:.2f}x of 1",
                        "info" if d.errors == 0 else "FAIL",
                    )
                )
            print()
            for line in explain_decisions(runs):
                print(line)
            print()
    finally:
        admin = await admin_connect(args.admin_dsn)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()
        await asyncio.to_thread(shutil.rmtree, base, True)
    return rows


# -- decisions/s through N ``grace serve`` instances ------------------------------------------

DECIDE_CONNECTIONS: Final = 24
"""Keep-alive client connections in all, spread round-robin over the instances."""
NATS_URL: Final = "nats://127.0.0.1:4222"


@dataclass(frozen=True, slots=True)
class DecideRun:
    instances: int
    decisions: int
    errors: int
    seconds: float
    server_us: float
    """CPU of the ``grace serve`` processes per decision (µs)."""
    database_us: float
    """CPU of their PostgreSQL backends per decision (µs)."""
    load_us: float
    """CPU of this load loop per decision (µs)."""
    ledger_size: int

    @property
    def rate(self) -> float:
        return self.decisions / self.seconds


def register_pg(dsn: str) -> str:
    """The load principal, its key and the decisions' subject, in the shared store."""
    registry = PrincipalRegistry.open_postgres(dsn, clock=SystemClock())
    try:
        registry.add(CLIENT_ID, kind=PrincipalKind.SERVICE, roles=["pep", "metrics_writer"])
        registry.add(SUBJECT_ID, kind=PrincipalKind.AGENT, autonomy_tier=0)
        return registry.create_key(CLIENT_ID)
    finally:
        registry.close()


def instance_env(dsn: str, stream: str, prefix: str) -> dict[str, str]:
    """This environment without the caller's ``GRACE_*``, plus the shared deployment."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("GRACE_")}
    env.update(
        {
            "GRACE_DATABASE_URL": dsn,
            "GRACE_MESH__TRANSPORT": "nats",
            "GRACE_MESH__NATS_STREAM": stream,
            "GRACE_MESH__NATS_SUBJECT_PREFIX": prefix,
            "GRACE_LOG_LEVEL": "warning",
        }
    )
    return env


def start_instance(base: Path, data_dir: Path, env: dict[str, str]) -> Server:
    """``python -m grace serve`` on a free port (the real CLI), logging to a file."""
    port = free_port()
    log = base / f"{data_dir.name}.log"
    cmd = [sys.executable, "-m", "grace", "serve"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "-d", str(data_dir)]
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            cmd, stdout=out, stderr=subprocess.STDOUT, cwd=base, env=env
        )
    return Server(proc, "127.0.0.1", port, data_dir, log)


async def decide_loop(
    servers: Sequence[Server], key: str, warmup: float, duration: float
) -> tuple[int, int, float, float, float]:
    """(decisions, errors, seconds, server CPU s, load loop CPU s) of the measured window."""
    conns = [
        await Connection.open(servers[k % len(servers)].host, servers[k % len(servers)].port, key)
        for k in range(DECIDE_CONNECTIONS)
    ]
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from = start + warmup
    stop_at = measure_from + duration
    counts = [0, 0]  # ok, errors (measured window only)

    async def worker(k: int) -> None:
        conn = conns[k]
        n = 0
        while (now := loop.time()) < stop_at:
            n += 1
            body = orjson.dumps(
                {
                    "principal_id": SUBJECT_ID,
                    "action": DECIDE_ACTION,
                    "resource": f"doc-{k}-{n}",
                    "context": {"reason": "bench: routine read"},
                    "is_autonomous": False,
                }
            )
            try:
                status, payload = await conn.request("POST", "/v1/decide", body)
                good = 200 <= status < 300 and "decision_id" in orjson.loads(payload)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                good = False
                server = servers[k % len(servers)]
                await conn.close()
                conns[k] = conn = await Connection.open(server.host, server.port, key)
            if now >= measure_from:
                counts[0 if good else 1] += 1

    cpu: dict[str, tuple[float, float]] = {}

    async def cpu_at(label: str, when: float) -> None:
        await asyncio.sleep(max(0.0, when - loop.time()))
        servers_cpu = sum(cpu_seconds(s.proc.pid) or 0.0 for s in servers)
        cpu[label] = (servers_cpu, time.process_time())

    try:
        await asyncio.gather(
            cpu_at("start", measure_from),
            cpu_at("end", stop_at),
            *(worker(k) for k in range(len(conns))),
        )
    finally:
        for conn in conns:
            await conn.close()
    (s0, l0), (s1, l1) = cpu["start"], cpu["end"]
    return counts[0], counts[1], duration, s1 - s0, l1 - l0


async def delete_stream(stream: str) -> None:
    """Remove the run's stream from the NATS server (best effort)."""
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


async def decide_run(
    database: str, base: Path, instances: int, warmup: float, duration: float
) -> DecideRun:
    """N ``grace serve`` instances on one fresh schema and one fresh stream, under load."""
    schema = f"decide_{instances}"
    admin = await asyncpg.connect(database)
    try:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
    finally:
        await admin.close()
    dsn = f"{database}?search_path={schema}"
    root = base / schema
    key_file = root / "ledger.key"
    # The ledger (and its key) first, so every instance opens the same one.
    await (await Ledger.open_postgres(dsn, key_file=key_file, config=config())).close()
    key = await asyncio.to_thread(register_pg, dsn)
    token = secrets.token_hex(4)
    stream, prefix = f"GRACE_BENCH_{token}", f"gbench{token}"
    env = instance_env(dsn, stream, prefix)
    servers: list[Server] = []
    try:
        for i in range(instances):
            data_dir = root / f"instance-{i}"
            data_dir.mkdir(mode=0o700, parents=True)
            shutil.copy2(key_file, data_dir / "ledger.key")
            servers.append(start_instance(root, data_dir, env))
            await wait_ready(servers[-1])  # one at a time: the first creates the stream
        conn = await asyncpg.connect(dsn)
        try:
            pids = [
                r[0]
                for r in await conn.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                )
            ]
            db_before = backend_cpu(pids)
            ok, errors, seconds, server_cpu, load_cpu = await decide_loop(
                servers, key, warmup, duration
            )
            db_cpu = backend_cpu(pids) - db_before
            size = int(await conn.fetchval("SELECT COALESCE(MAX(seq), 0) FROM ledger_entries"))
        finally:
            await conn.close()
    finally:
        for srv in servers:
            await stop_server(srv)
        await delete_stream(stream)
    if ok == 0:
        raise BenchBroken(f"no decision succeeded; last log:\n{servers[0].log_tail()}")
    return DecideRun(
        instances=instances,
        decisions=ok,
        errors=errors,
        seconds=seconds,
        server_us=1e6 * server_cpu / ok,
        database_us=1e6 * db_cpu / ok,
        load_us=1e6 * load_cpu / ok,
        ledger_size=size,
    )


def explain_decisions(runs: Sequence[DecideRun]) -> list[str]:
    """What limits the decisions/s curve, from this run's figures."""
    cores = os.cpu_count() or 1
    lines = [f"What limits decisions/s on this machine ({cores} cores):"]
    for r in runs:
        busy = r.rate * (r.server_us + r.database_us + r.load_us) / 1e6
        lines.append(
            f"  {r.instances} instance(s): {fmt_rate(r.rate)}, CPU per decision "
            f"{r.server_us:.0f} µs servers + {r.database_us:.0f} µs PostgreSQL + "
            f"{r.load_us:.0f} µs load loop = {busy:.2f} of {cores} cores busy"
        )
    lines += [
        "  - A decision is CPU work in the instance (HTTP, authentication, Cedar, canonical",
        "    JSON, hashing, the gate's events) far more than a ledger append: the appends of",
        "    all instances are batched by the one sequencer and cost a few µs each.",
        "  - With 2 cores, the servers, PostgreSQL, nats-server and this load loop share the",
        "    same CPUs (the rest of the cores is nats-server, other processes, and the",
        "    machine's other users): once they are busy, another instance adds no CPU, only",
        "    processes competing for it. Its CPU per decision rises with N (less batching",
        "    per instance, more context switches, more sequencer-lock hand-offs), so the",
        "    curve is flat at best and falls when the machine is busier. (Not counted above:",
        "    nats-server, the kernel's network stack, and the machine's other users.) On a",
        "    machine with a core per instance, the server CPU per decision (about 1-1.5 ms",
        "    here) sets the slope: roughly 700-1,000 decisions/s per added core.",
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(30),  # warnings and up
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    if argv[:1] == ["--child"]:
        dsn, key_file, count, seed = argv[1:5]
        asyncio.run(child(dsn, key_file, int(count), int(seed)))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of seconds")
    p.add_argument("--entries", type=int, default=None, help="entries per run (all instances)")
    p.add_argument("--repeats", type=int, default=None, help="runs per instance count")
    p.add_argument("--seed", type=int, default=20261124)
    p.add_argument("--skip-decisions", action="store_true", help="only the ledger appends section")
    p.add_argument("--skip-appends", action="store_true", help="only the decisions/s section")
    p.add_argument(
        "--admin-dsn",
        default="postgresql://127.0.0.1:5432/test",
        help="where to create (and afterwards drop) the bench database",
    )
    args = p.parse_args(argv)
    rows = asyncio.run(run(args))
    print_table(rows)
    spread = [r for r in rows if r.status != "info"]
    print(f"\n{sum(r.status == 'PASS' for r in spread)}/{len(spread)} goals met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
