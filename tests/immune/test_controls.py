"""IngressControls: breakers, rate limits and quarantines, as the ingress consults them."""

from __future__ import annotations

import pytest

from grace.immune.controls import ControlKind, IngressControls
from grace.testing import FakeClock


def test_no_controls_lets_everything_pass(clock: FakeClock) -> None:
    """With nothing in force, check answers None."""
    assert IngressControls(clock=clock).check("GET:/v1/orders") is None


def test_open_breaker_denies_matching_keys_until_it_expires(clock: FakeClock) -> None:
    """A tripped breaker answers 503 with retry-after for matching routes only."""
    controls = IngressControls(clock=clock)
    controls.trip("GET:/v1/orders*", reason="cascade", actor="immune_kernel", duration_s=60)
    denied = controls.check("GET:/v1/orders/{id}")
    assert denied is not None
    assert (denied.kind, denied.status_code, denied.retry_after_s) == (
        ControlKind.CIRCUIT_BREAKER,
        503,
        60.0,
    )
    assert controls.check("GET:/v1/users") is None
    clock.advance(60)
    assert controls.check("GET:/v1/orders/{id}") is None
    assert controls.active() == []


def test_reset_closes_the_breaker(clock: FakeClock) -> None:
    """reset removes the breaker and returns it; resetting again returns None."""
    controls = IngressControls(clock=clock)
    controls.trip("component:billing", reason="r", actor="a")
    assert controls.reset("component:billing") is not None
    assert controls.reset("component:billing") is None
    assert controls.check("component:billing") is None


def test_rate_limit_admits_a_burst_then_refills(clock: FakeClock) -> None:
    """A limit of 2/s with burst 2 admits two, refuses the third (429), refills over time."""
    controls = IngressControls(clock=clock)
    controls.limit("component:api", rate_per_s=2, burst=2, reason="cpu", actor="k")
    assert controls.check("component:api") is None
    assert controls.check("component:api") is None
    denied = controls.check("component:api")
    assert denied is not None
    assert denied.status_code == 429
    assert denied.retry_after_s == pytest.approx(0.5)
    clock.advance(0.5)
    assert controls.check("component:api") is None
    controls.lift("component:api")
    assert all(controls.check("component:api") is None for _ in range(10))


def test_quarantine_outranks_everything_and_stays_until_released(clock: FakeClock) -> None:
    """A quarantine denies with 403, has no expiry, and release ends it."""
    controls = IngressControls(clock=clock)
    controls.limit("component:*", rate_per_s=100, burst=100, reason="l", actor="k")
    controls.quarantine("component:rogue", reason="exfiltration", actor="k")
    denied = controls.check("component:rogue")
    assert denied is not None
    assert (denied.kind, denied.status_code) == (ControlKind.QUARANTINE, 403)
    clock.advance(10**6)
    assert controls.check("component:rogue") is not None
    assert controls.in_force(ControlKind.QUARANTINE, "component:rogue") is not None
    controls.release("component:rogue")
    assert controls.check("component:rogue") is None
    assert controls.denials == 2


@pytest.mark.parametrize("pattern", ["", " padded", "x" * 513])
def test_bad_patterns_are_refused(clock: FakeClock, pattern: str) -> None:
    """Empty, padded or huge patterns are a ValueError naming them."""
    with pytest.raises(ValueError, match="control pattern"):
        IngressControls(clock=clock).trip(pattern, reason="r", actor="a")


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (float("nan"), 1), (1, 0)])
def test_bad_rate_limits_are_refused(clock: FakeClock, rate: float, burst: int) -> None:
    """Non-positive or non-finite rates and empty bursts are refused."""
    with pytest.raises(ValueError, match="rate limit"):
        IngressControls(clock=clock).limit("k", rate_per_s=rate, burst=burst, reason="", actor="")


def test_bad_duration_is_refused(clock: FakeClock) -> None:
    """A breaker for a non-positive or infinite time is refused."""
    controls = IngressControls(clock=clock)
    for duration in (0.0, float("inf")):
        with pytest.raises(ValueError, match="duration_s"):
            controls.trip("k", reason="r", actor="a", duration_s=duration)
