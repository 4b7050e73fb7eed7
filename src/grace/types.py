"""Vocabulary shared by every layer: the clock protocol and JSON aliases.

Timestamps in Grace are timezone-aware UTC. Components never call ``datetime.now``
themselves; they receive a :class:`Clock` through their constructor and read ``now``
once per operation, so tests can drive time with :class:`grace.testing.FakeClock`.
"""

from __future__ import annotations

import datetime as _dt
from typing import Protocol, TypeAlias, runtime_checkable

__all__ = ["Clock", "JSONObject", "JSONValue", "SystemClock"]

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
JSONObject: TypeAlias = "dict[str, JSONValue]"


@runtime_checkable
class Clock(Protocol):
    """Source of the current time."""

    def now(self) -> _dt.datetime:
        """Return the current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The real wall clock."""

    __slots__ = ()

    def now(self) -> _dt.datetime:
        """Return the current UTC time."""
        return _dt.datetime.now(_dt.UTC)
