"""Dead letters: deliveries that failed every attempt, kept for listing and replay.

Invariants: the store holds at most ``capacity`` letters (the oldest go first, and are
counted as ``evicted``); ids increase and are never reused; ``take`` removes a letter so
one replay cannot run twice.
"""

from __future__ import annotations

import datetime as _dt
import itertools
from collections import OrderedDict
from dataclasses import dataclass

from grace.mesh.event import TriggerEvent

__all__ = ["DeadLetter", "DeadLetterStore"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """One event that one subscriber could not handle."""

    id: int
    event: TriggerEvent
    subscriber: str
    error: str
    attempts: int
    failed_at: _dt.datetime


class DeadLetterStore:
    """Bounded in-memory dead-letter store."""

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError(f"dead-letter capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.evicted = 0
        self._letters: OrderedDict[int, DeadLetter] = OrderedDict()
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._letters)

    def add(
        self,
        event: TriggerEvent,
        *,
        subscriber: str,
        error: str,
        attempts: int,
        failed_at: _dt.datetime,
    ) -> DeadLetter:
        """Keep a failed delivery; drop the oldest when full."""
        letter = DeadLetter(
            id=next(self._ids),
            event=event,
            subscriber=subscriber,
            error=error,
            attempts=attempts,
            failed_at=failed_at,
        )
        self._letters[letter.id] = letter
        while len(self._letters) > self.capacity:
            self._letters.popitem(last=False)
            self.evicted += 1
        return letter

    def list(
        self, *, subscriber: str | None = None, event_type: str | None = None
    ) -> list[DeadLetter]:
        """Letters, oldest first, optionally only one subscriber's or one event type's."""
        return [
            letter
            for letter in self._letters.values()
            if (subscriber is None or letter.subscriber == subscriber)
            and (event_type is None or letter.event.event_type == event_type)
        ]

    def take(self, letter_id: int) -> DeadLetter | None:
        """Remove and return a letter (for replay)."""
        return self._letters.pop(letter_id, None)
