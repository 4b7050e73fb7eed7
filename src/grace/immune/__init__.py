"""The immune kernel (AVN): detectors, incidents, playbooks, governed healing."""

from __future__ import annotations

__all__: list[str] = []
