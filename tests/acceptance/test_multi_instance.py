"""Three real ``grace serve`` processes on one PostgreSQL schema and one NATS stream.

The scale-out acceptance test (issue 8): a client drives decisions, events and metric
anomalies round-robin across three instances; one instance is SIGKILLed mid-run and
restarted on the same data dir and port. Afterwards, from the shared ledger: every
acknowledged decision is stored once at the seq it was acknowledged with; the chain and
the tree verify (in-process and with ``grace audit verify``); every acknowledged
``anomaly.detected`` event was handled once by the ``immune_kernel`` group; an approval
granted via one instance let the request pass once via another; and an incident that every
instance's metrics monitor raised was healed once.

Each instance gets its own data dir holding a copy of one ``ledger.key``; principals and
keys are made once in the shared store before the servers start (as an operator would).
The run's NATS stream and subject prefix are fresh and deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from grace.governance.model import PrincipalKind
from grace.governance.principals import PrincipalRegistry
from grace.ledger import Entry, Ledger
from grace.types import SystemClock

pytestmark = [pytest.mark.postgres, pytest.mark.nats, pytest.mark.slow]

INSTANCES: Final = 3
READY_TIMEOUT_S: Final = 90.0
STOP_TIMEOUT_S: Final = 30.0
HANDLED_TIMEOUT_S: Final = 75.0
"""How long events may take to be handled: the NATS ack_wait (30 s) after which a message
the killed instance held is redelivered, plus room for a busy machine."""
HEALING_SLEEP_S: Final = 5
"""How long the healing step runs (an allow-listed ``sleep``): the lease is held that long,
so the other instances' claims for the same incident meet a live lease."""
HEALED_RESOURCE: Final = "checkout"
HEALED_SERIES: Final = "latency_ms"
WARMUP_SAMPLES: Final = 40
"""More than the metrics rule's 30 warm-up samples: the series has a baseline before the
spike."""
PLAYBOOKS: Final = """\
version: 1
playbooks:
  - name: restart-slow-service
    description: A restart that takes a few seconds (the lease is held meanwhile).
    match: {types: [latency_spike], min_severity: medium}
    max_attempts: 1
    cooldown_s: 600
    steps:
      - action: restart_service
        executor: shell_command
        params: {command: slow_restart}
        timeout_s: 30
        verify: {kind: none}
"""

PEP: Final = "pep-gw"
WATCHDOG: Final = "anomaly_watchdog"
APPROVER: Final = "bob"
AGENT: Final = "agent-7"
READER: Final = "reader-9"


# -- the instances ---------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Instance:
    """One ``grace serve`` process: its data dir and port survive a restart."""

    index: int
    data_dir: Path
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text("utf-8", "replace")[-chars:] if self.log.exists() else ""

    def start(self, env: dict[str, str]) -> None:
        """The real CLI, logging to a file (appended across restarts)."""
        cmd = [sys.executable, "-m", "grace", "serve"]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), "-d", str(self.data_dir)]
        with self.log.open("ab") as out:
            # cwd: no grace.toml of the caller's directory applies.
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, cwd=self.data_dir.parent, env=env
            )

    async def wait_ready(self, http: httpx.AsyncClient) -> None:
        """Poll ``/ready`` until the boot completed; fail with the log if it never does."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(
                    f"instance {self.index} exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            with contextlib.suppress(httpx.TransportError, ValueError):
                r = await http.get(f"{self.url}/ready", timeout=5)
                if r.status_code == 200 and r.json().get("ready") is True:
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"instance {self.index} not ready after {READY_TIMEOUT_S:.0f} s")
            await asyncio.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (no acks, no lease release, no flush)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    async def stop(self) -> int | None:
        """SIGINT, as Ctrl-C would; the exit code, or None if it had to be killed."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(signal.SIGINT)
        try:
            return await asyncio.to_thread(proc.wait, STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)
            return None


def instance_env(dsn: str, nats_url: str, stream: str, prefix: str, root: Path) -> dict[str, str]:
    """This environment without the caller's ``GRACE_*``, plus the shared deployment."""
    playbooks = root / "playbooks.yaml"
    playbooks.write_text(PLAYBOOKS)
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("GRACE_")}
    env.update(
        {
            "GRACE_DATABASE_URL": dsn,
            "GRACE_MESH__TRANSPORT": "nats",
            "GRACE_MESH__NATS_SERVERS": json.dumps([nats_url]),
            "GRACE_MESH__NATS_STREAM": stream,
            "GRACE_MESH__NATS_SUBJECT_PREFIX": prefix,
            "GRACE_IMMUNE__PLAYBOOKS": str(playbooks),
            "GRACE_IMMUNE__SHELL_COMMANDS": json.dumps(
                {"slow_restart": ["sleep", str(HEALING_SLEEP_S)]}
            ),
            "GRACE_LOG_LEVEL": "warning",
        }
    )
    return env


def register(dsn: str) -> dict[str, str]:
    """The principals and their API keys, in the shared store."""
    registry = PrincipalRegistry.open_postgres(dsn, clock=SystemClock())
    try:
        registry.add(PEP, kind=PrincipalKind.SERVICE, roles=["pep", "metrics_writer"])
        registry.add(WATCHDOG, kind=PrincipalKind.SERVICE)
        registry.add(APPROVER, kind=PrincipalKind.HUMAN, roles=["approver", "auditor"])
        registry.add(AGENT, kind=PrincipalKind.AGENT, autonomy_tier=2)
        registry.add(READER, kind=PrincipalKind.AGENT, autonomy_tier=0)
        return {p: registry.create_key(p) for p in (PEP, WATCHDOG, APPROVER, AGENT)}
    finally:
        registry.close()


async def delete_stream(nats_url: str, stream: str) -> None:
    """Remove the run's stream from the shared NATS server (best effort)."""
    import nats

    with contextlib.suppress(Exception):
        nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=0)
        try:
            await nc.jetstream().delete_stream(stream)
        finally:
            await nc.close()


@dataclass
class Deployment:
    """The running instances and what the client saw acknowledged."""

    instances: list[Instance]
    env: dict[str, str]
    keys: dict[str, str]
    http: httpx.AsyncClient
    dsn: str
    key_file: Path
    decisions: dict[str, int] = field(default_factory=dict)
    """decision_id -> receipt_seq of every acknowledged decision."""
    events: list[str] = field(default_factory=list)
    """event_id of every acknowledged anomaly.detected event of the watchdog."""
    refused: Counter[str] = field(default_factory=Counter)
    """Requests not acknowledged, by why (the killed instance's are among them)."""
    milestone: int | None = None
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once ``milestone`` decisions were acknowledged."""

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    async def post(self, index: int, path: str, who: str, body: Any) -> httpx.Response | None:
        """POST to one instance; None when it could not be reached (not acknowledged)."""
        try:
            return await self.http.post(
                self.instances[index].url + path, json=body, headers=self.headers(who)
            )
        except httpx.TransportError as e:
            self.refused[type(e).__name__] += 1
            return None

    async def decide(self, index: int, body: dict[str, Any]) -> dict[str, Any] | None:
        """A decision via one instance; recorded when acknowledged (200 and a ledger seq)."""
        r = await self.post(index, "/v1/decide", PEP, body)
        if r is None:
            return None
        if r.status_code != 200:
            self.refused[f"decide {r.status_code}"] += 1
            return None
        answer: dict[str, Any] = r.json()
        if answer["receipt_seq"] is None:
            self.refused["decide unrecorded"] += 1
            return answer
        assert answer["decision_id"] not in self.decisions
        self.decisions[answer["decision_id"]] = answer["receipt_seq"]
        if self.milestone is not None and len(self.decisions) >= self.milestone:
            self.reached.set()
        return answer

    async def report_anomaly(self, index: int, n: int) -> None:
        """The watchdog reports a low anomaly on a resource of its own (one incident each)."""
        body = {
            "event_type": "anomaly.detected",
            "payload": {"type": "pattern_deviation", "severity": "low", "score": 0.7},
            "resource": f"watched-{n}",
        }
        r = await self.post(index, "/v1/events", WATCHDOG, body)
        if r is None:
            return
        if r.status_code != 200:
            self.refused[f"event {r.status_code}"] += 1
            return
        answer = r.json()
        assert answer["routed"] is True, answer
        self.events.append(answer["event_id"])

    async def drive(self, start: int, count: int, workers: int = 6) -> None:
        """``count`` decisions and as many events, round-robin over every instance."""

        async def worker(k: int) -> None:
            for n in range(start + k, start + count, workers):
                index = n % len(self.instances)
                await self.decide(
                    index,
                    {
                        "principal_id": READER,
                        "action": "read",
                        "resource": f"doc-{n}",
                        "context": {"reason": "acceptance: routine read"},
                    },
                )
                await self.report_anomaly(index, n)

        await asyncio.gather(*(worker(k) for k in range(workers)))


@contextlib.asynccontextmanager
async def deployment(
    tmp_path: Path, dsn: str, nats_addr: tuple[str, int]
) -> AsyncIterator[Deployment]:
    """Three ready instances on one fresh schema and one fresh stream; stopped afterwards."""
    nats_url = f"nats://{nats_addr[0]}:{nats_addr[1]}"
    token = secrets.token_hex(4)
    stream, prefix = f"GRACE_T_{token}", f"gracet{token}"
    key_file = tmp_path / "ledger.key"
    # The ledger (and its key) first, so every instance opens the same one.
    await (await Ledger.open_postgres(dsn, key_file=key_file)).close()
    keys = await asyncio.to_thread(register, dsn)
    env = instance_env(dsn, nats_url, stream, prefix, tmp_path)
    instances = []
    for i in range(INSTANCES):
        data_dir = tmp_path / f"instance-{i}"
        data_dir.mkdir(mode=0o700)
        shutil.copy2(key_file, data_dir / "ledger.key")
        instances.append(Instance(i, data_dir, free_port(), tmp_path / f"instance-{i}.log"))
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        dep = Deployment(instances, env, keys, http, dsn, key_file)
        try:
            for inst in instances:  # one at a time: the first creates the stream
                inst.start(env)
                await inst.wait_ready(http)
            yield dep
        finally:
            codes = await asyncio.gather(*(inst.stop() for inst in instances))
            await delete_stream(nats_url, stream)
        for inst, code in zip(instances, codes, strict=True):
            assert code == 0, f"instance {inst.index} exited with {code}:\n{inst.log_tail()}"


# -- reading the shared ledger -----------------------------------------------------------


async def all_entries(ledger: Ledger, subsystem: str) -> list[Entry]:
    """Every entry of ``subsystem``, in seq order."""
    found: list[Entry] = []
    after: int | None = None
    while True:
        page = await ledger.query(subsystem=subsystem, after=after, limit=10_000)
        found += page.entries
        if page.next_after is None:
            return found
        after = page.next_after


def handled(entries: Sequence[Entry]) -> Counter[str]:
    """How many ``anomaly_detected`` records the kernels wrote per anomaly (= event) id."""
    return Counter(
        str(e.payload["anomaly_id"])
        for e in entries
        if e.action == "anomaly_detected" and e.actor == "immune_kernel"
    )


@contextlib.asynccontextmanager
async def reader(dep: Deployment) -> AsyncIterator[Ledger]:
    """The shared ledger, read-only, verified with the deployment's key file."""
    ledger = await Ledger.open_url(dep.dsn, key_file=dep.key_file, read_only=True)
    try:
        yield ledger
    finally:
        await ledger.close()


async def wait_for(dep: Deployment, what: str, done: Any, timeout_s: float) -> list[Entry]:
    """Poll the ledger's ``avn`` entries until ``done(entries)``; fail after the timeout."""
    deadline = time.monotonic() + timeout_s
    async with reader(dep) as ledger:
        while True:
            entries = await all_entries(ledger, "avn")
            if done(entries):
                return entries
            if time.monotonic() > deadline:
                pytest.fail(f"{what} did not happen within {timeout_s:.0f} s")
            await asyncio.sleep(0.5)


def healing_records(entries: Sequence[Entry]) -> list[Entry]:
    """The kernels' records about the healed incident (its resource)."""
    return [e for e in entries if e.resource == HEALED_RESOURCE]


# -- the phases ----------------------------------------------------------------------------


async def approval_across_instances(dep: Deployment, asked: int, voted: int, used: int) -> None:
    """Requested via one instance, approved via a second, used once via a third."""
    body = {
        "principal_id": AGENT,
        "action": "deploy_model",
        "resource": "fraud-v2",
        "context": {"reason": "the fraud model v2 passed its evaluation"},
        "is_autonomous": True,
    }
    first = await dep.decide(asked, body)
    assert first is not None
    assert first["outcome"] == "requires_approval", first
    approval_id = first["approval_id"]
    vote = await dep.http.post(
        f"{dep.instances[voted].url}/v1/approvals/{approval_id}/approve",
        headers=dep.headers(APPROVER),
    )
    assert vote.status_code == 200, vote.text
    assert vote.json()["state"] == "approved"
    passed = await dep.decide(used, {**body, "approval_id": approval_id})
    assert passed is not None
    assert passed["outcome"] == "approved", passed
    assert passed["allowed"] is True
    for again in (asked, voted, used):
        reused = await dep.decide(again, {**body, "approval_id": approval_id})
        assert reused is not None
        assert reused["allowed"] is False, reused


async def spike_everywhere(dep: Deployment) -> None:
    """Every instance's metrics monitor learns the series, then sees the same spike."""
    now = time.time()

    async def feed(index: int) -> None:
        warmup = [
            {
                "series": HEALED_SERIES,
                "value": 100.0,
                "timestamp": now - WARMUP_SAMPLES + i,
                "resource": HEALED_RESOURCE,
            }
            for i in range(WARMUP_SAMPLES)
        ]
        r = await dep.post(index, "/v1/metrics", PEP, {"samples": warmup})
        assert r is not None
        assert r.status_code == 200, r.text
        assert (r.json()["accepted"], r.json()["anomalies"]) == (WARMUP_SAMPLES, 0), r.json()

    await asyncio.gather(*(feed(i) for i in range(INSTANCES)))
    spike = {
        "series": HEALED_SERIES,
        "value": 2000.0,
        "timestamp": now,
        "resource": HEALED_RESOURCE,
    }

    async def hit(index: int) -> None:
        r = await dep.post(index, "/v1/metrics", PEP, {"samples": [spike]})
        assert r is not None
        assert r.status_code == 200, r.text
        assert r.json()["anomalies"] == 1, r.json()

    await asyncio.gather(*(hit(i) for i in range(INSTANCES)))


def healing_done(entries: Sequence[Entry]) -> bool:
    """The incident was opened and answered on every instance that received one of the
    three anomalies: one run (its step executed), the other openings deferred to it."""
    records = healing_records(entries)
    opened = sum(1 for e in records if e.action == "anomaly_detected")
    executed = sum(1 for e in records if e.payload.get("event") == "healing_action")
    elsewhere = sum(1 for e in records if e.action == "incident_healing_elsewhere")
    return opened >= 1 and executed >= 1 and opened == executed + elsewhere


# -- the test --------------------------------------------------------------------------------


async def test_three_instances_share_one_ledger_and_handle_everything_once(
    tmp_path: Path, pg_dsn: str, nats_addr: tuple[str, int]
) -> None:
    """Across three processes, one of them killed and restarted mid-run: decisions are in
    the ledger once at their seq, the chain verifies, each event is handled once by the
    kernel group, an approval crosses instances once, and a shared incident heals once."""
    async with deployment(tmp_path, pg_dsn, nats_addr) as dep:
        victim = dep.instances[1]
        await dep.drive(0, 60)
        load = asyncio.create_task(dep.drive(60, 90))
        dep.milestone = 90
        await asyncio.wait_for(dep.reached.wait(), 60)  # the victim dies mid-load
        victim.kill()
        await load
        await dep.drive(150, 45)  # two instances serve; the victim's share is refused
        assert dep.refused, "no request reached the killed instance"
        victim.start(dep.env)
        await victim.wait_ready(dep.http)
        await approval_across_instances(dep, asked=1, voted=2, used=0)
        await asyncio.gather(spike_everywhere(dep), dep.drive(195, 60))
        events = set(dep.events)
        entries = await wait_for(
            dep,
            "every acknowledged event handled, and the incident healed",
            lambda found: events <= set(handled(found)) and healing_done(found),
            HANDLED_TIMEOUT_S,
        )
        assert len(events) == len(dep.events)
        assert healing_done(entries)

    async with reader(dep) as ledger:
        report = await ledger.verify()
        assert report.valid, report
        size = await ledger.size()
        assert report.entries_checked == size
        governance = await all_entries(ledger, "governance")
        avn = await all_entries(ledger, "avn")

    # Every acknowledged decision is in the ledger exactly once, at its acknowledged seq.
    stored: dict[str, list[int]] = {}
    for e in governance:
        decision_id = e.payload.get("decision_id")
        if isinstance(decision_id, str):
            stored.setdefault(decision_id, []).append(e.seq)
    assert dep.decisions
    for decision_id, seq in dep.decisions.items():
        assert stored.get(decision_id) == [seq], decision_id

    # Each acknowledged anomaly.detected event was handled once by the kernel group.
    counts = handled(avn)
    assert dep.events
    twice = {event_id: n for event_id in dep.events if (n := counts[event_id]) != 1}
    assert twice == {}

    # The incident every instance raised was healed by one run; the other openings of it
    # deferred to that run (incident_healing_elsewhere), and nothing else acted on it.
    records = healing_records(avn)
    runs = [e for e in records if e.payload.get("event") == "healing_action"]
    assert [(e.action, e.result) for e in runs] == [("restart_service", "executed")]
    assert runs[0].payload["step"] == "steps[0]"
    opened = [e for e in records if e.action == "anomaly_detected"]
    elsewhere = [e for e in records if e.action == "incident_healing_elsewhere"]
    assert len(opened) == 1 + len(elsewhere)
    healed_ids = {e.payload["incident_id"] for e in runs}
    assert not healed_ids & {e.payload["incident_id"] for e in elsewhere}
    gate = [e for e in governance if e.action == "avn:restart_service"]
    assert [e.resource for e in gate] == [f"component:{HEALED_RESOURCE}"]

    # The command-line verifier agrees.
    audit = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "grace",
            "audit",
            "verify",
            "--database-url",
            dep.dsn,
            "-d",
            str(dep.instances[0].data_dir),
        ],
        capture_output=True,
        text=True,
        env=dep.env,
        timeout=120,
        check=False,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
