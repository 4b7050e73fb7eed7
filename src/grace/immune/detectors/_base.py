"""What every streaming detector shares: the protocol, the timestamp type, input checks.

A detector sees one univariate series, one sample at a time, and answers each sample with
an anomaly score in ``[0, 1]`` computed from that sample and the ones before it (never
later ones). Its state is a fixed set of numbers and fixed-size buffers: memory does not
grow with the length of the series.

Bad input never corrupts state: a non-finite value, a timestamp that is not a number or an
aware ``datetime``, or a timestamp earlier than the previous one raises
:class:`~grace.errors.MonitorError` *before* anything is updated, so the caller can log the
sample, drop it and go on.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Protocol, TypeAlias, runtime_checkable

from grace.errors import MonitorError

__all__ = ["LIMIT", "Detector", "Timestamp", "check_param", "check_value", "to_seconds"]

LIMIT = 1e150
"""Finite samples beyond ``±LIMIT`` are taken as ``±LIMIT``: squares and differences of
anything within it stay finite, so no finite input can push a detector's state to
infinity or NaN."""

Timestamp: TypeAlias = "float | int | _dt.datetime"
"""Seconds since the epoch, or a timezone-aware ``datetime``."""

_isfinite = math.isfinite


@runtime_checkable
class Detector(Protocol):
    """A streaming univariate anomaly detector (one instance per series)."""

    @property
    def name(self) -> str:
        """The registry name of the algorithm (``create_detector(name)``)."""
        ...

    @property
    def observations(self) -> int:
        """How many samples were accepted so far."""
        ...

    def observe(self, timestamp: Timestamp, value: float) -> float:
        """Take the next sample and return its anomaly score in ``[0, 1]``.

        Raises :class:`~grace.errors.MonitorError` (state unchanged) for a non-finite
        value, an unusable timestamp, or a timestamp earlier than the previous sample's.
        """
        ...


def to_seconds(timestamp: Timestamp, last: float) -> float:
    """``timestamp`` as float seconds; refuses naive datetimes and going back in time."""
    kind = type(timestamp)
    if kind is float or kind is int:
        t = float(timestamp)  # type: ignore[arg-type]
    elif isinstance(timestamp, _dt.datetime):
        if timestamp.tzinfo is None or timestamp.utcoffset() is None:
            raise MonitorError(f"timestamp {timestamp.isoformat()} is naive; give it a timezone")
        t = timestamp.timestamp()
    elif isinstance(timestamp, int | float) and not isinstance(timestamp, bool):
        t = float(timestamp)
    else:
        raise MonitorError(
            f"timestamp must be seconds or an aware datetime, not {type(timestamp).__name__}"
        )
    if not _isfinite(t):
        raise MonitorError(f"timestamp {t!r} is not finite")
    if t < last:
        raise MonitorError(f"timestamp {t!r} is earlier than the previous sample's ({last!r})")
    return t


def check_value(value: float) -> float:
    """``value`` as a finite float clamped to ``±LIMIT``, or :class:`MonitorError`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MonitorError(f"sample value must be a number, not {type(value).__name__}")
    try:
        x = float(value)
    except OverflowError:  # an int too large for a float: finite, so clamp it
        return LIMIT if value > 0 else -LIMIT
    if not _isfinite(x):
        raise MonitorError(f"sample value {value!r} is not finite")
    return min(LIMIT, max(-LIMIT, x))


def check_param(name: str, value: float, low: float, high: float) -> float:
    """A numeric constructor parameter within ``[low, high]`` (MonitorError otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MonitorError(f"detector parameter {name} must be a number, not {value!r}")
    x = float(value)
    if not (low <= x <= high):
        raise MonitorError(f"detector parameter {name}={value!r} is outside [{low}, {high}]")
    return x
