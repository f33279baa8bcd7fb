"""``latency``: how long a confirmation takes from ``send_confirmation`` to
the provider, under a steady stream of registrations.

One live ``flask confirm-worker`` (one process, not ``--burst``) serves
PostgreSQL and an SMTP sink that answers at once and notes when each message
arrives and for whom (its envelope recipient, ``TAG-i@example.org``).
Registrations arrive at a steady rate (20, 100 and 300 per second, 30 s each)
on an **open-loop** schedule: registration ``i`` is due at ``t0 + i / rate``
whatever the earlier ones are doing, as visitors do not wait for each other.
They are issued by :mod:`benchmarks.latency_load`, a process of its own with
8 client threads, each calling ``confirm.send_confirmation(user)`` in an app
context of its own, as the README's registration view does, but without
HTTP: what is measured is the time from ``send_confirmation`` to the
provider, and a WSGI server on the same 2 cores would add its own queueing to
it. A registration that finds every thread busy waits, and the wait counts
(latency is taken from when it was due, not from when a thread got to it);
``request lag p99 ms`` says how late the generator was.

For each mail, latency = its arrival at the sink - the time its registration
was due. After the last registration the benchmark waits for every mail,
until none has arrived for ``max(5, duration)`` s (at most 30) or
``10 x duration`` s have passed (at least 20). Percentiles are over every
registration requested, one never delivered counting as infinitely late
(``inf``), so a shortfall cannot flatter them; ``delivered of N`` says how
many arrived, ``last mail s after last request`` when the backlog was gone
(``inf`` if it never was). The benchmark watches only ``send_confirmation``
and the sink, so it does not depend on how jobs are formed (one per
confirmation with ``CONFIRM_BATCH_SIZE=1``, the default's jobs that
confirmations join, or anything else).

**Paired rounds.** The host's speed drifts between runs by more than many
changes are worth, so candidates are compared with a baseline in rounds:
within a round each rate is run for every candidate back to back (the order
reversed every other round), and each candidate's figure is divided by the
baseline's of the same round and rate. The rows ``... ratio, paired`` give
the median of those per-round ratios, their range, and each round's. Every
cell (round, rate, candidate) starts its own worker and load process on
flushed Redis and new tables, after a warm-up of 10 mails.

A candidate is a configuration (extra ``CONFIRM_*`` settings) and
optionally a source tree whose ``flask_confirm`` package both the load
process and the worker import (``--baseline-tree``, ``--candidate-tree``:
compare main before and after a change). ``python -m benchmarks.run`` runs
one job per confirmation (``CONFIRM_BATCH_SIZE=1``, what the default was
before batching became adaptive) as the baseline against the default; for
other comparisons::

    python -m benchmarks.latency --baseline-tree /work/wt-before
    python -m benchmarks.latency --candidate CONFIRM_BATCH_SIZE=50
    python -m benchmarks.latency --candidate name=x,tree=/work/x,CONFIRM_BATCH_SIZE=10
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
from pathlib import Path

from benchmarks import app as bench_app
from benchmarks.common import bench_env
from benchmarks.common import Child
from benchmarks.common import FLASK_APP
from benchmarks.common import log
from benchmarks.common import percentile
from benchmarks.common import postgres_database
from benchmarks.common import redis_server
from benchmarks.common import RedisServer
from benchmarks.common import ROOT
from benchmarks.common import Row
from benchmarks.common import smtp_sink
from benchmarks.common import SMTPSink
from benchmarks.common import source_tree_path
from benchmarks.common import stop_piped
from benchmarks.common import tree_state
from benchmarks.worker import confirm_config

NAME = "latency"
RATES = (20, 100, 300)
DURATION = 30.0
QUICK_RATES = (20, 50)
QUICK_DURATION = 2.0
THREADS = 8
WARM = 10

#: The latency figures, in seconds, and what they are called in the table.
PERCENTILES = {"p50 ms": 50, "p95 ms": 95, "p99 ms": 99}
DRAINED = "last mail s after last request"
#: The figures compared in paired rounds.
PAIRED = (*PERCENTILES, DRAINED)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """What is measured: a name, settings on top of :mod:`benchmarks.app`'s
    and the worker benchmark's, and the source tree to import
    ``flask_confirm`` from (None: this checkout)."""

    name: str
    config: t.Mapping[str, t.Any] = dataclasses.field(default_factory=dict)
    tree: Path | None = None

    def describe(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        where = (
            f"{self.tree} ({tree_state(self.tree)})"
            if self.tree
            else f"this checkout ({tree_state()})"
        )
        return f"{self.name}: Flask-Confirm from {where}; {settings or 'defaults'}"


DEFAULT = Candidate("default")
#: One job per confirmation: what the default did before adaptive batching.
ONE_PER_JOB = Candidate("CONFIRM_BATCH_SIZE=1", {"CONFIRM_BATCH_SIZE": 1})


def parse_value(text: str) -> t.Any:
    """A setting's value as typed: true/false/none in any case, JSON, or
    else the string itself."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_candidate(spec: str, default_name: str) -> Candidate:
    """``KEY=VALUE[,KEY=VALUE...]``: ``name`` and ``tree`` are the
    candidate's name and source tree, any other key a setting.

    :raises ValueError: a part is not ``KEY=VALUE``.
    """
    name, tree, config = "", None, {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ValueError(f"{part!r} is not KEY=VALUE")
        if key == "name":
            name = value
        elif key == "tree":
            tree = Path(value).expanduser()
        else:
            config[key] = parse_value(value)
    if not name:
        name = (
            ", ".join(f"{k}={v!r}" for k, v in config.items())
            or (f"tree {tree.name}" if tree else "")
            or default_name
        )
    return Candidate(name, config, tree)


# -- One cell: a rate, a candidate, a round -----------------------------------------


@dataclasses.dataclass
class Cell:
    """What one run of one rate for one candidate gave."""

    requested: int
    #: Seconds from due to arrival for every registration, in index order;
    #: ``inf`` for a mail that did not arrive.
    latencies: list[float]
    delivered: int
    #: Mails that arrived more than once (the first arrival counts).
    duplicates: int
    #: Seconds from the last registration's due time to the last arrival.
    drained: float
    #: The load process's answer (lags, call durations, failures).
    load: dict[str, t.Any]

    def figures(self) -> dict[str, float]:
        """The table's figures of this cell, by metric."""
        figures = {
            metric: percentile(self.latencies, pct) * 1000
            for metric, pct in PERCENTILES.items()
        }
        figures[f"delivered of {self.requested}"] = float(self.delivered)
        figures[DRAINED] = self.drained
        figures["request lag p99 ms"] = float(self.load["lag_p99_ms"])
        figures["send_confirmation p50 ms"] = float(self.load["call_p50_ms"])
        return figures


def cell_from(
    load: t.Mapping[str, t.Any],
    rate: float,
    tag: str,
    arrivals: t.Iterable[tuple[float, str]],
) -> Cell:
    """Match the sink's arrivals to the registrations ``load`` issued (by
    the index in the recipient ``TAG-i@...``) and time each."""
    count = int(load["count"])
    t0 = float(load["t0"])
    first: dict[int, float] = {}
    duplicates = 0
    prefix = f"{tag}-"
    for when, recipient in arrivals:
        local = recipient.partition("@")[0]
        if not local.startswith(prefix):
            continue
        index = local[len(prefix) :]
        if not index.isdigit() or int(index) >= count:
            continue
        i = int(index)
        if i in first:
            duplicates += 1
            first[i] = min(first[i], when)
        else:
            first[i] = when
    latencies = [
        first[i] - (t0 + i / rate) if i in first else math.inf for i in range(count)
    ]
    last_due = t0 + (count - 1) / rate
    drained = max(first.values()) - last_due if len(first) == count else math.inf
    return Cell(count, latencies, len(first), duplicates, drained, dict(load))


class LoadProcess:
    """:mod:`benchmarks.latency_load` in a subprocess, spoken to a line at a
    time on its standard input and output."""

    def __init__(self, env: t.Mapping[str, str], log_path: Path, cwd: Path) -> None:
        self._lines: queue.Queue[str] = queue.Queue()
        self.log_path = log_path
        self._stderr = log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.latency_load"],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())

    def expect(self, prefix: str, timeout: float) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(
                f"The load process did not answer {prefix!r} in {timeout}s:\n"
                + self.log_tail()
            ) from None
        if not line.startswith(prefix):
            raise RuntimeError(
                f"The load process answered {line!r}, not {prefix!r}:\n"
                + self.log_tail()
            )
        return line[len(prefix) :].strip()

    def command(self, command: str, answer: str, timeout: float) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.expect(answer, timeout)

    def log_tail(self, lines: int = 30) -> str:
        self._stderr.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        stop_piped(self.proc, self._reader, self._stderr)


@dataclasses.dataclass
class Services:
    workdir: Path
    redis: RedisServer
    db_url: str
    sink: SMTPSink
    #: Each candidate's ``first_on_path`` (None: this checkout).
    paths: dict[str, Path | None]


def wait_for_mails(
    sink: SMTPSink,
    count: int,
    deadline: float,
    worker: Child,
    what: str,
    stall: float = math.inf,
) -> int:
    """Poll the sink until ``count`` mails are in, ``deadline``
    (``time.monotonic()``) passes, or none has come for ``stall`` seconds;
    how many are in.

    :raises RuntimeError: the worker exited.
    """
    received, changed = -1, time.monotonic()
    while True:
        now, previous = time.monotonic(), received
        received = sink.stats().count
        if received != previous:
            changed = now
        if received >= count or now >= deadline or now - changed >= stall:
            return received
        if worker.proc.poll() is not None:
            raise RuntimeError(f"The worker exited during {what}:\n{worker.log_tail()}")
        time.sleep(0.05)


def run_cell(
    services: Services,
    candidate: Candidate,
    rate: float,
    duration: float,
    tag: str,
    threads: int = THREADS,
) -> Cell:
    """Run one rate for one candidate on a fresh worker, load process,
    Redis and tables, and time every mail."""
    redis, sink = services.redis, services.sink
    redis.flush()
    config = confirm_config(services.db_url, redis, sink, **candidate.config)
    env = bench_env(
        config,
        first_on_path=services.paths[candidate.name],
        **{bench_app.SHOW_IMPORT_ENV: "1"},
    )
    # Not in this checkout, whose flask_confirm would come first on sys.path
    # (see source_tree_path).
    cwd = services.workdir
    package = ((candidate.tree or ROOT) / "flask_confirm").resolve()
    with contextlib.ExitStack() as stack:
        load = LoadProcess(env, services.workdir / f"load-{tag}.log", cwd)
        stack.callback(load.stop)
        ready = json.loads(load.expect("ready", 60))
        if Path(ready["flask_confirm"]).parent != package:
            raise RuntimeError(
                f"The load process imported {ready['flask_confirm']}, not {package}."
            )
        worker = Child(
            [*FLASK_APP, "confirm-worker"],
            env,
            services.workdir / f"worker-{tag}.log",
            cwd=cwd,
        )
        stack.callback(worker.stop)
        sink.reset()
        load.command(f"warm {WARM} {tag}-warm", "warmed", 60)
        warmed = wait_for_mails(sink, WARM, time.monotonic() + 60, worker, "warm-up")
        if warmed < WARM:
            raise RuntimeError(
                f"Only {warmed} of {WARM} warm-up mails arrived in 60 s:\n"
                + worker.log_tail()
            )
        imported = f"{bench_app.IMPORTED_FROM} {package / '__init__.py'}"
        if imported not in worker.log_path.read_text(errors="replace"):
            raise RuntimeError(
                f"The worker did not say {imported!r}:\n{worker.log_tail()}"
            )
        sink.reset()
        done = json.loads(
            load.command(
                f"run {rate} {duration} {tag} {threads}", "done", duration * 3 + 60
            )
        )
        last_due = done["t0"] + (done["count"] - 1) / rate
        owed = done["count"] - len(done["failed"])
        wait_for_mails(
            sink,
            owed,
            last_due + max(20.0, 10 * duration),
            worker,
            f"{rate}/s",
            stall=min(30.0, max(5.0, duration)),
        )
        cell = cell_from(done, rate, tag, sink.arrivals())
    if done["failed"]:
        log(
            f"{NAME}: {len(done['failed'])} registration(s) failed; see {load.log_path}"
        )
    if cell.duplicates:
        log(f"{NAME}: {cell.duplicates} mail(s) arrived twice")
    return cell


# -- Rounds and rows ------------------------------------------------------------------


def variant(candidate: Candidate, rate: float) -> str:
    return f"{candidate.name}, {rate:g}/s"


def measure(
    candidates: t.Sequence[Candidate],
    rates: t.Sequence[float],
    duration: float,
    rounds: int,
    threads: int = THREADS,
) -> list[Row]:
    """Run ``rounds`` paired rounds; the first candidate is the baseline.
    Rows per rate and candidate, then the paired ratios."""
    if len({c.name for c in candidates}) != len(candidates):
        raise ValueError("Two candidates have the same name.")
    cells: dict[tuple[int, float, str], dict[str, float]] = {}
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        services = Services(
            workdir,
            stack.enter_context(redis_server(workdir)),
            stack.enter_context(postgres_database()),
            stack.enter_context(smtp_sink(workdir)),
            {
                c.name: source_tree_path(c.tree, workdir) if c.tree else None
                for c in candidates
            },
        )
        for c in candidates:
            log(f"{NAME}: {c.describe()}")
        for round_index in range(rounds):
            order = list(candidates) if round_index % 2 == 0 else candidates[::-1]
            for rate in rates:
                for candidate in order:
                    log(
                        f"{NAME}: round {round_index + 1}/{rounds},"
                        f" {variant(candidate, rate)}, {duration:g} s"
                    )
                    tag = f"r{round_index}-{candidates.index(candidate)}-{rate:g}"
                    cell = run_cell(services, candidate, rate, duration, tag, threads)
                    figures = cell.figures()
                    cells[round_index, rate, candidate.name] = figures
                    log(
                        f"{NAME}: "
                        + ", ".join(f"{k} {v:.4g}" for k, v in figures.items())
                    )
    return rows_from(cells, candidates, rates, rounds)


def ratio(value: float, base: float) -> float:
    """``value / base``, 1 when both are infinite, inf when only ``base`` is
    0 or ``value`` is infinite."""
    if math.isinf(value) and math.isinf(base):
        return 1.0
    if base == 0:
        return math.inf
    return value / base


def rows_from(
    cells: t.Mapping[tuple[int, float, str], t.Mapping[str, float]],
    candidates: t.Sequence[Candidate],
    rates: t.Sequence[float],
    rounds: int,
) -> list[Row]:
    """The table's rows: every figure of every rate and candidate over the
    rounds (the candidates next to the baseline's medians), then each
    candidate's per-round ratios to the baseline."""
    base = candidates[0]
    rows: list[Row] = []
    for rate in rates:
        metrics = list(cells[0, rate, base.name])
        for candidate in candidates:
            for metric in metrics:
                values = [cells[r, rate, candidate.name][metric] for r in range(rounds)]
                row = Row(NAME, variant(candidate, rate), metric, values)
                if candidate is not base:
                    row.baseline = variant(base, rate)
                    row.baseline_values = [
                        cells[r, rate, base.name][metric] for r in range(rounds)
                    ]
                rows.append(row)
    for candidate in candidates[1:]:
        for rate in rates:
            for metric in PAIRED:
                values = [
                    ratio(
                        cells[r, rate, candidate.name][metric],
                        cells[r, rate, base.name][metric],
                    )
                    for r in range(rounds)
                ]
                rows.append(
                    Row(
                        NAME,
                        f"{candidate.name} / {base.name}, {rate:g}/s",
                        f"{metric} ratio, paired",
                        values,
                        per_run=True,
                    )
                )
    return rows


def run(quick: bool, runs: int) -> list[Row]:
    """``benchmarks.run``'s entry: one job per confirmation as the baseline
    against the default (adaptive batching), ``runs`` paired rounds."""
    rates, duration = (QUICK_RATES, QUICK_DURATION) if quick else (RATES, DURATION)
    return measure([ONE_PER_JOB, DEFAULT], rates, duration, runs)


def main(argv: t.Sequence[str] | None = None) -> int:
    from benchmarks.common import machine_description
    from benchmarks.run import print_report

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.latency",
        description="Latency from send_confirmation to the SMTP provider, at"
        " steady arrival rates, a baseline and candidates in paired rounds.",
        epilog="A SPEC is KEY=VALUE[,KEY=VALUE...]: name=... and tree=PATH"
        " (a source tree whose flask_confirm package is imported), any other"
        " key a setting (true/false/none, JSON, or a string). Without"
        " --candidate/--candidate-tree, the candidate is CONFIRM_BATCH_SIZE=1,"
        " or this checkout's defaults when --baseline-tree or --baseline names"
        " a tree.",
    )
    parser.add_argument("--quick", action="store_true", help="2 s at 20 and 50/s")
    parser.add_argument("--rounds", type=int, default=None, help="default 3; 1 quick")
    parser.add_argument("--rates", type=float, nargs="+", metavar="PER_S")
    parser.add_argument("--duration", type=float, metavar="S", help="s per rate")
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--baseline", metavar="SPEC", default="")
    parser.add_argument("--baseline-tree", type=Path, metavar="PATH")
    parser.add_argument("--candidate", metavar="SPEC", action="append", default=[])
    parser.add_argument(
        "--candidate-tree", type=Path, metavar="PATH", action="append", default=[]
    )
    args = parser.parse_args(argv)
    try:
        baseline = parse_candidate(args.baseline, "default")
        candidates = [parse_candidate(spec, "candidate") for spec in args.candidate]
    except ValueError as e:
        parser.error(str(e))
    if args.baseline_tree:
        baseline = dataclasses.replace(
            baseline,
            tree=args.baseline_tree,
            name=baseline.name
            if args.baseline
            else f"tree {args.baseline_tree.resolve().name}",
        )
    candidates += [
        Candidate(f"tree {tree.resolve().name}", {}, tree)
        for tree in args.candidate_tree
    ]
    if not candidates:
        candidates = [Candidate("this checkout") if baseline.tree else ONE_PER_JOB]
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    rates = args.rates or (QUICK_RATES if args.quick else RATES)
    duration = args.duration or (QUICK_DURATION if args.quick else DURATION)
    if rounds < 1 or duration <= 0 or any(r <= 0 for r in rates):
        parser.error("--rounds, --duration and --rates must be positive")
    everyone = [baseline, *candidates]
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    machine, tree_before = machine_description(), tree_state()
    notes = [c.describe() for c in everyone]
    rows = measure(everyone, rates, duration, rounds, args.threads)
    print_report(
        rows,
        runs=rounds,
        quick=args.quick,
        load_before=load_before,
        started=started,
        machine=machine,
        tree_before=tree_before,
        notes=["Candidates (the first is the baseline):", *notes],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
