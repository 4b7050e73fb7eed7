"""Reputation of components and actors: Beta evidence per dimension, decaying over time.

>>> from grace.trust import Evidence, TrustStore
>>> # store = await TrustStore.open(data_dir / "trust.db", clock=clock, audit=ledger)
>>> # or, shared by several instances (ADR 0013):
>>> # store = await TrustStore.open_postgres(dsn, clock=clock, audit=ledger)
>>> # await store.record("svc-payments", Evidence.HEALING_SUCCESS)
>>> # await store.score("svc-payments")

The math is in :mod:`grace.trust.model` and ADR 0007.
"""

from grace.trust.model import (
    Dimension,
    Evidence,
    TrustConfig,
    TrustLevel,
    TrustScore,
)
from grace.trust.store import TrustStore

__all__ = [
    "Dimension",
    "Evidence",
    "TrustConfig",
    "TrustLevel",
    "TrustScore",
    "TrustStore",
]
