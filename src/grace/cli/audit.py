"""``grace audit``: inspect, prove and verify the ledger."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from grace.cli._common import DatabaseUrlOption, DataDirOption, data_dir_of, run, settings_of
from grace.errors import LedgerLocked, ProofError
from grace.ledger import Entry, Ledger, ProofBundle, load_verifier, verify_bundle
from grace.ledger.ledger import KEY_FILE

__all__ = ["audit_app"]

audit_app = typer.Typer(
    help="Inspect, prove and verify the tamper-evident ledger.", no_args_is_help=True
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

PublicKeyOption = Annotated[
    str | None,
    typer.Option(
        "--public-key",
        "-k",
        help="Public key to check checkpoints with: a file or the text itself (vkey or PEM).",
    ),
]


def _key_text(value: str) -> str:
    path = Path(value)
    if path.is_file():
        return path.read_text()
    if "+" in value or value.startswith("-----BEGIN"):
        return value
    raise ProofError(f"public key {value!r} is neither a readable file nor a key")


async def _open(
    ctx: typer.Context,
    data_dir: Path | None,
    database_url: str | None,
    *,
    write: bool = False,
    public_key: str | None = None,
) -> Ledger:
    """The SQLite ledger in the data dir, or the PostgreSQL one when a database URL is set."""
    settings = settings_of(ctx)
    path = data_dir_of(ctx, data_dir)
    url = database_url or settings.database_url
    key = _key_text(public_key) if public_key else None
    if url:
        return await Ledger.open_postgres(
            url,
            key_file=path / KEY_FILE,
            config=settings.ledger.to_config(),
            read_only=not write,
            public_key=key,
        )
    return await Ledger.open(
        path, config=settings.ledger.to_config(), read_only=not write, public_key=key
    )


def _entries_table(entries: tuple[Entry, ...] | list[Entry]) -> Table:
    table = Table(show_lines=False)
    table.add_column("seq", justify="right", no_wrap=True)
    table.add_column("time (UTC)", no_wrap=True)
    for name in ("subsystem", "actor", "action", "resource", "result"):
        table.add_column(name, overflow="fold")
    for e in entries:
        table.add_row(
            str(e.seq),
            e.timestamp.strftime("%Y-%m-%d %H:%M:%S"),
            e.subsystem,
            e.actor,
            e.action,
            e.resource,
            e.result,
        )
    return table


@audit_app.command("verify")
def verify_cmd(
    ctx: typer.Context,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
    public_key: PublicKeyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Recompute every hash, chain link, Merkle node, root and checkpoint signature.

    Exit 0 when the ledger is intact, 1 when it is not (naming the first bad seq).
    """

    async def go() -> Any:
        ledger = await _open(ctx, data_dir, database_url, public_key=public_key)
        try:
            total = await ledger.size()
            with Progress(
                TextColumn("verifying"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err,
                transient=True,
                disable=as_json or total < 50_000,
            ) as bar:
                task = bar.add_task("verify", total=total)
                return await ledger.verify(lambda done, _total: bar.update(task, completed=done))
        finally:
            await ledger.close()

    report = run(go())
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "valid": report.valid,
                    "entries_checked": report.entries_checked,
                    "tree_size": report.tree_size,
                    "checkpoints_checked": report.checkpoints_checked,
                    "first_bad_seq": report.first_bad_seq,
                    "reason": report.reason,
                    "root_hash": report.root_hash,
                }
            )
        )
    elif report.valid:
        out.print(
            f"[green]valid[/]: {report.entries_checked} entries, "
            f"{report.checkpoints_checked} signed checkpoints, root {report.root_hash}"
        )
    else:
        where = "" if report.first_bad_seq is None else f" at seq {report.first_bad_seq}"
        out.print(f"[bold red]INVALID{where}[/]: {report.reason}")
    raise typer.Exit(0 if report.valid else 1)


@audit_app.command("tail")
def tail_cmd(
    ctx: typer.Context,
    n: Annotated[int, typer.Option("-n", "--lines", min=1, max=10_000, help="How many.")] = 20,
    subsystem: Annotated[str | None, typer.Option(help="Only this subsystem.")] = None,
    actor: Annotated[str | None, typer.Option(help="Only this actor.")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, oldest first.")] = False,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Show the newest entries, oldest of them first."""

    async def go() -> tuple[Entry, ...]:
        ledger = await _open(ctx, data_dir, database_url)
        try:
            page = await ledger.query(
                subsystem=subsystem, actor=actor, action=action, limit=n, newest_first=True
            )
            return page.entries
        finally:
            await ledger.close()

    entries = tuple(reversed(run(go())))
    if as_json:
        for e in entries:
            typer.echo(orjson.dumps(e.to_json()).decode())
    else:
        out.print(_entries_table(entries))


@audit_app.command("show")
def show_cmd(
    ctx: typer.Context,
    seq: Annotated[int, typer.Argument(min=1, help="Entry number (1-based).")],
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Print one entry as JSON."""

    async def go() -> Entry | None:
        ledger = await _open(ctx, data_dir, database_url)
        try:
            return await ledger.get(seq)
        finally:
            await ledger.close()

    entry = run(go())
    if entry is None:
        err.print(f"[red]no entry {seq}[/]")
        raise typer.Exit(1)
    out.print_json(orjson.dumps(entry.to_json()).decode())


@audit_app.command("prove")
def prove_cmd(
    ctx: typer.Context,
    seq: Annotated[int, typer.Argument(min=1, help="Entry number (1-based).")],
    size: Annotated[
        int | None,
        typer.Option(
            "--size", min=1, help="Tree size to prove in (default: a covering checkpoint)."
        ),
    ] = None,
    out_path: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the bundle here (default: stdout).")
    ] = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Write an offline proof bundle: entry, inclusion proof and signed checkpoint."""

    async def go() -> ProofBundle:
        try:  # a writer can sign a checkpoint if none covers the entry yet
            ledger = await _open(ctx, data_dir, database_url, write=True)
        except LedgerLocked:
            ledger = await _open(ctx, data_dir, database_url)
        try:
            return await ledger.prove(seq, size)
        finally:
            await ledger.close()

    text = json.dumps(run(go()).to_json(), indent=2) + "\n"
    if out_path is None:
        typer.echo(text, nl=False)
    else:
        out_path.write_text(text)
        err.print(f"proof bundle for entry {seq} written to {out_path}")


@audit_app.command("checkpoint")
def checkpoint_cmd(
    ctx: typer.Context, data_dir: DataDirOption = None, database_url: DatabaseUrlOption = None
) -> None:
    """Sign a checkpoint of the ledger as it is now and print the signed note."""

    async def go() -> str:
        ledger = await _open(ctx, data_dir, database_url, write=True)
        try:
            return (await ledger.checkpoint()).note
        finally:
            await ledger.close()

    typer.echo(run(go()), nl=False)


@audit_app.command("checkpoints")
def checkpoints_cmd(
    ctx: typer.Context,
    n: Annotated[int, typer.Option("-n", "--limit", min=1, help="How many, newest first.")] = 10,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """List the stored signed checkpoints, newest first."""

    async def go() -> list[tuple[int, str]]:
        ledger = await _open(ctx, data_dir, database_url)
        try:
            return [(cp.tree_size, cp.root_hash.hex()) for cp in await ledger.checkpoints(n)]
        finally:
            await ledger.close()

    table = Table()
    table.add_column("tree size", justify="right", no_wrap=True)
    table.add_column("root hash", no_wrap=True)
    for size, root in run(go()):
        table.add_row(str(size), root)
    out.print(table)


@audit_app.command("verify-proof")
def verify_proof_cmd(
    bundle_path: Annotated[
        Path, typer.Argument(help="Proof bundle written by `grace audit prove`.")
    ],
    public_key: Annotated[
        str,
        typer.Option(
            "--public-key", "-k", help="The log's public key: a file or the text (vkey or PEM)."
        ),
    ],
) -> None:
    """Check a proof bundle offline, with only the log's public key. Exit 0 valid, 1 not."""
    try:
        data = orjson.loads(bundle_path.read_bytes())
    except OSError as e:
        raise ProofError(f"cannot read proof bundle {bundle_path}: {e.strerror}") from e
    except orjson.JSONDecodeError as e:
        raise ProofError(f"proof bundle {bundle_path} is not JSON: {e}") from e
    bundle = ProofBundle.from_json(data)
    verifier = load_verifier(_key_text(public_key), name=bundle.checkpoint.origin)
    result = verify_bundle(bundle, verifier)
    if result.valid:
        out.print(f"[green]valid[/]: {result.reason}")
    else:
        out.print(f"[bold red]INVALID[/]: {result.reason}")
    raise typer.Exit(0 if result.valid else 1)


@audit_app.command("export-key")
def export_key_cmd(
    ctx: typer.Context,
    pem: Annotated[
        bool, typer.Option("--pem", help="PEM instead of the signed-note vkey.")
    ] = False,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Print the ledger's public key, to verify checkpoints and bundles elsewhere."""

    async def go() -> str:
        ledger = await _open(ctx, data_dir, database_url)
        try:
            return ledger.verifier.pem if pem else ledger.verifier.vkey + "\n"
        finally:
            await ledger.close()

    typer.echo(run(go()), nl=False)
