"""FakeClock moves only when told to, and never backwards."""

from __future__ import annotations

import datetime as dt

import pytest

from grace.testing import FakeClock
from grace.types import Clock, SystemClock


def test_fake_clock_advances_and_sets() -> None:
    """advance() and set() move the fake time forward."""
    clock = FakeClock()
    start = clock.now()
    clock.advance(2.5)
    assert clock.now() - start == dt.timedelta(seconds=2.5)
    later = start + dt.timedelta(days=1)
    clock.set(later)
    assert clock.now() == later
    assert isinstance(clock, Clock)


def test_fake_clock_refuses_to_go_backwards_or_naive() -> None:
    """Negative advances, earlier or naive times and naive starts are errors."""
    clock = FakeClock()
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="not before"):
        clock.set(clock.now() - dt.timedelta(seconds=1))
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(dt.datetime(2026, 1, 1))


def test_system_clock_is_utc() -> None:
    """The real clock returns aware UTC times."""
    assert SystemClock().now().utcoffset() == dt.timedelta(0)
