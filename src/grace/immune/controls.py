"""Ingress controls: circuit breakers, rate limits and quarantines that Grace's own
ingress enforces (the HTTP middleware for routes, the mesh for components).

The immune kernel sets them (through its executors, each step governed and recorded in
the ledger by the kernel); the enforcement points only ask :meth:`IngressControls.check`,
which is synchronous and cheap: with no control in force it is one attribute test.

Keys are the names the enforcement points already use:

* HTTP: the gate's action name, ``"<METHOD>:/route/{template}"`` (e.g. ``GET:/v1/orders``);
* components and principals: ``"component:<id>"`` (a mesh publisher or principal id).

A control's ``pattern`` is shell-style over the key (``component:billing``,
``POST:/v1/orders*``, ``*``). Precedence for one key: quarantine, then an open breaker,
then rate limits (each matching limit takes a token; the first empty bucket denies).
Breakers and limits may expire (``duration_s``); quarantines stay until released.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from grace.types import Clock

__all__ = ["Control", "ControlKind", "Denied", "IngressControls"]

_STATUS: Final = {"quarantine": 403, "circuit_breaker": 503, "rate_limit": 429}


class ControlKind(StrEnum):
    """What a control does to matching traffic."""

    QUARANTINE = "quarantine"
    CIRCUIT_BREAKER = "circuit_breaker"
    RATE_LIMIT = "rate_limit"


@dataclass(frozen=True, slots=True, kw_only=True)
class Denied:
    """Why a key may not pass now."""

    key: str
    kind: ControlKind
    pattern: str
    reason: str
    retry_after_s: float | None = None

    @property
    def status_code(self) -> int:
        """The HTTP status an ingress answers with: 403 quarantine, 503 breaker, 429 limit."""
        return _STATUS[self.kind]


@dataclass(frozen=True, slots=True, kw_only=True)
class Control:
    """A control in force (a snapshot)."""

    kind: ControlKind
    pattern: str
    reason: str
    actor: str
    set_at: _dt.datetime
    until: _dt.datetime | None = None
    rate_per_s: float | None = None
    burst: int | None = None


class _Rule:
    """A control plus its compiled pattern and, for limits, its token bucket."""

    __slots__ = ("control", "regex", "tokens", "until", "updated")

    def __init__(self, control: Control) -> None:
        self.control = control
        self.regex = re.compile(fnmatch.translate(control.pattern))
        self.until = None if control.until is None else control.until.timestamp()
        self.tokens = float(control.burst or 0)
        self.updated = control.set_at.timestamp()


def _check_pattern(pattern: str) -> str:
    if not pattern or pattern != pattern.strip() or len(pattern) > 512:
        raise ValueError(f"control pattern {pattern!r} must be non-empty, unpadded, ≤ 512 chars")
    return pattern


def _check_duration(duration_s: float | None) -> None:
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be a positive number of seconds, got {duration_s!r}")


class IngressControls:
    """The breakers, limits and quarantines in force, consulted by Grace's ingress."""

    def __init__(self, *, clock: Clock) -> None:
        self._clock = clock
        self._rules: dict[tuple[ControlKind, str], _Rule] = {}
        self._ordered: tuple[_Rule, ...] = ()
        self.denials = 0

    # -- enforcement ---------------------------------------------------------------------

    def check(self, key: str) -> Denied | None:
        """None if ``key`` may pass now; else why not (a rate-limited pass takes a token)."""
        if not self._ordered:
            return None
        now = self._clock.now().timestamp()
        expired = False
        for rule in self._ordered:
            if rule.until is not None and now >= rule.until:
                expired = True
                continue
            if not rule.regex.match(key):
                continue
            control = rule.control
            if control.kind is ControlKind.RATE_LIMIT:
                rate = control.rate_per_s or 0.0
                burst = float(control.burst or 0)
                rule.tokens = min(burst, rule.tokens + max(0.0, now - rule.updated) * rate)
                rule.updated = now
                if rule.tokens >= 1.0:
                    rule.tokens -= 1.0
                    continue
                retry = (1.0 - rule.tokens) / rate if rate > 0 else None
            else:
                retry = None if rule.until is None else max(0.0, rule.until - now)
            if expired:
                self._expire(now)
            self.denials += 1
            return Denied(
                key=key,
                kind=control.kind,
                pattern=control.pattern,
                reason=control.reason,
                retry_after_s=retry,
            )
        if expired:
            self._expire(now)
        return None

    # -- setting controls ----------------------------------------------------------------

    def trip(
        self, pattern: str, *, reason: str, actor: str, duration_s: float | None = None
    ) -> Control:
        """Open the circuit breaker for ``pattern`` (until reset, or for ``duration_s``)."""
        _check_duration(duration_s)
        return self._set(ControlKind.CIRCUIT_BREAKER, pattern, reason, actor, duration_s)

    def reset(self, pattern: str) -> Control | None:
        """Close the breaker of ``pattern``; the removed control, or None."""
        return self._remove(ControlKind.CIRCUIT_BREAKER, pattern)

    def limit(
        self,
        pattern: str,
        *,
        rate_per_s: float,
        burst: int,
        reason: str,
        actor: str,
        duration_s: float | None = None,
    ) -> Control:
        """Admit at most ``rate_per_s`` on average (bursts of ``burst``) for ``pattern``."""
        if not (math.isfinite(rate_per_s) and rate_per_s > 0) or burst < 1:
            raise ValueError(f"rate limit needs rate_per_s > 0 and burst >= 1 ({pattern!r})")
        _check_duration(duration_s)
        return self._set(
            ControlKind.RATE_LIMIT, pattern, reason, actor, duration_s, rate_per_s, burst
        )

    def lift(self, pattern: str) -> Control | None:
        """Remove the rate limit of ``pattern``; the removed control, or None."""
        return self._remove(ControlKind.RATE_LIMIT, pattern)

    def quarantine(self, pattern: str, *, reason: str, actor: str) -> Control:
        """Deny everything matching ``pattern`` until :meth:`release`."""
        return self._set(ControlKind.QUARANTINE, pattern, reason, actor, None)

    def release(self, pattern: str) -> Control | None:
        """End the quarantine of ``pattern``; the removed control, or None."""
        return self._remove(ControlKind.QUARANTINE, pattern)

    # -- inspection ----------------------------------------------------------------------

    def in_force(self, kind: ControlKind, pattern: str) -> Control | None:
        """The unexpired control of this kind and pattern, if any."""
        rule = self._rules.get((kind, pattern))
        if rule is None:
            return None
        if rule.until is not None and self._clock.now().timestamp() >= rule.until:
            return None
        return rule.control

    def active(self) -> list[Control]:
        """Every unexpired control, quarantines first."""
        self._expire(self._clock.now().timestamp())
        return [r.control for r in self._ordered]

    # -- internals -----------------------------------------------------------------------

    def _set(
        self,
        kind: ControlKind,
        pattern: str,
        reason: str,
        actor: str,
        duration_s: float | None,
        rate_per_s: float | None = None,
        burst: int | None = None,
    ) -> Control:
        _check_pattern(pattern)
        now = self._clock.now()
        control = Control(
            kind=kind,
            pattern=pattern,
            reason=reason,
            actor=actor,
            set_at=now,
            until=None if duration_s is None else now + _dt.timedelta(seconds=duration_s),
            rate_per_s=rate_per_s,
            burst=burst,
        )
        self._rules[(kind, pattern)] = _Rule(control)
        self._reorder()
        return control

    def _remove(self, kind: ControlKind, pattern: str) -> Control | None:
        rule = self._rules.pop((kind, pattern), None)
        self._reorder()
        return None if rule is None else rule.control

    def _expire(self, now: float) -> None:
        stale = [k for k, r in self._rules.items() if r.until is not None and now >= r.until]
        for k in stale:
            del self._rules[k]
        if stale:
            self._reorder()

    def _reorder(self) -> None:
        order = {
            ControlKind.QUARANTINE: 0,
            ControlKind.CIRCUIT_BREAKER: 1,
            ControlKind.RATE_LIMIT: 2,
        }
        self._ordered = tuple(sorted(self._rules.values(), key=lambda r: order[r.control.kind]))
