"""Generated series with known anomalies, for tests, benches and demos.

Every generator is deterministic for a given ``seed`` (``random.Random(seed)``) and returns
a :class:`LabelledSeries`: samples every 5 minutes from 2014-01-01 UTC (the cadence of most
operational metrics and of the NAB corpus), the index of each anomaly's onset, and NAB
style windows around them.

The anomaly kinds are the ones the immune kernel cares about: a spike, a level shift, a
slow drift, a variance increase, and a flatline (a sensor or process that stops moving).
:func:`operational_corpus` mixes them into series shaped like real metrics (CPU with
benign bursts, daily traffic cycles, heavy-tailed latency, Poisson counts, slowly
wandering temperatures), each with one to three anomalies after a quiet start.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from grace.immune.detectors.evaluation import nab_windows

__all__ = [
    "ANOMALY_KINDS",
    "START",
    "STEP_S",
    "LabelledSeries",
    "labelled_series",
    "operational_corpus",
]

START = 1_388_534_400.0
"""2014-01-01T00:00:00Z, the first timestamp of every generated series."""
STEP_S = 300.0
"""Five minutes between samples."""
_DAY = 288  # samples per day

ANOMALY_KINDS = ("spike", "level_shift", "drift", "variance", "flatline")


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelledSeries:
    """A series and where its anomalies start."""

    name: str
    timestamps: tuple[float, ...]
    values: tuple[float, ...]
    anomalies: tuple[int, ...]
    """Index of the first anomalous sample of each anomaly, ascending."""
    ends: tuple[int, ...]
    """Index of the last anomalous sample of each anomaly (same order)."""

    @property
    def windows(self) -> tuple[tuple[int, int], ...]:
        """NAB windows around the anomaly onsets."""
        return nab_windows(len(self.values), self.anomalies)


def _timestamps(n: int) -> tuple[float, ...]:
    return tuple(START + STEP_S * i for i in range(n))


def _ar_noise(rng: random.Random, n: int, phi: float, sigma: float) -> list[float]:
    """AR(1) noise with stationary standard deviation ``sigma``."""
    innovation = sigma * math.sqrt(1.0 - phi * phi)
    e = rng.gauss(0.0, sigma)
    out = []
    for _ in range(n):
        e = phi * e + rng.gauss(0.0, innovation)
        out.append(e)
    return out


def _inject(rng: random.Random, values: list[float], kind: str, at: int, scale: float) -> int:
    """Put an anomaly of ``kind`` into ``values`` from ``at`` on; return its last index."""
    n = len(values)
    if kind == "spike":
        size = scale * rng.uniform(6.0, 10.0) * rng.choice((-1.0, 1.0))
        width = rng.choice((1, 1, 2, 3))
        for i in range(at, min(n, at + width)):
            values[i] += size
        return min(n, at + width) - 1
    if kind == "level_shift":
        size = scale * rng.uniform(4.0, 7.0) * rng.choice((-1.0, 1.0))
        for i in range(at, n):
            values[i] += size
        return n - 1
    if kind == "drift":
        length = rng.randint(150, 400)
        size = scale * rng.uniform(6.0, 10.0) * rng.choice((-1.0, 1.0))
        for i in range(at, n):
            values[i] += size * min(1.0, (i - at + 1) / length)
        return min(n - 1, at + length)
    if kind == "variance":
        length = rng.randint(100, 300)
        factor = rng.uniform(4.0, 6.0)
        end = min(n, at + length)
        level = sum(values[max(0, at - 50) : at]) / max(1, len(values[max(0, at - 50) : at]))
        for i in range(at, end):
            values[i] = level + (values[i] - level) * factor
        return end - 1
    if kind == "flatline":
        length = rng.randint(150, 400)
        end = min(n, at + length)
        stuck = values[at - 1] if at > 0 else values[0]
        for i in range(at, end):
            values[i] = stuck
        return end - 1
    raise ValueError(f"unknown anomaly kind {kind!r}; known: {', '.join(ANOMALY_KINDS)}")


def labelled_series(
    kind: str, *, seed: int, length: int = 2000, at: int | None = None
) -> LabelledSeries:
    """A plain noisy series (level 100, AR(1) noise, sd 1) with one anomaly of ``kind``.

    The anomaly starts at ``at`` (default: 70 % of the way through).
    """
    if kind not in ANOMALY_KINDS:
        raise ValueError(f"unknown anomaly kind {kind!r}; known: {', '.join(ANOMALY_KINDS)}")
    rng = random.Random(f"{kind}:{seed}")  # noqa: S311 - reproducible test data, not secrets
    start = int(0.7 * length) if at is None else at
    values = [100.0 + e for e in _ar_noise(rng, length, 0.3, 1.0)]
    end = _inject(rng, values, kind, start, 1.0)
    return LabelledSeries(
        name=f"{kind}-{seed}",
        timestamps=_timestamps(length),
        values=tuple(values),
        anomalies=(start,),
        ends=(end,),
    )


# -- realistic base signals ---------------------------------------------------------------


def _cpu(rng: random.Random, n: int) -> tuple[list[float], float]:
    base = rng.uniform(15.0, 60.0)
    noise = _ar_noise(rng, n, 0.6, base * 0.05)
    values = [max(0.0, base + e) for e in noise]
    # benign bursts: a busy job for a few samples, a couple of times a day
    i = 0
    while True:
        i += int(rng.expovariate(1.0 / 140.0)) + 1
        if i >= n:
            break
        for j in range(i, min(n, i + rng.randint(1, 4))):
            values[j] += base * rng.uniform(0.15, 0.35)
    return values, base * 0.05


def _traffic(rng: random.Random, n: int) -> tuple[list[float], float]:
    base = rng.uniform(200.0, 5000.0)
    amplitude = rng.uniform(0.2, 0.6)
    phase = rng.uniform(0.0, 2 * math.pi)
    noise = _ar_noise(rng, n, 0.5, 0.04)
    values = []
    for i in range(n):
        daily = 1.0 + amplitude * math.sin(2 * math.pi * i / _DAY + phase)
        weekly = 0.85 if (i // _DAY) % 7 in (5, 6) else 1.0
        values.append(base * daily * weekly * (1.0 + noise[i]))
    return values, base * 0.04


def _latency(rng: random.Random, n: int) -> tuple[list[float], float]:
    base = rng.uniform(20.0, 200.0)
    values = [base * math.exp(rng.gauss(0.0, 0.15)) for _ in range(n)]
    for i in range(n):
        if rng.random() < 0.004:  # benign slow request
            values[i] *= rng.uniform(1.5, 2.2)
    return values, base * 0.15


def _counts(rng: random.Random, n: int) -> tuple[list[float], float]:
    rate = rng.uniform(5.0, 60.0)
    phase = rng.uniform(0.0, 2 * math.pi)
    values = []
    for i in range(n):
        lam = rate * (1.0 + 0.5 * math.sin(2 * math.pi * i / _DAY + phase))
        # normal approximation to a Poisson count, kept integral and non-negative
        values.append(float(max(0, round(rng.gauss(lam, math.sqrt(lam))))))
    return values, math.sqrt(rate)


def _temperature(rng: random.Random, n: int) -> tuple[list[float], float]:
    level = rng.uniform(60.0, 90.0)
    x = level
    values = []
    for i in range(n):
        x += 0.02 * (level - x) + rng.gauss(0.0, 0.15)
        values.append(x + 0.8 * math.sin(2 * math.pi * i / _DAY) + rng.gauss(0.0, 0.1))
    return values, 0.5


_BASES: dict[str, Callable[[random.Random, int], tuple[list[float], float]]] = {
    "cpu": _cpu,
    "traffic": _traffic,
    "latency": _latency,
    "counts": _counts,
    "temperature": _temperature,
}


def operational_corpus(
    *, seed: int, count: int = 40, length: int = 4032
) -> tuple[LabelledSeries, ...]:
    """``count`` realistic series (14 days at 5 minutes by default), 1 to 3 anomalies each.

    Anomalies start after the first 20 % of a series and at least two windows apart.
    """
    rng = random.Random(f"corpus:{seed}")  # noqa: S311 - reproducible test data
    bases = sorted(_BASES)
    out = []
    for k in range(count):
        base_name = bases[k % len(bases)]
        values, scale = _BASES[base_name](rng, length)
        howmany = rng.choice((1, 2, 2, 3))
        kinds = [rng.choice(ANOMALY_KINDS) for _ in range(howmany)]
        # the permanent kinds (level shift) go last so they do not swallow the others
        kinds.sort(key=lambda kd: kd == "level_shift")
        gap = length // (howmany + 1)
        onsets = []
        ends = []
        for j, kind in enumerate(kinds):
            lo = int(0.2 * length) + j * gap
            at = rng.randint(lo, min(length - 200, lo + gap // 2))
            onsets.append(at)
            ends.append(_inject(rng, values, kind, at, scale))
        if base_name == "counts":
            values = [float(max(0, round(v))) for v in values]
        out.append(
            LabelledSeries(
                name=f"{base_name}-{k}-{'+'.join(kinds)}",
                timestamps=_timestamps(length),
                values=tuple(values),
                anomalies=tuple(onsets),
                ends=tuple(ends),
            )
        )
    return tuple(out)
