"""Test doubles that implement Grace's real protocols (fakes, not mocks)."""

from __future__ import annotations

import datetime as _dt

__all__ = ["FakeClock"]

_DEFAULT_START = _dt.datetime(2026, 1, 1, tzinfo=_dt.UTC)


class FakeClock:
    """A :class:`grace.types.Clock` that only moves when told to.

    >>> clock = FakeClock()
    >>> clock.advance(1.5)
    >>> clock.now().isoformat()
    '2026-01-01T00:00:01.500000+00:00'
    """

    __slots__ = ("_now",)

    def __init__(self, start: _dt.datetime = _DEFAULT_START) -> None:
        if start.tzinfo is None or start.utcoffset() != _dt.timedelta(0):
            raise ValueError(f"FakeClock start must be timezone-aware UTC, got {start!r}")
        self._now = start

    def now(self) -> _dt.datetime:
        """Return the fake current time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (never backwards)."""
        if seconds < 0:
            raise ValueError(f"FakeClock cannot go backwards (advance({seconds}))")
        self._now += _dt.timedelta(seconds=seconds)

    def set(self, when: _dt.datetime) -> None:
        """Jump to ``when``; it must not be earlier than the current fake time."""
        if when.tzinfo is None or when < self._now:
            raise ValueError(f"FakeClock.set needs an aware time not before {self._now}")
        self._now = when.astimezone(_dt.UTC)
