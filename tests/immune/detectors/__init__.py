"""Tests of the streaming anomaly detectors (grace.immune.detectors)."""
