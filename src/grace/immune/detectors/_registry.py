"""Detectors by name: ``create_detector("default")`` and the list of known names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from grace.errors import MonitorError
from grace.immune.detectors._base import Detector
from grace.immune.detectors.ensemble import EnsembleDetector
from grace.immune.detectors.zscore import ZScoreDetector

__all__ = ["DEFAULT", "available_detectors", "create_detector"]

DEFAULT: Final = EnsembleDetector.name
"""The algorithm behind the name ``"default"``."""

_FACTORIES: Final[dict[str, Callable[..., Detector]]] = {
    EnsembleDetector.name: EnsembleDetector,
    ZScoreDetector.name: ZScoreDetector,
}


def available_detectors() -> tuple[str, ...]:
    """Every name :func:`create_detector` accepts: ``"default"`` and each algorithm."""
    return ("default", *sorted(_FACTORIES))


def create_detector(name: str, **params: Any) -> Detector:
    """A new detector for one series; ``params`` go to the algorithm's constructor.

    Raises :class:`~grace.errors.MonitorError` for an unknown name (listing the known
    ones) or a parameter the algorithm does not take or cannot use.
    """
    factory = _FACTORIES.get(DEFAULT if name == "default" else name)
    if factory is None:
        raise MonitorError(f"unknown detector {name!r}; known: {', '.join(available_detectors())}")
    try:
        return factory(**params)
    except TypeError as e:  # an unexpected keyword: name it, keep the Grace error tree
        raise MonitorError(f"detector {name!r} does not take these parameters: {e}") from e
