"""The composition root: builds Grace's object graph once, from settings.

Only this module (and, later, the boot orchestrator) constructs real components; every
other module receives its collaborators through constructors. The seed's module-level
singletons are attributes of the one :class:`Grace` object: ``grace.ledger``,
``grace.mesh``, ``grace.gate``, …

Files under the data dir: ``ledger.db``/``ledger.key`` (the audit ledger),
``principals.db`` (principals and hashed API keys), ``governance.db`` (approvals and the
decision index).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from grace.config import GraceSettings
from grace.governance.analyzers import analyze
from grace.governance.approvals import ApprovalStore
from grace.governance.auth import Authenticator, JWTSettings
from grace.governance.constitution import Constitution
from grace.governance.decisions import DecisionIndex
from grace.governance.engine import ConstitutionEngine
from grace.governance.gate import Gate, GateSettings, StaticTrust
from grace.governance.model import EnforcementMode, PrincipalKind, RiskLevel
from grace.governance.principals import PrincipalRegistry
from grace.governance.reload import PolicyReloader
from grace.governance.wiring import GovernanceWiring
from grace.ledger import Ledger
from grace.mesh import TriggerMesh, load_mesh_config
from grace.types import Clock, SystemClock

__all__ = ["Grace"]

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Grace:
    """The running Grace: every component, wired."""

    settings: GraceSettings
    ledger: Ledger
    mesh: TriggerMesh
    principals: PrincipalRegistry
    approvals: ApprovalStore
    decisions: DecisionIndex
    constitution: Constitution
    gate: Gate
    authenticator: Authenticator
    wiring: GovernanceWiring
    reloader: PolicyReloader | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(cls, settings: GraceSettings, *, clock: Clock | None = None) -> Grace:
        """Open the stores, load the constitution, start the mesh."""
        clock = clock or SystemClock()
        data = Path(settings.data_dir)
        gov = settings.governance
        ledger = await Ledger.open(data, config=settings.ledger.to_config(), clock=clock)
        try:
            constitution = Constitution(gov.policy_dir)
            mesh = TriggerMesh(load_mesh_config(), clock=clock, audit=ledger)
            principals = PrincipalRegistry(data / "principals.db", clock=clock)
            approvals = ApprovalStore(
                data / "governance.db", clock=clock, ttl_s=gov.approval_ttl_s, audit=ledger
            )
            decisions = DecisionIndex(data / "governance.db")
            rebuilt = await decisions.catch_up(ledger)
            if rebuilt:
                log.info("decision_index_rebuilt", decisions=rebuilt)
            trust = StaticTrust(gov.default_trust)
            # Mesh publishers are Grace's own in-process components, each holding an
            # identity handle issued here; until the trust store scores them, they are
            # trusted as Grace itself.
            mesh.set_trust_scorer(StaticTrust(1.0).score)
            engine = ConstitutionEngine(constitution, quorum=gov.parliament_quorum)
            gate = Gate(
                policies=engine,
                analyze=analyze,
                ledger=ledger,
                approvals=approvals,
                clock=clock,
                trust=trust,
                events=mesh.publisher("governance_gate"),
                settings=GateSettings(
                    mode=EnforcementMode(gov.mode),
                    mode_overrides=tuple(
                        (pattern, EnforcementMode(mode))
                        for pattern, mode in gov.mode_overrides.items()
                    ),
                    trust_thresholds=dict.fromkeys(RiskLevel, gov.trust_threshold),
                    parliament_quorum=gov.parliament_quorum,
                    decision_timeout_s=gov.decision_timeout_s,
                ),
                index=decisions,
            )
            jwt_settings = None
            if gov.jwt_issuer and gov.jwt_audience and gov.jwt_key_files:
                jwt_settings = JWTSettings(
                    issuer=gov.jwt_issuer,
                    audience=gov.jwt_audience,
                    algorithms=gov.jwt_algorithms,
                    keys=tuple(p.read_text() for p in gov.jwt_key_files),
                )
            authenticator = Authenticator(
                principals,
                jwt_settings=jwt_settings,
                trusted_proxy_token_sha256=gov.trusted_proxy_token_sha256,
            )
            system = principals.get("grace") or principals.add(
                "grace", kind=PrincipalKind.SYSTEM, roles=["system"], autonomy_tier=3
            )
            await mesh.start()
        except BaseException:
            await ledger.close()
            raise
        log.info(
            "grace_started", data_dir=str(data), mode=gov.mode, policies=constitution.digest[:12]
        )
        reloader = (
            PolicyReloader(
                engine, gov.policy_dir, audit=ledger, interval_s=gov.policy_reload_interval_s
            )
            if gov.policy_dir is not None and gov.policy_reload_interval_s > 0
            else None
        )
        grace = cls(
            settings=settings,
            ledger=ledger,
            mesh=mesh,
            principals=principals,
            approvals=approvals,
            decisions=decisions,
            constitution=constitution,
            gate=gate,
            authenticator=authenticator,
            wiring=GovernanceWiring(gate, system=system),
            reloader=reloader,
        )
        if reloader is not None:
            grace._tasks.append(asyncio.create_task(reloader.run(), name="grace-policy-reload"))
        return grace

    async def stop(self) -> None:
        """Stop background work, drain the mesh, close the stores and the ledger."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.mesh.stop()
        self.approvals.close()
        await self.decisions.aclose()
        self.principals.close()
        await self.ledger.close()
