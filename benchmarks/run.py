"""Run the benchmarks and print one table.

    python -m benchmarks.run [--quick] [--only NAME ...] [--runs K]

Each figure is the median of K runs (5 by default; ``--quick`` runs tiny
workloads once, as a smoke test), next to its baseline measured in the same
runs, with their ratio. Progress goes to standard error; standard output is
the machine's description and the table. Exits non-zero if any benchmark
failed.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import time
import traceback
import typing as t

from benchmarks.common import log
from benchmarks.common import machine_description
from benchmarks.common import Row
from benchmarks.common import tree_state

#: Benchmark name -> module with ``run(quick: bool, runs: int) -> list[Row]``.
BENCHMARKS = {
    "register": "benchmarks.register",
    "worker": "benchmarks.worker",
    "confirm": "benchmarks.confirm",
    "scale": "benchmarks.scale",
    "bulk": "benchmarks.bulk",
    "memory": "benchmarks.memory",
    "latency": "benchmarks.latency",
    "ceilings": "benchmarks.ceilings",
}

COLUMNS = (
    "benchmark",
    "variant",
    "metric",
    "median",
    "spread (min..max)",
    "baseline",
    "baseline median",
    "ratio",
)


def number(value: float) -> str:
    """A figure with three or so significant digits."""
    if not math.isfinite(value):
        return str(value)
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def cells(row: Row) -> list[str]:
    base = row.baseline_median
    ratio = row.ratio
    return [
        row.benchmark,
        row.variant,
        row.metric,
        number(row.median),
        f"{number(min(row.values))}..{number(max(row.values))}",
        row.baseline or "-",
        number(base) if base is not None else "-",
        f"{ratio:.2f}x" if ratio is not None else "-",
    ]


def table(rows: t.Sequence[Row]) -> str:
    """A Markdown table, columns padded to line up in a terminal."""
    lines = [list(COLUMNS), *(cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    numeric = {3, 4, 6, 7}

    def render(line: list[str]) -> str:
        padded = [
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (w + 1) + ":" if i in numeric else "-" * (w + 2)
        for i, w in enumerate(widths)
    )
    rule += "|"
    return "\n".join([render(lines[0]), rule, *(render(line) for line in lines[1:])])


def per_run_lines(rows: t.Sequence[Row]) -> list[str]:
    """Every run's value of the rows that ask for it (paired ratios, whose
    rounds matter one by one), in run order."""
    return [
        f"- {row.benchmark}: {row.variant}, {row.metric}: "
        + ", ".join(number(v) for v in row.values)
        for row in rows
        if row.per_run
    ]


def print_report(
    rows: t.Sequence[Row],
    *,
    runs: int,
    quick: bool,
    load_before: float,
    started: float,
    machine: t.Sequence[str] | None = None,
    tree_before: str | None = None,
    notes: t.Sequence[str] = (),
    failed: t.Sequence[str] = (),
) -> None:
    """Standard output: the machine, the load, the table, each run's value
    of the per-run rows, the time taken and what failed."""
    print("Flask-Confirm benchmarks")
    for line in machine if machine is not None else machine_description():
        print(line)
    if tree_before is not None and tree_state() != tree_before:
        print(f"WARNING: the checkout changed during the run, to {tree_state()}.")
    for line in notes:
        print(line)
    print(
        f"Load average (1 min): {load_before:.2f} before, {os.getloadavg()[0]:.2f}"
        " after (other work on the machine skews the figures)."
    )
    print(
        f"{runs} run(s) per figure{' (--quick)' if quick else ''}; median,"
        " spread min..max over the runs; ratio = median / baseline median."
    )
    print()
    if rows:
        print(table(rows))
    extra = per_run_lines(rows)
    if extra:
        print()
        print("Per run (round), in order:")
        for line in extra:
            print(line)
    print()
    print(f"Total time: {time.perf_counter() - started:.1f} s")
    if failed:
        print(f"FAILED: {', '.join(failed)}")


def main(argv: t.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Benchmarks of Flask-Confirm against the patterns it replaces.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny workloads, one run each (a smoke test of the benchmarks)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(BENCHMARKS),
        metavar="NAME",
        help=f"run only these ({', '.join(BENCHMARKS)})",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        metavar="K",
        help="runs per figure, whose median is shown (default 5; 1 with --quick)",
    )
    args = parser.parse_args(argv)
    runs = args.runs if args.runs is not None else (1 if args.quick else 5)
    if runs < 1:
        parser.error("--runs must be at least 1")
    names = args.only or list(BENCHMARKS)

    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    # Described before the runs: the checkout may change while they go on.
    machine = machine_description()
    tree_before = tree_state()
    rows: list[Row] = []
    failed: list[str] = []
    for name in names:
        log(f"{name}: starting ({'quick, ' if args.quick else ''}{runs} run(s))")
        began = time.perf_counter()
        try:
            module = importlib.import_module(BENCHMARKS[name])
            rows.extend(module.run(args.quick, runs))
        except Exception:
            traceback.print_exc()
            failed.append(name)
            log(f"{name}: FAILED")
        else:
            log(f"{name}: done in {time.perf_counter() - began:.1f} s")

    print_report(
        rows,
        runs=runs,
        quick=args.quick,
        load_before=load_before,
        started=started,
        machine=machine,
        tree_before=tree_before,
        failed=failed,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
