"""The composition root: builds Grace's object graph once, from settings, through the
Guardian boot.

Only this module (and :mod:`grace.boot`) constructs real components; every other module
receives its collaborators through constructors. The seed's module-level singletons are
attributes of the one :class:`Grace` object: ``grace.ledger``, ``grace.mesh``,
``grace.gate``, …

``Grace.start`` registers the standard chunks with a :class:`~grace.boot.BootOrchestrator`
and runs it in the caller's event loop (the server's lifespan), so every background task
belongs to that loop and is cancelled by :meth:`Grace.stop`:

====  ===================  ==========================================================
 0    core                 data dir, ledger and its key, trust store, principals,
                           approvals, decision index (caught up with the ledger),
                           constitution
 1    mesh                 the trigger mesh from its routing config
 1.5  production_systems   governance gate and wiring, authenticator, ingress controls,
                           process supervisor, monitors (built), immune kernel
                           (``ENABLE_AVN_IMMUNE``); mesh started
 1.6  mesh_validators      the mesh's trust scorer and constitutional validator
                           (``can_fail``: the mesh then runs without them, degraded)
 2    monitors             supervised processes, health checks, metric scrapers
                           (``can_fail``: Grace runs without them, degraded)
 3    api                  policy hot reload
====  ===================  ==========================================================

Files under the data dir: ``ledger.db``/``ledger.key`` (the audit ledger),
``trust.db`` (reputation), ``principals.db`` (principals and hashed API keys),
``governance.db`` (approvals and the decision index).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import structlog

from grace.boot import BootChunk, BootOrchestrator, BootReport, HealthReport
from grace.config import GraceSettings
from grace.decision import CodeDeployer, TargetState, UnifiedDecisionEngine
from grace.errors import GovernanceError
from grace.governance.analyzers import analyze
from grace.governance.approvals import ApprovalState, ApprovalStore
from grace.governance.auth import Authenticator, JWTSettings
from grace.governance.constitution import Constitution
from grace.governance.decisions import DecisionIndex
from grace.governance.engine import ConstitutionEngine
from grace.governance.gate import Gate, GateSettings
from grace.governance.model import EnforcementMode, PrincipalKind, RiskLevel
from grace.governance.principals import PrincipalRegistry
from grace.governance.reload import PolicyReloader
from grace.governance.wiring import GovernanceWiring
from grace.immune import (
    BudgetSettings,
    CircuitBreakerExecutor,
    ControlKind,
    EscalateExecutor,
    Escalator,
    ExecutorRegistry,
    HttpWebhookExecutor,
    ImmuneKernel,
    IngressControls,
    KernelSettings,
    ProcessSpec,
    ProcessSupervisor,
    QuarantineExecutor,
    RateLimitExecutor,
    RestartProcessExecutor,
    ShellCommandExecutor,
    Verifier,
    create_detector,
    load_playbooks,
)
from grace.immune.leases import InMemoryLeaseStore, LeaseStore, PostgresLeaseStore
from grace.ledger import Ledger
from grace.mesh import (
    MeshSettings,
    Publisher,
    Transport,
    TriggerEvent,
    TriggerMesh,
    load_mesh_config,
)
from grace.mesh.nats import NatsTransport
from grace.monitoring import (
    HealthCheck,
    HealthMonitor,
    HttpProbe,
    MetricsMonitor,
    PrometheusScraper,
    SeriesRule,
    TcpProbe,
)
from grace.trust import TrustStore
from grace.types import Clock, SystemClock
from grace.verification import Sandbox, SandboxSettings, VerificationEngine

__all__ = ["Grace"]

log = structlog.get_logger(__name__)


class Grace:
    """The running Grace: every component, wired. Build it with :meth:`start`."""

    settings: GraceSettings
    ledger: Ledger
    mesh: TriggerMesh
    trust: TrustStore
    principals: PrincipalRegistry
    approvals: ApprovalStore
    decision_index: DecisionIndex
    constitution: Constitution
    engine: ConstitutionEngine
    gate: Gate
    authenticator: Authenticator
    wiring: GovernanceWiring
    controls: IngressControls
    supervisor: ProcessSupervisor
    health: HealthMonitor
    metrics: MetricsMonitor
    immune: ImmuneKernel | None
    """None when ``ENABLE_AVN_IMMUNE`` is off."""
    verification: VerificationEngine
    decisions: UnifiedDecisionEngine
    """The unified decision engine (governance + verification + trust + immune state)."""
    deployer: CodeDeployer
    boot: BootOrchestrator
    boot_report: BootReport
    reloader: PolicyReloader | None

    def __init__(self, settings: GraceSettings, *, clock: Clock | None = None) -> None:
        """An unbooted shell; use :meth:`start`."""
        self.settings = settings
        self.clock = clock or SystemClock()
        self.reloader = None
        self.immune = None
        self._data_abs = os.path.abspath(settings.data_dir)
        self._http: httpx.AsyncClient | None = None
        self._leases: LeaseStore | None = None
        self._monitor_tasks: list[asyncio.Task[None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._closers: list[Any] = []
        self._components: set[str] = set()
        """Grace's own mesh identities (publisher handles issued by this runtime)."""
        self.boot = BootOrchestrator(clock=self.clock)
        for chunk in self._standard_chunks():
            self.boot.register_chunk(chunk)

    @classmethod
    async def start(cls, settings: GraceSettings, *, clock: Clock | None = None) -> Grace:
        """Boot every chunk; raises :class:`~grace.boot.BootAborted` (everything started is
        shut down again) when a chunk that must not fail fails."""
        grace = cls(settings, clock=clock)
        grace.boot_report = await grace.boot.run()
        log.info(
            "grace_started",
            data_dir=str(settings.data_dir),
            mode=str(grace.gate.settings.mode),
            policies=grace.constitution.digest[:12],
            boot=str(grace.boot_report.state),
        )
        return grace

    async def stop(self) -> None:
        """Stop background work and every chunk in reverse boot order."""
        await self.boot.shutdown()

    async def get_stats(self) -> dict[str, Any]:
        """Every component's figures (``grace status``, ``GET /v1/status``)."""
        checkpoint = await self.ledger.latest_checkpoint()
        scores = await self.trust.list_scores(limit=10_000)
        pending = await self.approvals.find(state=ApprovalState.PENDING)
        return {
            "boot": {
                "state": str(self.boot_report.state),
                "degraded": list(self.boot_report.degraded_chunks),
                "duration_s": round(self.boot_report.duration_s, 3),
            },
            "ledger": {
                "size": await self.ledger.size(),
                "checkpointed_size": checkpoint.tree_size if checkpoint else 0,
                "origin": self.ledger.verifier.name,
            },
            "governance": {
                "mode": str(self.gate.settings.mode),
                "policies": len(self.constitution.policies),
                "constitution": self.engine.constitution.digest[:12],
                "pending_approvals": len(pending),
            },
            "mesh": self.mesh.get_stats(),
            "immune": self.immune.get_stats() if self.immune is not None else {"enabled": False},
            "controls": {"in_force": len(self.controls.active())},
            "trust": {
                "subjects": len(scores),
                "quarantined": sum(1 for s in scores if s.quarantined),
                "lowest": [s.subject_id for s in scores[:5]],
            },
        }

    # -- the standard chunks -------------------------------------------------------------

    def _standard_chunks(self) -> list[BootChunk]:
        return [
            BootChunk(
                chunk_id="core",
                name="Core (settings, ledger, keys, stores, constitution)",
                priority=0,
                boot_function=self._boot_core,
                validation_function=self._validate_core,
                shutdown_function=self._stop_core,
                timeout_s=60.0,
            ),
            BootChunk(
                chunk_id="mesh",
                name="Trigger mesh",
                priority=1,
                boot_function=self._boot_mesh,
                depends_on=("core",),
                shutdown_function=self._stop_mesh,
            ),
            BootChunk(
                chunk_id="production_systems",
                name="Production systems (governance gate, mesh started)",
                priority=1.5,
                boot_function=self._boot_production,
                depends_on=("core", "mesh"),
                validation_function=self._validate_production,
                shutdown_function=self._stop_production,
            ),
            BootChunk(
                chunk_id="mesh_validators",
                name="Trigger mesh validators (constitutional validator, trust scorer)",
                priority=1.6,
                boot_function=self._boot_mesh_validators,
                depends_on=("production_systems",),
                can_fail=True,
            ),
            BootChunk(
                chunk_id="monitors",
                name="Monitors (supervised processes, health checks, metric scrapers)",
                priority=2,
                boot_function=self._boot_monitors,
                depends_on=("production_systems",),
                can_fail=True,
                shutdown_function=self._stop_monitors,
            ),
            BootChunk(
                chunk_id="api",
                name="API support (policy hot reload)",
                priority=3,
                boot_function=self._boot_api,
                depends_on=("production_systems",),
                shutdown_function=self._stop_tasks,
            ),
        ]

    async def _boot_core(self) -> dict[str, Any]:
        settings = self.settings
        data = Path(settings.data_dir)
        gov = settings.governance
        # The embedded default is SQLite in the data dir; GRACE_DATABASE_URL puts the ledger on
        # PostgreSQL (one chain for several instances, signed with the key file in the data dir).
        self.ledger = await Ledger.open_url(
            settings.database_url or f"sqlite:{data}",
            key_file=data / "ledger.key",
            config=settings.ledger.to_config(),
            clock=self.clock,
        )
        self._closers.append(self.ledger.close)
        self.boot.set_audit(self.ledger)
        if settings.database_url:
            # Reputation shared by every instance (ADR 0013): reads from a NOTIFY-fed snapshot.
            self.trust = await TrustStore.open_postgres(
                settings.database_url,
                config=settings.trust.to_config(),
                clock=self.clock,
                audit=self.ledger,
            )
        else:
            self.trust = await TrustStore.open(
                data / "trust.db",
                config=settings.trust.to_config(),
                clock=self.clock,
                audit=self.ledger,
            )
        self._closers.append(self.trust.close)
        if settings.database_url:
            # Principals, keys and approvals are shared by every instance (ADR 0011); the
            # decision index stays a per-instance cache that catches up from the shared ledger.
            self.principals = await asyncio.to_thread(
                PrincipalRegistry.open_postgres, settings.database_url, clock=self.clock
            )
            self._closers.append(self.principals.close)
            self.approvals = await ApprovalStore.open_postgres(
                settings.database_url, clock=self.clock, ttl_s=gov.approval_ttl_s, audit=self.ledger
            )
            self._closers.append(self.approvals.aclose)
        else:
            self.principals = PrincipalRegistry(data / "principals.db", clock=self.clock)
            self._closers.append(self.principals.close)
            self.approvals = ApprovalStore(
                data / "governance.db",
                clock=self.clock,
                ttl_s=gov.approval_ttl_s,
                audit=self.ledger,
            )
            self._closers.append(self.approvals.close)
        if self.principals.get("grace") is None:
            try:  # instances starting together on one database race to create it: one wins
                self.principals.add(
                    "grace", kind=PrincipalKind.SYSTEM, roles=["system"], autonomy_tier=3
                )
            except GovernanceError:
                if self.principals.get("grace") is None:
                    raise
        self.decision_index = DecisionIndex(data / "governance.db", ledger=self.ledger)
        self._closers.append(self.decision_index.aclose)
        rebuilt = await self.decision_index.catch_up(self.ledger)
        if rebuilt:
            log.info("decision_index_rebuilt", decisions=rebuilt)
        self.constitution = Constitution(gov.policy_dir)
        return {"status": "online", "ledger_size": await self.ledger.size()}

    async def _validate_core(self, result: Any) -> HealthReport:
        if self.ledger.read_only:
            return HealthReport.critical("the ledger is open read-only")
        if not self.constitution.policies:
            return HealthReport.critical("the constitution has no policies")
        return HealthReport(details=result)

    async def _stop_core(self) -> None:
        while self._closers:
            close = self._closers.pop()
            result = close()
            if asyncio.iscoroutine(result):
                await result

    async def _boot_mesh(self) -> dict[str, Any]:
        cfg = self.settings.mesh
        transport: Transport | None = None
        if cfg.transport == "nats":
            # Several Grace instances share one JetStream stream; each subscriber group is
            # a durable queue consumer, so an event is handled once per group.
            transport = NatsTransport(
                cfg.nats_servers,
                stream=cfg.nats_stream,
                subject_prefix=cfg.nats_subject_prefix,
                ack_wait_s=cfg.nats_ack_wait_s,
            )
        self.mesh = TriggerMesh(
            load_mesh_config(),
            clock=self.clock,
            audit=self.ledger,
            transport=transport,
            settings=MeshSettings(
                queue_capacity=cfg.queue_capacity,
                workers=cfg.workers,
                handler_timeout_s=cfg.handler_timeout_s,
                max_attempts=cfg.max_attempts,
            ),
        )
        return {
            "status": "configured",
            "events": len(self.mesh.config.events),
            "transport": cfg.transport,
        }

    async def _stop_mesh(self) -> None:
        await self.mesh.stop()

    async def _boot_production(self) -> dict[str, Any]:
        settings = self.settings
        gov = settings.governance
        mode = EnforcementMode(gov.mode)
        if not settings.enable_governance_gate:
            log.warning("governance_gate_disabled", hint="ENABLE_GOVERNANCE_GATE=false: mode off")
            mode = EnforcementMode.OFF
        self.engine = ConstitutionEngine(self.constitution, quorum=gov.parliament_quorum)
        self.gate = Gate(
            policies=self.engine,
            analyze=analyze,
            ledger=self.ledger,
            approvals=self.approvals,
            clock=self.clock,
            trust=self.trust,
            events=self._publisher("governance_gate"),
            settings=GateSettings(
                mode=mode,
                mode_overrides=tuple(
                    (pattern, EnforcementMode(m)) for pattern, m in gov.mode_overrides.items()
                ),
                trust_thresholds=dict.fromkeys(RiskLevel, gov.trust_threshold),
                parliament_quorum=gov.parliament_quorum,
                decision_timeout_s=gov.decision_timeout_s,
            ),
            index=self.decision_index,
        )
        jwt_settings = None
        if gov.jwt_issuer and gov.jwt_audience and gov.jwt_key_files:
            jwt_settings = JWTSettings(
                issuer=gov.jwt_issuer,
                audience=gov.jwt_audience,
                algorithms=gov.jwt_algorithms,
                keys=tuple(p.read_text() for p in gov.jwt_key_files),
            )
        self.authenticator = Authenticator(
            self.principals,
            jwt_settings=jwt_settings,
            trusted_proxy_token_sha256=gov.trusted_proxy_token_sha256,
        )
        system = self.principals.get("grace")
        if system is None:  # pragma: no cover - the core chunk made sure it exists
            raise GovernanceError("the system principal 'grace' is missing")
        self.wiring = GovernanceWiring(self.gate, system=system)
        # One healing run per incident across instances: the lease lives in PostgreSQL when
        # the deployment shares one (ADR 0012), in memory otherwise.
        self._leases = (
            await PostgresLeaseStore.open(settings.database_url)
            if settings.database_url
            else InMemoryLeaseStore(self.clock)
        )
        self._build_immune()
        self.verification = VerificationEngine(
            clock=self.clock,
            # Tests under verification must not read Grace's own data (keys, ledger).
            sandbox=Sandbox(SandboxSettings(hide_paths=(self._data_abs,))),
            ledger=self.ledger,
            events=self._publisher("verification_engine"),
        )
        self.decisions = UnifiedDecisionEngine(
            ledger=self.ledger,
            clock=self.clock,
            trust=self.trust,
            immune=self,
            events=self._publisher("decision_engine"),
        )
        self.deployer = CodeDeployer(
            verifier=self.verification,
            wiring=self.wiring,
            decisions=self.decisions,
            approvals=self.approvals,
        )
        await self.mesh.start()
        self.boot.set_audit(self.ledger, self._publisher("guardian"))
        return {
            "status": "online",
            "mode": str(mode),
            "immune": "online" if self.immune is not None else "disabled",
        }

    def _build_immune(self) -> None:
        """Controls, supervisor, monitors and the immune kernel (chunk 1.5: built and
        subscribed before the mesh starts; the monitors' loops start in chunk 2)."""
        settings = self.settings
        data = Path(settings.data_dir)
        self._http = httpx.AsyncClient(follow_redirects=False)
        self.controls = IngressControls(clock=self.clock)
        self.mesh.set_publisher_hold(self._held_publisher)
        self.supervisor = ProcessSupervisor(clock=self.clock, log_dir=data / "processes")
        for process in settings.immune.processes:
            self.supervisor.register(
                ProcessSpec(
                    name=process.name,
                    argv=process.argv,
                    cwd=process.cwd,
                    env=process.env,
                    stop_timeout_s=process.stop_timeout_s,
                )
            )
        mon = settings.monitoring
        self.health = HealthMonitor(clock=self.clock, events=self._publisher("health_monitor"))
        self.metrics = MetricsMonitor(
            clock=self.clock,
            events=self._publisher("metrics_monitor"),
            rules=(
                SeriesRule(
                    baseline_factor=mon.baseline_factor,
                    score_threshold=mon.score_threshold,
                    cooldown_s=mon.cooldown_s,
                ),
            ),
            detector_factory=lambda: create_detector(mon.detector),
        )
        if not settings.enable_avn_immune:
            log.warning("immune_kernel_disabled", hint="ENABLE_AVN_IMMUNE=false")
            return
        imm = settings.immune
        kernel_events = self._publisher("immune_kernel")
        escalator = Escalator(ledger=self.ledger, clock=self.clock, events=kernel_events)
        executors = ExecutorRegistry(
            [
                RestartProcessExecutor(self.supervisor, commands=imm.restart_commands),
                ShellCommandExecutor(imm.shell_commands),
                HttpWebhookExecutor(self._http, allowed_prefixes=imm.webhook_prefixes),
                CircuitBreakerExecutor(self.controls),
                RateLimitExecutor(self.controls),
                QuarantineExecutor(self.controls, self.trust),
                EscalateExecutor(escalator),
            ]
        )
        self.immune = ImmuneKernel(
            governance=self.wiring,
            ledger=self.ledger,
            clock=self.clock,
            playbooks=load_playbooks(imm.playbooks),
            executors=executors,
            verifier=Verifier(
                clock=self.clock,
                health=self.health,
                metrics=self.metrics,
                controls=self.controls,
                trust=self.trust,
            ),
            escalator=escalator,
            events=kernel_events,
            trust=self.trust,
            leases=self._leases,
            settings=KernelSettings(
                lease_ttl_s=imm.lease_ttl_s,
                dedup_window_s=imm.dedup_window_s,
                budget=BudgetSettings(
                    max_runs=imm.budget_max_runs,
                    window_s=imm.budget_window_s,
                    cooldown_s=imm.budget_cooldown_s,
                ),
            ),
        )
        self.immune.attach(self.mesh)

    async def target_state(self, target: str) -> TargetState:
        """The immune state of ``target`` for the unified decision engine: its worst open
        incident and whether it is quarantined. Without the immune kernel the state is
        unknown, and an unknown input blocks (raises)."""
        if self.immune is None:
            raise RuntimeError("the immune kernel is disabled (ENABLE_AVN_IMMUNE=false)")
        incidents = self.immune.incidents.active_on(target)
        worst = max(incidents, key=lambda i: i.severity.rank, default=None)
        fenced = self.controls.in_force(ControlKind.QUARANTINE, f"component:{target}")
        return TargetState(
            active_incident_severity=None if worst is None else str(worst.severity),
            quarantined=self.trust.is_quarantined(target) or fenced is not None,
            incident_id=None if worst is None else worst.incident_id,
        )

    def _held_publisher(self, publisher: str) -> str | None:
        """The mesh's publisher hold: a quarantined publisher (trust store or ingress
        control) or one behind an open breaker emits nothing."""
        if self.trust.is_quarantined(publisher):
            return f"{publisher!r} is quarantined"
        held = self.controls.check(f"component:{publisher}")
        return None if held is None else held.reason

    async def _stop_production(self) -> None:
        # Also the undo of a failed attempt: stop only what was built.
        if self.immune is not None:
            await self.immune.stop()
        if isinstance(self._leases, PostgresLeaseStore):
            await self._leases.close()
        if hasattr(self, "supervisor"):
            await self.supervisor.stop_all()
        if self._http is not None:
            await self._http.aclose()

    async def _boot_monitors(self) -> dict[str, Any]:
        settings = self.settings
        client = self._http
        if client is None:  # pragma: no cover - chunk 1.5 built it; the plan orders them
            raise RuntimeError("the production systems chunk did not run")
        started = []
        for process in settings.immune.processes:
            if process.autostart:
                await self.supervisor.start(process.name)
                started.append(process.name)
        for check in settings.monitoring.health_checks:
            if check.url is not None:
                probe: HttpProbe | TcpProbe = HttpProbe(
                    check.url,
                    client=client,
                    timeout_s=check.timeout_s,
                    degraded_latency_s=check.degraded_latency_s,
                )
            elif check.tcp is not None:
                host, _, port = check.tcp.rpartition(":")
                probe = TcpProbe(
                    host,
                    int(port),
                    timeout_s=check.timeout_s,
                    degraded_latency_s=check.degraded_latency_s,
                )
            else:  # pragma: no cover - HealthCheckSettings requires exactly one of them
                raise ValueError(f"health check {check.name!r} needs a url or a tcp address")
            self.health.add(
                HealthCheck(
                    name=check.name,
                    probe=probe,
                    resource=check.resource,
                    interval_s=check.interval_s,
                    fail_after=check.fail_after,
                    recover_after=check.recover_after,
                )
            )
        self._monitor_tasks = [
            asyncio.create_task(self.health.run(), name="grace-health-monitor"),
            *(
                asyncio.create_task(
                    PrometheusScraper(
                        self.metrics, url=target.url, client=client, clock=self.clock
                    ).run(target.interval_s),
                    name=f"grace-scrape:{target.url}",
                )
                for target in settings.monitoring.scrape
            ),
        ]
        return {
            "status": "online",
            "processes": started,
            "health_checks": len(settings.monitoring.health_checks),
            "scrapers": len(settings.monitoring.scrape),
        }

    async def _stop_monitors(self) -> None:
        for task in self._monitor_tasks:
            task.cancel()
        await asyncio.gather(*self._monitor_tasks, return_exceptions=True)
        self._monitor_tasks.clear()

    async def _validate_production(self, result: Any) -> HealthReport:
        if not self.mesh.running:
            return HealthReport.critical("the trigger mesh did not start")
        return HealthReport(details=result)

    def _publisher(self, component_id: str) -> Publisher:
        """Issue one of Grace's own mesh identities (once per identity)."""
        handle = self.mesh.publisher(component_id)
        self._components.add(component_id)
        return handle

    async def _boot_mesh_validators(self) -> dict[str, Any]:
        self.mesh.set_trust_scorer(self._publisher_trust)
        self.mesh.set_governance_validator(self._constitutional_event_check)
        return {"status": "configured"}

    async def _publisher_trust(self, component_id: str) -> float:
        """The mesh's trust scorer: Grace's own components (handles issued here) are trusted
        as Grace itself unless quarantined; every other publisher (an HTTP principal) has
        its reputation from the trust store."""
        if component_id in self._components and not self.trust.is_quarantined(component_id):
            return 1.0
        return await self.trust.score(component_id)

    async def _constitutional_event_check(self, event: TriggerEvent) -> bool:
        """The mesh's constitutional validator: the content analyzers find nothing."""
        return not analyze({"event_type": event.event_type, "payload": event.payload}, root="event")

    async def _boot_api(self) -> dict[str, Any]:
        gov = self.settings.governance
        if gov.policy_dir is not None and gov.policy_reload_interval_s > 0:
            self.reloader = PolicyReloader(
                self.engine,
                gov.policy_dir,
                audit=self.ledger,
                interval_s=gov.policy_reload_interval_s,
            )
            self._tasks.append(asyncio.create_task(self.reloader.run(), name="grace-policy-reload"))
        return {"status": "online", "policy_reload": self.reloader is not None}

    async def _stop_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
