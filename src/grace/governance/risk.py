"""The server-side action registry: how risky an action is, decided here, never by the caller.

Rules are ``(pattern, risk, critical, reversible)`` in order; the first whose pattern matches the
action wins. Patterns are shell-style (``*`` any run of characters, ``?`` one, ``[...]``
a set), matched case-sensitively against the whole action name. HTTP actions are named
``METHOD:/route/{template}``; when no rule matches them the method decides (safe methods
low, writes medium, ``DELETE`` high). Anything else unmatched is ``medium``: an unknown
action is never assumed harmless.

``critical`` marks actions that the ``critical`` enforcement mode enforces even when
their risk is below high (e.g. changing policies).

Lookups are cached per action name (bounded), so the per-request cost is one dict hit.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple

from grace.governance.model import RiskLevel

__all__ = ["DEFAULT_RULES", "ActionInfo", "ActionRegistry", "RiskRule"]

_HTTP_DEFAULTS: Final[Mapping[str, RiskLevel]] = {
    "GET": RiskLevel.LOW,
    "HEAD": RiskLevel.LOW,
    "OPTIONS": RiskLevel.LOW,
    "POST": RiskLevel.MEDIUM,
    "PUT": RiskLevel.MEDIUM,
    "PATCH": RiskLevel.MEDIUM,
    "DELETE": RiskLevel.HIGH,
}
_CACHE_LIMIT: Final = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskRule:
    """One registry line: actions matching ``pattern`` carry ``risk``."""

    pattern: str
    risk: RiskLevel
    critical: bool = False
    reversible: bool = True
    """False for actions that cannot be undone (deletions, ledger changes)."""

    def __post_init__(self) -> None:
        if not self.pattern or self.pattern != self.pattern.strip():
            raise ValueError(f"risk rule pattern {self.pattern!r} must be non-empty, unpadded")


DEFAULT_RULES: Final[tuple[RiskRule, ...]] = (
    # Autonomous actions of the seed's autonomy tiers.
    RiskRule(pattern="execute_task", risk=RiskLevel.LOW),
    RiskRule(pattern="generate_code", risk=RiskLevel.MEDIUM),
    RiskRule(pattern="restart_component", risk=RiskLevel.MEDIUM),
    RiskRule(pattern="scale_service", risk=RiskLevel.MEDIUM),
    RiskRule(pattern="rollback_deployment", risk=RiskLevel.HIGH),
    RiskRule(pattern="deploy_model", risk=RiskLevel.HIGH),
    RiskRule(pattern="deploy_code", risk=RiskLevel.HIGH),
    # Healing actions (AVN).
    RiskRule(pattern="avn:clear_cache", risk=RiskLevel.LOW),
    RiskRule(pattern="avn:garbage_collect", risk=RiskLevel.LOW),
    RiskRule(pattern="avn:rate_limit", risk=RiskLevel.MEDIUM),
    RiskRule(pattern="avn:circuit_breaker", risk=RiskLevel.MEDIUM),
    RiskRule(pattern="avn:restart_service", risk=RiskLevel.MEDIUM),
    RiskRule(pattern="avn:scale_*", risk=RiskLevel.MEDIUM),
    RiskRule(pattern="avn:kill_connection", risk=RiskLevel.MEDIUM),
    RiskRule(pattern="avn:escalate_to_human", risk=RiskLevel.LOW),
    RiskRule(pattern="avn:rollback", risk=RiskLevel.HIGH),
    RiskRule(pattern="avn:quarantine_component", risk=RiskLevel.HIGH),
    RiskRule(pattern="avn:harden_security", risk=RiskLevel.HIGH),
    # Changes to Grace itself.
    RiskRule(pattern="system:policy_*", risk=RiskLevel.CRITICAL, critical=True),
    RiskRule(pattern="system:ledger_*", risk=RiskLevel.CRITICAL, critical=True, reversible=False),
    RiskRule(pattern="system:*", risk=RiskLevel.HIGH, critical=True),
    # Grace's own API: approving is a governance act, deciding is routine for PEPs.
    RiskRule(pattern="POST:/v1/approvals/*", risk=RiskLevel.HIGH, critical=True),
    RiskRule(pattern="POST:/v1/decide*", risk=RiskLevel.LOW),
)


class ActionInfo(NamedTuple):
    """What the registry says about an action."""

    risk: RiskLevel
    critical: bool
    reversible: bool


class ActionRegistry:
    """First-match risk rules with HTTP and unknown-action defaults."""

    def __init__(self, rules: Iterable[RiskRule] = DEFAULT_RULES) -> None:
        self.rules = tuple(rules)
        self._compiled = tuple(
            (re.compile(fnmatch.translate(rule.pattern)), rule) for rule in self.rules
        )
        self._cache: dict[str, ActionInfo] = {}

    def classify(self, action: str) -> ActionInfo:
        """``(risk, critical, reversible)`` of an action name."""
        found = self._cache.get(action)
        if found is not None:
            return found
        found = self._classify(action)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[action] = found
        return found

    def _classify(self, action: str) -> ActionInfo:
        for regex, rule in self._compiled:
            if regex.match(action):
                return ActionInfo(rule.risk, rule.critical, rule.reversible)
        method, sep, _ = action.partition(":/")
        if sep and method in _HTTP_DEFAULTS:
            return ActionInfo(_HTTP_DEFAULTS[method], False, method != "DELETE")
        return ActionInfo(RiskLevel.MEDIUM, False, True)
