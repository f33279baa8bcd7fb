"""``register``: latency and throughput of a registration endpoint.

:mod:`benchmarks.app` is served by waitress (4 threads) in a subprocess, with
PostgreSQL and Redis; 4 client threads send form POSTs over keep-alive
connections, each as soon as its previous one is answered. Variants:

``no mail (baseline)``
    Insert the user and commit.
``flask-confirm``
    ``confirm.send_confirmation(user)``: commit, then enqueue. A
    ``flask confirm-worker`` drains the queue into an SMTP sink meanwhile, on
    the same machine, as it would in production.
``sync smtp 200ms``
    Commit, then render and send the mail in the request over a new SMTP
    connection (Flask-Security-Too's way) to a sink that takes 200 ms.
``flask-confirm, provider down``
    As ``flask-confirm``, with nothing listening on the SMTP port and no
    worker running: the request must not notice; compared with
    ``flask-confirm``.
``no mail, 1 client`` and ``flask-confirm, 1 client``
    The first two again, one request at a time and with no worker running, on
    the provider-down server: what ``send_confirmation`` adds to one request,
    without the queueing that 4 clients on 2 cores add to latencies. With no
    worker, most confirmations join the job that waits (one Redis script).
``flask-confirm, 1 client, a job each``
    As ``flask-confirm, 1 client``, on a server of its own with
    ``CONFIRM_BATCH_SIZE=1``, so that every confirmation queues a job of its
    own (the script, then one transaction): what a request costs when an
    idle worker has already taken the job before it (a quiet site). The
    real path also sets the marker others would join (one command more in
    the same transaction). Compared with ``no mail, 1 client``.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import typing as t
from pathlib import Path

from rq import Queue

from benchmarks import app as bench_app
from benchmarks.common import free_port
from benchmarks.common import http_load
from benchmarks.common import log
from benchmarks.common import postgres_database
from benchmarks.common import redis_server
from benchmarks.common import RedisServer
from benchmarks.common import Request
from benchmarks.common import Results
from benchmarks.common import Row
from benchmarks.common import smtp_sink
from benchmarks.common import wait_for
from benchmarks.common import waitress_server
from benchmarks.worker import confirm_config
from benchmarks.worker import start_confirm_worker

NAME = "register"
NOMAIL = "no mail (baseline)"
CONFIRM = "flask-confirm"
SYNC = "sync smtp 200ms"
DOWN = "flask-confirm, provider down"
NOMAIL_1 = "no mail, 1 client"
CONFIRM_1 = "flask-confirm, 1 client"
EACH_1 = "flask-confirm, 1 client, a job each"
DOWN_QUEUE = "confirm-down"
EACH_QUEUE = "confirm-each"
CONCURRENCY = 4


def _requests(path: str, tag: str, count: int) -> list[Request]:
    return [
        ("POST", path, f"email={tag}-{i}%40example.test".encode()) for i in range(count)
    ]


def _wait_drained(redis: RedisServer, queue_name: str, timeout: float) -> None:
    """Wait for the worker to finish the backlog, so that it does not compete
    with the next variant's run."""
    queue = Queue(queue_name, connection=redis.client)

    def drained() -> bool:
        return queue.count == 0 and queue.started_job_registry.count == 0

    wait_for(drained, timeout, f"the worker to drain {queue_name!r}")
    time.sleep(0.2)


def run(quick: bool, runs: int) -> list[Row]:
    count = 30 if quick else 1000
    sync_count = 8 if quick else 120
    warmup = 5 if quick else 50
    results = Results(NAME)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        redis = stack.enter_context(redis_server(workdir))
        db_url = stack.enter_context(postgres_database())
        fast_sink = stack.enter_context(smtp_sink(workdir))
        slow_sink = stack.enter_context(smtp_sink(workdir, delay=0.2))

        # The web side sends only on /register/sync, to the slow sink; the
        # worker sends Flask-Confirm's mails to the fast one.
        web_config = confirm_config(db_url, redis, slow_sink)
        worker_config = confirm_config(db_url, redis, fast_sink)
        down_config = confirm_config(
            db_url,
            redis,
            None,
            CONFIRM_SENDER="smtp",
            CONFIRM_QUEUE=DOWN_QUEUE,
            MAIL_SERVER="127.0.0.1",
            MAIL_PORT=free_port(),  # nothing listens there
        )
        each_config = {
            **down_config,
            "CONFIRM_QUEUE": EACH_QUEUE,
            "CONFIRM_BATCH_SIZE": 1,
        }
        app = bench_app.create_app(web_config)
        stack.callback(bench_app.close, app)
        bench_app.reset_tables(app)

        port = stack.enter_context(waitress_server(web_config, workdir, "main"))
        down_port = stack.enter_context(waitress_server(down_config, workdir, "down"))
        each_port = stack.enter_context(waitress_server(each_config, workdir, "each"))
        worker = start_confirm_worker(worker_config, workdir, "worker")
        stack.callback(worker.stop)

        variants: dict[str, tuple[int, str, int, int]] = {
            NOMAIL: (port, "/register/nomail", count, CONCURRENCY),
            CONFIRM: (port, "/register/confirm", count, CONCURRENCY),
            SYNC: (port, "/register/sync", sync_count, CONCURRENCY),
            DOWN: (down_port, "/register/confirm", count, CONCURRENCY),
            NOMAIL_1: (down_port, "/register/nomail", count, 1),
            CONFIRM_1: (down_port, "/register/confirm", count, 1),
            EACH_1: (each_port, "/register/confirm", count, 1),
        }
        for index, (variant_port, path, _, clients) in enumerate(variants.values()):
            tag = f"warm-v{index}"
            http_load(
                variant_port,
                _requests(path, tag, warmup),
                concurrency=clients,
                expect=(201,),
            )
        _wait_drained(redis, "confirm", 60)

        for run_index in range(runs):
            for index, (name, spec) in enumerate(variants.items()):
                variant_port, path, n, clients = spec
                log(f"{NAME}: run {run_index + 1}/{runs}, {name}, {n} requests")
                tag = f"r{run_index}-v{index}"
                result = http_load(
                    variant_port,
                    _requests(path, tag, n),
                    concurrency=clients,
                    expect=(201,),
                    timeout=60 + n / 2,
                )
                results.add(name, "p50 ms", result.p50_ms)
                results.add(name, "p99 ms", result.p99_ms)
                results.add(name, "req/s", result.rps)
                if name == CONFIRM:
                    _wait_drained(redis, "confirm", 60 + n / 10)
        _check(app, redis, results, each_jobs=warmup + count * runs)
    return results.rows(
        {
            CONFIRM: NOMAIL,
            SYNC: NOMAIL,
            DOWN: CONFIRM,
            CONFIRM_1: NOMAIL_1,
            EACH_1: NOMAIL_1,
        }
    )


def _check(app: t.Any, redis: RedisServer, results: Results, each_jobs: int) -> None:
    """Every Flask-Confirm registration was queued, and those the worker
    served were sent; the provider-down ones wait in their queue, and each
    of the a-job-each variant's (``each_jobs`` of them) in a job of its own."""
    down = Queue(DOWN_QUEUE, connection=redis.client).count
    expected_down = len(results.values(DOWN, "req/s"))
    if expected_down and down == 0:
        raise RuntimeError("No job waits in the provider-down queue.")
    each = Queue(EACH_QUEUE, connection=redis.client).count
    if each != each_jobs:
        raise RuntimeError(
            f"{each} jobs wait in {EACH_QUEUE!r}, not one per confirmation"
            f" ({each_jobs})."
        )
    if bench_app.count_sent(app) == 0:
        raise RuntimeError("The worker sent nothing during the flask-confirm runs.")
