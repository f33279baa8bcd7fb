"""``bulk``: how fast pending confirmations are queued in bulk.

100,000 users (1,000 with ``--quick``) are inserted with
``confirmation_requested_at`` set, in one SQL statement, then ``flask confirm
sweep --older-than 0`` queues them all (its enqueues are pipelined, 1,000 per
round trip), once with jobs of ``CONFIRM_BATCH_SIZE`` users (the default)
and once with one job per user. confirmations queued/s counts the time of
``Confirm.sweep`` inside the command (its query and its enqueues; timed by
``benchmarks.timed_cli``), so that the command's start-up, also reported,
does not drown small runs. The baseline enqueues the same jobs one per round
trip with RQ's ``Queue.enqueue_call``, the way a loop over
``send_confirmation`` or a naive script would, on 10,000 of them (200 with
``--quick``).
"""

from __future__ import annotations

import contextlib
import re
import sys
import tempfile
import time
from pathlib import Path

from rq import Queue
from rq import Retry

from benchmarks import app as bench_app
from benchmarks.common import bench_env
from benchmarks.common import Child
from benchmarks.common import log
from benchmarks.common import postgres_database
from benchmarks.common import redis_server
from benchmarks.common import Results
from benchmarks.common import Row
from benchmarks.worker import confirm_config

NAME = "bulk"
ONE_BY_ONE = "enqueue one by one"
TIMED_CLI = [sys.executable, "-m", "benchmarks.timed_cli"]


def run(quick: bool, runs: int) -> list[Row]:
    count = 1000 if quick else 100_000
    naive_count = 200 if quick else 10_000
    results = Results(NAME)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        redis = stack.enter_context(redis_server(workdir))
        db_url = stack.enter_context(postgres_database())
        config = confirm_config(db_url, redis, None)
        app = bench_app.create_app(config)
        stack.callback(bench_app.close, app)
        bench_app.reset_tables(app)
        bench_app.insert_users(app, count, "bulk-", requested=True)
        _, _, confirm = bench_app.parts(app)
        with app.app_context():
            settings = confirm._get_state().settings
        queue = Queue(settings.queue, connection=redis.client)
        default_batch = int(app.config["CONFIRM_BATCH_SIZE"])
        # Jobs of CONFIRM_BATCH_SIZE users (the default), and one job per user.
        sweeps = {
            f"flask confirm sweep, jobs of {default_batch}": default_batch,
            "flask confirm sweep, jobs of 1": 1,
        }

        def sweep(batch: int) -> tuple[float, float, int]:
            """(seconds in sweep(), seconds of the command, count queued)."""
            child = Child(
                [*TIMED_CLI, "confirm", "sweep", "--older-than", "0"],
                bench_env({**config, "CONFIRM_BATCH_SIZE": batch}),
                workdir / "sweep.log",
            )
            try:
                wall = child.wait(120 + count / 500).wall
            finally:
                child.stop()
            log_text = child.log_path.read_text()
            timed = re.search(r"sweep-seconds ([0-9.]+)", log_text)
            queued = re.search(r"Queued (\d+) pending", log_text)
            if timed is None or queued is None:
                raise RuntimeError(f"flask confirm sweep said:\n{child.log_tail()}")
            return float(timed.group(1)), wall, int(queued.group(1))

        for run_index in range(runs):
            for name, batch in sweeps.items():
                log(f"{NAME}: run {run_index + 1}/{runs}, {name}, {count} users")
                redis.flush()
                inside, wall, queued = sweep(batch)
                jobs = -(-count // batch)
                if queued != count or queue.count != jobs:
                    raise RuntimeError(
                        f"The sweep queued {queued} confirmations in {queue.count}"
                        f" jobs, not {count} in {jobs}."
                    )
                results.add(name, "confirmations queued/s", count / inside)
                results.add(name, "whole command s", wall)

            log(f"{NAME}: run {run_index + 1}/{runs}, {ONE_BY_ONE}, {naive_count}")
            redis.flush()
            retry = Retry(max=settings.retries, interval=list(settings.retry_intervals))
            start = time.perf_counter()
            for user_id in range(1, naive_count + 1):
                queue.enqueue_call(
                    "flask_confirm.tasks.send_confirmation_job",
                    args=(user_id,),
                    description=f"confirmation for user {user_id!r}",
                    timeout=settings.job_timeout,
                    retry=retry,
                )
            elapsed = time.perf_counter() - start
            if queue.count != naive_count:
                raise RuntimeError(f"Queued {queue.count}, not {naive_count}.")
            results.add(ONE_BY_ONE, "confirmations queued/s", naive_count / elapsed)
    return results.rows(dict.fromkeys(sweeps, ONE_BY_ONE))
