"""Server fault-and-load benchmark: ``grace serve`` under a mixed load for a fixed time.

Run from the repository root::

    .venv/bin/python bench/server.py                 # full run: warm-up, then 60 s measured
    .venv/bin/python bench/server.py --quick         # smoke run: 3 s warm-up, 10 s measured
    .venv/bin/python bench/server.py --duration 600  # a longer soak

Method:

1. A fresh data dir gets the load loop's principal (``bench-load``: a service with the roles
   ``pep`` and ``metrics_writer``) and its API key, and the subject of the decisions
   (``bench-agent``, an agent at autonomy tier 0), written to ``principals.db`` before the
   server starts. Then ``python -m grace serve`` runs as a subprocess (the real CLI: the
   Guardian boot, default settings, ``GRACE_*`` variables removed from its environment, its
   output to a log file) until ``/ready`` answers 200.
2. A closed loop from this process: ``--connections`` keep-alive HTTP/1.1 connections
   (raw asyncio streams, as in ``bench/governance.py``: cheap, so the server is what runs
   out first), each sending its next request as soon as the last one is answered. The mix,
   by request count: 50% ``POST /v1/decide`` (alternately a non-autonomous ``read`` with a
   reason, which the constitution approves, and an autonomous one without a reason, which
   it rejects: a denial is still a 200; every one for a new resource, as a PEP guarding
   many objects sends), 25% ``POST /v1/events`` (``task.created``, which any principal may
   publish) and 25% ``POST /v1/metrics`` (batches of ``METRIC_BATCH`` samples over a few
   steady series). Every request passes the governance middleware, so every one is at
   least one durable ledger entry. The warm-up lasts ``--warmup`` seconds (10) and at least
   ``--warm-decides`` decide calls (``WARM_DECIDES``): new resources fill the bounded
   per-request caches (the constitution's results, the gate's findings), and RSS grows
   until they are full (~25 MiB, for ~20 s at this machine's rate) — growth by design, not
   a leak, so it belongs to the warm-up. Then ``--duration`` seconds are measured; a
   request belongs to the phase in which it was sent.
3. Per operation and overall: requests/s, p50/p99/max latency (send to last body byte),
   errors: a non-2xx answer, a 2xx whose body is not what the API promises, or a transport
   error (refused, reset, 30 s without an answer); goal 0, warm-up included. Samples the
   monitor refused and anomalies it raised are counted too (info).
4. The server process every second, from ``/proc``: RSS (``VmRSS``) and CPU (user +
   system, all threads). RSS growth = RSS when the load stops / RSS at the end of warm-up
   - 1; goal < 10% (no verdict when the warm-up had fewer than ``WARM_DECIDES`` decides,
   as in ``--quick``). Min and max of the measured window's samples are printed. The
   machine's CPU used by other processes, and its iowait, are printed beside: this machine
   is shared, and a dip in throughput with idle server CPU is often someone else's work.
5. SIGINT stops the server (it must exit within 30 s); then ``grace audit verify`` must
   find the ledger valid, and the ledger must hold at least one governance decision by
   ``bench-agent`` per successful decide call, and at least one middleware decision per
   successful request of each operation (more is possible: a request whose answer was lost
   was still decided).

Errors are counted and reported, never raised; the script exits non-zero only when the
bench itself broke (the server did not start, died, or the load loop failed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
import structlog

from _report import Row, fmt_rate, percentile, print_table, verdict
from grace.governance.model import PrincipalKind
from grace.governance.principals import PrincipalRegistry
from grace.ledger import Ledger
from grace.types import SystemClock

CLIENT_ID: Final = "bench-load"
SUBJECT_ID: Final = "bench-agent"
DECIDE_ACTION: Final = "read"
OPS: Final = ("decide", "emit", "metrics")
PATHS: Final = {"decide": "/v1/decide", "emit": "/v1/events", "metrics": "/v1/metrics"}
MIX: Final = ("decide", "emit", "decide", "metrics")
"""Each connection cycles through this, starting at its own offset: 50/25/25."""
METRIC_BATCH: Final = 20
SERIES: Final = ("bench_latency_ms", "bench_queue_depth", "bench_error_rate", "bench_cpu")
RESOURCES: Final = ("svc-a", "svc-b", "svc-c", "svc-d")
EVENT_TYPE: Final = "task.created"
ERROR_GOAL: Final = 0
RSS_GOAL: Final = 0.10
"""RSS growth after warm-up < this fraction."""
READY_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 30.0
REQUEST_TIMEOUT_S: Final = 30.0
SAMPLE_EVERY_S: Final = 1.0
ERROR_SAMPLES: Final = 5
"""Distinct errors kept per operation, to print."""
MIB: Final = 1024 * 1024
WARM_DECIDES: Final = 10_000
"""Decide calls a full run's warm-up lasts at least: every decide has a new resource, so
each is a new key for the constitution's bounded result cache (8,192) and the gate's
findings cache (4,096); until they are full, RSS grows by design (~25 MiB here)."""
WARM_CAP_S: Final = 300.0


class BenchBroken(Exception):
    """The bench could not run (not a finding about the server)."""


# -- the server process ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def register(data_dir: Path) -> str:
    """The load loop's principal and key, and the decisions' subject, before the server."""
    registry = PrincipalRegistry(data_dir / "principals.db", clock=SystemClock())
    try:
        registry.add(CLIENT_ID, kind=PrincipalKind.SERVICE, roles=["pep", "metrics_writer"])
        registry.add(SUBJECT_ID, kind=PrincipalKind.AGENT, autonomy_tier=0)
        return registry.create_key(CLIENT_ID)
    finally:
        registry.close()


def clean_env() -> dict[str, str]:
    """This environment without ``GRACE_*`` settings: the server runs on its defaults."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("GRACE_")}


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    data_dir: Path
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text("utf-8", "replace")[-chars:]


def start_server(base: Path, data_dir: Path) -> Server:
    port = free_port()
    log = base / "server.log"
    cmd = [sys.executable, "-m", "grace", "serve"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "-d", str(data_dir)]
    with log.open("wb") as out:
        # cwd: no grace.toml of the caller's directory applies.
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            cmd, stdout=out, stderr=subprocess.STDOUT, cwd=base, env=clean_env()
        )
    return Server(proc, "127.0.0.1", port, data_dir, log)


async def wait_ready(srv: Server) -> float:
    """Seconds until ``GET /ready`` answers 200 with ``ready: true``."""
    start = time.perf_counter()
    deadline = start + READY_TIMEOUT_S
    while True:
        if srv.proc.poll() is not None:
            raise BenchBroken(f"the server exited with {srv.proc.returncode}:\n{srv.log_tail()}")
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ValueError):
            conn = await Connection.open(srv.host, srv.port, "")
            try:
                status, body = await conn.request("GET", "/ready", b"")
            finally:
                await conn.close()
            if status == 200 and orjson.loads(body).get("ready") is True:
                return time.perf_counter() - start
        if time.perf_counter() > deadline:
            raise BenchBroken(f"the server was not ready after {READY_TIMEOUT_S:.0f} s")
        await asyncio.sleep(0.1)


async def stop_server(srv: Server) -> tuple[int | None, float]:
    """SIGINT, as Ctrl-C would; returns (exit code or None if killed, seconds to exit)."""
    start = time.perf_counter()
    srv.proc.send_signal(signal.SIGINT)
    try:
        code = await asyncio.to_thread(srv.proc.wait, STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        srv.proc.kill()
        await asyncio.to_thread(srv.proc.wait)
        return None, time.perf_counter() - start
    return code, time.perf_counter() - start


def rss_bytes(pid: int) -> int | None:
    """``VmRSS`` of a process, from ``/proc``; None elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process (all threads), from ``/proc``; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- HTTP ------------------------------------------------------------------------------


class Connection:
    """HTTP/1.1 keep-alive requests over asyncio streams."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.head = head
        """The fixed header lines after the request line."""
        self.closed_by_server = False

    @classmethod
    async def open(cls, host: str, port: int, key: str) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        lines = [f"Host: {host}:{port}", "Content-Type: application/json"]
        if key:
            lines.append(f"Authorization: Bearer {key}")
        return cls(reader, writer, ("\r\n".join(lines) + "\r\n").encode())

    async def request(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        """``(status, body)``; raises OSError/IncompleteReadError/ValueError on bad transport."""
        self.writer.write(
            f"{method} {path} HTTP/1.1\r\n".encode()
            + self.head
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
        )
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = raw.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            payload = await self._chunked()
        elif "content-length" in headers:
            payload = await self.reader.readexactly(int(headers["content-length"]))
        else:
            payload = await self.reader.read()
            self.closed_by_server = True
        if headers.get("connection", "").lower() == "close":
            self.closed_by_server = True
        return int(status_line.split()[1]), payload

    async def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


# -- the load --------------------------------------------------------------------------


@dataclass
class Tally:
    """One operation in one phase."""

    ok: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    """Seconds, successful requests only."""
    outcomes: Counter[str] = field(default_factory=Counter)
    samples_rejected: int = 0
    anomalies: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)
    error_examples: dict[str, str] = field(default_factory=dict)

    def error(self, kind: str, example: str) -> None:
        self.errors += 1
        self.error_kinds[kind] += 1
        if kind not in self.error_examples and len(self.error_examples) < ERROR_SAMPLES:
            self.error_examples[kind] = example


@dataclass(frozen=True, slots=True)
class Sample:
    """The server process, and the machine, at one instant of the load."""

    t: float
    """Seconds since the load started."""
    rss: int
    cpu: float
    """The server's CPU seconds so far."""
    requests: int
    """Requests answered so far (both phases)."""
    errors: int
    others_cpu: float
    """CPU seconds of every other process so far (machine busy - server - load loop)."""
    iowait: float
    """Machine iowait seconds so far."""


def machine_cpu() -> tuple[float, float]:
    """(busy, iowait) CPU seconds of the whole machine since boot, from ``/proc/stat``."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq + steal) / tick, iowait / tick


def build(op: str, k: int, n: int, rng: random.Random) -> bytes:
    """The body of connection ``k``'s ``n``-th request, an ``op``."""
    if op == "decide":
        autonomous = (n // len(MIX)) % 2 == 1
        return orjson.dumps(
            {
                "principal_id": SUBJECT_ID,
                "action": DECIDE_ACTION,
                "resource": f"doc-{k}-{n}",
                "context": {} if autonomous else {"reason": "bench: routine read"},
                "is_autonomous": autonomous,
            }
        )
    if op == "emit":
        return orjson.dumps(
            {"event_type": EVENT_TYPE, "payload": {"task_id": f"task-{k}-{n}", "kind": "bench"}}
        )
    # Steady series: an anomaly may start a healing action. The default detector still
    # flags about 1 in 100,000 i.i.d. samples, so a run sees a few (each series alerts at
    # most once per cooldown); they are counted, and touch no route of this load.
    return orjson.dumps(
        {
            "samples": [
                {
                    "series": SERIES[i % len(SERIES)],
                    "value": 100.0 + rng.gauss(0.0, 1.0),
                    "resource": RESOURCES[(k + i) % len(RESOURCES)],
                }
                for i in range(METRIC_BATCH)
            ]
        }
    )


def judge(op: str, status: int, body: bytes, tally: Tally) -> bool:
    """Whether the answer is a success; tallies what it says; records an error if not."""
    if not 200 <= status < 300:
        tally.error(f"HTTP {status}", body[:400].decode("utf-8", "replace"))
        return False
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        tally.error(f"HTTP {status}, not JSON", body[:400].decode("utf-8", "replace"))
        return False
    good = isinstance(doc, dict) and (
        (op == "decide" and isinstance(doc.get("decision_id"), str))
        or (op == "emit" and doc.get("routed") is True)
        or (op == "metrics" and isinstance(doc.get("accepted"), int))
    )
    if not good:
        tally.error(f"HTTP {status}, unexpected body", body[:400].decode("utf-8", "replace"))
        return False
    if op == "decide":
        tally.outcomes[str(doc.get("outcome"))] += 1
    elif op == "metrics":
        tally.samples_rejected += int(doc.get("rejected", 0))
        tally.anomalies += int(doc.get("anomalies", 0))
    return True


@dataclass
class Load:
    """The closed loop. The warm-up lasts ``warmup`` seconds and, if ``warm_decides``, until
    that many decide calls were answered (at most ``WARM_CAP_S``); then ``duration``
    seconds are measured."""

    srv: Server
    key: str
    connections: int
    warmup: float
    warm_decides: int
    duration: float
    tallies: dict[tuple[str, str], Tally] = field(default_factory=dict)
    answered: int = 0
    errors: int = 0
    decides: int = 0
    """Successful decide calls so far (both phases)."""
    t0: float | None = None
    """When the measured window starts (perf_counter), once the warm-up is over."""
    t_end: float | None = None

    def tally(self, phase: str, op: str) -> Tally:
        found = self.tallies.get((phase, op))
        if found is None:
            found = self.tallies[(phase, op)] = Tally()
        return found

    def phase(self, t: float) -> str:
        return "measured" if self.t0 is not None and t >= self.t0 else "warm-up"

    def over(self) -> bool:
        return self.t_end is not None and time.perf_counter() >= self.t_end

    async def worker(self, k: int) -> None:
        """Connection ``k``: one request after the other until the measured window ends."""
        rng = random.Random(k)
        conn: Connection | None = None
        n = 0
        try:
            while not self.over():
                op = MIX[(k + n) % len(MIX)]
                body = build(op, k, n, rng)
                n += 1
                try:
                    if conn is None:
                        conn = await Connection.open(self.srv.host, self.srv.port, self.key)
                    start = time.perf_counter()
                    async with asyncio.timeout(REQUEST_TIMEOUT_S):
                        status, answer = await conn.request("POST", PATHS[op], body)
                except (OSError, EOFError, ValueError, TimeoutError) as e:
                    # EOFError: asyncio.IncompleteReadError; ValueError: a garbled answer.
                    tally = self.tally(self.phase(time.perf_counter()), op)
                    tally.error(f"transport: {type(e).__name__}", repr(e))
                    self.errors += 1
                    if conn is not None:
                        await conn.close()
                        conn = None
                    await asyncio.sleep(0.05)  # do not spin on a dead server
                    continue
                elapsed = time.perf_counter() - start
                phase = self.phase(start)
                tally = self.tally(phase, op)
                if judge(op, status, answer, tally):
                    tally.ok += 1
                    self.decides += op == "decide"
                    if phase == "measured":
                        tally.latencies.append(elapsed)
                else:
                    self.errors += 1
                self.answered += 1
                if conn.closed_by_server:
                    await conn.close()
                    conn = None
        finally:
            if conn is not None:
                await conn.close()

    def sample(self, start: float) -> Sample:
        if self.srv.proc.poll() is not None:
            raise BenchBroken(
                f"the server died under load (exit {self.srv.proc.returncode}):\n"
                f"{self.srv.log_tail()}"
            )
        now = time.perf_counter()
        rss, cpu = rss_bytes(self.srv.proc.pid), cpu_seconds(self.srv.proc.pid)
        mine = cpu_seconds(os.getpid())
        if rss is None or cpu is None or mine is None:
            raise BenchBroken("this bench needs /proc (Linux) to watch the server")
        busy, iowait = machine_cpu()
        return Sample(now - start, rss, cpu, self.answered, self.errors, busy - cpu - mine, iowait)

    async def sampler(self, start: float, samples: list[Sample], progress_s: float) -> None:
        """Samples every second until the end (and once at it); prints progress."""
        tick = 0
        last: Sample | None = None
        while True:
            s = self.sample(start)
            samples.append(s)
            done = self.over()
            if last is None or s.t - last.t >= progress_s - 0.01 or done:
                if last is not None:
                    span = s.t - last.t
                    rate = fmt_rate((s.requests - last.requests) / span)
                    print(
                        f"  {s.t:6.1f} s  {self.phase(start + s.t - 0.01):<8}  {rate:>9}   "
                        f"errors {s.errors:,}   RSS {s.rss / MIB:6.1f} MiB   server CPU "
                        f"{(s.cpu - last.cpu) / span:4.0%}   other processes "
                        f"{max(0.0, s.others_cpu - last.others_cpu) / span:4.0%}   iowait "
                        f"{(s.iowait - last.iowait) / span:4.0%}",
                        flush=True,
                    )
                last = s
            if done:
                return
            tick += 1
            next_tick = start + tick * SAMPLE_EVERY_S
            if self.t_end is not None:
                next_tick = min(next_tick, self.t_end)
            await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))

    async def run(self, progress_s: float) -> Measured:
        samples: list[Sample] = []
        start = time.perf_counter()
        sampler = asyncio.create_task(self.sampler(start, samples, progress_s))
        workers = asyncio.gather(*(self.worker(k) for k in range(self.connections)))
        everything = asyncio.gather(sampler, workers)
        try:
            await asyncio.sleep(self.warmup)
            while self.decides < self.warm_decides and time.perf_counter() - start < WARM_CAP_S:
                if everything.done():
                    break  # something failed: raised below
                await asyncio.sleep(0.05)
            decides_at_warm = self.decides
            at_warm = self.sample(start)
            self.t0 = start + at_warm.t
            self.t_end = self.t0 + self.duration
            cpu0 = time.process_time()
            await everything
            cpu1 = time.process_time()
            end = self.sample(start)
        finally:
            everything.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(everything, return_exceptions=True)
        return Measured(
            idle=samples[0],
            at_warm=at_warm,
            end=end,
            window=[at_warm, *(s for s in samples if s.t > at_warm.t), end],
            decides_at_warm=decides_at_warm,
            client_cpu=cpu1 - cpu0,
        )


@dataclass(frozen=True, slots=True)
class Measured:
    """The server over the run."""

    idle: Sample
    """When the load started."""
    at_warm: Sample
    """When the warm-up ended."""
    end: Sample
    """When the load stopped."""
    window: list[Sample]
    """The measured window's samples, every ``SAMPLE_EVERY_S``, ``at_warm`` to ``end``."""
    decides_at_warm: int
    client_cpu: float
    """The load loop's CPU seconds in the measured window."""

    @property
    def seconds(self) -> float:
        return self.end.t - self.at_warm.t

    def cpu(self, of: str) -> float:
        """CPU seconds in the measured window of ``server``, ``others`` or ``iowait``."""
        if of == "server":
            return self.end.cpu - self.at_warm.cpu
        if of == "others":
            return self.end.others_cpu - self.at_warm.others_cpu
        return self.end.iowait - self.at_warm.iowait


# -- after the load --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerCheck:
    valid: bool
    verify_text: str
    entries: int
    subject_decisions: int
    """Governance entries by the decisions' subject for its action."""
    middleware: dict[str, int]
    """Governance entries by the load loop's principal, per operation."""


def audit_verify(srv: Server) -> tuple[bool, str]:
    """``grace audit verify --json`` on the stopped server's data dir."""
    cmd = [sys.executable, "-m", "grace", "audit", "verify", "--json", "-d", str(srv.data_dir)]
    done = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        cmd, capture_output=True, cwd=srv.data_dir.parent, env=clean_env(), check=False
    )
    text = done.stdout.decode("utf-8", "replace").strip()
    try:
        report: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError:
        return False, f"exit {done.returncode}: {text}{done.stderr.decode()[-2000:]}"
    return done.returncode == 0 and report.get("valid") is True, json.dumps(report)


async def count(ledger: Ledger, actor: str, action: str) -> int:
    n, after = 0, None
    while True:
        page = await ledger.query(
            after=after, subsystem="governance", actor=actor, action=action, limit=10_000
        )
        n += len(page.entries)
        if page.next_after is None:
            return n
        after = page.next_after


async def check_ledger(srv: Server) -> LedgerCheck:
    valid, text = await asyncio.to_thread(audit_verify, srv)
    async with await Ledger.open(srv.data_dir, read_only=True) as ledger:
        entries = await ledger.size()
        subject = await count(ledger, SUBJECT_ID, DECIDE_ACTION)
        middleware = {op: await count(ledger, CLIENT_ID, f"POST:{PATHS[op]}") for op in OPS}
    return LedgerCheck(valid, text, entries, subject, middleware)


# -- report ----------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{1e3 * seconds:,.1f} ms"


def merged(tallies: Sequence[Tally]) -> Tally:
    out = Tally()
    for t in tallies:
        out.ok += t.ok
        out.errors += t.errors
        out.latencies += t.latencies
        out.outcomes += t.outcomes
        out.samples_rejected += t.samples_rejected
        out.anomalies += t.anomalies
        out.error_kinds += t.error_kinds
        for kind, example in t.error_examples.items():
            out.error_examples.setdefault(kind, example)
    return out


def print_ops(load: Load, measured_s: float) -> None:
    header = ("operation", "requests", "req/s", "p50", "p99", "max", "errors", "warm-up errors")
    rows = [header]
    for op in (*OPS, "all"):
        ops = OPS if op == "all" else (op,)
        t = merged([load.tally("measured", o) for o in ops])
        w = merged([load.tally("warm-up", o) for o in ops])
        lat = t.latencies or [0.0]
        rows.append(
            (
                op if op == "all" else f"{op} (POST {PATHS[op]})",
                f"{t.ok + t.errors:,}",
                fmt_rate((t.ok + t.errors) / measured_s),
                ms(percentile(lat, 50)),
                ms(percentile(lat, 99)),
                ms(max(lat)),
                f"{t.errors:,}",
                f"{w.errors:,}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for n, cells in enumerate(rows):
        print(
            "  "
            + "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
        )
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))
    decide = merged([load.tally(p, "decide") for p in ("warm-up", "measured")])
    metrics = merged([load.tally(p, "metrics") for p in ("warm-up", "measured")])
    print(
        f"  decide outcomes (whole run): "
        f"{', '.join(f'{k} {v:,}' for k, v in sorted(decide.outcomes.items())) or 'none'}; "
        f"metric samples refused {metrics.samples_rejected:,}, anomalies {metrics.anomalies:,}"
    )
    for op in OPS:
        both = merged([load.tally(p, op) for p in ("warm-up", "measured")])
        for kind, n in both.error_kinds.most_common():
            print(f"  {op} error {kind}: {n:,}, e.g. {both.error_examples.get(kind, '')}")


def summary_rows(
    load: Load, m: Measured, stop: tuple[int | None, float], check: LedgerCheck
) -> list[Row]:
    measured = merged([load.tally("measured", o) for o in OPS])
    warm = merged([load.tally("warm-up", o) for o in OPS])
    total = measured.ok + measured.errors
    errors = measured.errors + warm.errors
    sent = total + warm.ok + warm.errors
    growth = m.end.rss / m.at_warm.rss - 1
    # Before the bounded caches are full, RSS grows by design: no verdict then.
    filled = m.decides_at_warm >= WARM_DECIDES
    lat = measured.latencies or [0.0]
    decides_ok = sum(load.tally(p, "decide").ok for p in ("warm-up", "measured"))
    code, stop_s = stop
    clean = code in (0, -signal.SIGINT, 128 + signal.SIGINT)
    rows = [
        Row(
            "errors (non-2xx, bad body, transport)",
            f"{ERROR_GOAL}",
            f"{errors:,} of {sent:,}",
            f"{warm.errors:,} in warm-up",
            f"{errors / max(sent, 1):.3%}",
            verdict(errors <= ERROR_GOAL),
        ),
        Row(
            "server RSS growth after warm-up",
            f"< {RSS_GOAL:.0%}" if filled else f"< {RSS_GOAL:.0%} (full run)",
            f"{m.end.rss / MIB:,.1f} MiB at end",
            f"{m.at_warm.rss / MIB:,.1f} MiB after warm-up",
            f"{growth:+.1%}",
            verdict(growth < RSS_GOAL if filled else None),
        ),
        Row(
            f"  RSS min / max, every {SAMPLE_EVERY_S:.0f} s",
            "-",
            f"{min(s.rss for s in m.window) / MIB:,.1f} / "
            f"{max(s.rss for s in m.window) / MIB:,.1f} MiB",
            f"{m.idle.rss / MIB:,.1f} MiB idle",
            "-",
            "info",
        ),
        Row(
            f"throughput, mixed, {load.connections} connections",
            "-",
            fmt_rate(total / m.seconds),
            "-",
            "-",
            "info",
        ),
        Row(
            "latency p99, all operations",
            "-",
            ms(percentile(lat, 99)),
            f"p50 {ms(percentile(lat, 50))}",
            f"{percentile(lat, 99) / max(percentile(lat, 50), 1e-9):.1f}x p50",
            "info",
        ),
        Row(
            "server CPU (1 core = 100%)",
            "-",
            f"{m.cpu('server') / m.seconds:.0%}",
            f"{1e6 * m.cpu('server') / max(total, 1):,.0f} µs/request",
            "-",
            "info",
        ),
        Row(
            "load loop CPU; other processes' CPU",
            "-",
            f"{m.client_cpu / m.seconds:.0%}",
            f"{max(0.0, m.cpu('others')) / m.seconds:.0%} others",
            f"iowait {m.cpu('iowait') / m.seconds:.0%}",
            "info",
        ),
        Row(
            "stops on SIGINT",
            f"exit < {STOP_TIMEOUT_S:.0f} s",
            "killed" if code is None else f"exit {code}",
            "-",
            f"{stop_s:.1f} s",
            verdict(clean),
        ),
        Row(
            "ledger verifies (grace audit verify)",
            "valid",
            "valid" if check.valid else "INVALID",
            f"{check.entries:,} entries",
            f"{check.entries / max(sent, 1):.2f} entries/request",
            verdict(check.valid),
        ),
        Row(
            f"decisions by {SUBJECT_ID} >= decides answered",
            ">= 1x",
            f"{check.subject_decisions:,} entries",
            f"{decides_ok:,} decides",
            f"{check.subject_decisions / max(decides_ok, 1):.3f}x",
            verdict(check.subject_decisions >= decides_ok),
        ),
    ]
    for op in OPS:
        ok = sum(load.tally(p, op).ok for p in ("warm-up", "measured"))
        got = check.middleware[op]
        rows.append(
            Row(
                f"  middleware decisions, POST {PATHS[op]}",
                ">= 1x",
                f"{got:,} entries",
                f"{ok:,} answered",
                f"{got / max(ok, 1):.3f}x",
                verdict(got >= ok),
            )
        )
    return rows


# -- main ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 s warm-up, 10 s measured")
    p.add_argument("--duration", type=float, default=None, help="measured seconds (default 60)")
    p.add_argument("--warmup", type=float, default=None, help="least warm-up seconds (default 10)")
    p.add_argument(
        "--warm-decides",
        type=int,
        default=None,
        help=f"least decide calls in the warm-up (default {WARM_DECIDES:,}; --quick 0)",
    )
    p.add_argument("--connections", type=int, default=32, help="keep-alive connections")
    p.add_argument("--tmpdir", type=Path, default=None, help="where the data dir goes")
    p.add_argument("--keep", action="store_true", help="keep the data dir and server log")
    a = p.parse_args(argv)
    a.duration = a.duration if a.duration is not None else (10.0 if a.quick else 60.0)
    a.warmup = a.warmup if a.warmup is not None else (3.0 if a.quick else 10.0)
    if a.warm_decides is None:
        a.warm_decides = 0 if a.quick else WARM_DECIDES
    if a.duration <= 0 or a.warmup <= 0 or a.connections < 1 or a.warm_decides < 0:
        p.error("duration, warm-up and connections must be positive, warm decides >= 0")
    return a


async def run(args: argparse.Namespace) -> list[Row]:
    base = Path(tempfile.mkdtemp(prefix="grace-bench-server-", dir=args.tmpdir))
    data_dir = base / "data"
    data_dir.mkdir()
    print(f"data dir {data_dir}, server log {base / 'server.log'}\n", flush=True)
    try:
        key = register(data_dir)
        srv = start_server(base, data_dir)
        try:
            boot = await wait_ready(srv)
            warm = f"{args.warmup:g} s" + (
                f" and {args.warm_decides:,} decides" if args.warm_decides else ""
            )
            print(
                f"1. grace serve (pid {srv.proc.pid}) ready in {boot:.1f} s; load: "
                f"{args.connections} connections, mix {' '.join(MIX)} (metric batches of "
                f"{METRIC_BATCH}); warm-up at least {warm}, then {args.duration:g} s measured",
                flush=True,
            )
            load = Load(srv, key, args.connections, args.warmup, args.warm_decides, args.duration)
            m = await load.run(2.0 if args.quick else 10.0)
        finally:
            stop = await stop_server(srv) if srv.proc.poll() is None else (srv.proc.returncode, 0.0)
        print(
            f"\n2. per operation, measured window ({m.seconds:.1f} s, after a "
            f"{m.at_warm.t:.1f} s warm-up of {m.decides_at_warm:,} decides):",
            flush=True,
        )
        print_ops(load, m.seconds)
        log = srv.log.read_text("utf-8", "replace")
        noisy = [ln for ln in log.splitlines() if "Traceback" in ln or "[error" in ln]
        print(
            f"\n3. server stopped by SIGINT: exit {stop[0]} after {stop[1]:.1f} s; log "
            f"{len(log):,} bytes, {len(noisy)} error lines{':' if noisy else ''}",
            flush=True,
        )
        for ln in noisy[:10]:
            print(f"     {ln[:300]}")
        check = await check_ledger(srv)
        print(f"  grace audit verify: {check.verify_text}\n", flush=True)
        return summary_rows(load, m, stop, check)
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    args = parse_args(argv)
    print(
        f"grace server benchmark: {'quick' if args.quick else 'full'} run, python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs",
        flush=True,
    )
    start = time.perf_counter()
    try:
        rows = asyncio.run(run(args))
    except BenchBroken as e:
        print(f"\nthe bench broke: {e}", file=sys.stderr)
        return 1
    print(f"summary (total {time.perf_counter() - start:.1f} s):\n")
    print_table(rows)
    missed = sum(r.status == "MISS" for r in rows)
    print(f"\n{missed} goal(s) missed" if missed else "\nall goals met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
