"""``grace principals``, ``grace keys``, ``grace approvals``, ``grace policy``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from grace.cli._common import (
    DatabaseUrlOption,
    DataDirOption,
    data_dir_of,
    database_url_of,
    run,
    settings_of,
)
from grace.errors import ApprovalError, LedgerLocked
from grace.governance.approvals import ApprovalState, ApprovalStore
from grace.governance.constitution import Constitution
from grace.governance.model import PrincipalKind
from grace.governance.principals import PrincipalRegistry
from grace.ledger import Ledger
from grace.types import SystemClock

__all__ = ["approvals_app", "keys_app", "policy_app", "principals_app"]

principals_app = typer.Typer(
    help="Register principals (humans, agents, services).", no_args_is_help=True
)
keys_app = typer.Typer(help="Create and revoke API keys.", no_args_is_help=True)
approvals_app = typer.Typer(help="List and decide approval requests.", no_args_is_help=True)
policy_app = typer.Typer(help="Check the constitution (Cedar policies).", no_args_is_help=True)
out = Console(highlight=False)


def _registry(
    ctx: typer.Context, data_dir: Path | None, database_url: str | None
) -> PrincipalRegistry:
    url = database_url_of(ctx, database_url)
    if url:
        return PrincipalRegistry.open_postgres(url, clock=SystemClock())
    return PrincipalRegistry(data_dir_of(ctx, data_dir) / "principals.db", clock=SystemClock())


async def _approvals(
    ctx: typer.Context, path: Path, database_url: str | None, audit: Ledger | None = None
) -> ApprovalStore:
    url = database_url_of(ctx, database_url)
    if url:
        return await ApprovalStore.open_postgres(url, clock=SystemClock(), audit=audit)
    return ApprovalStore(path / "governance.db", clock=SystemClock(), audit=audit)


@principals_app.command("add")
def principals_add(
    ctx: typer.Context,
    principal_id: Annotated[str, typer.Argument(help="Unique id, e.g. alice or agent-7.")],
    kind: Annotated[PrincipalKind, typer.Option(help="human, agent, service or system.")],
    role: Annotated[
        list[str] | None, typer.Option("--role", "-r", help="A role (repeatable).")
    ] = None,
    tier: Annotated[int, typer.Option(min=0, max=3, help="Autonomy tier (agents).")] = 0,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Register a principal."""
    registry = _registry(ctx, data_dir, database_url)
    try:
        p = registry.add(principal_id, kind=kind, roles=role or [], autonomy_tier=tier)
    finally:
        registry.close()
    out.print(f"added {p.kind} [bold]{p.id}[/] roles={sorted(p.roles)} tier={p.autonomy_tier}")


@principals_app.command("list")
def principals_list(
    ctx: typer.Context, data_dir: DataDirOption = None, database_url: DatabaseUrlOption = None
) -> None:
    """Show the registered principals."""
    registry = _registry(ctx, data_dir, database_url)
    try:
        table = Table("id", "kind", "roles", "tier", "keys")
        for p in registry.all():
            keys = registry.keys_of(p.id)
            active = sum(1 for _, _, revoked in keys if not revoked)
            table.add_row(
                p.id, str(p.kind), ", ".join(sorted(p.roles)), str(p.autonomy_tier), str(active)
            )
    finally:
        registry.close()
    out.print(table)


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    principal: Annotated[str, typer.Option("--principal", "-p", help="Whose key.")],
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Create an API key and print it — this is the only time it is shown."""
    registry = _registry(ctx, data_dir, database_url)
    try:
        key = registry.create_key(principal)
    finally:
        registry.close()
    typer.echo(key)
    Console(stderr=True).print("store it now: Grace keeps only its hash")


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The id part of grace_<id>_<secret>.")],
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Revoke an API key."""
    registry = _registry(ctx, data_dir, database_url)
    try:
        revoked = registry.revoke_key(key_id)
    finally:
        registry.close()
    if not revoked:
        out.print(f"[red]no active key {key_id}[/]")
        raise typer.Exit(1)
    out.print(f"revoked {key_id}")


@approvals_app.command("list")
def approvals_list(
    ctx: typer.Context,
    state: Annotated[
        ApprovalState | None, typer.Option(help="Only this state.")
    ] = ApprovalState.PENDING,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Show approval requests (pending ones by default)."""

    async def go() -> Table:
        store = await _approvals(ctx, data_dir_of(ctx, data_dir), database_url)
        try:
            return await _table(store, state)
        finally:
            await store.aclose()

    out.print(run(go()))


async def _table(store: ApprovalStore, state: ApprovalState | None) -> Table:
    """The approval requests in ``state`` (all when None) as a table."""
    table = Table("id", "state", "requester", "action", "resource", "votes", "expires")
    for a in await store.find(state=state):
        table.add_row(
            a.id,
            str(a.state),
            a.requester,
            a.action,
            a.resource,
            f"{len(a.approvers)}/{a.quorum}",
            a.expires_at.strftime("%Y-%m-%d %H:%M"),
        )
    return table


def _decide(
    ctx: typer.Context,
    data_dir: Path | None,
    database_url: str | None,
    approval_id: str,
    approver: str,
    approve: bool,
    comment: str,
) -> None:
    settings = settings_of(ctx)
    path = data_dir_of(ctx, data_dir)
    url = database_url_of(ctx, database_url)
    registry = _registry(ctx, data_dir, database_url)
    try:
        principal = registry.get(approver)
    finally:
        registry.close()
    if principal is None or "approver" not in principal.roles:
        out.print(f"[red]{approver!r} is not a registered principal with the approver role[/]")
        raise typer.Exit(1)

    async def go() -> str:
        try:
            ledger = await Ledger.open_url(
                url or f"sqlite:{path}",
                key_file=path / "ledger.key",
                config=settings.ledger.to_config(),
            )
        except LedgerLocked as e:
            raise ApprovalError(
                f"{e}. While the server runs, decide through its API: "
                f"POST /v1/approvals/{approval_id}/{'approve' if approve else 'reject'} "
                "with the approver's API key"
            ) from e
        store = await _approvals(ctx, path, database_url, audit=ledger)
        try:
            if approve:
                result = await store.approve(approval_id, approver, comment=comment)
            else:
                result = await store.reject(approval_id, approver, comment=comment)
            return (
                f"{result.id}: {result.state} ({len(result.approvers)}/{result.quorum} approvals)"
            )
        finally:
            await store.aclose()
            await ledger.close()

    out.print(asyncio.run(go()))


@approvals_app.command("approve")
def approvals_approve(
    ctx: typer.Context,
    approval_id: Annotated[str, typer.Argument()],
    approver: Annotated[str, typer.Option("--as", help="The approving principal (approver role).")],
    comment: Annotated[str, typer.Option(help="Why.")] = "",
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Approve a request (recorded in the ledger; never your own)."""
    _decide(ctx, data_dir, database_url, approval_id, approver, True, comment)


@approvals_app.command("reject")
def approvals_reject(
    ctx: typer.Context,
    approval_id: Annotated[str, typer.Argument()],
    approver: Annotated[str, typer.Option("--as", help="The rejecting principal (approver role).")],
    comment: Annotated[str, typer.Option(help="Why.")] = "",
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Reject a request (recorded in the ledger)."""
    _decide(ctx, data_dir, database_url, approval_id, approver, False, comment)


@policy_app.command("validate")
def policy_validate(
    policy_dir: Annotated[
        Path | None, typer.Argument(help="A policy directory (default: the packaged constitution).")
    ] = None,
) -> None:
    """Parse and schema-check every policy; exit 2 naming each problem."""
    constitution = Constitution(policy_dir)
    metas = constitution.policies
    staged = sum(1 for m in metas.values() if str(m.mode) == "log")
    out.print(
        f"[green]valid[/]: {len(metas)} policies ({staged} staged in log mode), "
        f"digest {constitution.digest[:16]}"
    )


@policy_app.command("test")
def policy_test(
    cases_file: Annotated[
        Path, typer.Argument(help="YAML file of cases (see grace.governance.policytest).")
    ],
    policy_dir: Annotated[
        Path | None, typer.Option(help="Policies to test (default: packaged).")
    ] = None,
) -> None:
    """Run policy test cases; exit 1 if any case gets another outcome than expected."""
    from grace.governance.engine import ConstitutionEngine
    from grace.governance.policytest import load_cases, run_cases

    results = run_cases(ConstitutionEngine(Constitution(policy_dir)), load_cases(cases_file))
    table = Table("case", "expected", "got", "result")
    for r in results:
        table.add_row(
            r.case.name,
            str(r.case.expect),
            str(r.verdict.outcome),
            "[green]pass[/]" if r.passed else f"[red]FAIL[/] {r.problem}",
        )
    out.print(table)
    failed = sum(not r.passed for r in results)
    out.print(f"{len(results) - failed} passed, {failed} failed")
    raise typer.Exit(1 if failed else 0)


@policy_app.command("explain")
def policy_explain(
    action: Annotated[str, typer.Option(help="The action, e.g. deploy_model or POST:/v1/items.")],
    principal: Annotated[str, typer.Option(help="Principal id.")] = "someone",
    kind: Annotated[PrincipalKind, typer.Option(help="Principal kind.")] = PrincipalKind.HUMAN,
    role: Annotated[list[str] | None, typer.Option("--role", help="A role (repeatable).")] = None,
    tier: Annotated[int, typer.Option(min=0, max=3)] = 0,
    resource: Annotated[str, typer.Option()] = "",
    context: Annotated[str, typer.Option(help="The request context as JSON.")] = "{}",
    autonomous: Annotated[bool, typer.Option("--autonomous")] = False,
    trust: Annotated[float, typer.Option(min=0, max=1)] = 0.75,
    approvals: Annotated[int, typer.Option(min=0)] = 0,
    policy_dir: Annotated[Path | None, typer.Option(help="Policies (default: packaged).")] = None,
) -> None:
    """Show the facts the gate would establish and which policies decide, and why."""
    import orjson

    from grace.governance.engine import ConstitutionEngine
    from grace.governance.model import ActionRequest, Principal
    from grace.governance.policytest import explain

    try:
        ctx = orjson.loads(context)
    except orjson.JSONDecodeError as e:
        raise typer.BadParameter(f"--context is not JSON: {e}") from e
    if not isinstance(ctx, dict):
        raise typer.BadParameter("--context must be a JSON object")
    request = ActionRequest(
        request_id="explain",
        principal=Principal(
            id=principal, kind=kind, roles=frozenset(role or []), autonomy_tier=tier
        ),
        action=action,
        resource=resource,
        context=ctx,
        is_autonomous=autonomous,
        source="cli",
    )
    facts, verdict = explain(
        ConstitutionEngine(Constitution(policy_dir)), request, trust=trust, approvals=approvals
    )
    out.print(
        f"risk {facts.risk}, trust {facts.trust:.2f}, reversible {facts.reversible}, "
        f"findings {[str(getattr(f, 'kind', f)) for f in facts.findings] or 'none'}"
    )
    out.print(f"outcome: [bold]{verdict.outcome}[/]")
    for r in verdict.reasons:
        out.print(f"  - {r.policy_id or '(finding)'} [{r.principle}] {r.message}", markup=False)
    for r in verdict.observed:
        out.print(f"  ~ staged {r.policy_id}: would deny — {r.message}", markup=False)
