"""``memory``: does a worker's memory grow with the jobs it has run?

One ``flask confirm-worker --burst`` drains many confirmations (10,000; 200
with ``--quick``) into an SMTP sink while its ``VmRSS`` and the sink's count
are sampled every 100 ms. Reported: the RSS once the first 1,000 jobs (a tenth,
if fewer are run) are done, which is the baseline, against the RSS at the last
sample before it exited, and the peak; a ratio near 1 means no leak.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from pathlib import Path

from benchmarks import app as bench_app
from benchmarks.common import log
from benchmarks.common import postgres_database
from benchmarks.common import proc_status_kib
from benchmarks.common import redis_server
from benchmarks.common import Row
from benchmarks.common import smtp_sink
from benchmarks.common import SMTPSink
from benchmarks.worker import check_delivered
from benchmarks.worker import confirm_config
from benchmarks.worker import drain_timeout
from benchmarks.worker import queue_confirmations
from benchmarks.worker import start_confirm_worker

NAME = "memory"
VARIANT = "flask-confirm smtp"


def _sample(
    pid: int, sink: SMTPSink, stop: threading.Event, into: list[tuple[int, int]]
) -> None:
    """Append (mails received, VmRSS KiB) every 100 ms until ``stop``."""
    while not stop.wait(0.1):
        rss = proc_status_kib(pid)
        if rss is None:
            return
        into.append((sink.stats().count, rss))


def run(quick: bool, runs: int) -> list[Row]:
    count = 200 if quick else 10_000
    checkpoint = min(1000, count // 10)
    early: list[float] = []
    last: list[float] = []
    peak: list[float] = []
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        redis = stack.enter_context(redis_server(workdir))
        db_url = stack.enter_context(postgres_database())
        sink = stack.enter_context(smtp_sink(workdir))
        config = confirm_config(db_url, redis, sink)
        app = bench_app.create_app(config)
        stack.callback(bench_app.close, app)

        for run_index in range(runs):
            log(f"{NAME}: run {run_index + 1}/{runs}, {count} jobs")
            queue_confirmations(app, redis, count, f"r{run_index}")
            sink.reset()
            samples: list[tuple[int, int]] = []
            stop = threading.Event()
            child = start_confirm_worker(config, workdir, "worker", "--burst")
            sampler = threading.Thread(
                target=_sample, args=(child.pid, sink, stop, samples), daemon=True
            )
            sampler.start()
            try:
                exited = child.wait(drain_timeout(count))
            finally:
                stop.set()
                sampler.join(5)
                child.stop()
            check_delivered(sink.stats(), bench_app.count_sent(app), count, NAME)
            after_checkpoint = [rss for done, rss in samples if done >= checkpoint]
            if not after_checkpoint:
                raise RuntimeError(f"No RSS sample after {checkpoint} jobs.")
            early.append(after_checkpoint[0] / 1024)
            last.append(samples[-1][1] / 1024)
            peak.append(exited.peak_rss_kib / 1024)
    base = f"RSS after {checkpoint} jobs"
    return [
        Row(NAME, VARIANT, f"RSS MiB at end ({count} jobs)", last, base, early),
        Row(NAME, VARIANT, "peak RSS MiB", peak, base, early),
    ]
