"""Streaming univariate anomaly detectors behind one interface.

::

    from grace.immune.detectors import create_detector

    d = create_detector("default")      # or by algorithm name, see available_detectors()
    score = d.observe(timestamp, value)  # anomaly score in [0, 1] for this sample

One detector per series. Scores use only the samples up to and including the current one;
memory is constant per series; bad samples (NaN/inf, out-of-order timestamps) raise
:class:`~grace.errors.MonitorError` and leave the detector as it was. A score of 0.5 is
each algorithm's alarm level. ``"default"`` is :class:`EnsembleDetector`; see
``docs/adr/0008-streaming-detectors.md`` for why and for measured figures.

:mod:`grace.immune.detectors.evaluation` scores detectors on labelled series (the NAB
score, precision/recall); :mod:`grace.immune.detectors.synthetic` generates them.
"""

from __future__ import annotations

from grace.immune.detectors._base import Detector
from grace.immune.detectors._registry import available_detectors, create_detector
from grace.immune.detectors.ensemble import EnsembleDetector
from grace.immune.detectors.zscore import ZScoreDetector

__all__ = [
    "Detector",
    "EnsembleDetector",
    "ZScoreDetector",
    "available_detectors",
    "create_detector",
]
