"""``grace ledger``: move the ledger between stores, proving the copy is the same log."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from grace.cli._common import run, settings_of
from grace.errors import LedgerError
from grace.ledger import Ledger
from grace.ledger.ledger import KEY_FILE
from grace.ledger.migration import MigrationReport, migrate_ledger

__all__ = ["ledger_app"]

ledger_app = typer.Typer(
    help="Move the ledger between stores (SQLite, PostgreSQL).", no_args_is_help=True
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


@ledger_app.callback()
def ledger_group() -> None:
    """Move the ledger between stores (SQLite, PostgreSQL)."""


def _sqlite_dir(url: str) -> Path | None:
    if not url.startswith("sqlite:"):
        return None
    path = Path(url.removeprefix("sqlite:").removeprefix("//"))
    return path.parent if path.name == "ledger.db" else path


@ledger_app.command("migrate")
def migrate_cmd(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Option(
            "--from", help="The ledger to copy: sqlite:PATH (a data dir) or postgresql://…"
        ),
    ],
    target: Annotated[
        str,
        typer.Option("--to", help="The PostgreSQL database to copy into: postgresql://…"),
    ],
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            help="The source's signing key (default: PATH/ledger.key of a sqlite: source). "
            "The target records it: every instance writing the target needs this key file.",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=100_000, help="Entries per transaction.")
    ] = 2000,
) -> None:
    """Copy a ledger into PostgreSQL, verify both sides, compare their roots.

    A target that already holds a prefix of the source is resumed; any other non-empty
    target is refused. Exit 0 when the copy is proven identical, 1 when it is not.
    """
    if not target.startswith(("postgresql://", "postgres://")):
        raise typer.BadParameter("--to must be a postgresql:// URL", param_hint="--to")
    folder = _sqlite_dir(source)
    key = key_file if key_file is not None else (folder / KEY_FILE if folder else None)
    if key is None:
        raise typer.BadParameter(
            "a postgresql:// source needs --key-file (its signing key)", param_hint="--key-file"
        )
    settings = settings_of(ctx)

    async def go() -> MigrationReport:
        src = await Ledger.open_url(source, key_file=key, read_only=True)
        try:
            config = dataclasses.replace(
                settings.ledger.to_config(),
                origin=src.origin,
                checkpoint_every=0,
                checkpoint_interval_s=0,
            )
            dst = await Ledger.open_postgres(target, key_file=key, config=config)
            try:
                with Progress(
                    TextColumn("{task.description:<14}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeRemainingColumn(),
                    console=err,
                    transient=True,
                ) as bar:
                    tasks: dict[str, TaskID] = {}

                    def progress(phase: str, done: int, total: int) -> None:
                        if phase not in tasks:
                            tasks[phase] = bar.add_task(phase, total=total)
                        bar.update(tasks[phase], completed=done, total=total)

                    return await migrate_ledger(src, dst, batch_size=batch_size, progress=progress)
            finally:
                await dst.close()
        finally:
            await src.close()

    try:
        report = run(go())
    except LedgerError as e:  # refused (another log, not a prefix) or unreachable
        err.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(2) from e
    _print(report)
    raise typer.Exit(0 if report.ok else 1)


def _print(report: MigrationReport) -> None:
    out.print(f"source {report.source}: {report.tree_size} entries")
    out.print(
        f"target {report.target}: copied {report.copied_entries} entries and "
        f"{report.copied_checkpoints} checkpoints"
        + (f" (resumed after entry {report.resumed_from})" if report.resumed_from else "")
    )
    if report.roots:
        table = Table(title="Merkle roots, recomputed on both sides")
        table.add_column("tree size", justify="right", no_wrap=True, min_width=9)
        table.add_column("source root", overflow="fold")
        table.add_column("target root", overflow="fold")
        table.add_column("", no_wrap=True, min_width=9)
        for check in report.roots:
            mark = "[green]same[/]" if check.match else "[bold red]DIFFERENT[/]"
            table.add_row(str(check.tree_size), check.source_root, check.target_root, mark)
        out.print(table)
    if report.ok:
        out.print(
            f"[green]identical[/]: both sides verify, {len(report.roots)} roots compared, "
            f"final root {report.roots[-1].target_root if report.roots else '(empty log)'}"
        )
    else:
        out.print(f"[bold red]NOT IDENTICAL[/]: {report.problem}")
