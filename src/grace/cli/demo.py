"""``grace demo``: the whole story on the embedded default (see :mod:`grace.cli._story`);
``--ledger-only``: a round trip through the ledger alone."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from grace.cli._common import DataDirOption, data_dir_of, run, settings_of
from grace.ledger import (
    BundleCheck,
    Ledger,
    ProofBundle,
    VerifyReport,
    log_anomaly_detected,
    log_decision,
    log_healing_action,
    merkle,
    verify_bundle,
)

__all__ = ["demo"]

console = Console(highlight=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Outcome:
    data_dir: Path
    seqs: list[int]
    bundle: ProofBundle
    bundle_path: Path
    offline: BundleCheck
    report: VerifyReport
    consistent: bool
    vkey: str


async def _round_trip(ledger: Ledger, data_dir: Path) -> _Outcome:
    before = await ledger.latest_checkpoint()
    request_id = str(uuid.uuid4())
    anomaly_id = f"anom-{uuid.uuid4().hex[:8]}"
    receipts = [
        await log_decision(
            ledger,
            actor="demo-agent",
            action="restart_component",
            resource="svc:checkout",
            decision="approved",
            request_id=request_id,
            reasons=["autonomy tier allows restart_component", "trust 0.82 >= 0.5"],
            risk_level="medium",
            trust_score=0.82,
        ),
        await log_anomaly_detected(
            ledger,
            component="svc:checkout",
            anomaly_id=anomaly_id,
            anomaly_type="latency_spike",
            severity="high",
            score=0.97,
            details={"p99_ms": 2140, "baseline_p99_ms": 180},
        ),
        await log_healing_action(
            ledger,
            component="svc:checkout",
            anomaly_id=anomaly_id,
            action="restart_service",
            outcome="executed",
            details={"decision_request_id": request_id},
        ),
    ]
    checkpoint = await ledger.checkpoint()
    bundle = await ledger.prove(receipts[0].seq, checkpoint.tree_size)
    bundle_path = data_dir / f"proof-{receipts[0].seq}.json"
    bundle_path.write_text(json.dumps(bundle.to_json(), indent=2) + "\n")
    # Offline: re-read the bundle from disk and check it with nothing but the public key.
    offline = verify_bundle(
        ProofBundle.from_json(json.loads(bundle_path.read_text())), ledger.verifier
    )
    consistent = True
    if before is not None:
        proof = await ledger.prove_consistency(before.tree_size, checkpoint.tree_size)
        consistent = merkle.verify_consistency(
            before.tree_size, checkpoint.tree_size, before.root_hash, checkpoint.root_hash, proof
        )
    report = await ledger.verify()
    return _Outcome(
        data_dir=data_dir,
        seqs=[r.seq for r in receipts],
        bundle=bundle,
        bundle_path=bundle_path,
        offline=offline,
        report=report,
        consistent=consistent,
        vkey=ledger.verifier.vkey,
    )


def demo(
    ctx: typer.Context,
    data_dir: DataDirOption = None,
    ledger_only: Annotated[
        bool,
        typer.Option(
            "--ledger-only", help="Only append, sign, prove and verify a few ledger entries."
        ),
    ] = False,
) -> None:
    """Boot Grace and narrate the whole story: governed requests, log-only rollout, a
    verified code deployment, a governed self-heal, a two-approver action, the proof."""
    settings = settings_of(ctx)
    path = data_dir_of(ctx, data_dir)
    if not ledger_only:
        from grace.cli._logging import configure_logging
        from grace.cli._story import run_story

        if settings.log_level != "debug":
            configure_logging("warning", settings.log_format)  # the story is the output
        settings = settings.model_copy(update={"data_dir": path})
        if not run(run_story(settings, console)):
            raise typer.Exit(1)
        return

    async def go() -> _Outcome:
        async with await Ledger.open(path, config=settings.ledger.to_config()) as ledger:
            return await _round_trip(ledger, path)

    o = run(go())
    table = Table(title=f"Grace ledger round trip in {o.data_dir}", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("appended", f"entries {', '.join(map(str, o.seqs))} (durable receipts)")
    table.add_row("checkpoint", o.bundle.checkpoint.note.rstrip("\n").replace("\n\n", "\n"))
    table.add_row(
        "inclusion proof",
        f"entry {o.bundle.seq} in tree of {o.bundle.tree_size}: "
        f"{len(o.bundle.inclusion_proof)} hashes -> {o.bundle_path}",
    )
    table.add_row(
        "offline check",
        ("[green]valid[/] " if o.offline.valid else "[red]INVALID[/] ") + o.offline.reason,
    )
    table.add_row(
        "consistency",
        "[green]previous checkpoint is a prefix[/]" if o.consistent else "[red]BROKEN[/]",
    )
    verdict = (
        f"[green]valid[/]: {o.report.entries_checked} entries, "
        f"{o.report.checkpoints_checked} checkpoints"
        if o.report.valid
        else f"[red]INVALID at {o.report.first_bad_seq}[/]: {o.report.reason}"
    )
    table.add_row("full verify", verdict)
    table.add_row("public key", o.vkey)
    console.print(table)
    console.print(
        f"Check it yourself: grace audit verify-proof {o.bundle_path} --public-key '{o.vkey}'"
    )
    if not (o.offline.valid and o.report.valid and o.consistent):
        raise typer.Exit(1)
