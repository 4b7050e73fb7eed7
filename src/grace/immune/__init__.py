"""The immune kernel (AVN): detectors, incidents, playbooks, governed healing.

>>> # kernel = ImmuneKernel(governance=wiring, ledger=ledger, clock=clock,
>>> #     playbooks=PlaybookSet.default(), executors=registry, verifier=verifier,
>>> #     escalator=escalator, events=mesh.publisher("immune_kernel"), trust=trust_store)
>>> # kernel.attach(mesh)
"""

from __future__ import annotations

from grace.immune.budget import BreakerState, BudgetSettings, BudgetVerdict, HealingBudget
from grace.immune.controls import Control, ControlKind, Denied, IngressControls
from grace.immune.detectors import Detector, available_detectors, create_detector
from grace.immune.escalation import ESCALATION_EVENT, Escalation, Escalator
from grace.immune.executors import (
    ActionContext,
    CircuitBreakerExecutor,
    EscalateExecutor,
    ExecutionResult,
    Executor,
    ExecutorRegistry,
    HttpWebhookExecutor,
    PythonCallableExecutor,
    QuarantineExecutor,
    QuarantineStore,
    RateLimitExecutor,
    RestartProcessExecutor,
    ShellCommandExecutor,
)
from grace.immune.incidents import Admission, Admitted, IncidentBook
from grace.immune.kernel import (
    AvnGovernance,
    ImmuneKernel,
    KernelSettings,
    TrustRecorder,
)
from grace.immune.leases import (
    InMemoryLeaseStore,
    LeaseStore,
    PostgresLeaseStore,
    incident_lease_key,
)
from grace.immune.playbooks import (
    Match,
    OnFailure,
    OnSuccess,
    Playbook,
    PlaybookSet,
    PlaybookStep,
    Verification,
    VerifyKind,
    load_playbooks,
    parse_playbooks,
)
from grace.immune.supervisor import ProcessSpec, ProcessStatus, ProcessSupervisor, RestartResult
from grace.immune.taxonomy import (
    Anomaly,
    AnomalyType,
    HealingAction,
    Incident,
    IncidentState,
    Severity,
)
from grace.immune.verify import HealthProber, MetricWatch, VerificationResult, Verifier

__all__ = [
    "ESCALATION_EVENT",
    "ActionContext",
    "Admission",
    "Admitted",
    "Anomaly",
    "AnomalyType",
    "AvnGovernance",
    "BreakerState",
    "BudgetSettings",
    "BudgetVerdict",
    "CircuitBreakerExecutor",
    "Control",
    "ControlKind",
    "Denied",
    "Detector",
    "EscalateExecutor",
    "Escalation",
    "Escalator",
    "ExecutionResult",
    "Executor",
    "ExecutorRegistry",
    "HealingAction",
    "HealingBudget",
    "HealthProber",
    "HttpWebhookExecutor",
    "ImmuneKernel",
    "InMemoryLeaseStore",
    "Incident",
    "IncidentBook",
    "IncidentState",
    "IngressControls",
    "KernelSettings",
    "LeaseStore",
    "Match",
    "MetricWatch",
    "OnFailure",
    "OnSuccess",
    "Playbook",
    "PlaybookSet",
    "PlaybookStep",
    "PostgresLeaseStore",
    "ProcessSpec",
    "ProcessStatus",
    "ProcessSupervisor",
    "PythonCallableExecutor",
    "QuarantineExecutor",
    "QuarantineStore",
    "RateLimitExecutor",
    "RestartProcessExecutor",
    "RestartResult",
    "Severity",
    "ShellCommandExecutor",
    "TrustRecorder",
    "Verification",
    "VerificationResult",
    "Verifier",
    "VerifyKind",
    "available_detectors",
    "create_detector",
    "incident_lease_key",
    "load_playbooks",
    "parse_playbooks",
]
