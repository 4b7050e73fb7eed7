"""The trigger mesh: events, routing, transports.

>>> from grace.mesh import TriggerMesh, load_mesh_config
>>> # mesh = TriggerMesh(load_mesh_config(), clock=clock); kernel = mesh.publisher("immune_kernel")
"""

from grace.mesh.bridge import EventBus
from grace.mesh.config import (
    EventSpec,
    MeshConfig,
    RoutingRules,
    load_mesh_config,
    parse_mesh_config,
)
from grace.mesh.deadletter import DeadLetter, DeadLetterStore
from grace.mesh.event import EventPriority, TriggerEvent, new_event_id
from grace.mesh.mesh import (
    BlockReason,
    EmitResult,
    GovernanceValidator,
    Handler,
    MeshSettings,
    Publisher,
    PublisherHold,
    Subscription,
    TriggerMesh,
    TrustScorer,
)
from grace.mesh.metrics import MeshMetrics
from grace.mesh.patterns import SubjectTrie, validate_pattern, validate_subject
from grace.mesh.transport import Deliver, MemoryTransport, Transport

__all__ = [
    "BlockReason",
    "DeadLetter",
    "DeadLetterStore",
    "Deliver",
    "EmitResult",
    "EventBus",
    "EventPriority",
    "EventSpec",
    "GovernanceValidator",
    "Handler",
    "MemoryTransport",
    "MeshConfig",
    "MeshMetrics",
    "MeshSettings",
    "Publisher",
    "PublisherHold",
    "RoutingRules",
    "SubjectTrie",
    "Subscription",
    "Transport",
    "TriggerEvent",
    "TriggerMesh",
    "TrustScorer",
    "load_mesh_config",
    "new_event_id",
    "parse_mesh_config",
    "validate_pattern",
    "validate_subject",
]
