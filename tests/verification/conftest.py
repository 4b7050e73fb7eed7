"""Fixtures for the verification tests: a real ledger, an event collector, a fast sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from grace.ledger import Ledger
from grace.testing import FakeClock
from grace.verification.engine import VerificationEngine
from grace.verification.sandbox import Sandbox, SandboxLimits, SandboxSettings


class Events:
    """Collects emitted events (implements the EventPublisher protocol)."""

    def __init__(self) -> None:
        self.emitted: list[tuple[str, dict[str, Any]]] = []

    async def emit(self, event_type: str, payload: Mapping[str, Any] | None = None) -> object:
        self.emitted.append((event_type, dict(payload or {})))
        return True

    @property
    def types(self) -> list[str]:
        """The event types, in order."""
        return [t for t, _ in self.emitted]


class CountingSandbox(Sandbox):
    """A real sandbox that counts how often tests were run."""

    def __init__(self, settings: SandboxSettings | None = None) -> None:
        super().__init__(settings)
        self.runs = 0

    def run_sync(self, files: Mapping[str, bytes], tests: Any) -> Any:
        self.runs += 1
        return super().run_sync(files, tests)


def fast_settings(**overrides: Any) -> SandboxSettings:
    """Sandbox settings with small limits (attacks end in seconds)."""
    limits = SandboxLimits(wall_s=20.0, cpu_s=3, memory_bytes=512 << 20, processes=8)
    return SandboxSettings(limits=limits, **overrides)


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    """A real ledger in a temporary data directory."""
    async with await Ledger.open(tmp_path / "data") as opened:
        yield opened


@pytest.fixture
def events() -> Events:
    """An event collector."""
    return Events()


@pytest.fixture
def sandbox() -> CountingSandbox:
    """A counting sandbox with small limits."""
    return CountingSandbox(fast_settings())


@pytest.fixture
def engine(ledger: Ledger, events: Events, sandbox: CountingSandbox) -> VerificationEngine:
    """A verification engine with a real ledger, real sandbox and an event collector."""
    return VerificationEngine(clock=FakeClock(), sandbox=sandbox, ledger=ledger, events=events)
