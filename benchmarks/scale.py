"""``scale``: 1, 2 and 4 ``flask confirm-worker --burst`` processes started
together drain the same N queued confirmations into one SMTP sink (with
PostgreSQL). emails/s in total (first to last mail at the sink) and per
process, the workers' CPU time per mail (start-up included), and how busy
the whole machine's CPUs were meanwhile, each compared with a single worker.
The machine's core count bounds what more processes can give.

Twice: with one job per user (``CONFIRM_BATCH_SIZE`` 1), and with jobs of
``CONFIRM_BATCH_SIZE`` users (as bulk sends and sweeps queue them, and as a
backlog of ``send_confirmation`` forms them), the latter with more mail since
it drains faster.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from benchmarks import app as bench_app
from benchmarks.common import Child
from benchmarks.common import CPUMeter
from benchmarks.common import Exited
from benchmarks.common import log
from benchmarks.common import postgres_database
from benchmarks.common import redis_server
from benchmarks.common import Results
from benchmarks.common import Row
from benchmarks.common import smtp_sink
from benchmarks.worker import check_delivered
from benchmarks.worker import confirm_config
from benchmarks.worker import drain_timeout
from benchmarks.worker import queue_confirmations
from benchmarks.worker import start_confirm_worker

NAME = "scale"
PROCESSES = (1, 2, 4)


def variant(processes: int, batched: bool = False) -> str:
    name = f"{processes} worker{'s' if processes > 1 else ''}"
    return f"{name}, jobs of 50" if batched else name


def run(quick: bool, runs: int) -> list[Row]:
    count = 20 if quick else 2000
    bulk_count = 40 if quick else 8000
    results = Results(NAME)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        redis = stack.enter_context(redis_server(workdir))
        db_url = stack.enter_context(postgres_database())
        sink = stack.enter_context(smtp_sink(workdir))
        config = confirm_config(db_url, redis, sink)
        app = bench_app.create_app(config)
        stack.callback(bench_app.close, app)

        combos = [(p, False) for p in PROCESSES] + [(p, True) for p in PROCESSES]
        for run_index in range(runs):
            for processes, batched in combos:
                name = variant(processes, batched)
                n = bulk_count if batched else count
                log(f"{NAME}: run {run_index + 1}/{runs}, {name}")
                queue_confirmations(
                    app,
                    redis,
                    n,
                    f"r{run_index}p{processes}b{int(batched)}",
                    None if batched else 1,
                )
                sink.reset()
                children: list[Child] = []
                exits: list[Exited] = []
                meter = CPUMeter()
                meter.start()
                try:
                    for i in range(processes):
                        children.append(
                            start_confirm_worker(config, workdir, f"w{i}", "--burst")
                        )
                    for child in children:
                        exits.append(child.wait(drain_timeout(n)))
                finally:
                    for child in children:
                        child.stop()
                busy = meter.busy_percent()
                stats = sink.stats()
                check_delivered(stats, bench_app.count_sent(app), n, name)
                total = stats.rate()
                results.add(name, "emails/s total", total)
                results.add(name, "emails/s per process", total / processes)
                cpu = sum(e.cpu for e in exits) * 1000 / n
                results.add(name, "worker CPU ms/mail", cpu)
                results.add(name, "machine CPU busy %", busy)
    return results.rows(
        {variant(p, batched): variant(1, batched) for p, batched in combos if p != 1}
    )
