"""``grace verify PATH [--tests PATH]``: verify Python code, print a readable report.

Exit codes: 0 verified, 1 refuted, 2 error (the sandbox could not run, or bad input),
3 inconclusive (e.g. no tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from grace.cli._common import DataDirOption, data_dir_of, run, settings_of
from grace.config import GraceSettings
from grace.ledger import Ledger
from grace.types import SystemClock
from grace.verification import (
    Sandbox,
    SandboxLimits,
    SandboxSettings,
    VerificationEngine,
    VerificationResult,
    VerificationStatus,
)
from grace.verification.model import CodeBundle

__all__ = ["EXIT_CODES", "render", "verify"]

out = Console(highlight=False)

EXIT_CODES = {
    VerificationStatus.VERIFIED: 0,
    VerificationStatus.REFUTED: 1,
    VerificationStatus.ERROR: 2,
    VerificationStatus.INCONCLUSIVE: 3,
}
_STATUS_STYLE = {
    VerificationStatus.VERIFIED: "bold green",
    VerificationStatus.REFUTED: "bold red",
    VerificationStatus.ERROR: "bold red",
    VerificationStatus.INCONCLUSIVE: "bold yellow",
}
_SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}


def verify(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A .py file or a directory of them.")],
    tests: Annotated[
        Path | None,
        typer.Option("--tests", "-t", help="Test file or directory (tests inside PATH count too)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1.0, help="Wall-clock limit of the test run (s).")
    ] = 60.0,
    record: Annotated[
        bool, typer.Option("--record", help="Append the verdict to the ledger in the data dir.")
    ] = False,
    target: Annotated[str, typer.Option(help="What the code is for (recorded).")] = "",
    data_dir: DataDirOption = None,
) -> None:
    """Verify Python code: AST rules and bandit, then its tests in a sandbox.

    Exit 0 verified, 1 refuted, 2 error, 3 inconclusive.
    """
    bundle = CodeBundle.from_path(path, tests)
    # The data dir holds keys and the ledger: hide it from the code under test.
    known = data_dir is not None or isinstance(ctx.find_root().obj, GraceSettings)
    hidden = (str(data_dir_of(ctx, data_dir).resolve()),) if known else ()
    sandbox = Sandbox(SandboxSettings(limits=SandboxLimits(wall_s=timeout), hide_paths=hidden))

    async def go() -> VerificationResult:
        if not record:
            engine = VerificationEngine(clock=SystemClock(), sandbox=sandbox)
            return await engine.verify(bundle, target=target, actor="cli")
        settings = settings_of(ctx)
        ledger = await Ledger.open(data_dir_of(ctx, data_dir), config=settings.ledger.to_config())
        try:
            engine = VerificationEngine(clock=SystemClock(), sandbox=sandbox, ledger=ledger)
            return await engine.verify(bundle, target=target, actor="cli")
        finally:
            await ledger.close()

    result = run(go())
    if as_json:
        typer.echo(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        render(result, out)
    raise typer.Exit(EXIT_CODES[result.status])


def render(result: VerificationResult, console: Console) -> None:
    """The human-readable report."""
    style = _STATUS_STYLE[result.status]
    console.print(
        f"[{style}]{str(result.status).upper()}[/]  confidence {result.confidence:.2f}  "
        f"safe to execute: {'yes' if result.safe_to_execute else 'no'}"
    )
    console.print(f"code sha256 {result.code_sha256}", style="dim")
    if result.receipt_seq is not None:
        console.print(f"recorded in the ledger at seq {result.receipt_seq}", style="dim")
    static = result.static
    if static is not None:
        engines = "Grace rules + bandit" if static.bandit else "Grace rules"
        console.print(
            f"\n[bold]static analysis[/] ({engines}): {static.files_scanned} files, "
            f"{len(static.issues)} issues, {static.duration_s * 1000:.0f} ms"
        )
    if result.issues:
        table = Table(show_lines=False)
        for name in ("severity", "rule", "where", "message"):
            table.add_column(name, overflow="fold", no_wrap=name != "message")
        for issue in result.issues:
            where = f"{issue.file}:{issue.line}" if issue.file else str(issue.source)
            rule = issue.rule_id + (f" ({', '.join(issue.also)})" if issue.also else "")
            sev = str(issue.severity)
            table.add_row(
                f"[{_SEVERITY_STYLE.get(sev, 'dim')}]{sev}[/]", rule, where, issue.message
            )
        console.print(table)
    console.print("\n[bold]tests[/]: ", end="")
    run_ = result.tests
    if run_ is None:
        console.print(result.tests_skipped_reason or "not run")
    else:
        console.print(
            f"{run_.passed} passed, {run_.failed} failed, {run_.errors} errors, "
            f"{run_.skipped} skipped in {run_.duration_s:.2f}s "
            f"(sandbox {run_.wall_s:.2f}s)"
        )
        if run_.limits_hit:
            console.print(f"  [red]stopped at limits[/]: {', '.join(run_.limits_hit)}")
        for d in run_.denials:
            times = f" x{d.count}" if d.count > 1 else ""
            console.print(f"  [red]denied[/] {d.kind}: {d.event} {d.target}{times}")
        iso = run_.isolation
        console.print(
            f"  isolation: network {iso.network}, filesystem {iso.filesystem}, "
            f"pid namespace {'yes' if iso.pid_namespace else 'no'}",
            style="dim",
        )
    if result.error:
        console.print(f"\n[red]error[/]: {result.error}")
    if result.recommendations:
        console.print("\n[bold]recommendations[/]")
        for advice in result.recommendations:
            console.print(f"  - {advice}")
