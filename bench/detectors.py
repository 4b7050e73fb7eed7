"""Streaming detector benchmarks: observations/s, and detection quality on labelled series.

Run from the repository root::

    .venv/bin/python bench/detectors.py               # full run
    .venv/bin/python bench/detectors.py --quick       # smoke run, a few seconds
    .venv/bin/python bench/detectors.py --nab DIR     # also score a NAB checkout

1. Throughput: every algorithm of ``available_detectors()`` observes the same series (a
   generated 5-minute operational series, ``--length`` samples, float timestamps), one
   fresh detector per repeat. Baseline: a bare Welford running mean/variance update loop
   over the same (timestamp, value) pairs. Goal: >= 50,000 observations/s per algorithm.
2. Generated series (``grace.immune.detectors.synthetic.operational_corpus``): NAB score
   (standard, reward_low_FP, reward_low_FN) with precision/recall per window at the
   standard profile's optimal threshold. Info rows: no published figures exist for them.
3. Real labelled public series: the Turing Change Point Dataset series shipped in the
   ``river`` wheel (airline passengers, apple, bitcoin, occupancy, run_log, UK coal
   employment; change points = those a majority of annotators marked within 5 samples).
   The wheel is fetched with ``pip download --no-deps`` into ``bench/.cache`` and read
   in place (never installed, never imported). Scored as in 2, with NAB windows around
   the change points; info rows.
4. The Numenta Anomaly Benchmark, when ``--nab DIR`` points at a checkout (``DIR/data``
   and ``DIR/labels/combined_windows.json``) or ``bench/.cache/NAB`` holds one: the
   whole corpus, every profile, scored by ``grace.immune.detectors.evaluation``
   (a re-implementation of NAB v1.1's sweeper, optimiser and normalisation). Published
   standard-profile scores for comparison: ARTime 74.9, HTM 70.1, CAD OSE 69.9.
   Goal for the default detector: >= 70.

``measure_detectors(series)`` and the ``score_*`` functions return ``_report.Row`` lists,
so bench/immune.py can fold them into its own table.
"""

from __future__ import annotations

import argparse
import ast
import csv
import datetime as dt
import io
import json
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from _report import Row, fmt_rate, print_table, verdict
from grace.immune.detectors import available_detectors, create_detector
from grace.immune.detectors.evaluation import PROFILES, LabelledRun, NABResult, nab_score
from grace.immune.detectors.evaluation import nab_windows as make_windows
from grace.immune.detectors.synthetic import operational_corpus

THROUGHPUT_GOAL = 50_000.0
NAB_GOAL = 70.0
CACHE = Path(__file__).resolve().parent / ".cache"
RIVER = "river==0.26.1"
TCPD_SERIES = {  # river/drift/datasets/<name>.csv: the column scored
    "airline_passengers": "Total Passengers",
    "apple": "Close",
    "bitcoin": "price",
    "occupancy": "V1",
    "run_log": "Pace",
    "uk_coal_employment": "Employment",
}

Series = Sequence[tuple[float, float]]
Corpus = list[tuple[str, Series, tuple[tuple[int, int], ...]]]


def algorithms() -> list[str]:
    """Every algorithm name (``default`` is one of them under its own name)."""
    return [name for name in available_detectors() if name != "default"]


# -- 1. throughput ---------------------------------------------------------------------


def _welford(series: Series) -> float:
    """The floor: a bare running mean/variance update per sample (Welford)."""
    mean = m2 = 0.0
    for n, (_, x) in enumerate(series, 1):
        d = x - mean
        mean += d / n
        m2 += d * (x - mean)
    return m2


def _time(run: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``repeats`` runs."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def measure_detectors(series: Series, repeats: int = 5) -> list[Row]:
    """Observations/s of each algorithm over ``series`` against the bare Welford loop."""
    n = len(series)
    base = n / _time(lambda: _welford(series), repeats)

    def observe_all(name: str) -> None:
        observe = create_detector(name).observe
        for t, x in series:
            observe(t, x)

    rows = []
    for name in algorithms():
        rate = n / _time(lambda name=name: observe_all(name), repeats)  # type: ignore[misc]
        rows.append(
            Row(
                name=f"detector {name} observe",
                goal=f">= {THROUGHPUT_GOAL:,.0f}/s",
                measured=fmt_rate(rate),
                baseline=f"{fmt_rate(base)} (Welford)",
                ratio=f"{rate / base:.3f}x",
                status=verdict(rate >= THROUGHPUT_GOAL),
            )
        )
    return rows


# -- scoring ---------------------------------------------------------------------------


def _score_runs(
    label: str, corpus: Sequence[tuple[str, Series, Sequence[tuple[int, int]]]], goal: float | None
) -> list[Row]:
    """NAB scores (every profile) and precision/recall of each algorithm on ``corpus``."""
    rows = []
    for name in algorithms():
        runs = []
        for series_name, series, windows in corpus:
            detector = create_detector(name)
            scores = [detector.observe(t, x) for t, x in series]
            runs.append(LabelledRun(name=series_name, scores=scores, windows=windows))
        results: list[NABResult] = [nab_score(runs, profile) for profile in PROFILES]
        standard = results[0]
        met = None if goal is None or name != "ensemble" else standard.score >= goal
        rows.append(
            Row(
                name=f"{label} NAB {name}",
                goal=f">= {goal:.0f}" if goal is not None and name == "ensemble" else "",
                measured=" / ".join(f"{r.score:.1f}" for r in results),
                baseline="std / low FP / low FN",
                ratio=(
                    f"P {standard.precision:.2f} R {standard.recall:.2f} "
                    f"({standard.detected}/{standard.windows}, {standard.false_positives} FP)"
                ),
                status=verdict(met),
            )
        )
    return rows


def score_generated(seed: int = 1, count: int = 40) -> list[Row]:
    """Scores on generated operational series with known anomalies."""
    corpus = [
        (s.name, list(zip(s.timestamps, s.values, strict=True)), s.windows)
        for s in operational_corpus(seed=seed, count=count)
    ]
    return _score_runs(f"generated({count})", corpus, None)


def _river_wheel() -> Path | None:
    """The river wheel in the cache, fetched with pip if missing (None if unreachable)."""
    target = CACHE / "pypi"
    found = sorted(target.glob("river-*.whl"))
    if not found:
        target.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(target)]
        done = subprocess.run([*command, RIVER], check=False, capture_output=True)  # noqa: S603
        if done.returncode != 0:
            return None
        found = sorted(target.glob("river-*.whl"))
    return found[-1] if found else None


def _majority(annotations: dict[str, list[int]], margin: int = 5) -> list[int]:
    """Change points marked by a majority of annotators (within ``margin`` samples)."""
    out: list[int] = []
    for point in sorted({p for marks in annotations.values() for p in marks}):
        votes = sum(
            1 for marks in annotations.values() if any(abs(point - q) <= margin for q in marks)
        )
        if 2 * votes > len(annotations) and not any(abs(point - m) <= margin for m in out):
            out.append(point)
    return out


def load_tcpd(wheel: Path) -> Corpus:
    """TCPD series and their NAB windows, read from the river wheel without importing it."""
    corpus: Corpus = []
    with zipfile.ZipFile(wheel) as z:
        for name, column in TCPD_SERIES.items():
            source = z.read(f"river/drift/datasets/{name}.py").decode()
            annotations = next(
                ast.literal_eval(node.value)
                for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.keyword) and node.arg == "annotations"
            )
            text = z.read(f"river/drift/datasets/{name}.csv").decode()
            values = [float(row[column]) for row in csv.DictReader(io.StringIO(text))]
            series = [(float(i), v) for i, v in enumerate(values)]
            corpus.append((name, series, make_windows(len(values), _majority(annotations))))
    return corpus


def score_real() -> list[Row]:
    """Scores on the real TCPD series (an info row if the wheel cannot be fetched)."""
    wheel = _river_wheel()
    if wheel is None:
        return [Row("real TCPD", "", "unavailable", f"pip download {RIVER} failed", "", "info")]
    return _score_runs("real TCPD(6)", load_tcpd(wheel), None)


def load_nab(root: Path) -> Corpus:
    """Every NAB data file with its labelled windows (row index pairs)."""
    labels = json.loads((root / "labels" / "combined_windows.json").read_text("utf-8"))
    corpus: Corpus = []
    for relative, windows in sorted(labels.items()):
        rows = list(csv.DictReader((root / "data" / relative).open(encoding="utf-8")))
        stamps = [
            dt.datetime.fromisoformat(r["timestamp"]).replace(tzinfo=dt.UTC).timestamp()
            for r in rows
        ]
        series = [(t, float(r["value"])) for t, r in zip(stamps, rows, strict=True)]
        index = {t: i for i, t in enumerate(stamps)}
        spans = []
        for start, end in windows:
            lo = dt.datetime.fromisoformat(start).replace(tzinfo=dt.UTC).timestamp()
            hi = dt.datetime.fromisoformat(end).replace(tzinfo=dt.UTC).timestamp()
            spans.append((index[lo], index[hi]))
        corpus.append((relative, series, tuple(spans)))
    return corpus


def score_nab(root: Path) -> list[Row]:
    """The NAB corpus under ``root``, every profile, every algorithm."""
    return _score_runs("NAB", load_nab(root), NAB_GOAL)


# -- main ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small runs (smoke test)")
    parser.add_argument("--length", type=int, default=200_000, help="samples for throughput")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--nab", type=Path, default=None, help="a NAB checkout to score")
    args = parser.parse_args()
    length = 20_000 if args.quick else args.length
    repeats = 2 if args.quick else args.repeats

    base = operational_corpus(seed=11, count=1, length=min(length, 40_320))[0]
    values = (base.values * (length // len(base.values) + 1))[:length]
    series = [(1.4e9 + 300.0 * i, v) for i, v in enumerate(values)]
    rows = measure_detectors(series, repeats)
    rows += score_generated(count=10 if args.quick else 40)
    rows += score_real()
    nab_root = args.nab or (CACHE / "NAB")
    if (nab_root / "labels" / "combined_windows.json").is_file():
        rows += score_nab(nab_root)
    else:
        rows.append(
            Row("NAB", f">= {NAB_GOAL:.0f}", "not scored", f"no NAB at {nab_root}", "", "info")
        )
    print_table(rows)


if __name__ == "__main__":
    main()
