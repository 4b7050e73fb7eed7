"""Taxonomy invariants, incident grouping and the healing budget."""

from __future__ import annotations

import datetime as _dt

import pytest

from grace.errors import ImmuneError
from grace.immune.budget import BreakerState, BudgetSettings, HealingBudget
from grace.immune.incidents import Admission, IncidentBook
from grace.immune.taxonomy import (
    Anomaly,
    AnomalyType,
    HealingAction,
    IncidentState,
    Severity,
)
from grace.testing import FakeClock

T0 = _dt.datetime(2026, 1, 1, tzinfo=_dt.UTC)


def at(seconds: float) -> _dt.datetime:
    """T0 plus some seconds."""
    return T0 + _dt.timedelta(seconds=seconds)


def anomaly(
    n: int = 0, resource: str = "api", kind: AnomalyType = AnomalyType.LATENCY_SPIKE
) -> Anomaly:
    """A medium anomaly."""
    return Anomaly(
        anomaly_id=f"an-{n}",
        anomaly_type=kind,
        severity=Severity.MEDIUM,
        resource=resource,
        detected_at=T0,
    )


def test_vocabulary_sizes() -> None:
    """18 anomaly types, 5 severities, 12 healing actions (VOCABULARY.md)."""
    assert (len(AnomalyType), len(Severity), len(HealingAction)) == (18, 5, 12)
    assert [s.rank for s in Severity] == [0, 1, 2, 3, 4]
    assert Severity.LOW.at_least(Severity.HIGH) is Severity.HIGH


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"resource": "rm -rf /"}, "resource"),
        ({"resource": "-rf"}, "resource"),
        ({"score": 1.5}, "score"),
        ({"score": float("nan")}, "score"),
        ({"detected_at": _dt.datetime(2026, 1, 1)}, "timezone-aware"),
        ({"anomaly_id": ""}, "id"),
        ({"severity": "urgent"}, "urgent"),
    ],
)
def test_invalid_anomalies_cannot_be_built(changes: dict[str, object], message: str) -> None:
    """Unsafe resources, bad scores, naive times, empty ids, unknown severities: refused."""
    fields: dict[str, object] = {
        "anomaly_id": "a",
        "anomaly_type": AnomalyType.CPU_SPIKE,
        "severity": Severity.LOW,
        "resource": "api",
        "detected_at": T0,
        **changes,
    }
    with pytest.raises(ValueError, match=message):
        Anomaly(**fields)  # type: ignore[arg-type]


def test_same_key_within_window_merges_and_raises_severity() -> None:
    """A second alert within the window merges; the incident keeps the highest severity."""
    book = IncidentBook(window_s=60)
    first = book.admit(anomaly(1), at(0))
    loud = Anomaly(
        anomaly_id="an-2",
        anomaly_type=AnomalyType.LATENCY_SPIKE,
        severity=Severity.HIGH,
        resource="api",
        detected_at=T0,
    )
    second = book.admit(loud, at(30))
    assert (first.admission, second.admission) == (Admission.NEW, Admission.MERGED)
    assert second.incident.incident_id == first.incident.incident_id
    assert second.incident.severity is Severity.HIGH
    assert second.incident.anomaly_count == 2


def test_stale_incident_expires_and_a_new_one_opens() -> None:
    """After the window without alerts, the old incident is closed and a new one opens."""
    book = IncidentBook(window_s=60)
    first = book.admit(anomaly(1), at(0))
    later = book.admit(anomaly(2), at(61))
    assert later.admission is Admission.NEW
    assert later.expired is not None
    assert later.expired.incident_id == first.incident.incident_id
    assert later.expired.state is IncidentState.CLOSED
    assert len(book) == 1


def test_alerts_during_healing_are_held_not_merged() -> None:
    """While healing, alerts are held (counted) whatever the window."""
    book = IncidentBook(window_s=60)
    first = book.admit(anomaly(1), at(0))
    book.update(first.incident.incident_id, state=IncidentState.HEALING)
    held = book.admit(anomaly(2), at(500))
    assert held.admission is Admission.HELD
    assert held.incident.held_count == 1


def test_resolved_incidents_leave_the_active_table() -> None:
    """finish() moves an incident to the bounded history; the key is free again."""
    book = IncidentBook(window_s=60, history=1)
    a = book.admit(anomaly(1), at(0)).incident
    done = book.finish(a.incident_id, IncidentState.RESOLVED, now=at(5), reason="healed")
    assert done.time_to_recovery_s == 5.0
    assert book.active_for("api", AnomalyType.LATENCY_SPIKE) is None
    b = book.admit(anomaly(2), at(6)).incident
    book.finish(b.incident_id, IncidentState.CLOSED, now=at(7), reason="human")
    assert [i.incident_id for i in book.history()] == [b.incident_id]


def test_full_table_refuses_new_incidents() -> None:
    """At max_active, a new key is an ImmuneError; existing keys still merge."""
    book = IncidentBook(window_s=60, max_active=1)
    book.admit(anomaly(1, "a"), at(0))
    with pytest.raises(ImmuneError, match="limit"):
        book.admit(anomaly(2, "b"), at(1))
    assert book.admit(anomaly(3, "a"), at(2)).admission is Admission.MERGED


def test_state_changes_go_through_the_right_door() -> None:
    """update() keeps an incident active; finish() takes only resolved or closed."""
    book = IncidentBook()
    incident = book.admit(anomaly(), at(0)).incident
    with pytest.raises(ImmuneError, match="finish"):
        book.update(incident.incident_id, state=IncidentState.RESOLVED)
    with pytest.raises(ImmuneError, match="resolved or closed"):
        book.finish(incident.incident_id, IncidentState.HEALING, now=at(1), reason="")
    with pytest.raises(ImmuneError, match="no active incident"):
        book.update("inc_missing", state=IncidentState.OPEN)


def test_budget_opens_the_breaker_once_then_refuses(clock: FakeClock) -> None:
    """max_runs runs pass; the next opens the breaker (once); then refusals."""
    budget = HealingBudget(BudgetSettings(max_runs=2, window_s=100, cooldown_s=50))
    now = clock.now()
    assert budget.admit("api", now).allowed
    assert budget.admit("api", now).allowed
    opened = budget.admit("api", now)
    assert (opened.allowed, opened.opened_now, opened.state) == (False, True, BreakerState.OPEN)
    again = budget.admit("api", now)
    assert (again.allowed, again.opened_now) == (False, False)
    assert budget.open_breakers(now) == ["api"]
    assert budget.admit("db", now).allowed


def test_half_open_trial_that_fails_reopens(clock: FakeClock) -> None:
    """After the cooldown one trial is allowed; its failure opens the breaker again."""
    budget = HealingBudget(BudgetSettings(max_runs=1, window_s=1000, cooldown_s=50))
    budget.admit("api", clock.now())
    budget.admit("api", clock.now())
    clock.advance(50)
    assert budget.state("api", clock.now()) is BreakerState.HALF_OPEN
    trial = budget.admit("api", clock.now())
    assert trial.allowed
    assert budget.record("api", healed=False, now=clock.now()) is BreakerState.OPEN
    clock.advance(50)
    budget.admit("api", clock.now())
    assert budget.record("api", healed=True, now=clock.now()) is BreakerState.CLOSED


def test_runs_outside_the_window_no_longer_count(clock: FakeClock) -> None:
    """The window slides: old runs free the budget."""
    budget = HealingBudget(BudgetSettings(max_runs=1, window_s=10, cooldown_s=50))
    assert budget.admit("api", clock.now()).allowed
    clock.advance(11)
    assert budget.admit("api", clock.now()).allowed


def test_bad_budget_settings_are_refused() -> None:
    """Zero runs or windows are configuration errors."""
    with pytest.raises(ValueError, match="budget"):
        BudgetSettings(max_runs=0)
