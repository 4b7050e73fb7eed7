"""create_detector / available_detectors: names, aliases, parameters and clear errors."""

from __future__ import annotations

import pytest

from grace.errors import MonitorError
from grace.immune.detectors import (
    Detector,
    EnsembleDetector,
    ZScoreDetector,
    available_detectors,
    create_detector,
)


def test_default_is_the_ensemble_detector() -> None:
    """The name "default" builds the ensemble detector."""
    detector = create_detector("default")
    assert isinstance(detector, EnsembleDetector)
    assert detector.name == "ensemble"


def test_every_available_name_builds_a_detector() -> None:
    """Each listed name builds an object satisfying the Detector protocol."""
    names = available_detectors()
    assert names[0] == "default"
    assert {"ensemble", "zscore"} <= set(names)
    for name in names:
        detector = create_detector(name)
        assert isinstance(detector, Detector)
        assert detector.observations == 0


def test_unknown_name_lists_the_known_names() -> None:
    """An unknown algorithm name is a MonitorError that names every known algorithm."""
    with pytest.raises(MonitorError, match="unknown detector 'htm'") as caught:
        create_detector("htm")
    for name in available_detectors():
        assert name in str(caught.value)


def test_parameters_reach_the_algorithm() -> None:
    """Keyword parameters are passed to the algorithm's constructor."""
    detector = create_detector("zscore", threshold=3.0, warmup=5)
    assert isinstance(detector, ZScoreDetector)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("zscore", {"spam": 1}, "does not take"),
        ("ensemble", {"warmup": 0}, "warmup"),
        ("ensemble", {"half_life": "long"}, "half_life"),
        ("ensemble", {"suppress": 1}, "suppress"),
        ("ensemble", {"mid": 2.0, "fast": 6.0}, "mid"),
        ("zscore", {"threshold": float("nan")}, "threshold"),
    ],
)
def test_bad_parameters_are_refused_by_name(
    name: str, params: dict[str, object], message: str
) -> None:
    """A parameter the algorithm does not take, or cannot use, is a MonitorError naming it."""
    with pytest.raises(MonitorError, match=message):
        create_detector(name, **params)
