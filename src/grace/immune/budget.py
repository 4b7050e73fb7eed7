"""The per-resource healing budget and its circuit breaker: flapping stops, a human is paged.

Per resource, at most ``max_runs`` healing runs may start within a sliding ``window_s``.
The run that would exceed it is refused and **opens the breaker** for that resource: no
healing at all while it is open — every new incident on the resource is escalated
instead. After ``cooldown_s`` the breaker is **half-open**: one trial run is admitted; if
it heals, the breaker closes and the run history is cleared; if it fails, the breaker
opens again for another cooldown. A human can :meth:`HealingBudget.reset` it at any time.

State per resource is a deque of at most ``max_runs`` start times plus the breaker state,
and at most ``max_resources`` resources are tracked (least recently used forgotten
first — a forgotten resource starts with a fresh budget, never an open breaker lost: the
open ones are kept).
"""

from __future__ import annotations

import datetime as _dt
from collections import OrderedDict, deque
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["BreakerState", "BudgetSettings", "BudgetVerdict", "HealingBudget"]


class BreakerState(StrEnum):
    """Whether healing may run on a resource."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetSettings:
    """Limits of automatic healing per resource."""

    max_runs: int = 3
    window_s: float = 3600.0
    cooldown_s: float = 1800.0
    max_resources: int = 10_000

    def __post_init__(self) -> None:
        if self.max_runs < 1 or self.window_s <= 0 or self.cooldown_s <= 0:
            raise ValueError("budget needs max_runs >= 1 and positive window_s, cooldown_s")
        if self.max_resources < 1:
            raise ValueError("budget max_resources must be at least 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetVerdict:
    """May a healing run start on the resource now?"""

    allowed: bool
    state: BreakerState
    reason: str
    runs_in_window: int
    opened_now: bool = False
    """This refusal opened the breaker (escalate once, loudly)."""


class _Account:
    __slots__ = ("opened_at", "runs", "state")

    def __init__(self, max_runs: int) -> None:
        self.runs: deque[_dt.datetime] = deque(maxlen=max_runs)
        self.state = BreakerState.CLOSED
        self.opened_at: _dt.datetime | None = None


class HealingBudget:
    """Healing runs per resource within a window, and a breaker per resource."""

    def __init__(self, settings: BudgetSettings | None = None) -> None:
        self.settings = settings or BudgetSettings()
        self._window = _dt.timedelta(seconds=self.settings.window_s)
        self._cooldown = _dt.timedelta(seconds=self.settings.cooldown_s)
        self._accounts: OrderedDict[str, _Account] = OrderedDict()

    def _account(self, resource: str) -> _Account:
        account = self._accounts.get(resource)
        if account is None:
            account = _Account(self.settings.max_runs)
            self._accounts[resource] = account
            self._trim()
        else:
            self._accounts.move_to_end(resource)
        return account

    def _trim(self) -> None:
        while len(self._accounts) > self.settings.max_resources:
            for name, account in self._accounts.items():
                if account.state is BreakerState.CLOSED:
                    del self._accounts[name]
                    break
            else:
                return  # every tracked resource has an open breaker: keep them all

    def state(self, resource: str, now: _dt.datetime) -> BreakerState:
        """The breaker state of a resource now (open turns half-open after the cooldown)."""
        account = self._accounts.get(resource)
        if account is None:
            return BreakerState.CLOSED
        self._tick(account, now)
        return account.state

    def _tick(self, account: _Account, now: _dt.datetime) -> None:
        if (
            account.state is BreakerState.OPEN
            and account.opened_at is not None
            and now - account.opened_at >= self._cooldown
        ):
            account.state = BreakerState.HALF_OPEN

    def admit(self, resource: str, now: _dt.datetime) -> BudgetVerdict:
        """Start a healing run if the budget and the breaker allow; the run is counted."""
        account = self._account(resource)
        self._tick(account, now)
        while account.runs and now - account.runs[0] > self._window:
            account.runs.popleft()
        count = len(account.runs)
        if account.state is BreakerState.OPEN:
            return BudgetVerdict(
                allowed=False,
                state=account.state,
                reason=f"the healing circuit breaker of {resource} is open "
                f"(since {account.opened_at.isoformat() if account.opened_at else '?'})",
                runs_in_window=count,
            )
        if account.state is BreakerState.CLOSED and count >= self.settings.max_runs:
            account.state = BreakerState.OPEN
            account.opened_at = now
            return BudgetVerdict(
                allowed=False,
                state=account.state,
                reason=f"healing budget of {resource} exhausted: {count} runs within "
                f"{self.settings.window_s:g} s (limit {self.settings.max_runs}); "
                "circuit breaker opened",
                runs_in_window=count,
                opened_now=True,
            )
        account.runs.append(now)
        return BudgetVerdict(
            allowed=True,
            state=account.state,
            reason="trial run (breaker half-open)"
            if account.state is BreakerState.HALF_OPEN
            else "within budget",
            runs_in_window=count + 1,
        )

    def record(self, resource: str, *, healed: bool, now: _dt.datetime) -> BreakerState:
        """The outcome of a run admitted earlier; settles a half-open breaker."""
        account = self._account(resource)
        if account.state is BreakerState.HALF_OPEN:
            if healed:
                account.state = BreakerState.CLOSED
                account.opened_at = None
                account.runs.clear()
            else:
                account.state = BreakerState.OPEN
                account.opened_at = now
        return account.state

    def reset(self, resource: str) -> bool:
        """Close the breaker and clear the history (a human's decision); False if unknown."""
        return self._accounts.pop(resource, None) is not None

    def open_breakers(self, now: _dt.datetime) -> list[str]:
        """Resources whose breaker is open (not half-open) now."""
        out = []
        for name, account in self._accounts.items():
            self._tick(account, now)
            if account.state is BreakerState.OPEN:
                out.append(name)
        return out
