"""The immune kernel (AVN): anomalies in, governed and verified healing out.

Flow for every anomaly (``anomaly.detected``, ``security.event``, or :meth:`report`):

1. **intake** — the payload is validated; bad input is a counted rejection, never a crash;
2. **incident** — grouped with others of the same resource and type (dedup window);
   alerts for an incident under healing are held. Only a *new* incident is recorded
   (``log_anomaly_detected``), announced (``avn.anomaly_detected``), attributed to the
   resource's trust, and healed;
3. **healing** (a background task; one at a time per resource) — the first matching
   playbook, unless its cooldown or ``max_attempts`` forbid; then the resource's healing
   **budget** (breaker open ⇒ escalate, no action); then the playbook's steps under
   governance (see :mod:`grace.immune._runner`);
   Before any step the kernel claims the incident's **lease** (``resource`` + type) in the
   lease store, renews it while the run lasts and releases it after (ADR 0012): when
   several instances opened the same incident, one heals; the others record that the
   incident is healed elsewhere and retry the claim on their next alert for it (so a
   crashed holder's expired lease is taken over). A failing lease store means no
   healing: the incident is escalated (fail closed);
4. **outcome** — healed ⇒ the incident is resolved (time to recovery counted), trust
   records a healing success; otherwise it is escalated (ledger + ``avn.escalated``) and
   trust records a failure.

``system.health_check`` reports with status ``healthy`` resolve the resource's open or
escalated incidents (it recovered); the other statuses are left to ``anomaly.detected``,
which the health monitor emits alongside, so one failure is one anomaly.

Ledger order for one healed incident: anomaly_detected → (gate) decision → action
executed (with the decision's seq) → verify → incident_resolved.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import os
import secrets
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import structlog

from grace.errors import ImmuneError
from grace.immune._runner import AvnGovernance, Runner, RunOutcome, TrustRecorder
from grace.immune.budget import BudgetSettings, HealingBudget
from grace.immune.escalation import Escalator, EventSink
from grace.immune.executors import ExecutorRegistry
from grace.immune.incidents import Admission, IncidentBook
from grace.immune.intake import anomaly_from_event, security_anomaly_from_event
from grace.immune.leases import InMemoryLeaseStore, LeaseStore, incident_lease_key
from grace.immune.playbooks import PlaybookSet
from grace.immune.taxonomy import Anomaly, Incident, IncidentState, Severity
from grace.immune.verify import Verifier
from grace.ledger.audit import AuditSink, log_anomaly_detected
from grace.mesh.event import TriggerEvent
from grace.trust import Evidence
from grace.types import Clock

__all__ = [
    "ANOMALY_EVENT",
    "COMPONENT_ID",
    "CONSUMED_EVENTS",
    "AvnGovernance",
    "ComponentRegistry",
    "ImmuneKernel",
    "KernelSettings",
    "RunOutcome",
    "TrustRecorder",
]

log = structlog.get_logger(__name__)

COMPONENT_ID: Final = "immune_kernel"
CONSUMED_EVENTS: Final = ("anomaly.detected", "security.event", "system.health_check")
ANOMALY_EVENT: Final = "avn.anomaly_detected"

_DEFAULT_ALLOWANCE: Final[Mapping[Severity, int]] = {
    Severity.INFO: 0,
    Severity.LOW: 1,
    Severity.MEDIUM: 3,
    Severity.HIGH: 4,
    Severity.CRITICAL: 5,
}


class ComponentRegistry(Protocol):
    """How the kernel receives events (``grace.mesh.TriggerMesh``)."""

    def register_component_handler(
        self, component_id: str, handler: Callable[[TriggerEvent], Awaitable[None]]
    ) -> None:
        """Deliver the component's configured subscriptions to ``handler``."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class KernelSettings:
    """How the kernel groups, budgets and bounds healing."""

    dedup_window_s: float = 300.0
    max_active_incidents: int = 10_000
    incident_history: int = 1_000
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    disruption_allowance: Mapping[Severity, int] = field(
        default_factory=lambda: dict(_DEFAULT_ALLOWANCE)
    )
    """The most disruptive step (0 … 5+) an incident of each severity may run."""
    max_concurrent_runs: int = 16
    """Healing runs under way at once, across resources (one per resource at a time)."""
    lease_ttl_s: float = 30.0
    """How long an incident lease lives unless renewed (renewed every third of it)."""

    def __post_init__(self) -> None:
        if self.dedup_window_s <= 0 or self.max_concurrent_runs < 1:
            raise ValueError("dedup_window_s must be positive, max_concurrent_runs >= 1")
        if not self.lease_ttl_s > 0:
            raise ValueError(f"lease_ttl_s must be positive, got {self.lease_ttl_s!r}")
        missing = set(Severity) - set(self.disruption_allowance)
        if missing:
            raise ValueError(f"disruption_allowance misses {sorted(missing)}")


class ImmuneKernel:
    """Detects-to-heals orchestration; one per Grace runtime."""

    def __init__(
        self,
        *,
        governance: AvnGovernance,
        ledger: AuditSink,
        clock: Clock,
        playbooks: PlaybookSet,
        executors: ExecutorRegistry,
        verifier: Verifier,
        escalator: Escalator,
        events: EventSink | None = None,
        trust: TrustRecorder | None = None,
        settings: KernelSettings | None = None,
        leases: LeaseStore | None = None,
        holder: str | None = None,
    ) -> None:
        self.settings = settings or KernelSettings()
        self.leases: LeaseStore = leases if leases is not None else InMemoryLeaseStore(clock)
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        """This instance's name in the lease store (unique per process)."""
        playbooks.check_executors(executors.names())
        self.playbooks = playbooks
        self.incidents = IncidentBook(
            window_s=self.settings.dedup_window_s,
            max_active=self.settings.max_active_incidents,
            history=self.settings.incident_history,
        )
        self.budget = HealingBudget(self.settings.budget)
        self._ledger = ledger
        self._clock = clock
        self._escalator = escalator
        self._runner = Runner(
            governance=governance,
            executors=executors,
            verifier=verifier,
            ledger=ledger,
            events=events,
            trust=trust,
            allowance=self.settings.disruption_allowance,
        )
        self._locks: dict[str, asyncio.Lock] = {}
        self._slots = asyncio.Semaphore(self.settings.max_concurrent_runs)
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_run: dict[tuple[str, str], _dt.datetime] = {}
        self._stopping = False
        self._anomalies = 0
        self._merged = 0
        self._held = 0
        self._ignored = 0
        self._rejected: Counter[str] = Counter()
        self._resolved = 0
        self._recovered = 0
        self._escalations = 0
        self._budget_refusals = 0
        self._unhandled = 0
        self._recovery_total_s = 0.0
        self._recovery_count = 0
        self._elsewhere: set[str] = set()
        """Incidents whose lease another instance held at our last claim."""
        self._healing_elsewhere = 0
        self._lease_errors = 0
        self._leases_lost = 0

    # -- wiring and lifecycle ------------------------------------------------------------

    def attach(self, mesh: ComponentRegistry) -> None:
        """Receive the kernel's subscriptions from the mesh (as ``immune_kernel``)."""
        mesh.register_component_handler(COMPONENT_ID, self.handle_event)

    async def wait_idle(self) -> None:
        """Wait until every healing run started so far has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self) -> None:
        """Stop healing: refuse new runs, cancel those under way, wait for them."""
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        await self.wait_idle()

    # -- intake --------------------------------------------------------------------------

    async def handle_event(self, event: TriggerEvent) -> None:
        """The mesh handler: never raises for bad input (counted instead)."""
        try:
            if event.event_type == "anomaly.detected":
                await self.report(anomaly_from_event(event))
            elif event.event_type == "security.event":
                await self.report(security_anomaly_from_event(event))
            elif event.event_type == "system.health_check":
                await self._health_report(event)
            else:
                self._ignored += 1
        except ImmuneError as e:
            self._reject("invalid_event", str(e))
        except Exception as e:
            self._reject("internal_error", repr(e))
            log.exception("immune_event_crashed", event_type=event.event_type)

    def _reject(self, reason: str, detail: str) -> None:
        self._rejected[reason] += 1
        log.info("immune_event_rejected", reason=reason, detail=detail)

    async def report(self, anomaly: Anomaly) -> Incident | None:
        """Admit an anomaly; heal a new incident in the background. None if refused."""
        now = self._clock.now()
        try:
            admitted = self.incidents.admit(anomaly, now)
        except ImmuneError as e:
            self._reject("incident_capacity", str(e))
            return None
        self._anomalies += 1
        incident = admitted.incident
        if admitted.expired is not None:
            self._elsewhere.discard(admitted.expired.incident_id)
            await self._record_incident(admitted.expired, "incident_closed")
        if admitted.admission is Admission.HELD:
            self._held += 1
            return incident
        if admitted.admission is Admission.MERGED:
            self._merged += 1
            if incident.incident_id in self._elsewhere and not self._stopping:
                # Another instance held the lease; this alert says the problem persists,
                # so try again (a crashed holder's lease has expired by now, or not).
                self._spawn(
                    self._heal(incident.incident_id, None), f"immune-heal:{incident.incident_id}"
                )
            return incident
        try:
            await log_anomaly_detected(
                self._ledger,
                component=anomaly.resource,
                anomaly_id=anomaly.anomaly_id,
                anomaly_type=anomaly.anomaly_type,
                severity=anomaly.severity,
                score=anomaly.score,
                details={
                    "incident_id": incident.incident_id,
                    "source": anomaly.source,
                    "event_id": anomaly.event_id,
                    "details": dict(anomaly.details),
                },
            )
        except Exception as e:  # noqa: BLE001 - any ledger failure: do not heal, count it
            # Nothing is healed that cannot be proven: drop the unrecorded incident, so a
            # later alert opens (and records) a new one.
            self.incidents.finish(
                incident.incident_id,
                IncidentState.CLOSED,
                now=self._clock.now(),
                reason="the anomaly could not be recorded",
            )
            self._reject("unrecorded", repr(e))
            log.warning("immune_anomaly_unrecorded", resource=anomaly.resource, error=repr(e))
            return None
        if self._stopping:
            return incident
        # Announcing and trust run off the handler: the mesh calls this handler from its
        # own workers, which must never wait on the mesh's queue themselves.
        self._spawn(
            self._runner.record_trust(
                anomaly.resource, Evidence.ANOMALY, str(anomaly.anomaly_type)
            ),
            f"immune-trust:{incident.incident_id}",
        )
        self._spawn(
            self._heal(incident.incident_id, anomaly), f"immune-heal:{incident.incident_id}"
        )
        return incident

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _health_report(self, event: TriggerEvent) -> None:
        status = event.payload.get("status")
        resource = event.resource or event.payload.get("resource")
        if not isinstance(status, str) or not isinstance(resource, str) or not resource:
            raise ImmuneError(
                f"system.health_check {event.event_id}: needs a resource and a 'status'"
            )
        if status != "healthy":
            return  # the monitor reports the anomaly itself (anomaly.detected)
        for incident in self.incidents.active_on(resource):
            if incident.state in (IncidentState.OPEN, IncidentState.ESCALATED):
                self._recovered += 1
                await self._resolve(
                    incident, f"recovered: health check {event.payload.get('check', resource)}"
                )

    # -- healing -------------------------------------------------------------------------

    async def _heal(self, incident_id: str, anomaly: Anomaly | None) -> None:
        """Heal an incident; ``anomaly`` is announced first (None: a retry of the claim)."""
        incident = self.incidents.get(incident_id)
        if incident is None:
            return
        if anomaly is not None:
            await self._runner.emit(
                ANOMALY_EVENT,
                incident,
                {
                    "source": anomaly.source,
                    "score": anomaly.score,
                    "details": dict(anomaly.details),
                },
            )
        lock = self._locks.setdefault(incident.resource, asyncio.Lock())
        try:
            async with lock, self._slots:
                await self._heal_leased(incident_id)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("immune_healing_crashed", incident=incident_id)
            current = self.incidents.get(incident_id)
            if current is not None and current.state.active:
                await self._escalate(current, f"healing crashed: {e!r}", best_effort=True)
        finally:
            if not lock.locked() and not any(
                i.resource == incident.resource for i in self.incidents.active()
            ):
                self._locks.pop(incident.resource, None)

    async def _heal_leased(self, incident_id: str) -> None:
        """Claim the incident's lease, run under it (renewed), release it."""
        incident = self.incidents.get(incident_id)
        if incident is None or incident.state is not IncidentState.OPEN:
            return
        key = incident_lease_key(incident.resource, str(incident.anomaly_type))
        ttl = self.settings.lease_ttl_s
        try:
            claimed = await self.leases.claim(key, self.holder, ttl)
        except Exception as e:  # noqa: BLE001 - no proof of exclusivity ⇒ no healing
            self._lease_errors += 1
            self._elsewhere.discard(incident_id)
            log.warning("immune_lease_error", incident=incident_id, error=repr(e))
            await self._escalate(
                incident, f"the incident lease could not be claimed, nothing was healed: {e}"
            )
            return
        if not claimed:
            if incident_id not in self._elsewhere:
                self._elsewhere.add(incident_id)
                self._healing_elsewhere += 1
                await self._record_incident(
                    incident,
                    "incident_healing_elsewhere",
                    reason=f"another instance holds the lease {key!r}",
                )
            return
        self._elsewhere.discard(incident_id)
        lost: list[str] = []
        run = asyncio.create_task(self._heal_locked(incident_id), name=f"immune-run:{key}")
        keeper = asyncio.create_task(self._keep_lease(key, run, lost), name=f"immune-lease:{key}")
        try:
            await run
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not lost or (task is not None and task.cancelling()):
                raise
            await self._lease_lost(incident_id, key, lost[0])
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            if not lost:
                try:
                    await self.leases.release(key, self.holder)
                except Exception as e:  # noqa: BLE001 - the lease then simply expires
                    log.warning("immune_lease_release_failed", lease=key, error=repr(e))

    async def _keep_lease(self, key: str, run: asyncio.Task[None], lost: list[str]) -> None:
        """Renew the lease every third of its ttl; stop the run once it cannot be proven."""
        ttl = self.settings.lease_ttl_s
        loop = asyncio.get_running_loop()
        # Local monotonic time: how long the last renewal we saw succeed can be trusted.
        deadline = loop.time() + ttl
        while True:
            await asyncio.sleep(ttl / 3)
            sent = loop.time()
            try:
                renewed = await self.leases.renew(key, self.holder, ttl)
            except Exception as e:  # noqa: BLE001 - retried until the lease may have expired
                log.warning("immune_lease_renew_failed", lease=key, error=repr(e))
                if loop.time() < deadline:
                    continue
                lost.append(f"the lease {key!r} could not be renewed within its ttl: {e}")
                run.cancel()
                return
            if not renewed:
                lost.append(f"another instance took the lease {key!r} over")
                run.cancel()
                return
            deadline = sent + ttl

    async def _lease_lost(self, incident_id: str, key: str, reason: str) -> None:
        """The run was stopped because this instance no longer holds the incident's lease."""
        self._leases_lost += 1
        log.warning("immune_lease_lost", incident=incident_id, lease=key, reason=reason)
        current = self.incidents.get(incident_id)
        if current is None or not current.state.active:
            return
        self._elsewhere.add(incident_id)
        await self._record_incident(current, "incident_lease_lost", reason=reason)

    async def _heal_locked(self, incident_id: str) -> None:
        incident = self.incidents.get(incident_id)
        if incident is None or incident.state is not IncidentState.OPEN:
            return
        now = self._clock.now()
        playbook = self.playbooks.select(
            incident.anomaly_type, incident.severity, incident.resource
        )
        if playbook is None:
            self._unhandled += 1
            await self._record_incident(incident, "incident_unhandled", reason="no playbook")
            return
        key = (incident.resource, playbook.name)
        last = self._last_run.get(key)
        if last is not None and (now - last).total_seconds() < playbook.cooldown_s:
            await self._escalate(
                incident,
                f"{incident.anomaly_type} came back on {incident.resource} within the "
                f"{playbook.cooldown_s:g} s cooldown of playbook {playbook.name!r}",
            )
            return
        if incident.healing_runs >= playbook.max_attempts:
            await self._escalate(incident, f"playbook {playbook.name!r} attempts exhausted")
            return
        verdict = self.budget.admit(incident.resource, now)
        if not verdict.allowed:
            self._budget_refusals += 1
            await self._escalate(
                incident,
                verdict.reason,
                details={"breaker": str(verdict.state), "runs": verdict.runs_in_window},
            )
            return
        self._last_run[key] = now
        incident = self.incidents.update(
            incident_id,
            state=IncidentState.HEALING,
            healing_runs=incident.healing_runs + 1,
            playbook=playbook.name,
        )
        try:
            outcome = await self._runner.run(incident, playbook)
        except BaseException:
            if self.incidents.get(incident_id) is not None:
                current = self.incidents.get(incident_id)
                if current is not None and current.state is IncidentState.HEALING:
                    self.incidents.update(incident_id, state=IncidentState.OPEN)
            raise
        self.budget.record(incident.resource, healed=outcome.healed, now=self._clock.now())
        current = self.incidents.get(incident_id) or incident
        await self._finish_run(current, outcome)

    async def _finish_run(self, incident: Incident, outcome: RunOutcome) -> None:
        if outcome.healed:
            await self._runner.record_trust(
                incident.resource, Evidence.HEALING_SUCCESS, outcome.reason
            )
            await self._resolve(incident, outcome.reason)
            return
        if not outcome.blocked:  # a refusal by governance says nothing about the component
            await self._runner.record_trust(
                incident.resource, Evidence.HEALING_FAILURE, outcome.reason
            )
        if outcome.escalated and not outcome.blocked:
            self._escalations += 1
            self.incidents.update(
                incident.incident_id, state=IncidentState.ESCALATED, reason=outcome.reason
            )
            await self._record_incident(
                self.incidents.get(incident.incident_id) or incident, "incident_escalated"
            )
            return
        await self._escalate(incident, outcome.reason, approval_id=outcome.approval_id)

    async def _resolve(self, incident: Incident, reason: str) -> None:
        self._elsewhere.discard(incident.incident_id)
        done = self.incidents.finish(
            incident.incident_id, IncidentState.RESOLVED, now=self._clock.now(), reason=reason
        )
        self._resolved += 1
        ttr = done.time_to_recovery_s
        if ttr is not None:
            self._recovery_total_s += ttr
            self._recovery_count += 1
        await self._record_incident(done, "incident_resolved")

    async def _escalate(
        self,
        incident: Incident,
        reason: str,
        *,
        approval_id: str | None = None,
        details: Mapping[str, Any] | None = None,
        best_effort: bool = False,
    ) -> None:
        self._escalations += 1
        if incident.state.active:
            incident = self.incidents.update(
                incident.incident_id,
                state=IncidentState.ESCALATED,
                reason=reason,
                approval_id=approval_id or incident.approval_id,
            )
        try:
            await self._escalator.escalate(
                resource=incident.resource,
                severity=str(incident.severity),
                reason=reason,
                incident_id=incident.incident_id,
                anomaly_id=incident.first_anomaly_id,
                approval_id=approval_id,
                details=details,
            )
        except Exception:
            if not best_effort:
                raise
            log.exception("immune_escalation_failed", incident=incident.incident_id)

    # -- human actions -------------------------------------------------------------------

    async def close_incident(self, incident_id: str, *, actor: str, reason: str) -> Incident:
        """A human closes an incident (e.g. after handling an escalation)."""
        current = self.incidents.get(incident_id)
        if current is None or not current.state.active:
            raise ImmuneError(f"no active incident {incident_id!r}")
        if current.state is IncidentState.HEALING:
            raise ImmuneError(f"incident {incident_id} is being healed; close it afterwards")
        self._elsewhere.discard(incident_id)
        done = self.incidents.finish(
            incident_id, IncidentState.CLOSED, now=self._clock.now(), reason=reason
        )
        await self._record_incident(done, "incident_closed", actor=actor)
        return done

    async def reset_breaker(self, resource: str, *, actor: str, reason: str) -> bool:
        """A human closes the healing breaker of ``resource`` and clears its budget."""
        known = self.budget.reset(resource)
        self._last_run = {k: v for k, v in self._last_run.items() if k[0] != resource}
        await self._ledger.append(
            subsystem="avn",
            actor=actor,
            action="breaker_reset",
            resource=resource,
            result="reset" if known else "unknown",
            payload={"event": "breaker_reset", "reason": reason},
        )
        return known

    # -- records, events, trust ----------------------------------------------------------

    async def _record_incident(
        self, incident: Incident, action: str, *, reason: str | None = None, actor: str = ""
    ) -> None:
        await self._ledger.append(
            subsystem="avn",
            actor=actor or COMPONENT_ID,
            action=action,
            resource=incident.resource,
            result=str(incident.state),
            payload={
                "event": action,
                "anomaly_id": incident.first_anomaly_id,
                **incident.to_dict(),
                **({"reason": reason} if reason else {}),
            },
        )

    # -- reporting -----------------------------------------------------------------------

    def get_stats(self) -> dict[str, Any]:
        """The seed's keys plus governance blocks, recovery time and bad-input counts."""
        run = self._runner.stats
        return {
            "anomalies_detected": self._anomalies,
            "healing_attempts": run.attempts,
            "healing_successes": run.successes,
            "success_rate": run.successes / run.attempts if run.attempts else 0.0,
            "escalations": self._escalations,
            "active_anomalies": len(self.incidents),
            "blocked_by_governance": run.blocked,
            "mean_time_to_recovery_s": self._recovery_total_s / self._recovery_count
            if self._recovery_count
            else None,
            "incidents_resolved": self._resolved,
            "recovered_without_healing": self._recovered,
            "alerts_deduplicated": self._merged,
            "alerts_held": self._held,
            "steps_skipped": run.skipped,
            "steps_failed": run.failed,
            "rollbacks": run.rollbacks,
            "budget_refusals": self._budget_refusals,
            "unhandled_incidents": self._unhandled,
            "open_breakers": self.budget.open_breakers(self._clock.now()),
            "events_ignored": self._ignored,
            "events_rejected": sum(self._rejected.values()),
            "events_rejected_by_reason": dict(self._rejected),
            "actions": dict(run.by_action),
            "healing_elsewhere": self._healing_elsewhere,
            "lease_errors": self._lease_errors,
            "leases_lost": self._leases_lost,
        }
