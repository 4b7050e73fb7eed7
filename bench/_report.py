"""What every bench script shares: statistics helpers and the summary table."""

from __future__ import annotations

import cProfile
import math
import pstats
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Row", "fmt_rate", "median", "percentile", "print_profile", "print_table", "verdict"]


def median(xs: Sequence[float]) -> float:
    """The median."""
    return statistics.median(xs)


def percentile(xs: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100)."""
    ordered = sorted(xs)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def fmt_rate(x: float) -> str:
    """A rate per second, with thousands separators."""
    return f"{x:,.0f}/s"


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the summary table."""

    name: str
    goal: str
    measured: str
    baseline: str
    ratio: str
    status: str


def verdict(ok: bool | None) -> str:
    """PASS, MISS, or info when there is no goal."""
    return "info" if ok is None else ("PASS" if ok else "MISS")


def print_table(rows: Sequence[Row]) -> None:
    """The summary table, columns aligned."""
    table = [("check", "goal", "measured", "baseline", "ratio", "status")]
    table += [(r.name, r.goal, r.measured, r.baseline, r.ratio, r.status) for r in rows]
    widths = [max(len(cells[i]) for cells in table) for i in range(len(table[0]))]
    for n, cells in enumerate(table):
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def print_profile(profiler: cProfile.Profile, per: int, top: int, unit: str) -> None:
    """The top functions of a profile, by own and by cumulative time, per `unit`."""
    stats = pstats.Stats(profiler)
    rows: list[tuple[float, float, int, str]] = []
    for (path, line, func), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        short = path
        for marker in ("/site-packages/", "/src/", "/lib/python"):
            if marker in path:
                short = path.split(marker, 1)[1]
                break
        where = f"{short}:{line}({func})" if line else func
        rows.append((tottime, cumtime, calls, where))
    total = sum(r[0] for r in rows)
    for title, key in (("own time (tottime)", 0), ("including callees (cumtime)", 1)):
        print(f"  top {top} by {title}, per {unit}:", flush=True)
        print(f"  {'own µs':>8} {'cum µs':>8} {'calls':>7}  function")
        for tottime, cumtime, calls, where in sorted(rows, key=lambda r: r[key], reverse=True)[
            :top
        ]:
            print(
                f"  {1e6 * tottime / per:8.2f} {1e6 * cumtime / per:8.2f} "
                f"{calls / per:7.2f}  {where}"
            )
        print()
    print(f"  profiled own time in total: {1e6 * total / per:.1f} µs/{unit}\n", flush=True)
