"""Smoke test of the benchmarks: ``python -m benchmarks.run --quick`` runs
every benchmark on tiny workloads and prints a table with a positive figure
in every row, and the rows each benchmark promises; ``benchmarks.latency``
compares a source tree with this checkout. The arithmetic of the latency
benchmark (matching mails to registrations, percentiles with mails missing,
paired ratios) and its parsing of candidates are checked without services."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The benchmarks are not part of the package: import them from the
# repository's root, whatever pytest's import mode puts on sys.path.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import latency  # noqa: E402
from benchmarks.common import bench_env  # noqa: E402
from benchmarks.common import source_tree_path  # noqa: E402
from benchmarks.run import number  # noqa: E402
from benchmarks.run import per_run_lines  # noqa: E402

BENCHMARKS = {
    "register",
    "worker",
    "confirm",
    "scale",
    "bulk",
    "memory",
    "latency",
    "ceilings",
}
TIMEOUT = 420


def run_benchmarks(
    *args: str, timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FLASK_APP", None)
    # A session of its own, so that a run that hangs is killed with every
    # server and worker it started.
    proc = subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise AssertionError(
            f"{' '.join(args)} took over {timeout}s:\n{stderr[-3000:]}"
        ) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def quick() -> subprocess.CompletedProcess[str]:
    """One ``--quick`` run of every benchmark, shared by the tests reading it."""
    return run_benchmarks("benchmarks.run", "--quick")


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
        value = float(text.removesuffix("x"))
    except ValueError:
        return False
    return math.isfinite(value) and value > 0


def medians(stdout: str, benchmark: str) -> dict[tuple[str, str], float]:
    """(variant, metric) -> median of one benchmark's rows."""
    return {
        (row[1], row[2]): float(row[3])
        for row in table_rows(stdout)
        if row[0] == benchmark
    }


def test_quick_run_prints_a_figure_for_every_benchmark(
    quick: subprocess.CompletedProcess[str],
) -> None:
    result = quick
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


def test_quick_latency_times_every_mail_at_each_rate(
    quick: subprocess.CompletedProcess[str],
) -> None:
    figures = medians(quick.stdout, "latency")
    assert figures, quick.stdout + quick.stderr[-5000:]
    for candidate in ("CONFIRM_BATCH_SIZE=1", "default"):
        for rate in latency.QUICK_RATES:
            name = f"{candidate}, {rate}/s"
            requested = round(rate * latency.QUICK_DURATION)
            # Every mail arrived: none counted as infinitely late.
            assert figures[name, f"delivered of {requested}"] == requested
            p50, p95, p99 = (figures[name, m] for m in ("p50 ms", "p95 ms", "p99 ms"))
            assert 0 < p50 <= p95 <= p99 < 10_000, (name, p50, p95, p99)
            assert figures[name, latency.DRAINED] > 0
            assert (name, "request lag p99 ms") in figures
    for rate in latency.QUICK_RATES:
        for metric in latency.PAIRED:
            paired = (
                f"default / CONFIRM_BATCH_SIZE=1, {rate}/s",
                f"{metric} ratio, paired",
            )
            assert figures[paired] > 0, paired
    per_run = quick.stdout.partition("Per run (round), in order:")[2]
    assert "latency: default / CONFIRM_BATCH_SIZE=1, 20/s, p99 ms ratio" in per_run


def test_quick_ceilings_measure_rq_plain_loop_and_raw_smtp(
    quick: subprocess.CompletedProcess[str],
) -> None:
    from benchmarks import ceilings

    figures = medians(quick.stdout, "ceilings")
    assert figures, quick.stdout + quick.stderr[-5000:]
    noop = figures[ceilings.RQ_NOOP, "jobs/s"]
    plain = figures[ceilings.PLAIN, "emails/s"]
    raw = figures[ceilings.RAW_SMTP, "msgs/s"]
    assert noop > 0 and plain > 0
    assert figures[ceilings.PLAIN_LPOP, "emails/s"] > 0
    # A database commit per mail costs more than the SMTP exchange alone.
    assert raw > plain, figures
    for ours in (ceilings.OURS_ONE, ceilings.OURS_BATCH):
        assert figures[ours, "emails/s"] > 0


def test_latency_compares_another_source_tree(tmp_path: Path) -> None:
    tree = tmp_path / "before"
    shutil.copytree(
        ROOT / "flask_confirm",
        tree / "flask_confirm",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    result = run_benchmarks(
        "benchmarks.latency",
        "--quick",
        "--baseline-tree",
        str(tree),
        "--rates",
        "20",
        "--duration",
        "1",
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-5000:]
    assert f"tree before: Flask-Confirm from {tree}" in result.stdout
    figures = medians(result.stdout, "latency")
    assert figures["tree before, 20/s", "delivered of 20"] == 20
    assert figures["this checkout, 20/s", "delivered of 20"] == 20
    assert figures["this checkout / tree before, 20/s", "p50 ms ratio, paired"] > 0


def test_source_tree_path_puts_the_trees_package_first(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(
        ROOT / "flask_confirm",
        tree / "flask_confirm",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    shim = source_tree_path(tree, workdir)
    found = subprocess.run(
        [sys.executable, "-c", "import flask_confirm; print(flask_confirm.__file__)"],
        env=bench_env({}, first_on_path=shim),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert (
        Path(found.stdout.strip()).resolve() == tree / "flask_confirm" / "__init__.py"
    )


def test_source_tree_path_refuses_a_tree_without_the_package(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="holds no flask_confirm package"):
        source_tree_path(tmp_path, tmp_path)


def test_cell_matches_mails_to_registrations_by_recipient() -> None:
    load = {
        "t0": 100.0,
        "count": 4,
        "failed": [],
        "lag_p99_ms": 1.0,
        "call_p50_ms": 2.0,
    }
    arrivals = [
        (100.030, "r0-1-20-0@example.org"),
        (100.090, "r0-1-20-1@example.org"),  # due 100.05
        (100.091, "r0-1-20-1@example.org"),  # a duplicate: the first counts
        (100.500, "r0-1-20-warm-0@example.org"),  # another tag
        (100.200, "r0-1-20-3@example.org"),  # due 100.15; 2 never arrives
        (100.300, "r0-1-20-99@example.org"),  # not one of these
    ]
    cell = latency.cell_from(load, 20, "r0-1-20", arrivals)
    assert cell.requested == 4
    assert cell.delivered == 3
    assert cell.duplicates == 1
    assert cell.latencies[:2] == pytest.approx([0.030, 0.040])
    assert math.isinf(cell.latencies[2])
    assert cell.latencies[3] == pytest.approx(0.050)
    # Not all arrived: the backlog was never gone.
    assert math.isinf(cell.drained)
    figures = cell.figures()
    assert figures["p50 ms"] == pytest.approx(40)
    assert math.isinf(figures["p99 ms"])  # the missing mail is the slowest
    assert figures["delivered of 4"] == 3


def test_cell_times_the_last_mail_from_the_last_registration_due() -> None:
    load = {"t0": 10.0, "count": 2, "failed": [], "lag_p99_ms": 0, "call_p50_ms": 0}
    cell = latency.cell_from(
        load, 10, "t", [(10.02, "t-0@x.org"), (10.13, "t-1@x.org")]
    )
    assert cell.drained == pytest.approx(0.03)  # the last was due at 10.1


def test_paired_ratios_divide_within_each_round() -> None:
    base, cand = latency.Candidate("a"), latency.Candidate("b", {"X": 1})
    cells: dict[tuple[int, float, str], dict[str, float]] = {}
    # The host slows down round by round; the candidate is always 10% faster.
    for r, speed in enumerate((1.0, 1.3, 0.8)):
        for c, factor in ((base, 1.0), (cand, 0.9)):
            value = 100 * speed * factor
            cells[r, 20, c.name] = {
                "p50 ms": value,
                "p95 ms": value,
                "p99 ms": value,
                latency.DRAINED: value,
            }
    rows = latency.rows_from(cells, [base, cand], [20], 3)
    paired = [row for row in rows if row.per_run]
    assert {row.metric for row in paired} == {
        f"{m} ratio, paired" for m in latency.PAIRED
    }
    for row in paired:
        assert row.variant == "b / a, 20/s"
        assert row.values == pytest.approx([0.9, 0.9, 0.9])
    plain = next(r for r in rows if r.variant == "b, 20/s" and r.metric == "p50 ms")
    assert plain.baseline == "a, 20/s"
    assert plain.values == pytest.approx([90, 117, 72])
    lines = per_run_lines(rows)
    assert "- latency: b / a, 20/s, p50 ms ratio, paired: 0.9, 0.9, 0.9" in lines


def test_ratio_of_infinite_figures() -> None:
    assert latency.ratio(math.inf, math.inf) == 1
    assert math.isinf(latency.ratio(math.inf, 5))
    assert latency.ratio(5, math.inf) == 0
    assert latency.ratio(3, 6) == 0.5
    assert number(math.inf) == "inf"


def test_parse_candidate() -> None:
    cand = latency.parse_candidate(
        "CONFIRM_COALESCE=True,CONFIRM_BATCH_SIZE=50,CONFIRM_QUEUE=q", "x"
    )
    assert cand.config == {
        "CONFIRM_COALESCE": True,
        "CONFIRM_BATCH_SIZE": 50,
        "CONFIRM_QUEUE": "q",
    }
    assert (
        cand.name == "CONFIRM_COALESCE=True, CONFIRM_BATCH_SIZE=50, CONFIRM_QUEUE='q'"
    )
    assert cand.tree is None
    named = latency.parse_candidate(
        "name=after,tree=/work/x,CONFIRM_COALESCE=false", "x"
    )
    assert named == latency.Candidate(
        "after", {"CONFIRM_COALESCE": False}, Path("/work/x")
    )
    assert latency.parse_candidate("", "default").name == "default"
    with pytest.raises(ValueError, match="KEY=VALUE"):
        latency.parse_candidate("CONFIRM_COALESCE", "x")
