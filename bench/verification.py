"""Verification benchmarks: the static stage against bandit alone, on the same real files.

Run from the repository root::

    .venv/bin/python bench/verification.py            # full run: the standard library
    .venv/bin/python bench/verification.py --quick    # smoke run: 60 files, a few seconds
    .venv/bin/python bench/verification.py --profile  # instead: cProfile of the static stage

The corpus is this interpreter's standard library (``sysconfig``'s ``stdlib`` path, every
``*.py`` below it except test suites, ``site-packages`` and ``idlelib``), read from disk.

1. **files/s of the static stage** — :meth:`StaticAnalyzer.analyze_file` per file (read,
   one parse, Grace's AST rules, bandit's visitor on the same tree, deduplication) —
   against **bandit alone**, bandit's own library driver on the same files
   (``BanditManager(BanditConfig(), "file")``, ``discover_files``, ``run_tests``: read,
   line metrics, ``# nosec`` tokenising, parse, visit). Both read the files inside the
   timed region. Goal: >= 0.8x bandit's rate.
2. **Superset**: every ``(file, line, test id)`` bandit alone reports must be among the
   static stage's issues (under the issue's rule id or in ``also``). Goal: none missing.

Info rows: Grace's rules alone (parse + rules); the issue counts; the sandbox's start-up
(a one-test run, median of 5) and which isolation layers hold on this machine.

Both paths are warmed on 20 files first. Each paired measurement is repeated ``--repeats``
times, alternating which of bandit and the static stage goes first; the median of the
per-repeat ratios is reported.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import cProfile
import gc
import logging
import os
import statistics
import sys
import sysconfig
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from _report import Row, fmt_rate, median, print_profile, print_table, verdict
from grace.verification.model import Issue
from grace.verification.rules import check_module
from grace.verification.sandbox import Sandbox
from grace.verification.static import StaticAnalyzer

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # stevedore, inside bandit
    from bandit.core import config as bandit_config
    from bandit.core import manager as bandit_manager

RATE_GOAL = 0.8
QUICK_FILES = 60
_SKIP_PARTS = frozenset({"test", "tests", "idle_test", "idlelib", "site-packages", "__pycache__"})

Finding = tuple[str, int, str]


def corpus(limit: int | None) -> list[str]:
    """The standard library's own modules, sorted, at most ``limit``."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        str(p)
        for p in root.rglob("*.py")
        if not _SKIP_PARTS & set(p.relative_to(root).parts) and p.is_file()
    )
    return files[:limit] if limit else files


def bandit_alone(files: Sequence[str]) -> tuple[float, set[Finding]]:
    """Seconds for bandit's own driver over ``files``, and what it found."""
    gc.collect()
    start = time.perf_counter()
    manager = bandit_manager.BanditManager(bandit_config.BanditConfig(), "file")
    manager.discover_files(list(files))
    manager.run_tests()
    elapsed = time.perf_counter() - start
    return elapsed, {(i.fname, i.lineno, i.test_id) for i in manager.get_issue_list()}


def static_stage(analyzer: StaticAnalyzer, files: Sequence[str]) -> tuple[float, set[Finding], int]:
    """Seconds for the static stage over ``files``; every rule id it reports; issue count."""
    gc.collect()
    found: list[list[Issue]] = []
    start = time.perf_counter()
    for name in files:
        with open(name, "rb") as f:
            data = f.read()
        found.append(analyzer.analyze_file(name, data)[0])
    elapsed = time.perf_counter() - start
    ids: set[Finding] = set()
    count = 0
    for issues in found:
        for issue in issues:
            count += 1
            ids.update((issue.file, issue.line, rule) for rule in issue.rule_ids)
    return elapsed, ids, count


def rules_alone(files: Sequence[str]) -> float:
    """Seconds for parse + Grace's rules only."""
    gc.collect()
    start = time.perf_counter()
    for name in files:
        with open(name, "rb") as f:
            data = f.read()
        try:
            check_module(ast.parse(data, filename=name), name)
        except SyntaxError:
            continue
    return time.perf_counter() - start


def sandbox_startup(samples: int) -> tuple[float, str]:
    """Median seconds of a one-test sandbox run, and the isolation it reported."""
    sandbox = Sandbox()
    times: list[float] = []
    isolation = ""
    for _ in range(samples):
        start = time.perf_counter()
        run = asyncio.run(
            sandbox.run({"test_probe.py": b"def test_probe():\n    pass\n"}, ["test_probe.py"])
        )
        times.append(time.perf_counter() - start)
        iso = run.isolation
        layers = [
            name
            for name, on in (
                ("user", iso.user_namespace),
                ("mount", iso.mount_namespace),
                ("net", iso.network_namespace),
                ("pid", iso.pid_namespace),
            )
            if on
        ]
        isolation = (
            f"namespaces: {'+'.join(layers) or 'none'}; network {iso.network}; "
            f"filesystem {iso.filesystem}; private /proc {'yes' if iso.private_proc else 'no'}; "
            f"RLIMIT_NPROC {'binds' if iso.nproc_enforced else 'exempt (uid 0): watchdog+guard'}"
        )
    return statistics.median(times), isolation


def profile(files: Sequence[str], top: int) -> None:
    """cProfile of the static stage, per file."""
    analyzer = StaticAnalyzer()
    profiler = cProfile.Profile()
    profiler.enable()
    for name in files:
        with open(name, "rb") as f:
            analyzer.analyze_file(name, f.read())
    profiler.disable()
    print_profile(profiler, per=len(files), top=top, unit="file")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"{QUICK_FILES} files: a smoke run")
    p.add_argument("--files", type=int, default=None, help="at most this many files")
    p.add_argument("--repeats", type=int, default=None, help="paired repeats (default 3 / 4)")
    p.add_argument("--profile", action="store_true", help="instead: cProfile the static stage")
    p.add_argument("--top", type=int, default=25, help="functions listed by --profile")
    args = p.parse_args(argv)
    # bandit logs per-file warnings; both sides run with the same logger settings.
    logging.getLogger("bandit").setLevel(logging.ERROR)
    files = corpus(args.files or (QUICK_FILES if args.quick else None))
    repeats = args.repeats or (3 if args.quick else 4)
    kind = "profile" if args.profile else ("quick" if args.quick else "full")
    from bandit import __version__ as bandit_version

    print(
        f"grace verification benchmark: {kind} run, python {sys.version.split()[0]}, bandit "
        f"{bandit_version}, {os.cpu_count()} CPUs, {len(files)} standard-library files, "
        f"{sum(os.path.getsize(f) for f in files) / 1e6:.1f} MB, repeats {repeats}",
        flush=True,
    )
    if args.profile:
        profile(files, args.top)
        return 0
    analyzer = StaticAnalyzer()
    # Warm both paths (imports, plugin loading, the allocator, the page cache) so that
    # neither pays a first-run cost inside the timed region.
    bandit_alone(files[:20])
    static_stage(analyzer, files[:20])
    ratios: list[float] = []
    ours_rates: list[float] = []
    theirs_rates: list[float] = []
    theirs: set[Finding] = set()
    ours: set[Finding] = set()
    count = 0
    for i in range(repeats):
        if i % 2 == 0:
            t_bandit, theirs = bandit_alone(files)
            t_ours, ours, count = static_stage(analyzer, files)
        else:
            t_ours, ours, count = static_stage(analyzer, files)
            t_bandit, theirs = bandit_alone(files)
        ours_rates.append(len(files) / t_ours)
        theirs_rates.append(len(files) / t_bandit)
        ratios.append(t_bandit / t_ours)
        print(
            f"  repeat {i + 1}: static stage {ours_rates[-1]:.1f} files/s, bandit alone "
            f"{theirs_rates[-1]:.1f} files/s, ratio {ratios[-1]:.2f}",
            flush=True,
        )
    missing = sorted(theirs - ours)
    rules_rate = len(files) / rules_alone(files)
    startup, isolation = sandbox_startup(3 if args.quick else 5)
    ratio = median(ratios)
    rows = [
        Row(
            name="static stage files/s",
            goal=f">= {RATE_GOAL}x bandit",
            measured=fmt_rate(median(ours_rates)),
            baseline=fmt_rate(median(theirs_rates)),
            ratio=f"{ratio:.2f}x",
            status=verdict(ratio >= RATE_GOAL),
        ),
        Row(
            name="bandit findings kept",
            goal="all (superset)",
            measured=f"{len(theirs) - len(missing)} of {len(theirs)}",
            baseline=f"{len(theirs)}",
            ratio="",
            status=verdict(not missing),
        ),
        Row(
            name="issues reported",
            goal="",
            measured=f"{count} (after dedup)",
            baseline=f"{len(theirs)} bandit",
            ratio="",
            status=verdict(None),
        ),
        Row(
            name="Grace rules alone (parse + rules)",
            goal="",
            measured=fmt_rate(rules_rate),
            baseline="",
            ratio="",
            status=verdict(None),
        ),
        Row(
            name="sandbox one-test run (median)",
            goal="",
            measured=f"{startup * 1000:.0f} ms",
            baseline="",
            ratio="",
            status=verdict(None),
        ),
    ]
    print()
    print_table(rows)
    print(f"\nsandbox on this machine: {isolation}")
    if missing:
        print(f"missing bandit findings (first 10): {missing[:10]}")
    missed = sum(r.status == "MISS" for r in rows)
    print(f"\n{missed} goal(s) missed" if missed else "\nall goals met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
