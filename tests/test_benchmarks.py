"""Smoke test of the benchmarks: ``python -m benchmarks.run --quick`` runs
every benchmark on tiny workloads and prints a table with a positive figure
in every row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = {"register", "worker", "confirm", "scale", "bulk", "memory"}
TIMEOUT = 300


def run_quick() -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FLASK_APP", None)
    # A session of its own, so that a run that hangs is killed with every
    # server and worker it started.
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.run", "--quick"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise AssertionError(
            f"benchmarks.run --quick took over {TIMEOUT}s:\n{stderr[-3000:]}"
        ) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def table_rows(stdout: str) -> list[list[str]]:
    """The cells of the table's data rows."""
    rows = []
    for line in stdout.splitlines():
        if not line.startswith("|") or line.startswith("|-"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == "benchmark":
            continue
        rows.append(cells)
    return rows


def positive(text: str) -> bool:
    try:
        return float(text.removesuffix("x")) > 0
    except ValueError:
        return False


def test_quick_run_prints_a_figure_for_every_benchmark() -> None:
    result = run_quick()
    assert result.returncode == 0, result.stdout + result.stderr[-5000:]
    assert "CPU:" in result.stdout
    assert "FAILED" not in result.stdout

    rows = table_rows(result.stdout)
    assert {row[0] for row in rows} == BENCHMARKS, result.stdout
    for row in rows:
        assert len(row) == 8, row
        _, variant, metric, median, spread, baseline, base, ratio = row
        assert variant and metric, row
        assert positive(median), row
        low, _, high = spread.partition("..")
        assert positive(low) and positive(high), row
        if baseline != "-":
            assert positive(base) and positive(ratio), row
    for name in BENCHMARKS:
        assert any(row[0] == name and positive(row[3]) for row in rows), name
