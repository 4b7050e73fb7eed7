"""Incidents: anomalies of the same resource and type within a window are one incident.

Rules of :meth:`IncidentBook.admit` for an anomaly whose ``(resource, type)`` has an
active incident:

* the incident is ``healing`` ⇒ the alert is **held**: counted on the incident, never
  acted upon (silencing while healing runs — the healing's own verification decides);
* it is ``open`` or ``escalated`` and was last seen within ``window_s`` ⇒ **merged**
  (deduplicated: one incident, one ledger record, one healing run);
* it was last seen longer ago ⇒ the stale incident is closed (``expired``) and a new one
  opens.

Resolved and closed incidents leave the active table for a bounded history, so memory is
bounded by ``max_active + history``. A full active table refuses new incidents with
:class:`~grace.errors.ImmuneError` (the kernel counts it; an alert storm over many
resources cannot grow memory without bound).
"""

from __future__ import annotations

import datetime as _dt
import secrets
from collections import OrderedDict
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from grace.errors import ImmuneError
from grace.immune.taxonomy import Anomaly, AnomalyType, Incident, IncidentState

__all__ = ["Admission", "Admitted", "IncidentBook"]


class Admission(StrEnum):
    """What admitting an anomaly did."""

    NEW = "new"
    MERGED = "merged"
    HELD = "held"


@dataclass(frozen=True, slots=True, kw_only=True)
class Admitted:
    """The incident an anomaly landed in, and how."""

    incident: Incident
    admission: Admission
    expired: Incident | None = None
    """A stale incident of the same key that was closed to make room for this one."""


def _incident_id() -> str:
    return f"inc_{secrets.token_urlsafe(9)}"


class IncidentBook:
    """The active incidents by key and id, plus a bounded history of finished ones."""

    def __init__(
        self, *, window_s: float = 300.0, max_active: int = 10_000, history: int = 1_000
    ) -> None:
        if window_s <= 0 or max_active < 1 or history < 0:
            raise ValueError("incident window must be positive, max_active >= 1, history >= 0")
        self.window = _dt.timedelta(seconds=window_s)
        self.max_active = max_active
        self._by_key: dict[tuple[str, AnomalyType], str] = {}
        self._active: dict[str, Incident] = {}
        self._history: OrderedDict[str, Incident] = OrderedDict()
        self._history_limit = history

    # -- admission -----------------------------------------------------------------------

    def admit(self, anomaly: Anomaly, now: _dt.datetime) -> Admitted:
        """Group ``anomaly`` into its incident (see the module rules)."""
        current_id = self._by_key.get(anomaly.key)
        expired: Incident | None = None
        if current_id is not None:
            current = self._active[current_id]
            severity = current.severity.at_least(anomaly.severity)
            if current.state is IncidentState.HEALING:
                held = replace(
                    current,
                    held_count=current.held_count + 1,
                    anomaly_count=current.anomaly_count + 1,
                    last_seen_at=now,
                    severity=severity,
                )
                self._active[current_id] = held
                return Admitted(incident=held, admission=Admission.HELD)
            if now - current.last_seen_at <= self.window:
                merged = replace(
                    current,
                    anomaly_count=current.anomaly_count + 1,
                    last_seen_at=now,
                    severity=severity,
                )
                self._active[current_id] = merged
                return Admitted(incident=merged, admission=Admission.MERGED)
            expired = self.finish(
                current_id, IncidentState.CLOSED, now=now, reason="expired: no alert in window"
            )
        if len(self._active) >= self.max_active:
            raise ImmuneError(
                f"{len(self._active)} incidents are active (the limit); "
                f"refusing a new one for {anomaly.resource}/{anomaly.anomaly_type}"
            )
        incident = Incident(
            incident_id=_incident_id(),
            resource=anomaly.resource,
            anomaly_type=anomaly.anomaly_type,
            severity=anomaly.severity,
            state=IncidentState.OPEN,
            opened_at=now,
            last_seen_at=now,
            first_anomaly_id=anomaly.anomaly_id,
        )
        self._active[incident.incident_id] = incident
        self._by_key[incident.key] = incident.incident_id
        return Admitted(incident=incident, admission=Admission.NEW, expired=expired)

    # -- state changes -------------------------------------------------------------------

    def update(self, incident_id: str, **changes: Any) -> Incident:
        """Replace fields of an active incident (state changes that keep it active)."""
        current = self._active.get(incident_id)
        if current is None:
            raise ImmuneError(f"no active incident {incident_id!r}")
        state = changes.get("state", current.state)
        if not IncidentState(state).active:
            raise ImmuneError(f"use finish() to move incident {incident_id} to {state}")
        updated = replace(current, **changes)
        self._active[incident_id] = updated
        return updated

    def finish(
        self, incident_id: str, state: IncidentState, *, now: _dt.datetime, reason: str
    ) -> Incident:
        """Resolve or close an active incident; it moves to the history."""
        if state not in (IncidentState.RESOLVED, IncidentState.CLOSED):
            raise ImmuneError(f"finish() takes resolved or closed, not {state}")
        current = self._active.pop(incident_id, None)
        if current is None:
            raise ImmuneError(f"no active incident {incident_id!r}")
        if self._by_key.get(current.key) == incident_id:
            del self._by_key[current.key]
        done = replace(
            current,
            state=state,
            reason=reason,
            resolved_at=now if state is IncidentState.RESOLVED else None,
        )
        if self._history_limit:
            self._history[incident_id] = done
            while len(self._history) > self._history_limit:
                self._history.popitem(last=False)
        return done

    # -- lookups -------------------------------------------------------------------------

    def get(self, incident_id: str) -> Incident | None:
        """An active or remembered incident."""
        return self._active.get(incident_id) or self._history.get(incident_id)

    def active_for(self, resource: str, anomaly_type: AnomalyType) -> Incident | None:
        """The active incident of a key, if any."""
        incident_id = self._by_key.get((resource, anomaly_type))
        return None if incident_id is None else self._active[incident_id]

    def active(self) -> list[Incident]:
        """Active incidents, oldest first."""
        return sorted(self._active.values(), key=lambda i: i.opened_at)

    def active_on(self, resource: str) -> list[Incident]:
        """Active incidents of one resource."""
        return [i for i in self._active.values() if i.resource == resource]

    def history(self, limit: int = 100) -> list[Incident]:
        """Finished incidents, newest first."""
        items = list(self._history.values())[-limit:] if limit > 0 else []
        return items[::-1]

    def __len__(self) -> int:
        return len(self._active)
